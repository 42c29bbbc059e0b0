"""Every baseline on real products: training time, and the Tester's figures on held-out items.

    PYTHONPATH=. python benchmarks/baselines_real.py \
        --data ../shared/data/real_priced_items.jsonl.gz
    PYTHONPATH=. python benchmarks/baselines_real.py --data ... --fine-tune   # + MiniLM fine-tune
    PYTHONPATH=. python benchmarks/baselines_real.py --data ... --fine-tune --no-embeddings \
        --train-size 2500                                                 # a quicker look

The file holds one product a line: `text` (the curated body of a course prompt, or another
wording of the product), `price` and `category`. Each row becomes an Item through the
course's prompt format; duplicated texts are kept once. A seeded split holds out 2,000
items; every model trains on the rest and is scored on the first 250 and on all 2,000
held-out items. Predictions per second time the first 250 guesses, batched, their texts
encoded afresh for each model that embeds them. Training times count encoding the training
texts even when an earlier model already did (the encodings are shared). `--fine-tune`
adds the MiniLM fine-tune (minilm.py), which also reports its training examples per second.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

import baselines
import curation
import minilm
import settings
from items import MAX_PRICE, MIN_PRICE, Item
from testing import Tester

FIVE_MINUTES = 300.0


def item_from_row(row: dict) -> Item | None:
    """An Item of one row's text and price; None for an unusable row."""
    text, price = str(row.get("text") or "").strip(), row.get("price")
    if not text or not isinstance(price, (int, float)) or not MIN_PRICE <= price <= MAX_PRICE:
        return None
    titles = [line[6:].strip() for line in text.splitlines() if line.startswith("Title:")]
    return Item.from_text(text, float(price), row.get("category") or "",
                          titles[0] if titles else None)


def load_items(path: Path) -> tuple[list[Item], int, int]:
    """The usable, distinct items of the file; and how many rows were unusable, duplicated."""
    items, seen, unusable, duplicated = [], set(), 0, 0
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            item = item_from_row(json.loads(line))
            if item is None:
                unusable += 1
            elif item.text in seen:
                duplicated += 1
            else:
                seen.add(item.text)
                items.append(item)
    return items, unusable, duplicated


def score(model, train: list[Item], test: list[Item]) -> dict:
    """Fit, then score on the first 250 (timed, their texts encoded afresh) and on all."""
    model.fit(train)
    baselines.clear_embedding_cache(test[:250])
    quiet = {"verbose": False, "chart": False, "results": False}
    head = Tester.test(model, test, size=250, **quiet)
    full = Tester.test(model, test, size=len(test), **quiet)
    return {"model": model.name, "fit_s": model.fit_seconds, "head": head, "full": full}


def table(rows: list[dict], constant: float) -> str:
    lines = ["| model | fit s | error (250) | RMSLE (250) | hits (250) | error (2,000) "
             "[95% interval] | RMSLE (2,000) | hits (2,000) | vs constant | predictions/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        h, f = r["head"], r["full"]
        lines.append(
            f"| {r['model']} | {r['fit_s']:.1f} | ${h.average_error:,.2f} | {h.rmsle:.2f} | "
            f"{h.hits:.1%} | ${f.average_error:,.2f} [{f.error_low:,.2f}-{f.error_high:,.2f}]"
            f" | {f.rmsle:.2f} | {f.hits:.1%} | {1 - f.average_error / constant:+.0%} | "
            f"{h.per_second:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="real_priced_items.jsonl.gz")
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-embeddings", action="store_true",
                        help="skip the MiniLM models (the slowest to train on a CPU)")
    parser.add_argument("--device", default="cpu", help="where MiniLM runs: cpu or cuda")
    parser.add_argument("--fine-tune", action="store_true",
                        help="also fine-tune MiniLM (about 35 minutes on 2 free cores)")
    parser.add_argument("--train-size", type=int, help="train every model on this many items")
    args = parser.parse_args()

    start = time.perf_counter()
    items, unusable, duplicated = load_items(args.data)
    train, test = curation.split(items, len(items) - args.test_size, args.test_size, args.seed)
    train = train[:args.train_size]
    print(f"{len(items):,} items ({unusable} unusable rows, {duplicated} duplicated texts "
          f"dropped): {len(train):,} train, {len(test):,} test; built in "
          f"{time.perf_counter() - start:.1f}s; {settings.threads()} thread(s) per model, "
          f"{os.cpu_count()} CPUs", flush=True)
    models = baselines.all_pricers(embeddings=not args.no_embeddings, device=args.device)
    if args.fine_tune:
        models.append(minilm.MiniLMPricer())
    rows = []
    for model in models:
        rows.append(score(model, train, test))
        r = rows[-1]
        print(f"  {r['model']}: fit {r['fit_s']:.1f}s, {r['full']}", flush=True)
        if isinstance(model, minilm.MiniLMPricer):
            print(f"  {model.name}: {model.examples_per_second:,.1f} training examples/s")
    constant = next(r for r in rows if r["model"] == "Constant")["full"].average_error
    print(table(rows, constant))
    print(f"\nConstant baseline: ${constant:,.2f} on {len(test):,} items")
    quick = [r for r in rows if r["fit_s"] < FIVE_MINUTES]
    for label, pool in (("Best", rows), ("Best trained within 5 minutes", quick)):
        best = min(pool, key=lambda r: r["full"].average_error)
        print(f"{label}: {best['model']}, ${best['full'].average_error:,.2f}, "
              f"{1 - best['full'].average_error / constant:.1%} below the constant baseline, "
              f"trained in {best['fit_s']:.1f}s")


if __name__ == "__main__":
    main()
