"""Curated datasets: seeded splits, saved and loaded in the course's format and a safe one.

>>> train, test = lite()          # Appliances, built once then read from disk  # doctest: +SKIP

A split is saved twice in one folder: train.pkl / test.pkl, pickled lists of Items exactly
as the course handed them out, and train.parquet / test.parquet, plain columns that load
without running any code.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pandas as pd

from items import Item, load_pickle, save_pickle
from loaders import DATA_DIR, ItemLoader, default_source

COLUMNS = ["title", "category", "price", "prompt", "details"]
# (train, test) sizes by dataset and source; the offline sample is far smaller than the hub.
SIZES = {
    ("lite", "hub"): (25_000, 2_000),
    ("lite", "sample"): (800, 250),
}


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


def to_frame(items: list[Item]) -> pd.DataFrame:
    """Items as plain columns: title, category, price, prompt, details (raw JSON)."""
    return pd.DataFrame([[getattr(i, c) for c in COLUMNS] for i in items], columns=COLUMNS)


def from_frame(frame: pd.DataFrame) -> list[Item]:
    """Items back from `to_frame` columns (details when the frame has them)."""
    items = []
    for r in frame.itertuples(index=False):
        item = Item.from_prompt(r.prompt, float(r.price), r.category, r.title)
        item.details = getattr(r, "details", None)
        items.append(item)
    return items


def save_split(train: list[Item], test: list[Item], folder: str | Path) -> Path:
    """Write train/test as course pickles and as parquet into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, items in (("train", train), ("test", test)):
        save_pickle(items, folder / f"{name}.pkl")
        to_frame(items).to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def load_split(folder: str | Path) -> tuple[list[Item], list[Item]]:
    """Read a saved split: the parquet files when present, else the pickles (safely)."""
    folder = Path(folder)
    if (folder / "train.parquet").exists():
        return tuple(from_frame(pd.read_parquet(folder / f"{n}.parquet"))
                     for n in ("train", "test"))
    if (folder / "train.pkl").exists():
        return load_pickle(folder / "train.pkl"), load_pickle(folder / "test.pkl")
    raise FileNotFoundError(f"no train.parquet or train.pkl in {folder}")


def source_tag(source: str) -> str:
    """A short folder-safe name for a data source."""
    if source in ("sample", "hub"):
        return source
    return "file-" + hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:10]


def lite(source: str | None = None, workers: int = 2) -> tuple[list[Item], list[Item]]:
    """The lite dataset: Appliances only, split and saved on first use, then read back."""
    source = source or default_source()
    folder = DATA_DIR / f"lite-{source_tag(source)}"
    if (folder / "train.parquet").exists():
        return load_split(folder)
    items = ItemLoader("Appliances", source).load(workers=workers)
    train, test = split(items, *SIZES[("lite", "hub" if source == "hub" else "sample")])
    save_split(train, test, folder)
    return train, test
