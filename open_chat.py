"""An open LLM answering chats offline: what the local server serves for `--model smollm2-135m`.

>>> chat = OpenChat("smollm2-135m")                                        # doctest: +SKIP
>>> chat.reply(messages_for(test[0])).text                           # doctest: +SKIP
'Price is $19.99'

An instruct model reads the chat through its own chat template; an assistant message at the
end is a prefill that the answer continues (the course's chats end with "Price is $"). A base
model without a template (Gemma 3 270M, Meta's base Llamas) reads the course's plain prompt of
the item instead. Decoding is greedy, so an answer depends only on the chat; the prompt is
read once, and the answer stops at the end-of-turn token, at a stop sequence, or after
`max_tokens` tokens. A chat and answer that would not fit the model's context are refused
before any of it is read (`TooLong`), and an answer can be called off between two tokens
(`Cancelled`): the server does so when its client goes away or its time runs out.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

import open_models
import settings
from chat import item_from_messages, until_stop
from chat_api import Reply

CHUNK = 512  # prompt tokens read per forward pass: a long prompt's attention stays small


class TooLong(ValueError):
    """A chat, or the answer asked for, that does not fit in the model's context; `param`
    names what to shorten, as OpenAI's errors do."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


class Cancelled(Exception):
    """An answer called off before it was done (its client went away, its time ran out)."""


@dataclass(frozen=True)
class Answer(Reply):
    """A reply with why it ended: "stop" (the end of the turn, or `stop_sequence`) or
    "length" (`max_tokens` reached), as OpenAI's `finish_reason`."""

    finish_reason: str = "stop"
    stop_sequence: str | None = None


class OpenChat:
    """An open model (by registry name, or a loaded model and tokenizer) as a chat endpoint.

    One answer at a time, with `settings.llm_threads()` threads: concurrent requests queue, and
    every answer is the same whatever else is asked at the same moment.
    """

    at_once = 1  # answers computed at the same time: clients need send no more

    def __init__(self, name: str | None = None, model=None, tokenizer=None):
        self.name = name or settings.open_model()
        if model is None:
            model, tokenizer = open_models.load(self.name)
        self.model, self.tokenizer = model.eval(), tokenizer
        self._lock = threading.Lock()

    @property
    def context(self) -> int:
        """The most tokens the model reads, the chat's and the answer's together."""
        return self.model.config.max_position_embeddings

    def prompt(self, messages: list[dict]) -> str:
        """The text the model continues: the chat in its template, prefill included, or the
        course's plain prompt of the item for a model without one."""
        prefill = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
        if not self.tokenizer.chat_template:
            return item_from_messages(messages).test_prompt()
        head = messages[:-1] if prefill else messages
        return self.tokenizer.apply_chat_template(head, tokenize=False,
                                                  add_generation_prompt=True) + (prefill or "")

    def fits(self, prompt_tokens: int, max_tokens: int) -> None:
        """Refuse, with OpenAI's words, an answer of `max_tokens` after `prompt_tokens` that
        would not fit in the context."""
        if max_tokens > self.context:
            raise TooLong(f"max_tokens is too large: {max_tokens}. This model supports at most "
                          f"{self.context} completion tokens, whereas you provided "
                          f"{max_tokens}.", "max_tokens")
        if prompt_tokens + max_tokens > self.context:
            raise TooLong(f"This model's maximum context length is {self.context} tokens. "
                          f"However, you requested {prompt_tokens + max_tokens} tokens "
                          f"({prompt_tokens} in the messages, {max_tokens} in the completion). "
                          "Please reduce the length of the messages or completion.",
                          "messages")

    def reply(self, messages: list[dict], max_tokens: int = 5, stop: Sequence[str] = (),
              cancel: threading.Event | None = None) -> Answer:
        """The greedy answer to `messages`, prefill included, with its token counts: it ends
        before the first of the `stop` strings that it writes. Raises TooLong before any work
        when it cannot fit, Cancelled soon after `cancel` is set."""
        if not messages:
            raise ValueError("the chat has no messages")
        max_tokens, stop = max(1, max_tokens), [s for s in stop if s]
        ids = self.tokenizer(self.prompt(messages), add_special_tokens=False)["input_ids"]
        self.fits(len(ids), max_tokens)
        new, ended = self.generate(ids, max_tokens, stop, cancel)
        text, sequence = until_stop(self.tokenizer.decode(new, skip_special_tokens=True), stop)
        prefill = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
        return Answer(f"{prefill}{text}", len(ids), len(new),
                      "stop" if ended or sequence else "length", sequence)

    def generate(self, ids: list[int], max_tokens: int, stop: Sequence[str],
                 cancel: threading.Event | None) -> tuple[list[int], bool]:
        """The greedy tokens after `ids`, and whether they ended the turn (the end-of-turn
        token, which is not among them); else they stop once one of the `stop` strings is
        written, or at `max_tokens`."""
        new: list[int] = []
        with self.turn(cancel), settings.torch_threads(settings.llm_threads()):
            for token in greedy(self.model, ids, cancel):
                if token == self.tokenizer.eos_token_id:
                    return new, True
                new.append(token)
                if self.wrote(new, stop) or len(new) == max_tokens:
                    break
        return new, False

    def wrote(self, tokens: list[int], stop: Sequence[str]) -> bool:
        """Whether the last of `tokens` complete one of the `stop` strings."""
        window = max((len(s) for s in stop), default=0) + 1  # tokens that can hold a stop
        return bool(stop) and any(s in self.tokenizer.decode(tokens[-window:]) for s in stop)

    @contextmanager
    def turn(self, cancel: threading.Event | None) -> Iterator[None]:
        """The model to this answer alone, once the answers before it are done; Cancelled
        when `cancel` is set first."""
        while not self._lock.acquire(timeout=0.05):
            if cancel is not None and cancel.is_set():
                raise Cancelled("called off while waiting for the model")
        try:
            yield
        finally:
            self._lock.release()


