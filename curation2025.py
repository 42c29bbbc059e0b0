"""The course's 2025 edition's datasets: eight categories curated by its rules, a sample
drawn with weights that rise with the price squared, cut into train / validation / test, and
summarised by an LLM.

>>> train, validation, test = lite()   # items_lite, summarised on first use  # doctest: +SKIP
>>> train, validation, test = raw("full")          # items_raw_full: no summaries yet
... # doctest: +SKIP
>>> dataset = to_dataset(train, validation, test)   # the edition's hub shape  # doctest: +SKIP
>>> train, validation, test = load_prebuilt("ed-donner/items_lite")  # its published splits
... # doctest: +SKIP

The edition draws 820,000 items and keeps 800,000 / 10,000 / 10,000; its lite dataset is the
first 20,000 / 1,000 / 1,000 of each. The bundled sample is smaller (SIZES): 4,000 / 250 /
250 of its about 8,700 curated items (the edition draws about half of its pool too), and the
lite the first 800 for training, with the same 250 / 250, the Tester's 250 items.

Every split is saved as parquet in the hub's columns (`items2025.FIELDS`), raw
(`items_raw_<dataset>-...`) and summarised (`items_<dataset>-...`), each folder named by
the rules, sizes and summariser that made it and complete only once its done.json is
written: a later call reads it back, and a summariser never runs twice on the same split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import settings
import summaries
from curation import (
    CAPS,
    Curated,
    balanced_indices,
    curate_all,
    prebuilt,
    prices_and_categories,
    rules_version,
    scale,
    source_tag,
)
from files import written
from items2025 import FIELDS, Item2025, columns, from_columns
from sample_data import CATEGORIES

SIZES = {
    ("full", "hub"): (800_000, 10_000, 10_000),
    ("lite", "hub"): (20_000, 1_000, 1_000),
    ("full", "sample"): (4_000, 250, 250),
    ("lite", "sample"): (800, 250, 250),
}
SPLITS = ("train", "validation", "test")
# After the price squared, these categories are weighted down: Automotive is most of the data.
CATEGORY_WEIGHTS = {"Tools_and_Home_Improvement": 0.5, "Automotive": 0.05}
SEED = 42
SCHEMA = pa.schema([("title", pa.string()), ("category", pa.string()), ("price", pa.float64()),
                    ("full", pa.string()), ("weight", pa.float64()), ("summary", pa.string()),
                    ("prompt", pa.string()), ("id", pa.int64())])
RULES = ("items", "items2025", "loaders", "curation", "curation2025")
DONE = "done.json"
Splits = tuple[list[Item2025], list[Item2025], list[Item2025]]


def weights(prices: Sequence[float], categories: Sequence[str]) -> np.ndarray:
    """Each item's weight in the draw: p squared, where p is its price scaled to 0..1 between
    the cheapest and the dearest, times CATEGORY_WEIGHTS of its category (else 1).

    >>> weights([1.0, 2.0, 3.0, 3.0], ["Toys", "Toys", "Toys", "Automotive"]).tolist()
    [0.0, 0.25, 1.0, 0.05]
    """
    prices = np.asarray(prices, dtype=float)
    low, high = prices.min(), prices.max()
    scaled = (prices - low) / (high - low) if high > low else np.ones_like(prices)
    factors = np.array([CATEGORY_WEIGHTS.get(c, 1.0) for c in categories])
    return scaled ** 2 * factors


def weighted_indices(prices: Sequence[float], categories: Sequence[str], size: int,
                     seed: int = SEED) -> np.ndarray:
    """Positions of `size` items drawn without replacement by `weights`, in the order drawn:
    the edition's `np.random.seed(42); np.random.choice(n, size, replace=False, p=w/w.sum())`.

    >>> weighted_indices([5.0, 400.0, 900.0, 20.0, 700.0], ["Toys"] * 5, 3).tolist()
    [2, 4, 1]
    """
    w = weights(prices, categories)
    if np.count_nonzero(w) < size:
        raise ValueError(f"asked for {size:,} items but only {np.count_nonzero(w):,} of "
                         f"{len(w):,} curated items can be drawn (the cheapest weighs 0); "
                         "ask for smaller splits")
    return np.random.RandomState(seed).choice(len(w), size, replace=False, p=w / w.sum())


def cut(items: Sequence[Item2025], sizes: tuple[int, int, int]) -> Splits:
    """The first sizes[0] items for training, the next for validation, the next for testing.

    >>> cut(list(range(10)), (5, 2, 2))
    ([0, 1, 2, 3, 4], [5, 6], [7, 8])
    """
    train, validation, test = sizes
    return (list(items[:train]), list(items[train:train + validation]),
            list(items[train + validation:train + validation + test]))


def _numbered(splits: Splits) -> Splits:
    """The splits with each item's `id` its place in train + validation + test, as the
    edition numbers them before summarising."""
    for number, item in enumerate(item for part in splits for item in part):
        item.id = number
    return splits


def _read(curated: Sequence[Curated], chosen: np.ndarray) -> list[Item2025]:
    """The Item2025s at the chosen positions (counted across the categories in order), in
    the order chosen, reading only their rows."""
    wanted = {int(position): rank for rank, position in enumerate(chosen)}
    made: list[Item2025 | None] = [None] * len(chosen)
    offset = 0
    for part in curated:
        for batch in pq.ParquetFile(part.path).iter_batches(batch_size=20_000):
            rows = [i for i in range(offset, offset + batch.num_rows) if i in wanted]
            if rows:
                taken = batch.take([i - offset for i in rows]).to_pydict()
                for i, item in zip(rows, from_columns(taken), strict=True):
                    made[wanted[i]] = item
            offset += batch.num_rows
    return made


def folder_for(name: str, source: str, *decided_by: object) -> Path:
    """Where a split is saved, e.g. data/items_raw_lite-sample-<digest>: named by its source
    and everything that decided it (the rules, the sizes, the summariser)."""
    key = json.dumps([rules_version(*RULES), *decided_by], sort_keys=True, default=str)
    return settings.data_dir() / f"{name}-{source_tag(source)}-" \
        f"{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def raw_path(dataset: str = "lite", source: str | None = None) -> Path:
    """The folder `raw` saves items_raw_<dataset> in."""
    source = source or settings.source()
    return folder_for(f"items_raw_{dataset}", source, SIZES[(dataset, scale(source))])


def summarised_path(dataset: str = "lite", source: str | None = None,
                    summariser=None) -> Path:
    """The folder `summarised` saves items_<dataset> in, named by the summariser too."""
    source = source or settings.source()
    summariser = summariser or summaries.summariser()
    identity = [summariser.name, rules_version("summaries")]
    if hasattr(summariser, "chat"):
        identity = [summariser.name, summariser.chat.endpoint]
    return folder_for(f"items_{dataset}", source, SIZES[(dataset, scale(source))], identity)


def raw(dataset: str = "lite", source: str | None = None,
        workers: int | None = None) -> Splits:
    """The edition's items_raw_<dataset> (no summaries): the eight categories curated
    (resumably, cached per category), drawn by `weights`, cut, numbered; saved on first use,
    then read back."""
    source = source or settings.source()
    sizes = SIZES[(dataset, scale(source))]
    folder = raw_path(dataset, source)
    if is_saved(folder):
        return load_split(folder)
    curated = curate_all(source, workers, show_cached=False, edition="2025")
    drawn = SIZES[("full", scale(source))]
    chosen = weighted_indices(*prices_and_categories(curated), sum(drawn))
    splits = cut(_read(curated, chosen), drawn)
    if dataset == "lite":
        splits = tuple(part[:size] for part, size in zip(splits, sizes, strict=True))
    save_split(_numbered(splits), folder)
    return splits


def summarised(dataset: str = "lite", source: str | None = None,
               workers: int | None = None, summariser=None) -> Splits:
    """The edition's items_<dataset>: items_raw_<dataset> with every item summarised by
    `summariser` (by default the PRICER_SUMMARISER setting's, `summaries.summariser`);
    saved on first use, then read back. Items an LLM left without a summary are a
    RuntimeError: run again, and only they are asked for."""
    source = source or settings.source()
    summariser = summariser or summaries.summariser()
    folder = summarised_path(dataset, source, summariser)
    if is_saved(folder):
        return load_split(folder)
    splits = raw(dataset, source, workers)
    left = summariser.summarise([item for part in splits for item in part])
    if left:
        raise RuntimeError(f"{len(left):,} items have no summary from {summariser.name}: "
                           "run again to ask for them only (every answer is cached)")
    save_split(splits, folder)
    return splits


def lite(source: str | None = None, workers: int | None = None, summariser=None) -> Splits:
    """The edition's items_lite: train, validation and test, summarised."""
    return summarised("lite", source, workers, summariser)


def full(source: str | None = None, workers: int | None = None, summariser=None) -> Splits:
    """The edition's items_full: train, validation and test, summarised (`raw("full")` is
    items_raw_full)."""
    return summarised("full", source, workers, summariser)


def summary(curated: Sequence[Curated]) -> pd.DataFrame:
    """One small row per curated 2025 item: category, price, weight and text length (chars),
    read from the cache files without building Items."""
    frames = [pd.DataFrame({"category": pd.Categorical([part.category] * table.num_rows,
                                                       categories=CATEGORIES),
                            "price": table["price"].to_numpy(),
                            "weight": table["weight"].to_numpy(),
                            "chars": pc.utf8_length(table["full"]).to_numpy()})
              for part in curated
              for table in [pq.read_table(part.path, columns=["price", "weight", "full"])]]
    return pd.concat(frames, ignore_index=True)


def sample_prices(source: str | None = None, workers: int | None = None) -> dict[str, np.ndarray]:
    """The prices of each edition's sample of the same raw data: the 2024 edition's balanced
    one and the 2025 edition's, weighted by price squared (what notebook 03 charts)."""
    source = source or settings.source()
    balanced = curate_all(source, workers, show_cached=False)
    prices, categories = prices_and_categories(balanced)
    chosen = balanced_indices(prices, categories, cap=CAPS[scale(source)])
    weighted = curate_all(source, workers, show_cached=False, edition="2025")
    pool, kinds = prices_and_categories(weighted)
    drawn = weighted_indices(pool, kinds, sum(SIZES[("full", scale(source))]))
    return {"2024 edition: balanced": prices[chosen],
            "2025 edition: weighted by price squared": pool[drawn]}


# --- saved splits and the hub's shape ----------------------------------------------------------

def save_split(splits: Splits, folder: str | Path) -> Path:
    """Write train / validation / test as parquet in the hub's columns, each file whole or
    not at all, and done.json last."""
    folder = Path(folder)
    (folder / DONE).unlink(missing_ok=True)
    for name, items in zip(SPLITS, splits, strict=True):
        with written(folder / f"{name}.parquet") as partial:
            pq.write_table(pa.table(columns(items), schema=SCHEMA), partial)
    with written(folder / DONE) as partial:
        partial.write_text(json.dumps({n: len(s) for n, s in zip(SPLITS, splits, strict=True)}))
    return folder


def is_saved(folder: str | Path) -> bool:
    return (Path(folder) / DONE).exists()


def load_split(folder: str | Path) -> Splits:
    """Read a split that `save_split` wrote."""
    return tuple(from_columns(pq.read_table(Path(folder) / f"{name}.parquet").to_pydict())
                 for name in SPLITS)


def to_dataset(train: list[Item2025], validation: list[Item2025], test: list[Item2025]):
    """The edition's hub DatasetDict: train, validation and test, in its columns."""
    from datasets import Dataset, DatasetDict, Features, Value

    features = Features({field.name: Value("int64" if field.name == "id" else
                                           "float64" if field.type == pa.float64() else
                                           "string") for field in SCHEMA})
    return DatasetDict({name: Dataset.from_dict(columns(items), features=features)
                        for name, items in zip(SPLITS, (train, validation, test), strict=True)})


def from_dataset(dataset) -> Splits:
    """Train, validation and test Items of a DatasetDict in the edition's shape (a missing
    column is None: items_raw_* hold no summary or prompt, and no id)."""
    missing = set(FIELDS) - set(dataset["train"].column_names)
    if {"title", "price"} & missing:
        raise ValueError(f"not the 2025 edition's shape: no {sorted(missing)} columns")
    return tuple(from_columns(dataset[name].to_dict()) for name in SPLITS)


def load_prebuilt(where) -> Splits:
    """Ready-made splits: a DatasetDict, a folder `save_split` or `save_to_disk` wrote, or
    the name of a hub dataset of the edition's shape (its own are ed-donner/items_lite,
    items_full, items_raw_lite and items_raw_full)."""
    return prebuilt(where, from_dataset, load_split)


def push_to_hub(splits: Splits, name: str, token: str | None = None,
                private: bool = True) -> None:
    """Upload the splits to the Hugging Face hub as `name` (user/dataset), as the edition
    does."""
    token = token or settings.get("HF_TOKEN")
    if not token:
        raise ValueError("set HF_TOKEN (in .env or the environment) to push to the hub")
    to_dataset(*splits).push_to_hub(name, private=private, token=token)
