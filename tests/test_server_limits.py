"""The server's limits on every answer: tokens, the context, its time, a client that leaves, and
what it cannot honour (n > 1); over real HTTP, with a tiny random model as the open LLM, on
each runtime: transformers, and llama.cpp and OpenVINO GenAI reading the same kind of model as
GGUF."""

import copy
import threading
import time

import httpx
import pytest

import lora
import open_models
import server
from chat import messages_for
from items import Item
from llamacpp_chat import LlamaCppChat, metrics
from open_chat import OpenChat
from openvino_chat import OpenVinoChat

ITEM = Item.from_text("Kettle\nBoils water fast and switches itself off, with a filter.", 20)
TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant: {% endif %}")
CONTEXT = 4096


class Counted:
    """An open LLM whose forward passes are counted: transformers' by a hook, llama.cpp's by
    its own count of decoding passes, OpenVINO GenAI's by the tokens it has written."""

    def __init__(self, runtime: str, folder):
        if runtime == "transformers":
            tok = copy.deepcopy(lora.tokenizer())  # the cached one stays without a template
            tok.chat_template = TEMPLATE  # so that a long chat reaches the model whole
            model = lora.tiny_llama(max_position_embeddings=CONTEXT)
            self.hooked = 0
            model.register_forward_hook(lambda *_: self.count())
            self.chat = OpenChat("tiny", model, tok)
        else:  # SmolLM2's vocabulary, for its tokenizer, which the GGUF file carries
            tok = copy.deepcopy(open_models.load("smollm2-135m", progress=False)[1])
            tok.chat_template = TEMPLATE
            model = lora.tiny_llama(max_position_embeddings=CONTEXT, vocab_size=len(tok),
                                    rope_parameters={"rope_type": "default",
                                                     "rope_theta": 10000.0})
            chat, slots = ((LlamaCppChat, {"slots": 2}) if runtime == "llama.cpp"
                           else (OpenVinoChat, {}))
            gguf = open_models.export_gguf(model, folder / "tiny.gguf", "smollm2-135m",
                                           kind=chat.kind)  # the weights the runtime reads
            self.chat = chat("tiny", gguf, tok, context=CONTEXT, **slots)

    def count(self) -> None:
        self.hooked += 1

    @property
    def passes(self) -> int:
        if isinstance(self.chat, LlamaCppChat):
            return int(metrics(self.chat.server).get("n_decode_total", 0))
        if isinstance(self.chat, OpenVinoChat):
            return self.chat.written
        return self.hooked

    def settled(self, seconds: float = 0.5, within: float = 20) -> int:
        """The passes once they have stopped growing for `seconds`."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            before = self.passes
            time.sleep(seconds)
            if self.passes == before:
                return before
        raise AssertionError("the model is still running")


@pytest.fixture(scope="module", params=["transformers", "llama.cpp", "openvino"])
def llm(request, tmp_path_factory):
    counted = Counted(request.param, tmp_path_factory.mktemp("tiny"))
    with server.start(counted.chat, model="tiny") as running:
        yield running, counted
    if hasattr(counted.chat, "close"):
        counted.chat.close()


@pytest.fixture(scope="module")
def flat():
    with server.start(lambda item: 20.0, model="flat") as running:
        yield running


def ask(running, path="/chat/completions", timeout=30, **body):
    body = {"model": running.model, "messages": messages_for(ITEM), **body}
    return httpx.post(f"{running.base_url}{path}", json=body, timeout=timeout)


def refused(reply) -> tuple[int, str]:
    return reply.status_code, reply.json()["error"]["code"]


@pytest.fixture(params=["llm", "flat"])
def either(request, llm, flat):
    """The open LLM's server, or the flat predictor's."""
    return llm[0] if request.param == "llm" else flat


@pytest.mark.parametrize("limit", [1e9, 0, -1, "5", True, 2.5, [5]])
def test_a_token_limit_that_is_no_count_is_a_400(either, limit):
    for field in ("max_tokens", "max_completion_tokens"):
        reply = ask(either, **{field: limit})
        assert refused(reply) == (400, "invalid_value")
        assert f"Invalid '{field}'" in reply.json()["error"]["message"]


def test_max_tokens_over_the_context_is_refused_before_any_work(llm):
    running, counted = llm
    before = counted.passes
    for limit in (10**9, 4097):
        reply = ask(running, max_tokens=limit)
        assert refused(reply) == (400, "invalid_value")
        assert reply.json()["error"]["message"].startswith(f"max_tokens is too large: {limit}. "
                                                           "This model supports at most 4096")
    assert counted.passes == before


def test_a_chat_over_the_context_is_refused_before_any_work(llm):
    running, counted = llm
    before = counted.passes
    messages = messages_for(ITEM)
    messages[1]["content"] += " kettle" * 100_000  # 700 KB, 100,000 tokens
    reply = ask(running, messages=messages, max_tokens=5)
    assert refused(reply) == (400, "context_length_exceeded")
    message = reply.json()["error"]["message"]
    assert message.startswith("This model's maximum context length is 4096 tokens. However, "
                              "you requested 1000")
    assert "Please reduce the length of the messages or completion" in message
    assert counted.passes == before


def test_a_chat_that_fits_but_not_with_its_answer_is_refused(llm):
    running, counted = llm
    prompt = ask(running, max_tokens=1).json()["usage"]["prompt_tokens"]
    reply = ask(running, max_tokens=4096 - prompt + 1)
    assert refused(reply) == (400, "context_length_exceeded")
    assert f"({prompt} in the messages, {4096 - prompt + 1} in the completion)" in \
        reply.json()["error"]["message"]


def test_a_long_prompt_is_read_in_chunks(llm, monkeypatch):
    running, counted = llm
    if type(counted.chat) is not OpenChat:
        pytest.skip("a runtime reads a prompt in batches of its own (llama.cpp's n_batch)")
    monkeypatch.setattr("open_chat.CHUNK", 100)
    before = counted.passes
    answer = ask(running, max_tokens=3).json()
    prompt = answer["usage"]["prompt_tokens"]
    assert counted.passes - before == -(-prompt // 100) + 2  # the chunks, then two more tokens


def test_an_answer_stops_when_its_client_goes_away(llm):
    running, counted = llm
    before = counted.passes
    with pytest.raises(httpx.ReadTimeout):
        ask(running, max_tokens=4000, timeout=1)
    assert counted.settled() - before < 2000  # far fewer than the 4,000 tokens asked for
    assert ask(running, max_tokens=2).status_code == 200  # the model is free again


def test_an_answer_over_its_time_is_a_504_and_frees_the_model(llm, monkeypatch, caplog):
    running, counted = llm
    monkeypatch.setenv("PRICER_SERVER_TIMEOUT", "1")
    start = time.monotonic()
    reply = ask(running, max_tokens=4000)
    assert refused(reply) == (504, "timeout")
    assert "PRICER_SERVER_TIMEOUT=1" in reply.json()["error"]["message"]
    assert time.monotonic() - start < 4000 * 0.001  # it did not wait for the 4,000 tokens
    counted.settled()
    assert "failed" not in caplog.text  # called off on time, not a predictor's failure
    monkeypatch.setenv("PRICER_SERVER_TIMEOUT", "60")
    assert ask(running, max_tokens=2).status_code == 200


def test_a_request_waiting_behind_a_long_one_gets_its_turn_or_a_504(llm, monkeypatch):
    running, _ = llm
    monkeypatch.setenv("PRICER_SERVER_TIMEOUT", "2")
    replies = {}
    long = threading.Thread(target=lambda: replies.update(long=ask(running, max_tokens=4000)))
    long.start()
    time.sleep(0.3)
    replies["short"] = ask(running, max_tokens=2)
    long.join()
    assert refused(replies["long"]) == (504, "timeout")
    assert replies["short"].status_code in (200, 504)  # never a wait without end


def test_the_answer_ends_at_max_tokens_with_length(llm):
    running, _ = llm
    answer = ask(running, max_tokens=3).json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 3
    anthropic = ask(running, path="/messages", max_tokens=3).json()
    assert anthropic["stop_reason"] == "max_tokens"


def test_a_stop_sequence_ends_the_answer_early(llm):
    running, counted = llm
    free = ask(running, max_tokens=8).json()["choices"][0]["message"]["content"]
    written = free.removeprefix("Price is $")
    stop = written[len(written) // 2:][:2]  # two characters from its second half
    assert stop.strip(), f"the tiny model wrote {written!r}"
    answer = ask(running, max_tokens=200, stop=[stop]).json()
    assert answer["choices"][0]["message"]["content"] == \
        "Price is $" + written[:written.find(stop)]
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["completion_tokens"] <= 8  # it stopped where it wrote the stop
    anthropic = ask(running, path="/messages", max_tokens=200, stop_sequences=[stop]).json()
    assert (anthropic["stop_reason"], anthropic["stop_sequence"]) == ("stop_sequence", stop)


def test_a_predictors_answer_is_cut_at_a_stop_sequence(flat):
    answer = ask(flat, stop=".").json()
    assert answer["choices"][0]["message"]["content"] == "Price is $20"
    anthropic = ask(flat, path="/messages", stop_sequences=["0"]).json()
    assert anthropic["content"][0]["text"] == "2"  # the prefill's continuation, cut
    assert anthropic["stop_reason"] == "stop_sequence"
    whole = ask(flat, stop=["\n"]).json()
    assert whole["choices"][0]["message"]["content"] == "Price is $20.00"


@pytest.mark.parametrize("body, code", [
    ({"n": 2}, "unsupported_value"), ({"stop": ["a", "b", "c", "d", "e"]}, "invalid_value"),
    ({"stop": [""]}, "invalid_value"), ({"stop": 5}, "invalid_value"),
    ({"stop": [["x"]]}, "invalid_value"),
])
def test_what_the_server_cannot_honour_is_a_clear_400(either, body, code):
    reply = ask(either, **body)
    assert refused(reply) == (400, code)
    if "n" in body:
        assert "n=2 is not supported" in reply.json()["error"]["message"]
    assert ask(either, n=1, max_tokens=2).status_code == 200
