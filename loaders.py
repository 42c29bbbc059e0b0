"""Raw Amazon metadata -> curated Items, from the hub, a local file, or the bundled sample.

>>> loader = ItemLoader("Appliances")          # the offline sample unless told otherwise
>>> items = loader.load(workers=2)              # doctest: +SKIP
>>> print(loader.report)                        # doctest: +SKIP

One code path serves every source: records arrive in chunks, worker processes turn each
chunk into Items, and a report counts every record read, priced, in range, rejected (by
reason) and kept.
"""

from __future__ import annotations

import gzip
import re
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from tqdm import tqdm

import llama_tokens
import sample_data
import settings
from items import MAX_PRICE, MIN_PRICE, Item, course_price, parse_price
from items2025 import Item2025

HUB_DATASET = "McAuley-Lab/Amazon-Reviews-2023"
HUB_FILE = "raw/meta_categories/meta_{category}.jsonl"
SAMPLE_SIZE = 3000  # raw records per category in the offline sample
CHUNK_SIZE = 1000
SLICE_BYTES = 2 << 20  # a worker's share of a plain JSONL file: about 1,000 records
FIELDS = ("title", "description", "features", "details", "price")
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, which some tools write before the first line
# Deeper JSON is not a product record; orjson 3.8 crashes the process on about 100,000 levels
# (later versions refuse past 1,024), so depth is checked before parsing.
MAX_DEPTH = 1024
# A string left open runs to the end of the line (JSON would fail there, before any bracket
# after it): were the closing quote required, every escaped quote after it would start a
# string read to the end of the line again (quadratic time).
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]')


@dataclass
class LoadReport:
    """What happened to every raw record of one load."""

    category: str
    read: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def priced(self) -> int:
        unpriced = sum(n for why, n in self.rejected.items()
                       if why.startswith(("price ", "malformed record", "damaged file")))
        return self.read - unpriced

    @property
    def in_range(self) -> int:
        return self.priced - self.rejected["out of price range"]

    def add(self, kept: int, rejected: Counter) -> None:
        self.kept += kept
        self.rejected.update(rejected)
        self.read += kept + sum(rejected.values())

    def __str__(self) -> str:
        lines = [f"{self.category}: read {self.read:,}, priced {self.priced:,}, "
                 f"in range {self.in_range:,}, kept {self.kept:,} in {self.seconds:.1f}s"]
        lines += [f"  rejected {n:>8,}  {reason}" for reason, n in self.rejected.most_common()]
        return "\n".join(lines)


def progress(category: str, initial: int = 0) -> tqdm:
    """The progress bar of a category's load (`initial` records already done)."""
    return tqdm(desc=category, unit=" records", unit_scale=True, initial=initial)


def item_from_record(record: dict, category: str, course_compatible: bool = False,
                     edition: str = "2024") -> tuple[Item | None, str | None]:
    """One raw record -> (Item, None) when it qualifies, else (None, why it was rejected).

    Never raises: whatever goes wrong with one record is that record's rejection, so one bad
    record can never lose a load. The price is checked first: it is the cheapest test and
    rejects the most records. `course_compatible` reads it as the course did
    (`course_price`), else with `parse_price`. The 2025 `edition` reads it with `float()`
    too, and makes an `Item2025` by its rules.
    """
    if not isinstance(record, dict) or not isinstance(record.get("title"), str) \
            or not record["title"].strip():
        return None, "malformed record"
    as_course = course_compatible or edition == "2025"
    try:
        price, why = (course_price if as_course else parse_price)(record.get("price"))
        if price is None:
            return None, f"price {why}"
        if not MIN_PRICE <= price <= MAX_PRICE:
            return None, "out of price range"
        if edition == "2025":
            item = Item2025.from_record(record, price, category)
            return (item, None) if item is not None else (None, "too short")
        item = Item(record, price, category, course_compatible)
    except Exception as error:  # whatever the record holds, it is only this record lost
        return None, f"malformed record: {error.__class__.__name__}"
    return (item, None) if item.include else (None, item.excluded_because)


def as_record(raw: dict | bytes | str) -> dict | None:
    """A raw record as a dict: parsed when it is a JSON line, None when that is not a JSON
    object (or nests deeper than MAX_DEPTH).

    >>> as_record(b'\\xef\\xbb\\xbf{"title": "Kettle"}')   # a UTF-8 BOM is not part of the JSON
    {'title': 'Kettle'}
    """
    if not isinstance(raw, (bytes, str)):
        return raw if isinstance(raw, dict) else None
    line = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    # Each bracket nests at most one level: only a line with many needs a closer look.
    if line.count(b"[") + line.count(b"{") > MAX_DEPTH and nesting(line) > MAX_DEPTH:
        return None
    try:
        record = orjson.loads(line.removeprefix(BOM))
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def nesting(line: bytes) -> int:
    """How deeply a JSON line nests arrays and objects (brackets inside strings aside, and
    after a string left open, where JSON stops reading).

    >>> nesting(b'{"a": [1, {"b": "]]"}]}'), nesting(b'"[[["'), nesting(b'[["open [[[')
    (3, 0, 2)
    """
    depth = deepest = 0
    for match in _STRING_OR_BRACKET.finditer(line):
        mark = match.group()
        if mark in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif mark in (b"]", b"}"):
            depth -= 1
    return deepest


