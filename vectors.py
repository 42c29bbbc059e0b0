"""A persistent vector store of training products, for retrieval: Chroma, as the course uses.

>>> store = VectorStore.build(train)           # progress bar; instant once built  # doctest: +SKIP
>>> [(n.price, round(n.similarity, 2)) for n in store.similar(test[:1])[0]]       # doctest: +SKIP
[(24.99, 0.83), (19.5, 0.79), ...]

Every training Item's text is embedded with all-MiniLM-L6-v2 (`sentences.embed`, cached on
disk by content) and its vector kept in a Chroma collection under the data folder, with its
price and category as metadata and its row in the training items as its id. Chroma runs
in-process from files (`PersistentClient`), offline, with its telemetry off. The texts stay
in the training items the store is built from, which a neighbour is read from: given them as
documents, Chroma would index every text for full-text search, which the store never does,
and which took three quarters of a build's time (900 items/s against 3,700 without).

The collection is named for the training items it holds, a digest of their texts, prices and
categories, and for the precision of its vectors (`store_key`): a store is found again only by
the very items it was built from, in the same embedding mode, so one built from a split's
training items can never answer with another split's items, a test item can never retrieve a
test item, and a query is never compared with vectors of another mode. Nor can any product
retrieve itself: a stored product with the very text asked about is skipped (a listing
repeated in the training items stays invisible to its twin).

The build adds items in batches to a collection named "partial-<digest>"; an interrupted
build resumes there and adds only what is missing. Once it holds every item it is renamed
"products-<digest>", the only name a store is served from, so a half-written collection is
never queried.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import settings
from items import Item, checked_prices
from sentences import CHUNK, embed, precision

BATCH = CHUNK  # items embedded and added at a time: what an interrupted build can lose
# The collection's index: cosine distance; 50 candidates weighed for each product's links as
# it is added (Chroma's default, 100, built 200,000 items at a fifth fewer a second), and 40
# while answering a query (the default, 10, is few for 5 neighbours). docs/benchmarks.md
HNSW = {"hnsw:space": "cosine", "hnsw:construction_ef": 50, "hnsw:search_ef": 40}


@dataclass(frozen=True)
class Neighbour:
    """A stored product found near a query: its text, price, category and cosine similarity."""

    text: str
    price: float
    category: str
    similarity: float


def items_digest(items: Sequence[Item]) -> str:
    """A short digest of the items' texts, prices and categories, in order: the store's key.

    >>> a, b = Item.from_text("Kettle\\nBoils.", 25), Item.from_text("Kettle", 25)
    >>> items_digest([a]) != items_digest([b])
    True
    """
    sha = hashlib.sha256()
    for item in items:
        sha.update(f"{item.text}\x00{item.price!r}\x00{item.category}\x01".encode())
    return sha.hexdigest()[:20]


def store_key(items: Sequence[Item], mode: str) -> str:
    """What a store of `items` embedded in `mode` is named for: the items' digest, and for
    any precision but float64 that precision (an exact store keeps the name it always had).

    >>> item = Item.from_text("Kettle", 25)
    >>> store_key([item], "exact") == items_digest([item]) != store_key([item], "fast")
    True
    """
    arithmetic = precision(mode)
    return items_digest(items) + ("" if arithmetic == "float64" else f"-{arithmetic}")


def store_path() -> Path:
    """Where the Chroma files go: vectors/ in the data folder."""
    return settings.data_dir() / "vectors"


@cache
def client(path: Path):
    """A Chroma client on the files at `path`, offline and without telemetry."""
    import chromadb
    from chromadb.config import Settings

    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path),
                                     settings=Settings(anonymized_telemetry=False))


class VectorStore:
    """The training products of one split in Chroma; `build` makes or opens one."""

    def __init__(self, collection, items: Sequence[Item], mode: str | None = None):
        self.collection = collection
        self.items = list(items)  # the training items, in the order of the collection's ids
        self.mode = mode or settings.embeddings()  # how its vectors, and queries, are embedded

    @classmethod
    def build(cls, train: Sequence[Item], path: str | Path | None = None,
              batch: int = BATCH, progress: bool = True, *,
              mode: str | None = None) -> VectorStore:
        """The store of `train` (under `path`, by default the data folder's vectors/) with
        vectors embedded in `mode` (default `settings.embeddings()`): opened when built before,
        else built, resuming an interrupted build, with a progress bar."""
        train = checked_prices(train, "a vector store's training items")
        if not train:
            raise ValueError("a vector store needs at least one training item")
        mode = mode or settings.embeddings()
        chroma = client(Path(path or store_path()).resolve())
        key = store_key(train, mode)
        done = f"products-{key}"
        if done not in _names(chroma):
            partial = chroma.get_or_create_collection(
                f"partial-{key}", embedding_function=None, metadata=HNSW)
            have = set(partial.get(include=[])["ids"])
            missing = [row for row in range(len(train)) if str(row) not in have]
            bar = tqdm(total=len(train), initial=len(train) - len(missing), unit="items",
                       desc="vector store", disable=not progress)
            with bar:
                for start in range(0, len(missing), batch):
                    _add(partial, train, missing[start:start + batch], mode)
                    bar.update(len(missing[start:start + batch]))
            if partial.count() != len(train):
                raise RuntimeError(f"the store holds {partial.count()} of {len(train)} items: "
                                   "build it again to add the rest")
            if done not in _names(chroma):  # another build may have finished it meanwhile
                partial.modify(name=done)
        return cls(chroma.get_collection(done, embedding_function=None), train, mode)

    def __len__(self) -> int:
        # What the build checked the collection holds: Chroma's own count reads its database,
        # milliseconds a call at 50,000 items, and every query asks.
        return len(self.items)

    def similar(self, items: Sequence[Item], k: int = 5) -> list[list[Neighbour]]:
        """The `k` stored products most like each item, most similar first (never the item's
        own text)."""
        items = list(items)
        if not items:
            return []
        return self.nearest(embed(items, mode=self.mode), [item.text for item in items], k)

    def nearest(self, vectors: np.ndarray, texts: Sequence[str],
                k: int = 5) -> list[list[Neighbour]]:
        """The `k` stored products nearest each unit vector, skipping any whose text is the
        query's own (`texts`, one per vector)."""
        found: list[list[Neighbour]] = [[] for _ in texts]
        wanted, asked = list(range(len(texts))), k + 1
        while wanted:
            asked = min(asked, len(self))
            answer = self.collection.query(query_embeddings=vectors[wanted], n_results=asked,
                                           include=["distances"])
            short = []
            for row, ids, distances in zip(wanted, answer["ids"], answer["distances"],
                                           strict=True):
                stored = [(self.items[int(i)], 1.0 - float(d))
                          for i, d in zip(ids, distances, strict=True)]
                found[row] = [Neighbour(item.text, item.price, item.category or "", similarity)
                              for item, similarity in stored if item.text != texts[row]][:k]
                if len(found[row]) < k and asked < len(self):
                    short.append(row)  # many copies of its own text: look further
            wanted, asked = short, asked * 2
        return found


def _names(chroma) -> set[str]:
    return {collection.name for collection in chroma.list_collections()}


def _add(collection, train: list[Item], rows: list[int], mode: str) -> None:
    """Embed the training items at `rows` and add them (again, harmlessly, if present)."""
    chosen = [train[row] for row in rows]
    collection.upsert(ids=[str(row) for row in rows], embeddings=embed(chosen, mode=mode),
                      metadatas=[{"price": float(item.price), "category": item.category or ""}
                                 for item in chosen])
