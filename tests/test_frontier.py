"""The LLM pricers, against the local server over real HTTP, with scripted faults."""

import doctest
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import faults
import pytest

import frontier
import llama_tokens
from frontier import Backoff, Cache, FrontierError

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
    chat = frontier.OpenAIChat(running.model, base_url=running.base_url, timeout=timeout)
    return frontier.ChatPricer(chat, cache=Cache(":memory:") if cache is None else cache,
                           backoff=kwargs.pop("backoff", FAST), **kwargs)


def test_doctests():
    assert doctest.testmod(frontier).failed == 0


def test_messages_are_the_courses():
    item = faults.make_items(1)[0]
    system, user, assistant = frontier.messages_for(item)
    assert system == {"role": "system", "content": "You estimate prices of items. "
                                                   "Reply only with the price, no explanation"}
    assert user["role"] == "user"
    assert user["content"] == "How much does this cost?\n\nWidget 0\nA sturdy widget, model 0, " \
                              "in steel."
    assert assistant == {"role": "assistant", "content": "Price is $"}


def test_the_server_gets_the_item_back():
    for item in faults.make_items(3):
        rebuilt = frontier.item_from_messages(frontier.messages_for(item))
        assert (rebuilt.title, rebuilt.test_prompt()) == (item.title, item.test_prompt())
    with pytest.raises(ValueError, match="no user message"):
        frontier.item_from_messages([{"role": "system", "content": "hi"}])


def course_get_price(s: str) -> float:
    """The course's rule, as it was written."""
    s = s.replace("$", "").replace(",", "")
    match = re.search(r"[-+]?\d*\.\d+|\d+", s)
    return float(match.group()) if match else 0


REPLIES = ["$1,299.99", "about 45 dollars", "Price is $99", "99.99", "Price is $1,234.",
           "$ 12.50 or so", "2 for $30", ".99", "-5", "Price is $1.5k", "12, 15", "3-pack: $24.99",
           "I cannot tell", ""]


@pytest.mark.parametrize("text", REPLIES)
def test_get_price_is_the_courses_rule(text):
    assert (frontier.get_price(text) or 0) == course_get_price(text)


@pytest.mark.parametrize("text, price", [
    ("$1,299.99", 1299.99), ("about 45 dollars", 45.0), ("Price is $99", 99.0),
    ("99.99", 99.99), ("Price is $1,234.", 1234.0), ("$ 12.50 or so", 12.5),
    ("2 for $30", 30.0), ("3-pack: $24.99", 24.99), ("12, 15", 12.0), (".99", 0.99),
    ("I cannot tell", None), ("", None), (None, None),
])
def test_get_dollar_price(text, price):
    assert frontier.get_dollar_price(text) == price


