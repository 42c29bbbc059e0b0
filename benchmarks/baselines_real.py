"""Every baseline on real products: training time, and the Tester's figures on held-out items.

    PYTHONPATH=. python benchmarks/baselines_real.py \
        --data ../shared/data/real_priced_items.jsonl.gz
    PYTHONPATH=. python benchmarks/baselines_real.py --data ... --fine-tune   # + MiniLM fine-tune
    PYTHONPATH=. python benchmarks/baselines_real.py --data ... --fine-tune --no-embeddings \
        --train-size 2500                                                 # a quicker look
    PYTHONPATH=. python benchmarks/baselines_real.py --data ... --seeds 42,7,1234 --ranges \
        --models "TF-IDF + Ridge,LightGBM,Sparse MLP Ensemble,Stack,Stack + MiniLM retrieval"
    PYTHONPATH=. python benchmarks/baselines_real.py --data ... --seeds 42,7,1234 \
        --models "Stack,Fitted ensemble"          # notebook 07's offline ensemble vs the stack

The file holds one product a line: `text` (the curated body of a course prompt, or another
wording of the product), `price` and `category`. Each row becomes an Item
(`Item.from_text`); duplicated texts are kept once. A seeded split holds out 2,000
items; every model trains on the rest and is scored on the first 250 and on all 2,000
held-out items. Predictions per second time the first 250 guesses, batched, their texts
encoded afresh for each model that embeds them. Training times count encoding the training
texts even when an earlier model already did (the encodings are shared). `--fine-tune`
adds the MiniLM fine-tune (minilm.py), which also reports its training examples per second.
Models that give price ranges report how often the 80% and 95% ranges hold the true price
on all held-out items, and their median width; `--ranges` gives every model ranges (see
`score`). With several `--seeds`, a last table gives each model's mean ± standard deviation.
With embeddings, the models include the fitted ensemble of the stack and MiniLM + SVR
(`ensemble.cpu_members()`), whose weights are fitted on a fifth of the training items.
MiniLM embeddings are cached on disk by content (sentences.EmbeddingCache), so a rerun
encodes nothing again; training times still count the encoding.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

import numpy as np

import baselines
import curation
import features
import minilm
import sentences
import settings
from ensemble import FittedEnsemble, cpu_members
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


def score(model, train: list[Item], test: list[Item], ranges: bool = False) -> dict:
    """Fit, then score on the first 250 (timed, their texts encoded afresh) and on all; with
    `ranges`, a model not calibrated by `fit` holds back a tenth of `train` to calibrate."""
    if ranges and not model.calibrated_by_fit:
        model.fit_calibrated(train)
    else:
        model.fit(train)
    sentences.clear_embedding_cache(test[:250])
    quiet = {"verbose": False, "chart": False, "results": False}
    head = Tester.test(model, test, size=250, **quiet)
    full = Tester.test(model, test, size=len(test), **quiet)
    row = {"model": model.name, "fit_s": model.fit_seconds, "head": head, "full": full}
    if model.calibrated:
        truth = features.prices(test)
        for level in LEVELS:
            low, high = model.predict_interval(test, level)
            row[f"cover{level}"] = float(((low <= truth) & (truth <= high)).mean())
            row[f"width{level}"] = float(np.median(high - low))
    return row


LEVELS = (0.8, 0.95)


def _ranges(r: dict) -> str:
    if "cover0.8" not in r:
        return "| - | - | - |"
    return (f"| {r['cover0.8']:.1%} | {r['cover0.95']:.1%} | ${r['width0.8']:,.0f} / "
            f"${r['width0.95']:,.0f} |")


def table(rows: list[dict], constant: float, held: int) -> str:
    """One split's table: the first 250 held-out items, then all `held` of them."""
    lines = [f"| model | fit s | error (250) | RMSLE (250) | hits (250) | error ({held:,}) "
             f"[95% interval] | RMSLE ({held:,}) | hits ({held:,}) | vs constant | predictions/s "
             "| 80% range covers | 95% range covers | median width 80% / 95% |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        h, f = r["head"], r["full"]
        lines.append(
            f"| {r['model']} | {r['fit_s']:.1f} | ${h.average_error:,.2f} | {h.rmsle:.2f} | "
            f"{h.hits:.1%} | ${f.average_error:,.2f} [{f.error_low:,.2f}-{f.error_high:,.2f}]"
            f" | {f.rmsle:.2f} | {f.hits:.1%} | {1 - f.average_error / constant:+.0%} | "
            f"{h.per_second:,.0f} " + _ranges(r))
    return "\n".join(lines)


def _spread(values: list[float], money: bool = False, percent: bool = False) -> str:
    """Mean ± standard deviation over the seeds."""
    mean, sd = float(np.mean(values)), float(np.std(values))
    if percent:
        return f"{mean:.1%} ± {sd:.1%}"
    return f"${mean:,.2f} ± {sd:,.2f}" if money else f"{mean:,.2f} ± {sd:,.2f}"


def seeds_table(runs: dict[int, list[dict]]) -> str:
    """Each model's mean ± standard deviation over the seeds' held-out items."""
    lines = [f"| model | fit s | error ({len(runs)} seeds) | RMSLE | hits | vs constant | "
             "predictions/s | 80% range covers | 95% range covers | median width 80% |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    constants = [next(r for r in rows if r["model"] == "Constant")["full"].average_error
                 for rows in runs.values()]
    for name in [r["model"] for r in next(iter(runs.values()))]:
        rows = [next(r for r in seed_rows if r["model"] == name) for seed_rows in runs.values()]
        errors = [r["full"].average_error for r in rows]
        cells = [name, f"{np.mean([r['fit_s'] for r in rows]):.1f}", _spread(errors, money=True),
                 _spread([r["full"].rmsle for r in rows]),
                 _spread([r["full"].hits for r in rows], percent=True),
                 _spread([1 - e / c for e, c in zip(errors, constants, strict=True)],
                         percent=True),
                 f"{np.mean([r['head'].per_second for r in rows]):,.0f}"]
        if "cover0.8" in rows[0]:
            cells += [_spread([r["cover0.8"] for r in rows], percent=True),
                      _spread([r["cover0.95"] for r in rows], percent=True),
                      _spread([r["width0.8"] for r in rows], money=True)]
        else:
            cells += ["-", "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="real_priced_items.jsonl.gz")
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--seeds", default="42",
                        help="split seeds, comma-separated; more than one adds a table of "
                             "each model's mean ± standard deviation over them")
    parser.add_argument("--models", help="only these models (names, comma-separated; the "
                                         "Constant baseline always runs)")
    parser.add_argument("--ranges", action="store_true",
                        help="price ranges for every model: those not calibrated by fit "
                             "train on 90%% of the training items and calibrate on the rest")
    parser.add_argument("--no-embeddings", action="store_true",
                        help="skip the MiniLM models (the slowest to train on a CPU)")
    parser.add_argument("--device", default="cpu", help="where MiniLM runs: cpu or cuda")
    parser.add_argument("--fine-tune", action="store_true",
                        help="also fine-tune MiniLM (about 35 minutes on 2 free cores)")
    parser.add_argument("--train-size", type=int, help="train every model on this many items")
    args = parser.parse_args()

    start = time.perf_counter()
    items, unusable, duplicated = load_items(args.data)
    built = time.perf_counter() - start
    runs = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        train, test = curation.split(items, len(items) - args.test_size, args.test_size, seed)
        train = train[:args.train_size]
        print(f"\nSeed {seed}: {len(items):,} items ({unusable} unusable rows, {duplicated} "
              f"duplicated texts dropped): {len(train):,} train, {len(test):,} test; built in "
              f"{built:.1f}s; {settings.threads()} thread(s) per model, "
              f"{os.cpu_count()} CPUs", flush=True)
        runs[seed] = run_models(pick(args), train, test, args.ranges)
    if len(runs) > 1:
        print(f"\nSeeds {args.seeds}: mean ± standard deviation on {args.test_size:,} "
              "held-out items each")
        print(seeds_table(runs))


def pick(args) -> list:
    """Fresh instances of the models asked for."""
    models = baselines.all_pricers(embeddings=not args.no_embeddings, device=args.device)
    if not args.no_embeddings:
        models.append(FittedEnsemble(cpu_members()))
    if args.fine_tune:
        models.append(minilm.MiniLMPricer())
    if args.models:
        wanted = {name.strip().lower() for name in args.models.split(",")} | {"constant"}
        unknown = wanted - {m.name.lower() for m in models}
        if unknown:
            raise SystemExit(f"no model named {sorted(unknown)}; "
                             f"the models: {[m.name for m in models]}")
        models = [m for m in models if m.name.lower() in wanted]
    return models


def run_models(models: list, train: list[Item], test: list[Item], ranges: bool) -> list[dict]:
    """Score every model on one split; print each as it finishes, then the table."""
    rows = []
    for model in models:
        rows.append(score(model, train, test, ranges))
        r = rows[-1]
        print(f"  {r['model']}: fit {r['fit_s']:.1f}s, {r['full']}", flush=True)
        if isinstance(model, minilm.MiniLMPricer):
            print(f"  {model.name}: {model.examples_per_second:,.1f} training examples/s")
    constant = next(r for r in rows if r["model"] == "Constant")["full"].average_error
    print(table(rows, constant, len(test)))
    print(f"\nConstant baseline: ${constant:,.2f} on {len(test):,} items")
    quick = [r for r in rows if r["fit_s"] < FIVE_MINUTES]
    for label, pool in (("Best", rows), ("Best trained within 5 minutes", quick)):
        best = min(pool, key=lambda r: r["full"].average_error)
        print(f"{label}: {best['model']}, ${best['full'].average_error:,.2f}, "
              f"{1 - best['full'].average_error / constant:.1%} below the constant baseline, "
              f"trained in {best['fit_s']:.1f}s")
    return rows


if __name__ == "__main__":
    main()
