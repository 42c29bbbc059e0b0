"""Curated datasets: the course's balanced sample, seeded splits, saved and loaded every way.

>>> train, test = lite()          # Appliances, built once then read from disk  # doctest: +SKIP
>>> train, test = full()          # all 8 categories, balanced                  # doctest: +SKIP
>>> train, test = load_prebuilt("data/full-sample-...")  # or the course's pickles  # doctest: +SKIP

A split is saved twice in one folder: train.pkl / test.pkl, pickled lists of Items exactly
as the course handed them out, and train.parquet / test.parquet, plain columns that load
without running any code; done.json, written last, says the split is complete.
`to_dataset` gives the course's hub shape (text, price).

A full curation keeps each category's Items on disk as it finishes it
(<data folder>/curated/<source>/<Category>-<settings>.parquet), so an interrupted run resumes
where it stopped, and memory holds only what the split needs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import sample_data
import settings
from files import digest, written
from items import Item, checked_prices, load_pickle, save_pickle, text_of_prompt
from loaders import ItemLoader, LoadReport, progress
from sample_data import CATEGORIES

COLUMNS = ["title", "category", "price", "text", "details", "token_count"]
SCHEMA = pa.schema([("title", pa.string()), ("category", pa.string()), ("price", pa.float64()),
                    ("text", pa.string()), ("details", pa.string()),
                    ("token_count", pa.int64())])
# The 2025 edition's curated columns (items2025.Item2025's fields before a summary).
SCHEMA_2025 = pa.schema([("title", pa.string()), ("category", pa.string()),
                         ("price", pa.float64()), ("full", pa.string()),
                         ("weight", pa.float64())])
# (train, test) sizes by dataset and source; the offline sample is far smaller than the hub.
SIZES = {
    ("lite", "hub"): (25_000, 2_000),
    ("lite", "sample"): (800, 250),
    ("full", "hub"): (400_000, 2_000),
    ("full", "sample"): (3_500, 250),
}
# Most items a cheap price bucket keeps: the course's 1,200, scaled down for the sample.
CAPS = {"hub": 1_200, "sample": 20}
# The code that turns raw records into Items: caches are named by a digest of its source.
ITEM_RULES = ("items", "loaders", "llama_tokens")
ROW_GROUP = 20_000
DONE = "done.json"  # written last into a split's folder: the split is complete


def split(items: list[Item], train_size: int, test_size: int,
          seed: int = 42) -> tuple[list[Item], list[Item]]:
    """Shuffle with `seed` and cut into train and test, as the course does.

    >>> split(list(range(10)), 6, 2)
    ([7, 3, 2, 8, 5, 6], [9, 4])
    """
    if train_size + test_size > len(items):
        raise ValueError(f"asked for {train_size:,} + {test_size:,} items but only "
                         f"{len(items):,} were curated; ask for smaller splits")
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    return shuffled[:train_size], shuffled[train_size:train_size + test_size]


def _columns(items: list[Item]) -> dict[str, list]:
    return {c: [getattr(i, c) for i in items] for c in COLUMNS}


def _table(items: list[Item], edition: str) -> pa.Table:
    """Curated Items as a table of their edition's columns."""
    schema = SCHEMA_2025 if edition == "2025" else SCHEMA
    return pa.table({c: [getattr(i, c) for i in items] for c in schema.names}, schema=schema)


def items_from_columns(columns: dict[str, list]) -> list[Item]:
    """Items from columns: text (or a course-format prompt) and price, and any of title,
    category, details, token_count.

    >>> items_from_columns({"text": ["Kettle\\nBoils."], "price": [24.99]})
    [<Kettle = $24.99>]
    """
    texts = columns.get("text") or [text_of_prompt(p) for p in columns["prompt"]]
    n = len(texts)
    made = []
    for text, price, category, title, details, count in zip(
            texts, columns["price"], columns.get("category") or [""] * n,
            columns.get("title") or [None] * n, columns.get("details") or [None] * n,
            columns.get("token_count") or [None] * n, strict=True):
        made.append(Item.from_text(text, float(price), _text(category) or "", _text(title),
                                   _text(details), None if count is None else int(count)))
    return checked_prices(made, "a split's rows")


def _text(value: object) -> str | None:
    """A string cell as a str, and a missing one (None, NaN, NA) as None."""
    return value if isinstance(value, str) else None


