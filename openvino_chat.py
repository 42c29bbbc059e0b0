"""An open LLM answering chats through OpenVINO GenAI: Intel's runtime for LLMs, from the
prebuilt `openvino-genai` wheel (no compiler), reading the model's GGUF file.

>>> chat = OpenVinoChat("smollm2-135m")                                   # doctest: +SKIP
>>> chat.reply(messages_for(test[0])).text                           # doctest: +SKIP
'Price is $19.99'

It answers as `open_chat.OpenChat` does, and the local server serves it the same way: the same
chat template and tokens (this project's tokenizer reads the chat; OpenVINO gets token ids),
greedy decoding, the same limits, stop strings and token counts. What it adds: kernels
compiled for this CPU, with AMX's and AVX-512's bf16 products where the CPU has them (float32
elsewhere), which the prebuilt llama.cpp, built for AVX2 alone, does not use; and continuous
batching: up to `slots` chats asked at once are answered together, each step of the model one
pass over all of them, and the part of a chat that an earlier one began with (the system
prompt and template) is read from the prefix cache, not computed again.

Its weights are the checkpoint's rounded to float16 (`open_models.served_gguf(kind="F16")`:
OpenVINO GenAI reads no float32 GGUF), and on a CPU with native bf16 its products round to
bf16, so its greedy answer can differ from transformers' where two digits are nearly tied
(tests/test_openvino_chat.py bounds how often). It gives no next-token probabilities, so the
digit-path decodings (`decoding`) run on transformers or llama.cpp.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import settings
from open_chat import GgufChat, called_off

ov = settings.openvino()  # its usage reporting off, before openvino_genai imports it
import openvino_genai  # noqa: E402

CACHE_GB = 1  # keys and values of every slot's chats and cached prefixes: ~23 kB a token
# `step()` holds Python's GIL while it computes: while chats are answered together, a pause
# between steps lets the server's threads hand in the chats that arrived meanwhile, which
# then join the next step (16 clients got 14 chats/s with it, 11 without)
PAUSE = 0.001
RUNNING = openvino_genai.GenerationStatus.RUNNING


class OpenVinoChat(GgufChat):
    """An open model (by registry name; or a float16 GGUF file of it, with its tokenizer and
    context) answering chats through OpenVINO GenAI, `slots` at a time, on
    `settings.llm_threads()` threads.

    >>> OpenVinoChat.available("meta-llama/Llama-3.1-8B")  # from the hub: transformers serves it
    False
    """

    package, kind = "openvino_genai", "F16"

    def __init__(self, name: str | None = None, gguf: str | Path | None = None,
                 tokenizer=None, context: int | None = None, slots: int = 16):
        super().__init__(name, gguf, tokenizer, context)
        scheduler = openvino_genai.SchedulerConfig()
        scheduler.enable_prefix_caching, scheduler.cache_size = True, CACHE_GB
        scheduler.max_num_seqs = self.at_once = slots
        self.pipeline = openvino_genai.ContinuousBatchingPipeline(
            str(self.gguf), scheduler, "CPU", {"INFERENCE_NUM_THREADS": settings.llm_threads()})
        self.written = 0  # tokens the model has written since it was loaded
        self._ids, self._asking = itertools.count(), 0
        self._stepped = threading.Condition()  # notified after each step, and on a new chat
        self._failed: BaseException | None = None
        self._closing = False
        self._stepper = threading.Thread(target=self._steps, name="openvino-steps", daemon=True)
        self._stepper.start()

    def close(self) -> None:
        """Stop stepping and free the compiled model; the chat answers no more."""
        with self._stepped:
            self._closing = True
            self._stepped.notify_all()
        self._stepper.join()
        del self.pipeline

    def _steps(self) -> None:
        """Step the model while chats are asked: one pass over every running chat a step."""
        while True:
            with self._stepped:
                self._stepped.wait_for(lambda: self._closing or self._asking
                                       or self.pipeline.has_non_finished_requests())
                if self._closing:
                    return
            try:
                self.pipeline.step()
            except BaseException as error:  # every chat waiting hears it
                self._failed = error
            with self._stepped:
                self._stepped.notify_all()
            if self._failed is not None:
                return
            if self._asking > 1:
                time.sleep(PAUSE)

    def generate(self, ids: list[int], max_tokens: int, stop: Sequence[str],
                 cancel: threading.Event | None) -> tuple[list[int], bool]:
        """As `OpenChat.generate`, by OpenVINO GenAI: the chat joins those running, its tokens
        arrive a step at a time, and it leaves them at the end of its turn, once a stop
        string is written, or once `cancel` is set."""
        called_off(cancel)
        config = openvino_genai.GenerationConfig(max_new_tokens=max_tokens, do_sample=False,
                                                 ignore_eos=True)  # the turn's end is read here
        new: list[int] = []
        with self._stepped:
            self._check()
            handle = self.pipeline.add_request(
                next(self._ids), ov.Tensor(np.array([ids], dtype=np.int64)), config)
            self._asking += 1
            self._stepped.notify_all()
        try:
            while True:
                with self._stepped:
                    self._stepped.wait_for(lambda: handle.can_read() or self._failed
                                           or handle.get_status() != RUNNING, timeout=0.05)
                    self._check()
                called_off(cancel)
                status = handle.get_status()
                if status == openvino_genai.GenerationStatus.IGNORED:
                    raise RuntimeError("OpenVINO GenAI could not take this chat: its tokens "
                                       f"outgrow the {CACHE_GB} GB cache of keys and values")
                done = status != RUNNING
                for token in tokens(handle):
                    with self._stepped:
                        self.written += 1
                    if token == self.tokenizer.eos_token_id:
                        return new, True
                    new.append(token)
                    if self.wrote(new, stop) or len(new) == max_tokens:
                        return new, False
                if done and not handle.can_read():
                    return new, False
        finally:
            handle.stop()  # a chat that is done leaves the batch at the next step
            with self._stepped:
                self._asking -= 1

    def _check(self) -> None:
        """Raise what stopped the model's steps, if anything did."""
        if self._failed is not None:
            raise RuntimeError(f"OpenVINO GenAI stopped answering: {self._failed}") from \
                self._failed
        if self._closing:
            raise RuntimeError("this chat was closed: it answers no more")


def tokens(handle) -> list[int]:
    """The tokens a chat's handle has written since it was last read."""
    found: list[int] = []
    while handle.can_read():
        for output in handle.read().values():
            found.extend(output.generated_ids)
    return found
