"""Summaries through the local server's batch API and its chats: submit, poll, fetch, apply;
a run killed at any step resumes without asking for anything twice; the outline by rule."""

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

import batches
import summaries
from chat import answer
from chat_api import Cache, OpenAIChat
from items2025 import Item2025

ITEMS = '''
from items2025 import Item2025

def made():
    """Five products and a sixth with the third's text (asked for once)."""
    texts = [f"Kettle {n}\\n" + "Boils water. " * n for n in range(5)]
    return [Item2025(f"Kettle {n}", "Appliances", 20.0 + n, text)
            for n, text in enumerate(texts + texts[2:3])]
'''
KILLED = ITEMS + '''
import os, signal, sys
from pathlib import Path
import summaries
from chat_api import Cache, OpenAIChat

base_url, folder, step = sys.argv[1:]
chat = OpenAIChat("summariser", base_url=base_url, params=summaries.LOCAL_PARAMS)
run = summaries.BatchSummaries(chat, Path(folder), Cache(Path(folder) / "replies.sqlite"),
                               batch_size=2, poll_seconds=0.05)
api = {"upload": run.client.files, "create": run.client.batches, "fetch": run.client.files}
name = {"upload": "create", "create": "create", "fetch": "content"}[step]
real = getattr(api[step], name)

def then_die(*args, **kwargs):
    done = real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # after the call, before its state is saved

setattr(api[step], name, then_die)
run.summarise(made(), progress=False)
'''
made = {}
exec(ITEMS, made)
made = made["made"]


@pytest.fixture
def local():
    """The local server with batches, summarising each text as its length in dollars, and
    counting what it is asked."""
    asked = Counter()

    def summary(item):
        asked[item.text] += 1
        return len(item.text)

    with batches.start(summary, model="summariser") as running:
        running.asked = asked
        yield running


def batch_run(local, folder, **options) -> summaries.BatchSummaries:
    chat = OpenAIChat("summariser", base_url=local.base_url, params=summaries.LOCAL_PARAMS)
    return summaries.BatchSummaries(chat, folder, Cache(folder / "replies.sqlite"),
                                    batch_size=2, poll_seconds=0.05, **options)


def assert_summarised(products):
    assert [p.summary for p in products] == [answer(len(p.full.strip())) for p in products]


def test_a_batch_run_submits_polls_fetches_and_applies(local, tmp_path):
    products = made()
    run = batch_run(local, tmp_path)
    assert run.summarise(products, progress=False) == []
    assert_summarised(products)
    assert sum(local.asked.values()) == len(local.asked) == 5  # the copy is asked once
    assert [len(b.keys) for b in run.batches] == [2, 2, 1]
    assert all(b.status == "completed" and b.fetched for b in run.batches)
    assert run.meter.calls == 5 and run.meter.input_tokens > 0
    # Another run on the same folder and cache: nothing is submitted, everything applied.
    again = batch_run(local, tmp_path)
    products = made()
    assert again.submit(products) == 0 and again.apply(products) == []
    assert_summarised(products)
    assert sum(local.asked.values()) == 5 and len(list(again.client.batches.list())) == 3


