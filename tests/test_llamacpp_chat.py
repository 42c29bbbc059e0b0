"""The real SmolLM2 served through llama.cpp (the server's fast runtime) answers as the
transformers path does, within a tolerance the tests enforce; its own listener is private.

The tolerance: llama.cpp computes with the same float32 weights (`open_models.served_gguf`),
but sums in other orders and keeps the attention's keys and values in float16 (11 significant
bits), so a next-token log-probability may move a little. Measured on the sample's first 12
chats, it moved by at most 0.003; DELTA allows about seven times that. Two tokens can trade
places only when transformers puts them less than 2 x DELTA apart: wherever its likeliest
token leads by more, the greedy answers must be the same.
"""

import copy
import json
import math
import os
import stat
import threading

import httpx
import pytest
import torch
from peft import get_peft_model
from transformers import AutoModelForCausalLM

import curation
import decoding
import llamacpp_chat
import lora
import open_models
import server
from chat import messages_for
from open_chat import OpenChat

DELTA = 0.02  # the most a log-probability may move between the two runtimes
ITEMS = 6  # the sample's first test items, as notebook 05 asks them


@pytest.fixture(scope="module")
def runtimes():
    fast = llamacpp_chat.LlamaCppChat("smollm2-135m")
    yield fast, OpenChat("smollm2-135m")
    fast.close()


@pytest.fixture(scope="module")
def items():
    return curation.lite()[1][:ITEMS]


def margins(chat: OpenChat, messages: list[dict], tokens: int) -> list[float]:
    """How far transformers' likeliest next token leads the second, at each of the answer's
    first `tokens` positions (greedy)."""
    ids = chat.tokenizer(chat.prompt(messages), add_special_tokens=False)["input_ids"]
    found = []
    with torch.no_grad():
        for _ in range(tokens):
            logprobs = torch.log_softmax(chat.model(torch.tensor([ids])).logits[0, -1], -1)
            top = logprobs.topk(2)
            found.append(float(top.values[0] - top.values[1]))
            ids.append(int(top.indices[0]))
    return found


def test_next_token_probabilities_agree_within_delta(runtimes, items):
    fast, slow = runtimes
    for item in items:
        ids = slow.tokenizer(slow.prompt(messages_for(item)), add_special_tokens=False)[
            "input_ids"]
        with torch.no_grad():
            expected = torch.log_softmax(slow.model(torch.tensor([ids])).logits[0, -1], -1)
        top = fast.next_logprobs(ids)
        assert len(top) == llamacpp_chat.TOP
        assert max(abs(expected[token].item() - p) for token, p in top.items()) <= DELTA


def test_serves_the_same_greedy_answers_through_the_server(runtimes, items):
    fast, slow = runtimes
    with server.start(fast, model="smollm2-135m") as running:
        assert running.at_once == fast.at_once == 4
        served = [running.pricer().reply(item) for item in items]
    for item, answer in zip(items, served, strict=True):
        expected = slow.reply(messages_for(item))
        if min(margins(slow, messages_for(item), expected.output_tokens)) > 2 * DELTA:
            assert answer.text == expected.text
        assert (answer.input_tokens, answer.output_tokens) == (expected.input_tokens,
                                                               expected.output_tokens)


def test_answers_asked_at_once_are_those_asked_one_by_one(runtimes, items):
    """Slots answer together, their tokens in one batch: each answer stays its own."""
    fast, _ = runtimes
    alone = [fast.reply(messages_for(item), max_tokens=8) for item in items]
    together = [None] * len(items)
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(
        i, fast.reply(messages_for(items[i]), max_tokens=8))) for i in range(len(items))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone


def test_the_digit_decodings_read_the_same_prices(runtimes, items):
    """Greedy digits and the digit paths' mean and median through llama.cpp, against
    transformers: each path's probability may move by DELTA at each of its five steps."""
    fast, slow = runtimes
    for item in items[:3]:
        ids = slow.tokenizer(item.test_prompt(), return_tensors="pt")["input_ids"]
        expected = decoding.digit_paths(slow.model, ids, slow.tokenizer)
        got = decoding.digit_paths(fast, ids, slow.tokenizer)
        found = dict(got)
        for value, p in expected[:3]:  # the likeliest paths: found, with their probabilities
            assert math.isclose(found[value], p, rel_tol=math.expm1(5 * DELTA))
        for how in ("mean", "median"):
            assert decoding.expected_price(got, how) == pytest.approx(
                decoding.expected_price(expected, how), rel=0.05)
        assert decoding.greedy_digits(fast, ids, slow.tokenizer) == \
            decoding.greedy_digits(slow.model, ids, slow.tokenizer)


def test_its_own_listener_is_a_private_socket_behind_a_key(runtimes):
    fast, _ = runtimes
    address = fast.server.listening_address
    assert address.startswith("unix://")  # no TCP port for a web page to reach
    path = address.removeprefix("unix://")
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    client = httpx.Client(transport=httpx.HTTPTransport(uds=path))
    reply = client.post("http://llama/v1/completions", json={"prompt": "Hi", "max_tokens": 1})
    assert reply.status_code == 401  # its random key is never handed out


def test_the_server_serves_the_runtime_the_setting_names(monkeypatch):
    assert llamacpp_chat.LlamaCppChat.available("smollm2-135m")
    assert not llamacpp_chat.LlamaCppChat.available("gemma3-270m")  # not Llama's architecture
    monkeypatch.setenv("PRICER_LLM_RUNTIME", "llama.cpp")
    chat = server.open_llm("smollm2-135m")
    assert isinstance(chat, llamacpp_chat.LlamaCppChat)
    chat.close()
    monkeypatch.setenv("PRICER_LLM_RUNTIME", "transformers")
    assert type(server.open_llm("smollm2-135m")) is OpenChat


def assert_same_weights(model, path) -> None:
    back = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, back[name]), name


def test_the_served_gguf_holds_the_checkpoints_weights_exactly():
    path = open_models.served_gguf("smollm2-135m", progress=False)
    manifest = json.loads((path.parent / open_models.DONE).read_text())
    assert manifest["files"][open_models.SERVED][0] == path.stat().st_size  # checked as the rest
    assert_same_weights(AutoModelForCausalLM.from_pretrained(path.parent), path)


def test_a_fine_tuned_models_adapters_are_merged_into_its_gguf(tmp_path):
    tok = open_models.load("smollm2-135m", progress=False)[1]
    base = lora.tiny_llama(vocab_size=len(tok), rope_parameters={"rope_type": "default",
                                                                "rope_theta": 10000.0})
    tuned = get_peft_model(base, lora.lora_config())
    for name, weight in tuned.named_parameters():
        if "lora_B" in name:  # adapters that change the model (they start at zero)
            weight.data.normal_(std=0.02)
    path = open_models.export_gguf(tuned, tmp_path / "tuned.gguf", "smollm2-135m")
    assert_same_weights(copy.deepcopy(tuned).merge_and_unload(), path)
    assert hasattr(tuned, "peft_config")  # the tuned model itself keeps its adapters
    with pytest.raises(ValueError, match="only Llama-architecture models"):
        open_models.export_gguf(lora.tiny_llama(), tmp_path / "x.gguf", "smollm2-135m")