class GgufChat(OpenChat):
    """An open model that a runtime of its own serves from the model's GGUF file (llama.cpp,
    OpenVINO GenAI): this project's tokenizer reads the chat, and the runtime gets token ids.
    By registry name, or a GGUF file of the model with its tokenizer and context."""

    package = ""  # the runtime's Python package
    kind = "F32"  # the type of the GGUF's weights that the runtime reads (`served_gguf`)

    def __init__(self, name: str | None = None, gguf: str | Path | None = None,
                 tokenizer=None, context: int | None = None):
        from transformers import AutoConfig, AutoTokenizer

        self.name = name or settings.open_model()
        if tokenizer is None or context is None:
            folder = open_models.checkpoint(self.name, progress=False)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(folder)
            context = context or AutoConfig.from_pretrained(folder).max_position_embeddings
        self.tokenizer, self._context = tokenizer, context
        self.gguf = Path(gguf or open_models.served_gguf(self.name, progress=False,
                                                         kind=self.kind))
        self._lock = threading.Lock()

    @classmethod
    def available(cls, name: str | None = None) -> bool:
        """Whether the runtime can serve the open model `name` here: its package is
        installed, and the model is a packaged one of Llama's architecture (whose checkpoint
        is written back as GGUF)."""
        model = open_models.spec(name)
        return (importlib.util.find_spec(cls.package) is not None and model.package is not None
                and model.architecture == "llama")

    @property
    def context(self) -> int:
        return self._context


@torch.inference_mode()
def read(model, ids: list[int], cancel: threading.Event | None = None):
    """The model's output after reading `ids` (its cache, and the logits of the last position
    only), `CHUNK` tokens a pass, so a long prompt's attention stays small; Cancelled between
    passes once `cancel` is set."""
    out = None
    for start in range(0, len(ids), CHUNK):
        called_off(cancel)
        out = model(torch.tensor([ids[start:start + CHUNK]]), use_cache=True, logits_to_keep=1,
                    **({"cache": out.cache} if out is not None else {}))
    return out


@torch.inference_mode()
def greedy(model, ids: list[int], cancel: threading.Event | None = None) -> Iterator[int]:
    """The likeliest next token after `ids`, then the next, for as long as they are asked for;
    the prompt is read once (`read`), and `cancel`, once set, stops them (Cancelled)."""
    out = read(model, ids, cancel)
    while True:
        token = int(out.logits[0, -1].argmax())
        yield token
        called_off(cancel)
        out = model(torch.tensor([[token]]), cache=out.cache, use_cache=True)


def called_off(cancel: threading.Event | None) -> None:
    """Raise Cancelled when `cancel` is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("called off while answering")
