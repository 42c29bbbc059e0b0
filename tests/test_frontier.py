"""The LLM pricers, against the local server over real HTTP, with scripted faults: answers
cached, failures retried, tokens metered (through chat_api), and the run stopped by what
cannot work."""

import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import faults
import numpy as np
import pytest

import chat_api
import frontier
import llama_tokens
from chat import messages_for
from chat_api import Backoff, Cache, ChatAPIError
from pricer import NoPrice
from testing import Tester

FAST = Backoff(attempts=3, base=0.01)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def served():
    recorder, script = faults.Recorder(), faults.Faults()
    running = faults.start(recorder, script)
    yield running, recorder, script
    running.stop()


@pytest.fixture
def local(served):
    """The running server, its recording predictor and its fault script, all fresh."""
    _, recorder, script = served
    recorder.reset()
    recorder.delay = 0.0
    script.script.clear()
    return served


def pricer_for(running, cache=None, timeout=30.0, **kwargs) -> frontier.ChatPricer:
    chat = chat_api.OpenAIChat(running.model, base_url=running.base_url, timeout=timeout)
    return frontier.ChatPricer(chat, cache=Cache(":memory:") if cache is None else cache,
                           backoff=kwargs.pop("backoff", FAST), **kwargs)


def test_cache_hits_and_misses(local, tmp_path):
    running, recorder, _ = local
    items = faults.make_items(6)
    first = pricer_for(running, Cache(tmp_path / "replies.sqlite"))
    first.prefetch(items, progress=False)
    assert [first(i) for i in items] == [faults.widget_price(i) for i in items]
    assert (recorder.calls, first.meter.calls, first.meter.cached) == (6, 6, 0)

    again = pricer_for(running, Cache(tmp_path / "replies.sqlite"))  # a new run, same file
    assert [again(i) for i in items + faults.make_items(1, start=6)][:6] == \
        [faults.widget_price(i) for i in items]
    assert (recorder.calls, again.meter.calls, again.meter.cached) == (7, 1, 6)
    assert again.meter.input_tokens > 0 and again.meter.output_tokens > 0

    other_params = pricer_for(running, again.cache)
    other_params.chat.params = {"max_tokens": 7, "seed": 42}
    other_params.prefetch(items, progress=False)
    assert (recorder.calls, other_params.meter.cached) == (13, 0)
    assert len(Cache(tmp_path / "replies.sqlite")) == 13