def test_the_rules_differ_where_a_count_comes_first():
    differ = [t for t in REPLIES if frontier.get_price(t) != frontier.get_dollar_price(t)]
    assert differ == ["2 for $30", "3-pack: $24.99"]


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
    code = (f"import faults, frontier\n"
            f"pricer = frontier.compatible_pricer({running.base_url!r}, {running.model!r}, "
            f"cache=frontier.Cache({str(path)!r}), concurrency=4)\n"
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


def test_retry_after_forms():
    def error(**headers):
        return SimpleNamespace(response=SimpleNamespace(headers=headers))

    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert frontier.retry_after(error(**{"retry-after-ms": "250"})) == 0.25
    assert frontier.retry_after(error(**{"retry-after": "3"})) == 3.0
    assert 25 < frontier.retry_after(error(**{"retry-after": later})) <= 30
    assert frontier.retry_after(error(**{"retry-after": "soon"})) is None
    assert frontier.retry_after(ValueError()) is None


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
    pricer, item = pricer_for(running, fallback=-1.0), faults.make_items(1)[0]
    assert pricer(item) == -1.0
    assert (pricer.meter.failed, pricer.meter.calls, len(pricer.cache)) == (1, 0, 0)
    assert pricer(item) == faults.widget_price(item)  # asked again: a fresh try
    assert (pricer.meter.calls, len(pricer.cache), recorder.calls) == (1, 1, 1)


def test_empty_and_priceless_replies_are_counted_and_kept(local):
    running, recorder, script = local
    script.then(faults.content(""), faults.content(None), faults.content("I cannot price this"))
    pricer, items = pricer_for(running), faults.make_items(3)
    assert [pricer(i) for i in items] == [0.0, 0.0, 0.0]
    assert (pricer.meter.no_price, pricer.meter.calls, pricer.meter.retries) == (3, 3, 0)
    again = pricer_for(running, pricer.cache)  # paid for once: never asked again
    assert [again(i) for i in items] == [0.0, 0.0, 0.0]
    assert (again.meter.calls, again.meter.no_price, recorder.calls) == (0, 3, 0)


def test_a_bad_key_stops_the_run_with_a_clear_error():
    recorder = faults.Recorder()
    with faults.start(recorder, faults.Faults(), api_key="right") as running:
        chat = frontier.OpenAIChat(running.model, base_url=running.base_url, api_key="wrong")
        pricer = frontier.ChatPricer(chat, Cache(":memory:"), backoff=FAST, concurrency=2)
        with pytest.raises(FrontierError, match=r"rejected the API key \(HTTP 401\)"):
            pricer.prefetch(faults.make_items(20), progress=False)
        assert (pricer.meter.retries, recorder.calls, len(pricer.cache)) == (0, 0, 0)


def test_missing_keys_and_unknown_models_are_clear(local, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(FrontierError, match="set OPENAI_API_KEY"):
        frontier.openai_pricer()
    with pytest.raises(FrontierError, match="set ANTHROPIC_API_KEY"):
        frontier.anthropic_pricer()
    running, _, _ = local
    chat = frontier.OpenAIChat("retired-model", base_url=running.base_url)
    with pytest.raises(FrontierError, match=r"no such model \(HTTP 404\)"):
        frontier.ChatPricer(chat, Cache(":memory:"))(faults.make_items(1)[0])


def test_a_rejected_request_says_why(local):
    running, recorder, script = local
    script.then(faults.status(400, "Prefilling is not supported for this model"))
    with pytest.raises(FrontierError, match=r"HTTP 400\): Prefilling .* prefill=False"):
        pricer_for(running)(faults.make_items(1)[0])
    assert recorder.calls == 0


def test_concurrency_is_bounded(local):
    running, recorder, _ = local
    recorder.delay = 0.05
    pricer, items = pricer_for(running, concurrency=3), faults.make_items(15)
    assert pricer.predict_many(items) == [faults.widget_price(i) for i in items]
    assert 2 <= recorder.most_in_flight <= 3
    assert pricer.meter.calls == 15


def test_the_meter_adds_up(local, monkeypatch):
    running, _, _ = local
    pricer, items = pricer_for(running), faults.make_items(4)
    pricer.prefetch(items, progress=False)
    sent = sum(llama_tokens.count(m["content"]) for i in items for m in frontier.messages_for(i))
    answered = sum(llama_tokens.count(f"Price is ${faults.widget_price(i):.2f}") for i in items)
    meter = pricer.meter
    assert (meter.calls, meter.input_tokens, meter.output_tokens) == (4, sent, answered)
    assert meter.dollars((1.0, 2.0)) == pytest.approx((sent + 2 * answered) / 1e6)
    assert meter.dollars() is None and "add 'widgets' to frontier.PRICES" in str(meter)
    monkeypatch.setitem(frontier.PRICES, "widgets", (3.0, 4.0))
    assert meter.dollars() == pytest.approx((3 * sent + 4 * answered) / 1e6)
    assert f"about ${(3 * sent + 4 * answered) / 1e6:,.4f}" in str(meter)


def test_anthropic_over_the_local_server(local):
    running, _, _ = local
    base = running.base_url.removesuffix("/v1")
    item = faults.make_items(1, start=5)[0]
    for prefill in (True, False):
        chat = frontier.AnthropicChat(running.model, api_key="any", base_url=base,
                                      prefill=prefill)
        pricer = frontier.ChatPricer(chat, Cache(":memory:"), backoff=FAST)
        assert pricer(item) == faults.widget_price(item)
    assert chat.complete(frontier.messages_for(item)).text == "Price is $22.50"
    prefilled = frontier.AnthropicChat(running.model, api_key="any", base_url=base)
    assert prefilled.complete(frontier.messages_for(item)).text == "22.50"
    assert prefilled.identity() != chat.identity()