def save_split(train: list[Item], test: list[Item], folder: str | Path) -> Path:
    """Write train/test as course pickles and as parquet into `folder`, each file whole or
    not at all, and DONE last: a folder without DONE is not a saved split (see `is_saved`)."""
    folder = Path(folder)
    (folder / DONE).unlink(missing_ok=True)
    for name, items in (("train", train), ("test", test)):
        with written(folder / f"{name}.pkl") as partial:
            save_pickle(items, partial)
        with written(folder / f"{name}.parquet") as partial, \
                pq.ParquetWriter(partial, SCHEMA) as writer:
            for start in range(0, max(len(items), 1), ROW_GROUP):  # an empty split gets a schema
                writer.write_table(pa.table(_columns(items[start:start + ROW_GROUP]),
                                            schema=SCHEMA))
    with written(folder / DONE) as partial:
        partial.write_text(json.dumps({"train": len(train), "test": len(test)}))
    return folder


def is_saved(folder: str | Path) -> bool:
    """Whether `save_split` finished writing `folder` (an interrupted save did not)."""
    return (Path(folder) / DONE).exists()


def load_split(folder: str | Path) -> tuple[list[Item], list[Item]]:
    """Read a saved split: the parquet files when present, else the pickles (safely)."""
    folder = Path(folder)
    if (folder / "train.parquet").exists():
        return tuple(items_from_columns(pq.read_table(folder / f"{n}.parquet").to_pydict())
                     for n in ("train", "test"))
    if (folder / "train.pkl").exists():
        return load_pickle(folder / "train.pkl"), load_pickle(folder / "test.pkl")
    raise FileNotFoundError(f"no train.parquet or train.pkl in {folder}")


def rules_version(*modules: str) -> str:
    """A digest of the source of the modules (the curation rules by default): an edit of a
    rule names new caches and split folders, so an old Item is never served as a new one."""
    return digest(*(importlib.util.find_spec(m).origin for m in modules or ITEM_RULES))


def source_tag(source: str) -> str:
    """A short folder-safe name for a data source; the sample's names its generator's version."""
    if source == "sample":
        return f"sample-{sample_data.version()}"
    if source == "hub":
        return source
    return "file-" + hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:10]


def folder_for(dataset: str, source: str) -> Path:
    """Where a dataset curated from `source` is saved, e.g. data/lite-hub-<rules>, named
    by the rules that made its Items and the code here that split them."""
    return settings.data_dir() / f"{dataset}-{source_tag(source)}-{_split_rules()}"


def _split_rules() -> str:
    return rules_version(*ITEM_RULES, __name__)


def scale(source: str) -> str:
    """Which presets fit `source`: "sample" for the offline sample, else "hub"."""
    return "sample" if source == "sample" else "hub"


def lite(source: str | None = None,
         workers: int | None = None) -> tuple[list[Item], list[Item]]:
    """The lite dataset: Appliances only, split and saved on first use, then read back;
    `workers` processes curate (default settings.workers(): every core)."""
    source = source or settings.source()
    folder = folder_for("lite", source)
    if is_saved(folder):
        return load_split(folder)
    items = ItemLoader("Appliances", source, edition="2024").load(
        workers=workers or settings.workers())
    train, test = split(items, *SIZES[("lite", scale(source))])
    save_split(train, test, folder)
    return train, test


# --- one category at a time, cached on disk -------------------------------------------------

@dataclass
class Curated:
    """One category's curated Items, saved as parquet, and the report of their load."""

    category: str
    path: Path
    report: LoadReport


def _digest(value: object) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


def cache_path(category: str, source: str, course_compatible: bool = False,
               edition: str = "2024") -> Path:
    """Where the curated Items of `category` from `source` are kept, named by everything
    that decides them: the edition and its rules, and the raw file (its size and time if
    local)."""
    raw: object = source
    if source != "hub":
        path = ItemLoader(category, source).raw_path()
        raw = path.name  # the sample's name says all: its size and seed
        if source != "sample":
            raw = [raw, path.stat().st_size, path.stat().st_mtime_ns]
    decided_by = [rules_version(), course_compatible, raw]
    if edition == "2025":
        decided_by = [rules_version(*ITEM_RULES, "items2025"), edition, raw]
    name = f"{category}-{_digest(decided_by)}.parquet"
    return settings.data_dir() / "curated" / source_tag(source) / name


def curate(category: str, source: str | None = None, workers: int | None = None,
           course_compatible: bool = False, show_cached: bool = True,
           edition: str = "2024") -> Curated:
    """Curate one category into its cache file, or find it there from an earlier run (and
    show its progress bar, complete, if `show_cached`), by the rules of the course's
    `edition` (the 2025 edition's columns are SCHEMA_2025).

    Items stream from the loader to disk a row group at a time; the file only takes its
    final name when complete, and the report, written after it, marks the category done: an
    interrupted category is simply done again, and two runs at once both finish.
    """
    source = source or settings.source()
    path = cache_path(category, source, course_compatible, edition)
    report_path = path.with_suffix(".json")
    if path.exists() and report_path.exists():
        report = _read_report(report_path)
        if show_cached:
            progress(category, initial=report.read).close()
        return Curated(category, path, report)
    loader = ItemLoader(category, source, course_compatible, edition)
    schema = SCHEMA_2025 if edition == "2025" else SCHEMA
    with written(path) as partial, pq.ParquetWriter(partial, schema) as writer:
        pending: list[Item] = []
        for kept in loader.stream(workers or settings.workers()):
            pending += kept
            if len(pending) >= ROW_GROUP:
                writer.write_table(_table(pending, edition))
                pending = []
        writer.write_table(_table(pending, edition))
    _write_report(loader.report, report_path)
    return Curated(category, path, loader.report)


