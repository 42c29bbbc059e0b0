"""An open LLM answering chats through OpenVINO GenAI: Intel's runtime for LLMs, from the
prebuilt `openvino-genai` wheel (no compiler), reading the model's GGUF file.

>>> chat = OpenVinoChat("smollm2-135m")                                   # doctest: +SKIP
>>> chat.reply(messages_for(test[0])).text                           # doctest: +SKIP
'Price is $19.99'

It answers as `open_chat.OpenChat` does, and the local server serves it the same way: the same
chat template and tokens (this project's tokenizer reads the chat; OpenVINO gets token ids),
greedy decoding, the same limits, stop strings and token counts, one answer at a time. What it
adds: kernels compiled for this CPU, with AMX's and AVX-512's bf16 products where the CPU has
them (float32 elsewhere), which the prebuilt llama.cpp, built for AVX2 alone, does not use.

Its weights are the checkpoint's rounded to float16 (`open_models.served_gguf(kind="F16")`:
OpenVINO GenAI reads no float32 GGUF), and on a CPU with native bf16 its products round to
bf16, so its greedy answer can differ from transformers' where two digits are nearly tied
(tests/test_openvino_chat.py bounds how often). It gives no next-token probabilities, so the
digit-path decodings (`decoding`) run on transformers or llama.cpp.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import settings
from open_chat import GgufChat, called_off

ov = settings.openvino()  # its usage reporting off, before openvino_genai imports it
import openvino_genai  # noqa: E402


class OpenVinoChat(GgufChat):
    """An open model (by registry name; or a float16 GGUF file of it, with its tokenizer and
    context) answering chats through OpenVINO GenAI on `settings.llm_threads()` threads.

    >>> OpenVinoChat.available("meta-llama/Llama-3.1-8B")  # from the hub: transformers serves it
    False
    """

    package, kind = "openvino_genai", "F16"

    def __init__(self, name: str | None = None, gguf: str | Path | None = None,
                 tokenizer=None, context: int | None = None):
        super().__init__(name, gguf, tokenizer, context)
        self.pipeline = openvino_genai.LLMPipeline(
            str(self.gguf), "CPU", INFERENCE_NUM_THREADS=settings.llm_threads())
        self.written = 0  # tokens the model has written since it was loaded

    def close(self) -> None:
        """Free the compiled model; the chat answers no more."""
        del self.pipeline

    def generate(self, ids: list[int], max_tokens: int, stop: Sequence[str],
                 cancel: threading.Event | None) -> tuple[list[int], bool]:
        """As `OpenChat.generate`, by OpenVINO GenAI: its tokens arrive one by one, and it is
        told to stop at the end of the turn, once a stop string is written, or once `cancel`
        is set."""
        new: list[int] = []
        ended = False

        def arrived(tokens) -> openvino_genai.StreamingStatus:
            nonlocal ended
            for token in [tokens] if isinstance(tokens, int) else tokens:
                self.written += 1
                if token == self.tokenizer.eos_token_id:
                    ended = True
                    return openvino_genai.StreamingStatus.STOP
                new.append(token)
            if (cancel is not None and cancel.is_set()) or self.wrote(new, stop):
                return openvino_genai.StreamingStatus.STOP
            return openvino_genai.StreamingStatus.RUNNING

        config = openvino_genai.GenerationConfig(max_new_tokens=max_tokens, do_sample=False,
                                                 ignore_eos=True)  # `arrived` ends the turn
        inputs = openvino_genai.TokenizedInputs(ov.Tensor(np.array([ids], dtype=np.int64)),
                                                ov.Tensor(np.ones((1, len(ids)), np.int64)))
        with self.turn(cancel):
            called_off(cancel)
            self.pipeline.generate(inputs, config, Streamer(arrived))
        called_off(cancel)
        return new[:max_tokens], ended


class Streamer(openvino_genai.StreamerBase):
    """Hands each token OpenVINO GenAI writes to `arrived`, whose StreamingStatus says
    whether to go on."""

    def __init__(self, arrived: Callable[[int | list[int]], openvino_genai.StreamingStatus]):
        super().__init__()
        self.arrived = arrived

    def write(self, tokens: int | list[int]) -> openvino_genai.StreamingStatus:
        return self.arrived(tokens)

    def end(self) -> None:
        pass
