"""Fine-tune MiniLM on real products and score it on 2,000 held-out ones.

    PYTHONPATH=. python3 benchmarks/minilm_real.py --data ../shared/data/real_priced_items.jsonl.gz
    PYTHONPATH=. python3 benchmarks/minilm_real.py --data ... --train-size 2500   # a quicker run

Measured (2,500 training items, 1 epoch, on a shared 2-core machine running at about a third of
its speed): Error=$57.98 RMSLE=0.91 Hits=67.2%; 2.23 examples/s, 1,122 s training, 426 s scoring.

The real items are shuffled with seed 42; the last 2,000 are held out for the Tester, the rest
(or the first --train-size of them) train the model. Prints the Tester's figures (average error,
RMSLE, hits over all 2,000), training examples per second and wall times.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import time
from pathlib import Path

import matplotlib
import torch

from curation import split
from items import MAX_PRICE, MIN_PRICE, Item
from minilm import MiniLMPricer, Settings
from testing import Scores, Tester


def load_real(path: str | Path) -> list[Item]:
    """Items from the real priced products: each row's text is a curated prompt body."""
    items = []
    with gzip.open(path, "rt") as f:
        for line in f:
            row = json.loads(line)
            price = float(row["price"])
            if MIN_PRICE <= price <= MAX_PRICE and row["text"].strip():
                text = row["text"].strip()
                prompt = f"{Item.QUESTION}\n\n{text}\n\n{Item.PREFIX}{round(price)}.00"
                items.append(Item.from_prompt(prompt, price, row.get("category") or ""))
    return items


def real_split(items: list[Item], test_size: int = 2000,
               seed: int = 42) -> tuple[list[Item], list[Item]]:
    """The seeded train / held-out split of the real items."""
    return split(items, len(items) - test_size, test_size, seed)


def score(predictor, test: list[Item]) -> Scores:
    """The Tester's figures over every test item, without its per-item lines or chart."""
    with contextlib.redirect_stdout(io.StringIO()):
        return Tester(predictor, test, size=len(test)).run()


def measure(model, train: list[Item], test: list[Item]) -> dict:
    """Fit `model` on `train`, score it on `test`: the figures a results table needs."""
    start = time.perf_counter()
    model.fit(train)
    fitted = time.perf_counter()
    scores = score(model, test)
    return {"name": model.name, "train": len(train), "test": len(test),
            "error": scores.average_error, "rmsle": scores.rmsle, "hits": scores.hits,
            "fit_s": fitted - start, "score_s": time.perf_counter() - fitted,
            "examples_per_s": len(train) * getattr(model.settings, "epochs", 1) / (fitted - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="real_priced_items.jsonl.gz")
    parser.add_argument("--train-size", type=int, default=None, help="train on this many")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--frozen-layers", type=int, default=Settings.frozen_layers,
                        help="bottom encoder layers left untrained (more: faster)")
    args = parser.parse_args()
    matplotlib.use("Agg")
    start = time.perf_counter()
    train, test = real_split(load_real(args.data))
    train = train[:args.train_size] if args.train_size else train
    print(f"{len(train):,} training items, {len(test):,} held out; "
          f"{torch.get_num_threads()} torch threads")
    settings = Settings(epochs=args.epochs, frozen_layers=args.frozen_layers)
    result = measure(MiniLMPricer(settings), train, test)
    print(f"{result['name']}: Error=${result['error']:,.2f} RMSLE={result['rmsle']:.2f} "
          f"Hits={result['hits'] * 100:.1f}% on {result['test']:,} held-out items")
    print(f"training: {result['train']:,} items x {args.epochs} epoch(s) in "
          f"{result['fit_s']:.0f}s = {result['examples_per_s']:.2f} examples/s; "
          f"scoring {result['score_s']:.0f}s; wall time {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
