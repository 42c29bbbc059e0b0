"""An open LLM behind the local server: the real SmolLM2 answering the course's chats."""

import httpx
import pytest
import torch
from tolerance import assert_scores_as_saved

import curation
import hardware
import lora
import open_chat
import server
import settings
from chat import messages_for
from items import Item
from testing import Tester

ITEMS = [Item.from_text(f"Stainless steel kettle, {n} litres\nBoils water fast, auto shut-off.",
                        20.0 + n) for n in (1, 2)]


@pytest.fixture(scope="module")
def smollm():
    with server.start(model="smollm2-135m") as running:
        yield running


def test_serves_the_open_model_through_the_course_client(smollm):
    assert smollm.model == "smollm2-135m"
    pricer = smollm.pricer()
    guesses = pricer.predict_many(ITEMS)
    assert all(guess > 0 for guess in guesses)  # a real number from the model, parsed
    answers = [pricer.reply(item) for item in ITEMS]
    assert all(a.text.startswith("Price is $") and a.output_tokens <= 5 for a in answers)
    assert all(a.input_tokens > 20 for a in answers)  # the chat template's tokens
    assert (pricer.meter.calls, pricer.meter.failed, pricer.meter.dollars()) == (2, 0, 0.0)
    again = smollm.pricer()
    assert list(again.predict_many(ITEMS)) == list(guesses) and again.meter.cached == 2


def test_its_pricers_ask_what_it_answers_at_once_within_the_servers_limit(smollm, monkeypatch):
    """The model answers `at_once` chats together (llama.cpp's and OpenVINO GenAI's slots; one
    at a time through transformers): more requests at once would wait for each other, and on
    a slow machine time out; the client waits a little longer than the server's own limit."""
    runtime = settings.llm_runtime(hardware.fastest_runtime())
    assert smollm.at_once == {"llama.cpp": 4, "openvino": 16}.get(runtime, 1)
    assert smollm.pricer().concurrency == smollm.at_once
    with server.start(open_chat.OpenChat("tiny", lora.tiny_llama(), lora.tokenizer())) as one:
        assert one.at_once == 1 and one.pricer().concurrency == 1
    assert smollm.pricer(concurrency=3).concurrency == 3
    monkeypatch.setenv("PRICER_SERVER_TIMEOUT", "120")
    assert smollm.pricer().chat.client.timeout == 125
    with server.start(lambda item: 1.0) as predictor:
        assert predictor.pricer().concurrency == 8


def test_answers_are_greedy_and_follow_the_template(smollm):
    chat = {"model": smollm.model, "messages": messages_for(ITEMS[0]), "max_tokens": 5}
    first, second = (httpx.post(f"{smollm.base_url}/chat/completions", json=chat, timeout=60)
                     .json()["choices"][0]["message"]["content"] for _ in range(2))
    assert first == second
    anthropic = httpx.post(f"{smollm.base_url}/messages", json=chat, timeout=60).json()
    assert first == "Price is $" + anthropic["content"][0]["text"]  # continues the prefill


def test_a_model_without_a_chat_template_reads_the_course_prompt():
    model, tok = lora.tiny_llama(), lora.tokenizer()
    chat = open_chat.OpenChat("tiny", model, tok)
    assert chat.prompt(messages_for(ITEMS[0])) == ITEMS[0].test_prompt()
    reply = chat.reply(messages_for(ITEMS[0]), max_tokens=2)
    assert reply.text.startswith("Price is $") and reply.output_tokens == 2
    assert reply.input_tokens == len(tok(ITEMS[0].test_prompt(), add_special_tokens=False)[
        "input_ids"])


def test_a_prompt_read_in_chunks_gives_the_logits_of_one_pass(monkeypatch):
    model, tok = lora.tiny_llama(), lora.tokenizer()
    ids = tok(ITEMS[0].test_prompt() * 3)["input_ids"]
    whole = open_chat.read(model, ids)
    monkeypatch.setattr(open_chat, "CHUNK", 7)
    chunked = open_chat.read(model, ids)
    assert torch.allclose(chunked.logits, whole.logits, atol=1e-4)


def test_an_empty_chat_is_refused():
    chat = open_chat.OpenChat("tiny", lora.tiny_llama(), lora.tokenizer())
    with pytest.raises(ValueError, match="no messages"):
        chat.reply([])


def test_scores_the_sample_as_notebook_05_does(smollm):
    """Notebook 05 does not compare its open-model scores (greedy answers can flip with a
    CPU's float rounding); this checks them on its first 10 items, within the tolerance that
    tests/fixtures/expected.json gives and explains."""
    _, test = curation.lite()
    scores = Tester.test(smollm.pricer(), test, size=10, verbose=False, chart=False,
                         results=False)
    assert scores.failures == 0
    assert_scores_as_saved("smollm2 zero-shot", scores.average_error)