def test_an_interrupted_run_resumes_without_repeating_a_call(local, tmp_path):
    running, recorder, _ = local
    recorder.delay = 0.1
    path, items = tmp_path / "replies.sqlite", faults.make_items(40)
    code = (f"import chat_api, faults, frontier\n"
            f"pricer = frontier.compatible_pricer({running.base_url!r}, {running.model!r}, "
            f"cache=chat_api.Cache({str(path)!r}), concurrency=4)\n"
            f"pricer.prefetch(faults.make_items(40), progress=False)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    run = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    while recorder.calls < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    run.kill()  # a crash: no clean-up of any kind
    run.wait()

    resumed = pricer_for(running, Cache(path))
    stored = {i.title for i in items if resumed.cache.get(resumed.key(i))}
    assert 0 < len(stored) < 40
    recorder.reset()
    recorder.delay = 0.0
    resumed.prefetch(items, progress=False)
    assert not stored & set(recorder.seen)
    assert stored | set(recorder.seen) == {i.title for i in items}
    assert (resumed.meter.calls, resumed.meter.cached) == (40 - len(stored), len(stored))
    assert [resumed(i) for i in items] == [faults.widget_price(i) for i in items]


def test_429_honours_retry_after(local):
    running, recorder, script = local
    script.then(faults.status(429, **{"Retry-After": "1"}))
    pricer, item = pricer_for(running), faults.make_items(1)[0]
    start = time.monotonic()
    assert pricer(item) == faults.widget_price(item)
    assert time.monotonic() - start >= 1.0
    assert (pricer.meter.retries, pricer.meter.calls, recorder.calls) == (1, 1, 1)
    assert pricer.meter.errors == {"RateLimitError": 1}


def test_server_errors_are_retried(local):
    running, recorder, script = local
    script.then(faults.status(500), faults.status(503))
    pricer, item = pricer_for(running), faults.make_items(1)[0]
    assert pricer(item) == faults.widget_price(item)
    assert (pricer.meter.retries, pricer.meter.failed, recorder.calls) == (2, 0, 1)


def test_timeouts_are_retried(local):
    running, recorder, script = local
    script.then(faults.slow(2.0))
    pricer, item = pricer_for(running, timeout=0.5), faults.make_items(1)[0]
    assert pricer(item) == faults.widget_price(item)
    assert pricer.meter.retries == 1
    assert pricer.meter.errors == {"APITimeoutError": 1}


def test_malformed_replies_are_retried(local):
    running, _, script = local
    script.then(faults.body("<html>Bad gateway</html>"), faults.body('{"choices": 7}'))
    pricer, item = pricer_for(running), faults.make_items(1)[0]
    assert pricer(item) == faults.widget_price(item)
    assert (pricer.meter.retries, pricer.meter.errors) == (2, {"MalformedReply": 2})


def test_a_call_that_keeps_failing_is_counted_not_cached(local):
    running, recorder, script = local
    script.then(*[faults.status(500)] * 3)
    pricer, item = pricer_for(running), faults.make_items(1)[0]
    with pytest.raises(NoPrice, match=r"gave up after 3 attempts \(3 InternalServerError\)"):
        pricer(item)
    assert (pricer.meter.failed, pricer.meter.calls, len(pricer.cache)) == (1, 0, 0)
    assert math.isnan(pricer.predict_many([item])[0])  # remembered for this run: no new try
    assert (pricer.meter.failed, recorder.calls) == (1, 0)
    again = pricer_for(running, pricer.cache)  # a new run tries afresh
    assert again(item) == faults.widget_price(item)
    assert (again.meter.calls, len(again.cache), recorder.calls) == (1, 1, 1)


def test_failing_items_are_tried_one_cycle_each(local):
    running, recorder, script = local
    script.then(*[faults.status(503)] * 24)
    pricer, items = pricer_for(running, concurrency=1), faults.make_items(8)
    scores = Tester.test(pricer, items, verbose=False, chart=False, results=False)
    # 24 failures scripted: one cycle of 3 attempts each, and nothing got through after.
    assert scores.failures == 8 and not script.script and recorder.calls == 0


def test_a_tester_on_a_dead_endpoint_counts_failures(capsys):
    chat = chat_api.OpenAIChat("pricer", base_url="http://127.0.0.1:9/v1", timeout=1.0)
    pricer = frontier.ChatPricer(chat, Cache(":memory:"), backoff=FAST)
    tester = Tester(pricer, faults.make_items(5), results=False, chart=False)
    scores = tester.run()
    assert scores.failures == 5 and scores.average_error == pytest.approx(
        sum(i.price for i in faults.make_items(5)) / 5)
    assert set(tester.failures.values()) == {"gave up after 3 attempts (3 APIConnectionError)"}
    assert "Failures: 5 of 5 (5 gave up after 3 attempts" in capsys.readouterr().out


def test_empty_and_priceless_replies_are_counted_and_kept(local):
    running, recorder, script = local
    script.then(faults.content(""), faults.content(None), faults.content("I cannot price this"))
    pricer, items = pricer_for(running), faults.make_items(3)
    assert np.isnan(pricer.predict_many(items)).all()
    assert (pricer.meter.no_price, pricer.meter.calls, pricer.meter.retries) == (3, 3, 0)
    with pytest.raises(NoPrice, match="no price in the answer"):
        pricer(items[2])
    again = pricer_for(running, pricer.cache)  # paid for once: never asked again
    scores = Tester.test(again, items, verbose=False, chart=False, results=False)
    assert scores.failures == 3 and scores.average_error == pytest.approx(
        sum(i.price for i in items) / 3)  # scored as $0, as the course did
    assert (again.meter.calls, again.meter.no_price, recorder.calls) == (0, 3, 0)


def test_a_bad_key_stops_the_run_with_a_clear_error():
    recorder = faults.Recorder()
    with faults.start(recorder, faults.Faults(), api_key="right") as running:
        chat = chat_api.OpenAIChat(running.model, base_url=running.base_url, api_key="wrong")
        pricer = frontier.ChatPricer(chat, Cache(":memory:"), backoff=FAST, concurrency=2)
        with pytest.raises(ChatAPIError, match=r"rejected the API key \(HTTP 401\)"):
            pricer.prefetch(faults.make_items(20), progress=False)
        assert (pricer.meter.retries, recorder.calls, len(pricer.cache)) == (0, 0, 0)


def test_missing_keys_and_unknown_models_are_clear(local, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ChatAPIError, match="set OPENAI_API_KEY"):
        frontier.openai_pricer()
    with pytest.raises(ChatAPIError, match="set ANTHROPIC_API_KEY"):
        frontier.anthropic_pricer()
    running, _, _ = local
    chat = chat_api.OpenAIChat("retired-model", base_url=running.base_url)
    with pytest.raises(ChatAPIError, match=r"no such model \(HTTP 404\)"):
        frontier.ChatPricer(chat, Cache(":memory:"))(faults.make_items(1)[0])


def test_a_rejected_request_says_why(local):
    running, recorder, script = local
    script.then(faults.status(400, "Prefilling is not supported for this model"))
    with pytest.raises(ChatAPIError, match=r"HTTP 400\): Prefilling .* prefill=False"):
        pricer_for(running)(faults.make_items(1)[0])
    assert recorder.calls == 0


def test_concurrency_is_bounded(local):
    running, recorder, _ = local
    recorder.delay = 0.05
    pricer, items = pricer_for(running, concurrency=3), faults.make_items(15)
    assert pricer.predict_many(items).tolist() == [faults.widget_price(i) for i in items]
    assert 2 <= recorder.most_in_flight <= 3
    assert pricer.meter.calls == 15


def test_the_meter_adds_up(local, monkeypatch):
    running, _, _ = local
    pricer, widgets = pricer_for(running), faults.make_items(4)
    pricer.prefetch(widgets, progress=False)
    sent = sum(llama_tokens.count(m["content"]) for i in widgets for m in messages_for(i))
    answered = sum(llama_tokens.count(f"Price is ${faults.widget_price(i):.2f}") for i in widgets)
    meter = pricer.meter
    assert (meter.calls, meter.input_tokens, meter.output_tokens) == (4, sent, answered)
    assert meter.dollars((1.0, 2.0)) == pytest.approx((sent + 2 * answered) / 1e6)
    assert meter.dollars() is None and "add 'widgets' to chat_api.PRICES" in str(meter)
    monkeypatch.setitem(chat_api.PRICES, "widgets", (3.0, 4.0))
    assert meter.dollars() == pytest.approx((3 * sent + 4 * answered) / 1e6)
    assert f"about ${(3 * sent + 4 * answered) / 1e6:,.4f}" in str(meter)


def test_anthropic_over_the_local_server(local):
    running, _, _ = local
    base = running.base_url.removesuffix("/v1")
    item = faults.make_items(1, start=5)[0]
    for prefill in (True, False):
        chat = chat_api.AnthropicChat(running.model, api_key="any", base_url=base,
                                      prefill=prefill)
        pricer = frontier.ChatPricer(chat, Cache(":memory:"), backoff=FAST)
        assert pricer(item) == faults.widget_price(item)
    assert chat.complete(messages_for(item)).text == "Price is $22.50"
    prefilled = chat_api.AnthropicChat(running.model, api_key="any", base_url=base)
    assert prefilled.complete(messages_for(item)).text == "22.50"
    assert prefilled.identity() != chat.identity()


def test_two_processes_sharing_a_cache_never_pay_twice(local, tmp_path):
    running, recorder, _ = local
    recorder.delay = 0.05
    items = faults.make_items(20)
    # Two Cache objects on one file: two connections, as two processes have.
    pricers = [pricer_for(running, Cache(tmp_path / "replies.sqlite"), concurrency=4)
               for _ in range(2)]
    threads = [threading.Thread(target=p.prefetch, args=(items,), kwargs={"progress": False})
               for p in pricers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert recorder.calls == 20 and set(recorder.seen.values()) == {1}
    assert sum(p.meter.calls for p in pricers) == 20
    assert sum(p.meter.cached for p in pricers) == 20
    assert [[p(i) for i in items] for p in pricers] == [[faults.widget_price(i) for i in items]] * 2


def test_two_processes_try_a_failing_item_one_cycle_in_all(local, tmp_path):
    """B waits for A's claim; when A gives up, B takes A's failure for this run instead of
    trying a cycle of its own. A later run tries afresh."""
    running, _, script = local
    script.then(*[faults.status(500)] * 12)
    item = faults.make_items(1)[0]
    pricers = [pricer_for(running, Cache(tmp_path / "replies.sqlite")) for _ in range(2)]
    threads = [threading.Thread(target=p.prefetch, args=([item],), kwargs={"progress": False})
               for p in pricers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 12 - len(script.script) == FAST.attempts  # one cycle, not one per process
    assert [math.isnan(p.predict_many([item])[0]) for p in pricers] == [True, True]
    assert sum(p.meter.failed for p in pricers) == 2
    later = pricer_for(running, Cache(tmp_path / "replies.sqlite"))
    later.prefetch([item], progress=False)
    assert 12 - len(script.script) == 2 * FAST.attempts


def test_a_failing_model_description_is_not_asked_for_at_every_item(tmp_path):
    """A server whose /v1/models answers 500 is asked again a minute later, not per item."""
    script = faults.Faults(paths=("/models/widgets",)).then(*[faults.status(500)] * 100)
    with faults.start(faults.Recorder(), script) as running:
        pricer = pricer_for(running, concurrency=1)
        pricer.predict_many(faults.make_items(10))
    assert 100 - len(script.script) == 1
