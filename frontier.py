"""Frontier LLMs as price predictors: notebook 05's lesson, over any chat API.

>>> pricer = ChatPricer(OpenAIChat("gpt-4o-mini"))      # needs OPENAI_API_KEY  # doctest: +SKIP
>>> pricer.prefetch(test[:250])                         # 8 calls at a time     # doctest: +SKIP
>>> Tester.test(pricer, test)                           # doctest: +SKIP
>>> print(pricer.meter)                                 # doctest: +SKIP

A ChatPricer asks a chat model the course's question about each item and reads the price in
its answer. The calls go through `chat_api`: every answer is cached on disk the moment it
arrives (re-running, or resuming after a crash, never pays for a call twice), transient
failures are retried with backoff, tokens and dollars are metered, and a rejected key or an
unknown model stops the run with a clear error. `compatible_pricer(base_url, model)` talks to
any OpenAI-compatible server (Ollama, vLLM, llama.cpp, OpenRouter, or this repository's own
`server.py`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm import tqdm

import settings
from chat import get_price, messages_for
from chat_api import (
    AnthropicChat,
    Backoff,
    Cache,
    Chat,
    Meter,
    OpenAIChat,
    Reply,
    ask,
    cache_key,
)
from items import Item
from pricer import Pricer


class ChatPricer(Pricer):
    """An LLM as a price predictor: item -> chat -> cached or fresh answer -> price.

    An item given up on after every retry, or answered with no number, has no price: the
    Tester counts it as a failure, with the reason, and scores it $0 as the course did.
    Either is remembered for the rest of the run, so asking again costs no call.
    `price_from` reads the price in an answer: the course's `get_price`, or e.g.
    `chat.get_dollar_price`.
    """

    needs_fit = False
    savable = False

    def __init__(self, chat: Chat, cache: Cache | None = None, backoff: Backoff | None = None,
                 concurrency: int = 8,
                 price_from: Callable[[str], float | None] = get_price):
        self.chat, self.price_from = chat, price_from
        self.cache = cache if cache is not None else Cache()
        self.backoff = backoff or Backoff()
        self.concurrency = concurrency
        self.meter = Meter(chat.model)
        self.name = chat.model  # the Tester's title
        self._answers: dict[str, Reply | str] = {}  # this run's answers, or why there is none
        self._started = time.time()  # failures since then, in any process, are this run's

    def _predict(self, items: list[Item]) -> np.ndarray:
        """Prices for `items`, asked `concurrency` at a time; NaN where there is none."""
        self.prefetch(items, progress=False)
        return np.array([self._price(item) for item in items], dtype=float)

    def _price(self, item: Item) -> float:
        answer = self.reply(item)
        price = self.price_from(answer.text) if isinstance(answer, Reply) else None
        return math.nan if price is None else price

    def why_no_price(self, item: Item) -> str:
        answer = self.reply(item)
        if isinstance(answer, Reply):
            return f"no price in the answer {answer.text[:40]!r}"
        return answer

    def save(self, path: str | Path) -> Path:
        raise TypeError(f"{self.name} answers through an API: nothing to save (its answers "
                        f"are kept in {self.cache.path})")

    def messages(self, item: Item) -> list[dict]:
        """The chat that asks for `item`'s price: the course's (`chat.messages_for`)."""
        return messages_for(item)

    def key(self, item: Item) -> str:
        return cache_key(self.chat.identity(), self.messages(item))

    def reply(self, item: Item) -> Reply | str:
        """The answer for `item` (from this run, the cache, or the API), or why there is none."""
        key = self.key(item)
        if key in self._answers:
            return self._answers[key]
        # Waits while another process asks; takes its failure if it gave up during this run.
        answer = ask(self.chat, self.messages(item), self.cache, self.backoff, self.meter,
                     failed_since=self._started)
        if isinstance(answer, Reply) and self.price_from(answer.text) is None:
            self.meter.add(no_price=1)
        self._answers[key] = answer
        return answer

    def prefetch(self, items: Iterable[Item], progress: bool = True) -> None:
        """Fetch the answers for `items`, `concurrency` calls at a time, so scoring is instant.

        On a ChatAPIError the calls not yet started are cancelled; every answer that
        arrived is already in the cache.
        """
        unique = {self.key(item): item for item in items}
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = [pool.submit(self.reply, item) for item in unique.values()]
            for future in tqdm(as_completed(futures), total=len(futures), desc=self.chat.model,
                               disable=not progress):
                future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def openai_pricer(model: str | None = None, **kwargs) -> ChatPricer:
    """A ChatPricer over OpenAI (needs OPENAI_API_KEY); the first configured model by default."""
    return ChatPricer(OpenAIChat(model or settings.openai_models()[0]), **kwargs)


def anthropic_pricer(model: str | None = None, **kwargs) -> ChatPricer:
    """A ChatPricer over Anthropic (needs ANTHROPIC_API_KEY); the first configured model."""
    return ChatPricer(AnthropicChat(model or settings.anthropic_models()[0]), **kwargs)


def compatible_pricer(base_url: str, model: str, api_key: str | None = None,
                      **kwargs) -> ChatPricer:
    """A ChatPricer over any OpenAI-compatible server: Ollama, vLLM, llama.cpp, OpenRouter..."""
    return ChatPricer(OpenAIChat(model, base_url=base_url, api_key=api_key), **kwargs)
