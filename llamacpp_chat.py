"""An open LLM answering chats through llama.cpp: the runtime that Ollama and LM Studio run,
from the prebuilt `xllamacpp` wheel (no compiler), reading the model's GGUF file.

>>> chat = LlamaCppChat("smollm2-135m")                                   # doctest: +SKIP
>>> chat.reply(messages_for(test[0])).text                           # doctest: +SKIP
'Price is $19.99'

It answers as `open_chat.OpenChat` does, and the local server serves it the same way: the same
chat template and tokens (this project's tokenizer reads the chat; llama.cpp gets token ids),
greedy decoding, the same limits, stop strings and token counts. The GGUF is the model's
checkpoint written back in float32 (`open_models.served_gguf`), so both runtimes compute with
the same weights and give the same greedy answers but where two logits are within rounding of
each other. What llama.cpp adds: C++ kernels without Python between the layers, a prompt's
cached prefix reused by the next chat (the system prompt and template), and `slots` chats
answered at once, their tokens batched into one pass (continuous batching).

llama.cpp runs in this process. Its own HTTP listener, which the wheel always starts, listens
only on a Unix socket in a private folder and wants a random key, so no web page or other
user can reach it; the local server (`server.py`) is the way in, with its limits.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

import settings
from open_chat import GgufChat, called_off

TOP = 32  # next tokens whose probabilities llama.cpp names: every digit that matters


class LlamaCppChat(GgufChat):
    """An open model (by registry name; or a GGUF file of it, e.g. fine-tuned, with its
    tokenizer and context) answering chats through llama.cpp, `slots` at a time, on
    `settings.llm_threads()` threads.

    >>> LlamaCppChat.available("meta-llama/Llama-3.1-8B")  # from the hub: transformers serves it
    False
    """

    package = "xllamacpp"

    def __init__(self, name: str | None = None, gguf: str | Path | None = None,
                 tokenizer=None, context: int | None = None, slots: int = 4):
        super().__init__(name, gguf, tokenizer, context)
        self.at_once = slots
        self._socket = tempfile.TemporaryDirectory(prefix="llama-cpp-")  # private: mode 700
        self.server = start(self.gguf, self._context, slots, self._socket.name)

    def close(self) -> None:
        """Stop llama.cpp's threads and free the model; the chat answers no more."""
        del self.server
        self._socket.cleanup()

    def generate(self, ids: list[int], max_tokens: int, stop: Sequence[str],
                 cancel: threading.Event | None) -> tuple[list[int], bool]:
        """As `OpenChat.generate`, by llama.cpp: its tokens arrive one by one, and it is told
        to stop once a stop string is written or `cancel` is set."""
        new: list[int] = []
        heard: dict = {}

        def arrived(chunk: dict) -> bool:  # True: llama.cpp stops answering
            if "choices" not in chunk:
                heard["error"] = chunk
                return True
            choice = chunk["choices"][0]
            new.extend(token["id"] for token in (choice.get("logprobs") or {}).get("content")
                       or [])
            heard["finish"] = choice.get("finish_reason")
            return (cancel is not None and cancel.is_set()) or self.wrote(new, stop)

        called_off(cancel)
        self.server.handle_completions({"prompt": ids, "max_tokens": max_tokens, "n_probs": 1,
                                        "temperature": 0, "cache_prompt": True,
                                        "stream": True}, arrived)
        if "error" in heard:
            raise RuntimeError(f"llama.cpp refused the prompt: {heard['error']}")
        called_off(cancel)
        return new[:max_tokens], heard.get("finish") == "stop" and not self.wrote(new, stop)

    def next_logprobs(self, ids: list[int]) -> dict[int, float]:
        """The log-probabilities of the `TOP` likeliest next tokens after `ids`, by token id
        (of the whole vocabulary's softmax: the others are less likely than all of them)."""
        reply = self.server.handle_completions({"prompt": ids, "max_tokens": 1, "n_probs": TOP,
                                                "temperature": 0, "cache_prompt": True})
        if "choices" not in reply:
            raise RuntimeError(f"llama.cpp refused the prompt: {reply}")
        first = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        return {token["id"]: token["logprob"] for token in first}

    def digit_steps(self, ids: list[int], digits: list[int]):
        """`decoding.Steps` through llama.cpp: each prefix of digits is its own prompt, whose
        start llama.cpp keeps cached; a digit beyond the `TOP` likeliest tokens counts as
        impossible (its probability is below theirs, a few thousandths at most)."""
        prefixes: list[list[int]] = [[]]

        def steps(rows: torch.Tensor | None, chosen: torch.Tensor | None) -> torch.Tensor:
            nonlocal prefixes
            if rows is not None:
                prefixes = [prefixes[r] + [digits[d]] for r, d in zip(rows.tolist(),
                                                                      chosen.tolist(),
                                                                      strict=True)]
            rows_ = []
            for prefix in prefixes:
                top = self.next_logprobs(ids + prefix)
                other = max((p for t, p in top.items() if t not in digits), default=-1e9)
                rows_.append([top.get(d, -float("inf")) for d in digits] + [other])
            return torch.tensor(rows_)

        return steps


def start(gguf: Path, context: int, slots: int, folder: str):
    """llama.cpp's server, in this process, reading `gguf` with `slots` slots of `context`
    tokens each, its HTTP listener on a Unix socket in `folder` behind a random key."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.n_parallel = slots
    params.n_ctx = slots * context  # each slot the model's whole context
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = settings.llm_threads()
    params.hostnames = [os.path.join(folder, "llama.sock")]
    params.api_keys = [secrets.token_hex(16)]
    params.cache_ram_mib = 0  # no copies of whole prompts kept in memory: the client caches
    params.endpoint_metrics = True
    params.verbosity = -1
    params.warmup = False
    return xllamacpp.Server(params)


def metrics(server) -> dict[str, float]:
    """llama.cpp's own counters (tokens read and written, seconds spent on each), by name.

    >>> text = "# HELP x\\nllamacpp:prompt_tokens_total 12\\nllamacpp:n_busy_slots_per_decode 1.5"
    >>> metrics(type("S", (), {"handle_metrics": lambda self: text})())["prompt_tokens_total"]
    12.0
    """
    found = {}
    for line in server.handle_metrics().splitlines():
        if line.startswith("llamacpp:"):
            key, _, value = line.removeprefix("llamacpp:").partition(" ")
            found[key] = float(value)
    return found