def curate_all(source: str | None = None, workers: int | None = None,
               categories: Sequence[str] = CATEGORIES, course_compatible: bool = False,
               show_cached: bool = True, edition: str = "2024") -> list[Curated]:
    """`curate` every category in turn; a rerun picks up where an interrupted one stopped."""
    return [curate(c, source, workers, course_compatible, show_cached, edition)
            for c in categories]


def _write_report(report: LoadReport, path: Path) -> None:
    fields = dict(category=report.category, read=report.read, kept=report.kept,
                  rejected=dict(report.rejected), seconds=report.seconds)
    with written(path) as partial:
        partial.write_text(json.dumps(fields, indent=1))


def _read_report(path: Path) -> LoadReport:
    fields = json.loads(path.read_text())
    fields["rejected"] = Counter(fields["rejected"])
    return LoadReport(**fields)


def summary(curated: Sequence[Curated]) -> pd.DataFrame:
    """One small row per curated Item: category, price, token_count and text length (chars),
    read from the cache files without building Items (what the charts need)."""
    frames = []
    for part in curated:
        batches = pq.ParquetFile(part.path).iter_batches(
            batch_size=ROW_GROUP, columns=["price", "token_count", "text"])
        frames += [pd.DataFrame({
            "category": pd.Categorical([part.category] * batch.num_rows, categories=CATEGORIES),
            "price": batch["price"].to_numpy(), "token_count": batch["token_count"].to_numpy(),
            "chars": pc.utf8_length(batch["text"]).to_numpy()}) for batch in batches]
    return pd.concat(frames, ignore_index=True)


# --- the balanced sample and the full dataset -----------------------------------------------

def balanced_indices(prices: Sequence[float], categories: Sequence[str], cap: int = 1_200,
                     keep_from: int = 240, weights: dict[str, float] | None = None,
                     other_weight: float = 5, seed: int = 42) -> list[int]:
    """Positions of the course's balanced sample, in the course's order.

    Items are bucketed by price rounded to the dollar (1..999). A bucket from `keep_from` up
    is kept whole, as is one of at most `cap` items; from every other bucket `cap` items are
    drawn without replacement, each weighted by its category (Automotive 1, others 5).

    >>> balanced_indices([10, 10, 10, 300], ["Automotive", "Toys", "Toys", "Toys"], cap=2)
    [1, 2, 3]
    """
    weights = {"Automotive": 1} if weights is None else weights
    rng = np.random.RandomState(seed)  # the stream of the course's np.random.seed(42)
    # round() and np.rint both round halves to even; a stable sort keeps each bucket in order.
    rounded = np.rint(np.asarray(prices, dtype=float)).astype(np.int64)
    order = np.argsort(rounded, kind="stable")
    starts = np.searchsorted(rounded[order], np.arange(1, 1001))
    chosen = []
    for price in range(1, 1000):
        bucket = order[starts[price - 1]:starts[price]]
        if price >= keep_from or len(bucket) <= cap:
            chosen.append(bucket)
            continue
        w = np.array([weights.get(categories[i], other_weight) for i in bucket.tolist()],
                     dtype=float)
        chosen.append(bucket[rng.choice(len(bucket), size=cap, replace=False, p=w / w.sum())])
    return np.concatenate(chosen).tolist()


def balanced_split(curated: Sequence[Curated], train_size: int | None, test_size: int,
                   seed: int = 42, **options) -> tuple[list[Item], list[Item]]:
    """Balance the curated categories, shuffle, split; `train_size` None takes the rest.

    Only prices are read to choose; then only the chosen rows become Items.
    """
    chosen = balanced_indices(*prices_and_categories(curated), seed=seed, **options)
    if train_size is None:
        train_size = max(0, len(chosen) - test_size)
    train, test = split(chosen, train_size, test_size, seed)
    made = _read_rows(curated, set(train) | set(test))
    return [made[i] for i in train], [made[i] for i in test]


