"""How fast raw records become Items, and what the whole curation costs in time and memory.

    PYTHONPATH=$PWD python3 benchmarks/curate_speed.py \\
        --raw /work/shared/data/real_unpriced_meta.jsonl.gz --records 1500000 --workers 2

1. The loader: raw records/s into Items with one process and with `--workers` processes, on
   the offline sample (8 categories) and on the raw JSONL given by `--raw`.
2. The pipeline: `--records` raw records (the `--raw` file's real text, repeated to size and
   spread over the 8 categories in the proportions of the course's 8.3M) through
   `curation.full`: curate each category to its cache, balance, shuffle, split, save.
   It runs in a fresh process and prints raw records/s, Items/s, CPU seconds per record and
   peak RSS, with the peak extrapolated (linearly, an upper bound) to 8.3M raw records.

The raw file's records carry no price, so this script assigns them seeded ones: half the
records get none (as in the real data), the rest a log-normal price around $33 whose tail
passes $999. Rates per core divide by the CPU time of all processes, not the wall time.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

import curation
import llama_tokens
from loaders import ItemLoader
from sample_data import CATEGORIES

# Raw records per category in the course's data (millions), for spreading a synthetic run.
COURSE_SHARE = {"Automotive": 2.00, "Electronics": 1.61, "Office_Products": 0.71,
                "Tools_and_Home_Improvement": 1.47, "Cell_Phones_and_Accessories": 1.29,
                "Toys_and_Games": 0.89, "Appliances": 0.094, "Musical_Instruments": 0.21}
COURSE_RAW = 8.3e6


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_mib() -> tuple[float, float]:
    """Peak resident memory (MiB) of this process and of its largest finished child."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own / 1024, child / 1024


def priced(records: list[dict], seed: int = 42) -> list[dict]:
    """The records with seeded prices: half missing, half log-normal (median about $33)."""
    rng = random.Random(seed)
    return [{**r, "price": round(rng.lognormvariate(3.5, 1.2), 2) if rng.random() < 0.5
             else None} for r in records]


def read_raw(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


def write_jsonl(records, path: Path) -> Path:
    with open(path, "wb") as f:
        for record in records:
            f.write(orjson.dumps(record) + b"\n")
    return path


def time_loads(label: str, sources: list[tuple[str, str]], workers: int) -> None:
    """Load every (category, source) once per process count; print records/s."""
    for n in (1, workers):
        start, cpu, read = time.perf_counter(), cpu_seconds(), 0
        for category, source in sources:
            loader = ItemLoader(category, source)
            loader.load(workers=n)
            read += loader.report.read
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        print(f"{label:<34} {n} process{'es' if n > 1 else '  '}: {read:>9,} raw records, "
              f"{read / wall:>8,.0f}/s wall, {read / cpu:>8,.0f}/s per CPU second", flush=True)


def loader_figures(raw: Path, workers: int, folder: Path) -> None:
    llama_tokens.warm_up()
    print("== the loader: raw records -> Items")
    time_loads("offline sample (8 categories)", [(c, "sample") for c in CATEGORIES], workers)
    real = write_jsonl(priced(read_raw(raw)), folder / "real.jsonl")
    time_loads(f"{raw.name} (seeded prices)", [("Appliances", str(real))], workers)


def write_course_sized(raw: Path, total: int, folder: Path) -> None:
    """`total` raw records as meta_<Category>.jsonl files, shared as in the course's data."""
    records = read_raw(raw)
    rng = random.Random(42)
    share = sum(COURSE_SHARE.values())
    for category in CATEGORIES:
        n = round(total * COURSE_SHARE[category] / share)
        with open(folder / f"meta_{category}.jsonl", "wb") as f:
            for i in range(n):
                record = records[i % len(records)]
                price = round(rng.lognormvariate(3.5, 1.2), 2) if rng.random() < 0.5 else None
                f.write(orjson.dumps({**record, "price": price}) + b"\n")


def pipeline(source: str, workers: int) -> None:
    """The whole curation in this (fresh) process, step by step as `curation.full` runs it,
    noting the peak memory after each step; prints its figures."""
    llama_tokens.warm_up()
    base = peak_mib()[0]
    start, cpu = time.perf_counter(), cpu_seconds()
    curated = curation.curate_all(source, workers)
    curated_peak = peak_mib()[0]
    chosen = len(curation.balanced_indices(*curation.prices_and_categories(curated)))
    chosen_peak = peak_mib()[0]
    train, test = curation.balanced_split(curated, None, 2_000)
    curation.save_split(train, test, curation.full_path(source, (None, 2_000)))
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    own, child = peak_mib()
    read, kept = sum(c.report.read for c in curated), sum(c.report.kept for c in curated)
    print(f"{read:,} raw records -> {kept:,} Items -> balanced sample {chosen:,} -> split "
          f"{len(train):,} train / {len(test):,} test, saved, in {wall:.1f}s, {workers} workers")
    print(f"  raw records/s: {read / wall:>7,.0f} wall, {read / cpu:>7,.0f} per CPU second "
          f"({cpu:.1f} CPU seconds in all processes)")
    print(f"  Items/s:       {kept / wall:>7,.0f} wall, {kept / cpu:>7,.0f} per CPU second")
    print(f"  the course's {COURSE_RAW / 1e6:.1f}M raw records at this rate: "
          f"{COURSE_RAW * cpu / read / 60 / 2:.1f} minutes on 2 cores")
    print(f"  peak RSS, main process: {base:,.0f} MiB after start-up, {curated_peak:,.0f} after "
          f"curating, {chosen_peak:,.0f} after balancing, {own:,.0f} after the split")
    print(f"  peak RSS, largest worker: {child:,.0f} MiB; main + {workers} workers "
          f"<= {own + workers * child:,.0f} MiB")
    # Curating streams (flat); balancing holds a few numbers per Item (grows with Items);
    # the split holds its Items (grows with the split, at most 402,000 in the course).
    scaled = (curated_peak + (chosen_peak - curated_peak) * COURSE_RAW / read
              + (own - chosen_peak) * 402_000 / (len(train) + len(test)))
    linear = base + (own - base) * COURSE_RAW / read
    print(f"  extrapolated to {COURSE_RAW / 1e6:.1f}M raw records and a 400,000 / 2,000 split: "
          f"main {scaled / 1024:.1f} GiB, with workers {(scaled + workers * child) / 1024:.1f} "
          f"GiB (growing everything linearly instead: {(linear + workers * child) / 1024:.1f} "
          f"GiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raw", type=Path,
                        default=Path("../shared/data/real_unpriced_meta.jsonl.gz"))
    parser.add_argument("--records", type=int, default=1_500_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pipeline", help=argparse.SUPPRESS)  # internal: run stage 2 here
    args = parser.parse_args()
    if args.pipeline:
        return pipeline(args.pipeline, args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        loader_figures(args.raw, args.workers, folder)
        print(f"\n== the pipeline: {args.records:,} raw records -> balanced split, saved")
        raw = folder / "raw"
        raw.mkdir()
        write_course_sized(args.raw, args.records, raw)
        subprocess.run([sys.executable, __file__, "--pipeline", str(raw),
                        "--workers", str(args.workers)], check=True,
                       env={**os.environ, "PRICER_DATA_DIR": str(folder / "data")})


if __name__ == "__main__":
    main()