@dataclass(frozen=True)
class Damage:
    """Stands, in a chunk, for the unreadable rest of a damaged file: one rejection."""

    path: Path
    error: str


def items_from_chunk(chunk: list | FileSlice, category: str, course_compatible: bool = False,
                     edition: str = "2024") -> tuple[list[Item], Counter]:
    """A chunk of raw records (dicts or JSON lines, or a slice of a file of them) -> the
    Items kept and rejection counts."""
    if isinstance(chunk, FileSlice):
        chunk = chunk.lines()
    kept, rejected = [], Counter()
    for raw in chunk:
        if isinstance(raw, Damage):
            rejected["damaged file: rest unreadable"] += 1
            continue
        record = as_record(raw)
        if record is None:
            rejected["malformed record"] += 1
            continue
        item, why = item_from_record(record, category, course_compatible, edition)
        if item is None:
            rejected[why] += 1
        else:
            kept.append(item)
    return kept, rejected


@dataclass(frozen=True)
class FileSlice:
    """The whole lines of a plain JSONL file from byte `start` to `end`: a worker reads them
    itself, so the main process never copies the records."""

    path: Path
    start: int
    end: int

    def lines(self) -> list[bytes]:
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return [line for line in f.read(self.end - self.start).split(b"\n") if line.strip()]


def _file_slices(path: Path, size: int) -> Iterator[FileSlice]:
    """A plain file cut into slices of about `size` bytes, each ending at the end of a line."""
    total = path.stat().st_size
    with open(path, "rb") as f:
        start = 0
        while start < total:
            f.seek(min(start + size, total))
            f.readline()
            end = min(f.tell(), total)
            yield FileSlice(path, start, end)
            start = end


def is_gzip(path: Path) -> bool:
    """Whether `path` holds gzip data, whatever its name says."""
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _file_chunks(path: Path, size: int) -> Iterator[list]:
    """Raw lines of a JSONL file, plain or gzip, `size` at a time (parsed in the workers).

    A damaged gzip file (truncated, corrupt) gives every line before the damage, then a
    warning naming the file and a `Damage` that counts its unreadable rest as one rejection.
    """
    opener = gzip.open if is_gzip(path) else open
    chunk: list = []
    with opener(path, "rb") as f:
        try:
            for line in f:
                if line.strip():
                    chunk.append(line)
                if len(chunk) == size:
                    yield chunk
                    chunk = []
        except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            warnings.warn(f"{path} is damaged ({e}); the rest of it after the records read "
                          f"so far is counted as one rejection", stacklevel=2)
            chunk.append(Damage(path, str(e)))
    if chunk:
        yield chunk


def _json_builder_chunks(data_files: str, size: int) -> Iterator[list[dict]]:
    """Records through the `datasets` generic JSON builder (the hub's loading script is gone)."""
    from datasets import load_dataset

    dataset = load_dataset("json", data_files=data_files, split="train")
    dataset = dataset.select_columns([c for c in FIELDS if c in dataset.column_names])
    for batch in dataset.iter(batch_size=size):
        yield [dict(zip(batch, row, strict=True)) for row in zip(*batch.values(), strict=True)]


def hub_url(category: str) -> str:
    """The hub address of a category's raw metadata file."""
    return f"hf://datasets/{HUB_DATASET}/{HUB_FILE.format(category=category)}"


def sample_path(category: str, n: int = SAMPLE_SIZE, seed: int = 42) -> Path:
    """The cached offline sample of `category`, generated on first use."""
    name = f"meta_{category}_{n}_{seed}_{sample_data.version()}.jsonl.gz"
    path = settings.data_dir() / "sample" / name
    return path if path.exists() else sample_data.write(category, path, n, seed)


# Rejections of lines that held no record at all: a file of nothing else holds no records.
UNREAD = ("malformed record", "damaged file: rest unreadable")
# The first bytes of files that are not JSON lines in UTF-8, and what to do about each.
NOT_JSONL = [(b"\xff\xfe", "it is UTF-16: save it as UTF-8"),
             (b"\xfe\xff", "it is UTF-16: save it as UTF-8"),
             (b"BZh", "it is bz2-compressed: decompress it (or recompress it with gzip)"),
             (b"\xfd7zXZ\x00", "it is xz-compressed: decompress it (or recompress it with gzip)"),
             (b"[", "it is a JSON array: write one JSON object per line instead")]


class NoRecords(ValueError):
    """A raw file (or hub file) from which not one record could be read."""


