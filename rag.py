"""Retrieval-augmented pricing, the course's week 8: any chat model, shown similar products.

>>> rag = RagPricer.over(frontier.openai_pricer("gpt-4o-mini"))    # or any ChatPricer
...                                                                # doctest: +SKIP
>>> rag.fit(train)                       # the training products' vector store  # doctest: +SKIP
>>> print(rag.messages(test[0])[1]["content"])                     # doctest: +SKIP
>>> Tester.test(rag, test)                                         # doctest: +SKIP

For each item the `k` most similar training products (vectors.VectorStore) go in the chat
before the question, each as a "Potentially related product:" with its price
(`chat.rag_messages`). An item with none (the store holds only copies of its own text) is
asked the zero-shot question after "No similar products were found...", with a warning, and
its text is kept in `rag.alone`. The rest is a ChatPricer's: answers cached on disk,
retried, metered, failures counted, over OpenAI, Anthropic or any OpenAI-compatible server,
such as this project's `server.py` serving a local model offline
(`RagPricer.over(local.pricer())`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from chat import rag_messages
from chat_api import Chat
from frontier import ChatPricer
from items import Item
from vectors import Neighbour, VectorStore


class RagPricer(ChatPricer):
    """A chat model asked for a price with the `k` most similar training products as context.

    `fit(train)` builds (or opens) the vector store of `train`: the only products it retrieves.
    `alone` holds the texts of the items it found no similar product for.
    """

    needs_fit = True

    def __init__(self, chat: Chat, k: int = 5, store_path: str | Path | None = None,
                 **kwargs):
        super().__init__(chat, **kwargs)
        self.k, self.store_path = k, store_path
        self.name = f"{chat.model} + RAG"
        self.store: VectorStore | None = None
        self._related: dict[str, list[Neighbour]] = {}  # by item text, looked up in batches
        self.alone: set[str] = set()  # texts of items asked without similar products

    @classmethod
    def over(cls, pricer: ChatPricer, k: int = 5, **kwargs) -> RagPricer:
        """The RAG pricer asking the chat of `pricer`, sharing its cache, retries, concurrency
        and price reading."""
        return cls(pricer.chat, k, cache=pricer.cache, backoff=pricer.backoff,
                   concurrency=pricer.concurrency, price_from=pricer.price_from, **kwargs)

    def _fit(self, train: list[Item]) -> None:
        self.store = VectorStore.build(train, self.store_path)
        self._related.clear()
        self.alone.clear()

    def related(self, items: Iterable[Item]) -> list[list[Neighbour]]:
        """The `k` training products most similar to each item, most similar first."""
        if self.store is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit(train) first")
        items = list(items)
        wanted = [item for item in {i.text: i for i in items}.values()
                  if item.text not in self._related]
        found = dict(zip((i.text for i in wanted), self.store.similar(wanted, self.k),
                         strict=True))
        alone = {text for text, related in found.items() if not related}
        if alone:
            warnings.warn(f"{self.name}: the store holds no product similar to an item; it is "
                          "asked without context (rag.alone lists such items)", stacklevel=2)
        self._related.update(found)
        self.alone |= alone
        return [self._related[item.text] for item in items]

    def messages(self, item: Item) -> list[dict]:
        """The course's week-8 chat for `item`: its similar products and their prices first."""
        related = self.related([item])[0]
        return rag_messages(item, [(n.text, n.price) for n in related])

    def prefetch(self, items: Iterable[Item], progress: bool = True) -> None:
        items = list(items)
        self.related(items)  # one batch of lookups before the calls start
        super().prefetch(items, progress)
