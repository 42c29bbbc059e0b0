"""The real SmolLM2 served through OpenVINO GenAI (the server's runtime on x86 CPUs with AVX2
or more) answers as the transformers path does, within a tolerance the tests enforce; the
server picks its runtime by the CPU.

The tolerance: OpenVINO GenAI reads the weights rounded to float16 (it reads no float32 GGUF)
and, on a CPU with native bf16, multiplies in bf16 (8 significant bits), so two tokens that
transformers puts close together can trade places. On the sample's first 60 chats (Intel Xeon
with AMX), 3 greedy answers differed, each at a position where transformers' likeliest token
led the next by at most 0.084 in log-probability. MARGIN allows three times that: wherever
transformers' choice leads by more, the answers must be the same; and no more than a quarter
of the chats may differ at all. With AVX2 alone it multiplies in float32: on a Zen 3 its
greedy answers matched transformers' on all of the sample's first 23 chats.
"""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import curation
import hardware
import open_models
import openvino_chat
import server
import settings
from chat import messages_for
from open_chat import OpenChat

MARGIN = 0.25  # the closest two tokens may be in transformers for the runtimes to differ
ITEMS = 12  # the sample's first test items, as notebook 05 asks them


@pytest.fixture(scope="module")
def runtimes():
    fast = openvino_chat.OpenVinoChat("smollm2-135m")
    yield fast, OpenChat("smollm2-135m")
    fast.close()


def margins(chat: OpenChat, ids: list[int], tokens: list[int]) -> list[float]:
    """How far transformers' likeliest next token leads the second, at each of the answer's
    positions (the answer `tokens` after the prompt `ids`)."""
    found = []
    with torch.no_grad():
        for at in range(len(tokens)):
            logits = chat.model(torch.tensor([ids + tokens[:at]])).logits[0, -1]
            top = torch.log_softmax(logits.double(), -1).topk(2).values
            found.append(float(top[0] - top[1]))
    return found


def prompt_ids(chat: OpenChat, item) -> list[int]:
    """The tokens of the chat that asks for `item`'s price, as the server reads them."""
    return chat.tokenizer(chat.prompt(messages_for(item)), add_special_tokens=False)["input_ids"]


def differ_where_close(exact: OpenChat, ids: list[int], got: list[int],
                       expected: list[int]) -> bool:
    """Whether two answers to `ids` differ; where they do, transformers' two likeliest tokens
    at the first difference (after `expected`'s tokens before it) are within MARGIN."""
    if got == expected:
        return False
    at = next(i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
    assert margins(exact, ids, expected)[at] < MARGIN, (got, expected)
    return True


def test_served_answers_agree_with_transformers_where_its_choice_is_clear(runtimes):
    fast, exact = runtimes
    items = curation.lite()[1][:ITEMS]
    with server.start(fast, model="smollm2-135m") as running:
        assert running.at_once == fast.at_once == 16
        served = [running.pricer().reply(item) for item in items]
    differ = 0
    for item, answer in zip(items, served, strict=True):
        ids = prompt_ids(exact, item)
        expected, _ = exact.generate(ids, 5, [], None)
        got, _ = fast.generate(ids, 5, [], None)
        assert answer.text == "Price is $" + fast.tokenizer.decode(got)  # as served
        assert answer.input_tokens == len(ids)
        differ += differ_where_close(exact, ids, got, expected)
    assert differ <= ITEMS // 4


def test_chats_asked_at_once_answer_as_each_asked_alone(runtimes):
    """Chats answered in one batch, their shared beginning read from the prefix cache: each
    gets the answer it gets alone, but where transformers' choice is a near tie (a batch
    can sum the same products in another order)."""
    fast, exact = runtimes
    asked = [prompt_ids(exact, item) for item in curation.lite()[1][:ITEMS]]
    alone = [fast.generate(ids, 5, [], None)[0] for ids in asked]
    before = fast.written
    with ThreadPoolExecutor(fast.at_once) as pool:
        answers = list(pool.map(lambda ids: fast.generate(ids, 5, [], None), asked))
    # every token each chat wrote counted once, an end of turn among them
    assert fast.written - before == sum(len(new) + ended for new, ended in answers)
    differ = sum(differ_where_close(exact, ids, got, expected)
                 for ids, (got, _), expected in zip(asked, answers, alone, strict=True))
    assert differ <= ITEMS // 4


def test_a_model_that_fails_fails_each_chat_with_why():
    """A step that raises reaches the chats waiting and every chat after: none waits forever."""
    chat = openvino_chat.OpenVinoChat("smollm2-135m")
    real = chat.pipeline

    class Failing:  # the compiled model, failing at its next step
        def __getattr__(self, name):
            return getattr(real, name)

        def step(self):
            raise RuntimeError("out of memory")

    chat.pipeline = Failing()
    for _ in range(2):
        with pytest.raises(RuntimeError, match="stopped answering: out of memory"):
            chat.generate([1, 2, 3], 5, [], None)
    chat.close()


def test_the_float16_gguf_is_kept_in_the_checkpoints_manifest():
    path = open_models.served_gguf("smollm2-135m", progress=False, kind="F16")
    assert path.name == "served-f16.gguf"
    manifest = json.loads((path.parent / open_models.DONE).read_text())
    assert manifest["files"][path.name][0] == path.stat().st_size  # checked as the rest
    assert open_models.served_gguf("smollm2-135m", progress=False).name == open_models.SERVED


@pytest.mark.parametrize("flags, expected", [({"avx2", "amx_bf16", "avx512_bf16"}, "openvino"),
                                             ({"avx2", "avx512f", "avx512_bf16"}, "openvino"),
                                             ({"avx2"}, "openvino"),
                                             ({"asimd"}, "llama.cpp"), (set(), "llama.cpp")])
def test_the_runtime_is_the_fastest_measured_on_the_cpu(monkeypatch, flags, expected):
    monkeypatch.setattr(hardware, "cpu", lambda: hardware.Cpu("a CPU", frozenset(flags)))
    monkeypatch.delenv("PRICER_LLM_RUNTIME", raising=False)
    assert settings.llm_runtime(hardware.fastest_runtime()) == expected
    monkeypatch.setenv("PRICER_LLM_RUNTIME", "Transformers")  # a setting wins, in any case
    assert settings.llm_runtime(hardware.fastest_runtime()) == "transformers"


def test_the_server_serves_the_runtime_the_setting_names(monkeypatch):
    monkeypatch.setenv("PRICER_LLM_RUNTIME", "openvino")
    chat = server.open_llm("smollm2-135m")
    assert isinstance(chat, openvino_chat.OpenVinoChat)
    chat.close()
    assert not openvino_chat.OpenVinoChat.available("gemma3-270m")  # not Llama's architecture


def test_openvino_genai_leaves_openvinos_usage_reporting_off():
    """openvino-genai imports OpenVINO: openvino_chat imports it first, its reporting off
    (`settings.openvino`), in a process where nothing else imported it before."""
    code = ("import openvino_chat\nfrom openvino.tools.ovc import convert_impl, telemetry_utils\n"
            "print(convert_impl.tm.__name__, telemetry_utils.tm.__name__)")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).parents[1]).stdout.split()
    assert printed == ["openvino.tools.ovc.telemetry_stub"] * 2