@pytest.mark.parametrize("step", ["upload", "create", "fetch"])
def test_a_killed_run_resumes_and_nothing_is_asked_twice(local, tmp_path, step):
    """Killed right after uploading a file, creating a batch, or reading its output: each
    before the run saved what it got."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run([sys.executable, "-c", KILLED, local.base_url, str(tmp_path), step],
                            env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    run = batch_run(local, tmp_path)
    if step == "fetch":
        assert run.batches[0].batch_id and not run.batches[0].fetched
    else:
        assert run.batches[0].batch_id is None
    products = made()
    assert run.summarise(products, progress=False) == []
    assert_summarised(products)
    assert sum(local.asked.values()) == len(local.asked) == 5
    created = list(run.client.batches.list())
    assert len(created) == len(run.batches) == 3  # the killed run's batch adopted, not redone
    assert sorted(b.input_file_id for b in created) == sorted(b.file_id for b in run.batches)


def test_chats_share_the_cache_with_batches(local, tmp_path):
    chat = OpenAIChat("summariser", base_url=local.base_url, params=summaries.LOCAL_PARAMS)
    cache = Cache(tmp_path / "replies.sqlite")
    first = made()
    run = summaries.ChatSummaries(chat, cache, concurrency=2)
    assert run.summarise(first[:2], progress=False) == []
    assert run.meter.calls == 2
    batch = summaries.BatchSummaries(chat, tmp_path, cache, batch_size=2, poll_seconds=0.05)
    assert batch.summarise(first, progress=False) == []
    assert batch.meter.calls == 3  # the two chatted answers come from the cache
    assert sum(local.asked.values()) == 5
    assert_summarised(first)


def test_a_batch_that_fails_leaves_its_items_to_ask_again(local, tmp_path):
    """A request the server refuses (a chat with no user message) comes back in the error
    file: the item keeps no summary, and a later run asks for it."""
    products = made()[:2]
    products[0].full = None  # a user message without content
    run = batch_run(local, tmp_path)
    left = run.summarise(products, progress=False)
    assert left == [products[0]] and run.meter.failed == 1
    assert products[1].summary == answer(len(products[1].full.strip()))


def test_the_server_refuses_a_malformed_batch_file(local):
    client = OpenAIChat("summariser", base_url=local.base_url).client
    file = client.files.create(file=("bad.jsonl", b'{"custom_id": "a"}\n'), purpose="batch")
    batch = client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    while batch.status not in summaries.DONE:
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed"
    assert "method must be POST" in batch.errors.data[0].message


def test_outlines_by_rule():
    item = Item2025("Crestwood Kettle AB12345C", "Appliances", 24.99,
                    "Crestwood Kettle \n['Boils fast. Stays quiet.']\n['1.7 litres', 'Red']\n"
                    '{"Brand": "Crestwood", "Color": "Red"}')
    runner = summaries.Outline()
    assert runner.summarise([item], progress=False) == []
    assert item.summary == ("Title: Crestwood Kettle\nCategory: Appliances\nBrand: Crestwood\n"
                            "Description: Boils fast.\nDetails: 1.7 litres")
    bare = Item2025("Kettle", "Appliances", 24.99, "Kettle")
    assert summaries.Outline().summary(bare).splitlines()[2:] == [
        "Brand: Unknown", "Description: ", "Details: "]


@pytest.mark.slow
def test_the_open_llm_summarises_through_a_batch(tmp_path):
    """SmolLM2 135M on the local server, through the batch API: an answer within its tokens."""
    with batches.start(model="smollm2-135m") as llm:
        chat = OpenAIChat(llm.model, base_url=llm.base_url, params=summaries.LOCAL_PARAMS)
        run = summaries.BatchSummaries(chat, tmp_path, Cache(tmp_path / "replies.sqlite"),
                                       poll_seconds=0.2)
        product = made()[3]
        assert run.summarise([product], progress=False) == []
    assert product.summary.strip() and 0 < run.meter.output_tokens <= 120


def test_a_batch_is_answered_at_once_and_written_in_order():
    """Requests go out as many at a time as the model answers (here 4): the first waits
    for the fourth to arrive, and the output file still lists them as asked."""
    arrived = threading.Barrier(4, timeout=10)

    def summary(item):
        if int(item.text.split()[-1]) < 4:
            arrived.wait()  # the first four are answered together, or the barrier breaks
        return 1.0

    summary.at_once = 4
    lines = [{"custom_id": f"p{n}", "method": "POST", "url": batches.ENDPOINT,
              "body": {"model": "m", "messages": [{"role": "user", "content": f"Item {n}"}]}}
             for n in range(6)]
    with batches.start(summary, model="m") as running:
        client = OpenAIChat("m", base_url=running.base_url).client
        upload = "\n".join(map(json.dumps, lines)).encode()
        file = client.files.create(file=("in.jsonl", upload), purpose="batch")
        batch = client.batches.create(input_file_id=file.id, endpoint=batches.ENDPOINT,
                                      completion_window="24h")
        while batch.status not in summaries.DONE:
            time.sleep(0.02)
            batch = client.batches.retrieve(batch.id)
        out = client.files.content(batch.output_file_id).text.splitlines()
    assert batch.status == "completed" and batch.request_counts.completed == 6
    assert [json.loads(line)["custom_id"] for line in out] == [f"p{n}" for n in range(6)]
