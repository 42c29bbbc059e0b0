"""Loading model files: the checked loader (pickles.load) against a plain allow-list loader.

    PRICER_DATA_DIR=$(mktemp -d) PYTHONPATH=. python benchmarks/model_load.py \
        --data ../shared/data/real_priced_items.jsonl.gz
    PRICER_DATA_DIR=$(mktemp -d) PYTHONPATH=. python benchmarks/model_load.py   # lite sample

Each model is fitted once (on the training items of benchmarks/baselines_real.py's seeded
split of real products, or on the lite sample without `--data`) and saved; then every file is
loaded `--rounds` times by each loader in turn, alternating which goes first, and the best
time of each is kept. "plain" is what loading was before a model file's data was checked: the
same allow-list of names, the classes themselves, no stand-ins and no checks, and LightGBM
reading its text as saved (with its `tree_sizes`, in parallel). "checked" is Pricer.load.
Last, a split pickle of `--items` Items (the training items, each text numbered): plain
against items.load_pickle.
The plain load is the bound: a checked load does its work and reads the data once more (an
array's finite values, an index's range), in the fewest passes numpy allows.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import pickle
import platform
import random
import tempfile
import time
from pathlib import Path

from baselines_real import load_items

import baselines
import curation
import pickles
from items import Item, load_pickle, save_pickle
from mlp import SparseMLPPricer
from pricer import Pricer
from stacking import StackPricer


class Plain(pickle.Unpickler):
    """The allow-list alone: each allowed name is the library's own class or function."""

    def find_class(self, module: str, name: str) -> object:
        module, name = pickles.RENAMED.get((module, name), (module, name))
        if (module, name) not in pickles.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if (module, name) in pickles.OLD_COLUMNS:
            return pickles.OLD_COLUMNS[(module, name)]
        return getattr(importlib.import_module(module), name)


def models(embeddings: bool) -> list[Pricer]:
    chosen = [baselines.TfidfRidgePricer(), baselines.NeighboursPricer(),
              baselines.LightGBMPricer(), baselines.Word2VecPricer("forest"),
              baselines.Word2VecPricer("svr"), SparseMLPPricer(), StackPricer(embeddings=False)]
    return chosen + ([baselines.EmbeddingPricer("svr")] if embeddings else [])


def plain(path: Path) -> object:
    with open(path, "rb") as f:
        return Plain(f).load()


def distinct(item: Item, number: int) -> Item:
    """A copy of `item` with its own text (a pickle stores a repeated object once)."""
    return Item.from_text(f"{item.text} {number}", item.price, item.category,
                          token_count=item.token_count)


def best_times(path: Path, rounds: int, checked=Pricer.load) -> dict[str, float]:
    loaders = {"plain": lambda: plain(path), "checked": lambda: checked(path)}
    for load in loaders.values():
        load()  # imports and the page cache
    best = dict.fromkeys(loaders, float("inf"))
    for round_ in range(rounds):
        order = list(loaders) if round_ % 2 == 0 else list(reversed(loaders))
        for name in order:
            gc.collect()
            start = time.perf_counter()
            loaders[name]()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def cpu() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines
                  if line.startswith("model name")), platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in lines
                  if line.startswith("flags")), [])
    simd = [f for f in ("avx2", "avx512f", "amx_tile") if f in flags]
    return f"{model} ({', '.join(simd) or 'no AVX2'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="real_priced_items.jsonl.gz (else the sample)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--embeddings", action="store_true", help="add MiniLM + SVR")
    parser.add_argument("--items", type=int, default=100_000, help="Items in the split pickle")
    args = parser.parse_args()
    if args.data:
        items = load_items(args.data)[0]
        random.Random(42).shuffle(items)
        train, where = items[2000:], f"{len(items) - 2000:,} real products"
    else:
        train, where = curation.lite()[0], "the lite sample"
    print(f"{cpu()}; Python {platform.python_version()}; models fitted on {where}")
    print("| model | file MB | plain ms | checked ms | checked / plain |")
    print("|---|---:|---:|---:|---:|")
    totals = {"plain": 0.0, "checked": 0.0}
    with tempfile.TemporaryDirectory() as folder:
        for model in models(args.embeddings):
            path = model.fit(train).save(Path(folder) / "model.pkl")
            best = best_times(path, args.rounds)
            for name in totals:
                totals[name] += best[name]
            print(f"| {model.name} | {path.stat().st_size / 1e6:,.1f} | "
                  f"{best['plain'] * 1e3:,.1f} | {best['checked'] * 1e3:,.1f} | "
                  f"{best['checked'] / best['plain']:.2f} |")
        print(f"| all models | | {totals['plain'] * 1e3:,.1f} | {totals['checked'] * 1e3:,.1f} | "
              f"{totals['checked'] / totals['plain']:.2f} |")
        path = Path(folder) / "train.pkl"
        save_pickle([distinct(train[i % len(train)], i) for i in range(args.items)], path)
        best = best_times(path, max(3, args.rounds // 3), load_pickle)
        print(f"| a split of {args.items:,} Items | {path.stat().st_size / 1e6:,.1f} | "
              f"{best['plain'] * 1e3:,.1f} | {best['checked'] * 1e3:,.1f} | "
              f"{best['checked'] / best['plain']:.2f} |")


if __name__ == "__main__":
    main()