def prices_and_categories(curated: Sequence[Curated]) -> tuple[np.ndarray, list[str]]:
    """Every curated Item's price and category, in order, read without building Items."""
    if not curated:
        raise ValueError("nothing curated: give at least one category")
    prices = [pq.read_table(part.path, columns=["price"])["price"].to_numpy()
              for part in curated]
    categories = [part.category for part, column in zip(curated, prices, strict=True)
                  for _ in range(len(column))]
    return np.concatenate(prices), categories


def _read_rows(curated: Sequence[Curated], wanted: set[int]) -> dict[int, Item]:
    """Items of the wanted positions (counted across the categories in order)."""
    made: dict[int, Item] = {}
    offset = 0
    for part in curated:
        for batch in pq.ParquetFile(part.path).iter_batches(batch_size=ROW_GROUP):
            rows = [i for i in range(offset, offset + batch.num_rows) if i in wanted]
            if rows:
                taken = batch.take([i - offset for i in rows]).to_pydict()
                made.update(zip(rows, items_from_columns(taken), strict=True))
            offset += batch.num_rows
    return made


def full(source: str | None = None, workers: int | None = None,
         sizes: tuple[int | None, int] | None = None, cap: int | None = None,
         course_compatible: bool = False) -> tuple[list[Item], list[Item]]:
    """The full dataset: 8 categories curated (resumably), balanced, split and saved on
    first use, then read back. Sizes and cap default to the course's, or the sample's."""
    source = source or settings.source()
    folder = full_path(source, sizes, cap, course_compatible)
    if is_saved(folder):
        return load_split(folder)
    curated = curate_all(source, workers, course_compatible=course_compatible,
                         show_cached=False)
    train_size, test_size = sizes or SIZES[("full", scale(source))]
    train, test = balanced_split(curated, train_size, test_size,
                                 cap=cap or CAPS[scale(source)])
    save_split(train, test, folder)
    return train, test


def full_path(source: str | None = None, sizes: tuple[int | None, int] | None = None,
              cap: int | None = None, course_compatible: bool = False) -> Path:
    """The folder `full` saves its split in, named by its source and settings."""
    source = source or settings.source()
    sizes = sizes or SIZES[("full", scale(source))]
    caches = [cache_path(c, source, course_compatible).name for c in CATEGORIES]
    decided_by = [caches, list(sizes), cap or CAPS[scale(source)], _split_rules()]
    return settings.data_dir() / f"full-{source_tag(source)}-{_digest(decided_by)}"


# --- the hub's shape, and prebuilt data ------------------------------------------------------

def to_dataset(train: list[Item], test: list[Item]):
    """The course's hub dataset: a DatasetDict {train, test} of text and price, where a
    training text is the whole prompt and a test text stops at "Price is $"."""
    from datasets import Dataset, DatasetDict

    return DatasetDict({
        "train": Dataset.from_dict({"text": [i.prompt for i in train],
                                    "price": [i.price for i in train]}),
        "test": Dataset.from_dict({"text": [i.test_prompt() for i in test],
                                   "price": [i.price for i in test]}),
    })


def push_to_hub(train: list[Item], test: list[Item], name: str, token: str | None = None,
                private: bool = True) -> None:
    """Upload the split to the Hugging Face hub as `name` (user/dataset), as the course does."""
    token = token or settings.get("HF_TOKEN")
    if not token:
        raise ValueError("set HF_TOKEN (in .env or the environment) to push to the hub")
    to_dataset(train, test).push_to_hub(name, private=private, token=token)


def from_dataset(dataset) -> tuple[list[Item], list[Item]]:
    """Train and test Items from a DatasetDict of the course's shape (text, price, and
    optionally category), where a text is a training prompt or a test prompt."""
    def made(part) -> list[Item]:
        columns = part.to_dict()
        columns["prompt"] = columns.pop("text")
        return items_from_columns(columns)

    return made(dataset["train"]), made(dataset["test"])


def load_prebuilt(where) -> tuple[list[Item], list[Item]]:
    """Ready-made train and test Items, skipping curation: from a folder of parquet files or
    of the course's train.pkl / test.pkl (loaded safely), a DatasetDict saved to disk or in
    memory, or the name of a hub dataset of the course's shape."""
    return prebuilt(where, from_dataset, load_split)


def prebuilt(where, from_dataset: Callable, load_split: Callable):
    """Splits from `where` (a DatasetDict, a folder `save_to_disk` wrote, a folder of saved
    splits, or a hub dataset's name), read by an edition's `from_dataset` and `load_split`."""
    if hasattr(where, "keys"):
        return from_dataset(where)
    path = Path(where)
    if path.is_dir() and (path / "dataset_dict.json").exists():
        from datasets import load_from_disk

        return from_dataset(load_from_disk(str(path)))
    if path.is_dir():
        return load_split(path)
    from datasets import load_dataset

    return from_dataset(load_dataset(str(where)))