def why_no_records(path: Path) -> str:
    """What a raw file that yielded no record holds instead, as far as its start tells.

    >>> import tempfile; path = Path(tempfile.mkdtemp()) / "x.jsonl"
    >>> _ = path.write_bytes(b'[{"title": "Kettle"}]')
    >>> why_no_records(path)
    'it is a JSON array: write one JSON object per line instead'
    """
    with (gzip.open if is_gzip(path) else open)(path, "rb") as f:
        try:
            head = f.read(4096)
        except (EOFError, OSError, zlib.error):
            return "it is damaged"
    if not head.strip():
        return "it is empty" if not head else "it holds only blank lines"
    for start, why in NOT_JSONL:
        if head.lstrip().startswith(start):
            return why
    if b"\r" in head and b"\n" not in head:
        return "its lines end in CR only: end them with LF (\\n)"
    return "no line of it is a JSON object with a title"


class ItemLoader:
    """Load one category of raw metadata into Items.

    `source` is "sample" (the offline synthetic sample, the default), "hub" (the Amazon
    Reviews 2023 raw metadata on the Hugging Face hub), or the path of a .jsonl/.jsonl.gz
    file or of a folder holding meta_<Category>.jsonl[.gz]. `edition` ("2024" or "2025",
    by default settings.edition()) chooses the course's rules that make the Items.
    """

    def __init__(self, name: str, source: str | Path | None = None,
                 course_compatible: bool = False, edition: str | None = None):
        self.name = name
        self.source = str(source or settings.source())
        self.course_compatible = course_compatible
        self.edition = edition or settings.edition()
        self.report = LoadReport(name)

    def chunks(self, size: int = CHUNK_SIZE) -> Iterator[list]:
        """The raw records of this category, `size` at a time."""
        if self.source == "hub":
            return _json_builder_chunks(hub_url(self.name), size)
        return _file_chunks(self.raw_path(), size)

    def _work(self) -> Iterator[list | FileSlice]:
        """What the workers get: slices that they read themselves of a plain local file,
        else chunks of records."""
        if self.source != "hub" and not is_gzip(self.raw_path()):
            return _file_slices(self.raw_path(), SLICE_BYTES)
        return self.chunks()

    def raw_path(self) -> Path:
        """The local raw file of this category (the sample's is generated on first use)."""
        if self.source == "sample":
            return sample_path(self.name)
        if self.source == "hub":
            raise ValueError("hub data has no local raw file; it streams from the hub")
        path = Path(self.source)
        if path.is_dir():
            found = sorted(path.glob(f"meta_{self.name}.jsonl*"))
            if not found:
                raise FileNotFoundError(f"no meta_{self.name}.jsonl or .jsonl.gz in {path}")
            path = found[0]
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: source must be 'sample', 'hub', or a .jsonl(.gz) path")
        return path

    def records(self) -> Iterator[dict]:
        """Every raw record of this category as a dict, for looking at the raw data.

        Lines that are not valid JSON, and a damaged file's rest, are skipped here; `load`
        counts them. A source without one record raises NoRecords, as `load` does.
        """
        found = False
        for chunk in self.chunks():
            records = (as_record(r) for r in chunk if not isinstance(r, Damage))
            for record in records:
                if record is not None:
                    found = True
                    yield record
        if not found:
            raise self.no_records()

    def no_records(self) -> NoRecords:
        """The error for a source from which no record could be read, naming it."""
        if self.source == "hub":
            return NoRecords(f"{hub_url(self.name)}: no record could be read")
        path = self.raw_path()
        return NoRecords(f"{path}: no record could be read from it ({why_no_records(path)}); "
                         f"a raw file holds one JSON object per line, in UTF-8, plain or gzip")

    def load(self, workers: int | None = None) -> list[Item]:
        """Every qualifying Item of this category, stamped with it; see `self.report`.
        `workers` processes (default settings.workers(): every core) make the same Items."""
        results: list[Item] = []
        for kept in self.stream(workers):
            results.extend(kept)
        return results

    def stream(self, workers: int | None = None) -> Iterator[list[Item]]:
        """The qualifying Items a chunk at a time, in file order, so that a caller can write
        them away instead of holding them all; `self.report` is complete at the end. A
        source from which not one record could be read raises NoRecords, naming it."""
        start = time.perf_counter()
        self.report = LoadReport(self.name)
        bar = progress(self.name)
        for kept, rejected in self._map(self._work(), workers or settings.workers()):
            self.report.add(len(kept), rejected)
            bar.update(len(kept) + sum(rejected.values()))
            yield kept
        bar.close()
        self.report.seconds = time.perf_counter() - start
        if self.report.read == sum(self.report.rejected[why] for why in UNREAD):
            raise self.no_records()

    def _map(self, chunks: Iterator[list | FileSlice],
             workers: int) -> Iterator[tuple[list[Item], Counter]]:
        """Apply `items_from_chunk` to every chunk, in order, with a bounded queue."""
        args = (self.name, self.course_compatible, self.edition)
        if workers <= 1:
            yield from (items_from_chunk(chunk, *args) for chunk in chunks)
            return
        if self.edition == "2024":  # the 2025 edition counts no tokens
            llama_tokens.warm_up()  # forked workers inherit the loaded tokenizer
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending = []
            for chunk in chunks:
                pending.append(pool.submit(items_from_chunk, chunk, *args))
                if len(pending) >= 2 * workers:
                    yield pending.pop(0).result()
            for future in pending:
                yield future.result()
