"""The course at its real sizes: every stage a learner runs, timed at 25k, 100k and 400k items.

    PRICER_DATA_DIR=$(mktemp -d) PYTHONPATH=. python benchmarks/scale.py \\
        --sizes 25000,100000,400000
    PYTHONPATH=. python benchmarks/scale.py --sizes 25000,100000,400000,800000  # resumes
    PYTHONPATH=. python benchmarks/scale.py --table                    # the table so far
    HF_TOKEN=... PYTHONPATH=. python benchmarks/scale.py --source hub  # the hub's records

For each training size it builds a corpus the way a learner does: raw records (the bundled
sample's generator, `sample_data`, in the hub's schema, spread evenly over the 8 categories;
or, with `--source hub`, the hub's raw files), curated into Items by `ItemLoader`, balanced
as the course balances (`curation.balanced_indices`, its cap of 1,200 a price bucket scaled
to the size asked for, and raised where that leaves too few), split into the size's training
items and 2,000 test items, saved and read back. On that split it times each classical
pricer's fit and its guesses for the 2,000 test items (the constant up to
`baselines.best()`), MiniLM sentence embeddings, the Chroma vector store's build from cached
embeddings and its 5-neighbour queries, the fitted ensemble of `ensemble.cpu_members()`, and
the Tester over the 2,000 test items with a pricer whose guesses are cached.

Each stage runs in a child process of its own, and its peak memory is the most that process
and the processes it starts (the loader's and the stack's workers) held at once: their
proportional set sizes summed, sampled twice a second, so that pages forked workers share
count once. Each process's own peak RSS is kept beside it. A stage that would take longer
than `--budget` seconds at a size (predicted from the smaller sizes, or found by a pilot run
on 2,000 items, or by running past the budget) is extrapolated instead: from its whole runs
at the two largest smaller sizes where it has them, else from runs on the first m and 2m
training items of this size's split. Time grows with the exponent between the two, or
linearly where that is below 1 (fixed costs weigh at small sizes), memory linearly; the
table marks such figures, an upper bound where a stage's fixed costs are large (the
stack's). The vector store and the fitted ensemble read cached embeddings, so they run whole
only at sizes where the embeddings ran whole. The growth exponent between two sizes is
log(t2/t1)/log(n2/n1): 1 is linear, 2 quadratic.

Results go, one stage and size at a time, into scale/results.json in the data folder; a
rerun skips what is there (delete a row, or the file, to measure again), and writes
scale/results.md, the table that docs/benchmarks.md shows. Every row records the load
average over its run and the CPU. `PRICER_THREADS` and the other settings apply as usual;
the embeddings take the fast mode, as the hub's data does, unless PRICER_EMBEDDINGS says exact.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hardware  # noqa: E402
import settings  # noqa: E402

TEST_SIZE = 2_000
COURSE_CAP, COURSE_ITEMS = 1_200, 402_000  # the course's bucket cap for its 400k + 2k split
RAW_PER_ITEM = 5.5  # synthetic raw records per item wanted: 39% are kept, about half balanced
PILOT = 2_000  # training items a stage is first tried on when nothing predicts its time
QUERIES = 200  # vector store queries timed one by one


# --- the corpus ---------------------------------------------------------------------------

def folder(size: int) -> Path:
    return settings.data_dir() / "scale" / f"{size}"


def split_folder(size: int) -> Path:
    return folder(size) / "split"


def source_of(size: int, source: str) -> str:
    return str(folder(size) / "raw") if source == "sample" else source


def raw_records(size: int, source: str) -> int:
    """Write the raw records of the 8 categories for `size` (the sample's generator)."""
    import sample_data

    if source != "sample":
        return 0
    per_category = math.ceil((size + TEST_SIZE) * RAW_PER_ITEM / len(sample_data.CATEGORIES))
    for category in sample_data.CATEGORIES:
        path = folder(size) / "raw" / f"meta_{category}.jsonl.gz"
        if not path.exists():
            sample_data.write(category, path, per_category, seed=42)
    return per_category * len(sample_data.CATEGORIES)


def curate(size: int, source: str) -> int:
    import curation

    curated = curation.curate_all(source_of(size, source), workers=settings.workers(),
                                  show_cached=False)
    return sum(part.report.read for part in curated)


def cap(size: int, prices: np.ndarray) -> int:
    """The course's cap a price bucket, scaled to `size`; raised where the synthetic prices
    crowd fewer buckets than the real ones, until the balanced sample holds the split."""
    counts = np.bincount(np.rint(prices).astype(np.int64), minlength=1001)
    whole, capped = counts[240:].sum(), counts[1:240]
    found = math.ceil(COURSE_CAP * (size + TEST_SIZE) / COURSE_ITEMS)
    while whole + np.minimum(capped, found).sum() < size + TEST_SIZE and found < capped.max():
        found = math.ceil(found * 1.1)
    return found


def curated(size: int, source: str):
    import curation

    return curation.curate_all(source_of(size, source), workers=settings.workers(),
                               show_cached=False)


def balance(size: int, source: str) -> int:
    import pickle

    import curation

    parts = curated(size, source)
    prices, _ = curation.prices_and_categories(parts)
    train, test = curation.balanced_split(parts, size, TEST_SIZE, cap=cap(size, prices))
    with open(folder(size) / "balanced.pkl", "wb") as f:
        pickle.dump((train, test), f, protocol=pickle.HIGHEST_PROTOCOL)
    return sum(part.report.kept for part in parts)


def save(size: int, source: str) -> int:
    import curation
    import pickles

    train, test = pickles.load(folder(size) / "balanced.pkl", "split")
    start = time.perf_counter()
    curation.save_split(train, test, split_folder(size))
    return len(train) + len(test), time.perf_counter() - start


def load(size: int, source: str) -> int:
    import curation

    train, test = curation.load_split(split_folder(size))
    return len(train) + len(test)


# --- the models ---------------------------------------------------------------------------

def the_split(size: int, limit: int | None = None):
    import curation

    train, test = curation.load_split(split_folder(size))
    return train[:limit] if limit else train, test


def pricer_rows(name: str, size: int, limit: int | None) -> list[dict]:
    """Fit the classical pricer `name`, then price the 2,000 test items: two rows."""
    import baselines

    train, test = the_split(size, limit)
    model = next(m for m in baselines.all_pricers(embeddings=False) if m.name == name)
    start = time.perf_counter()
    model.fit(train)
    fitted = time.perf_counter()
    model.predict_many(test)
    done = time.perf_counter()
    return [{"stage": f"fit: {name}", "items": len(train), "seconds": fitted - start},
            {"stage": f"predict 2,000: {name}", "items": len(test), "seconds": done - fitted,
             "fixed": True}]


def embed_rows(size: int, limit: int | None) -> list[dict]:
    """Encode the training texts afresh (their cached vectors forgotten first), then the test
    texts, which later stages read from the cache."""
    import sentences

    train, test = the_split(size, limit)
    sentences.clear_embedding_cache(train)
    start = time.perf_counter()
    sentences.embed(train)
    seconds = time.perf_counter() - start
    sentences.embed(test)
    return [{"stage": "sentence embeddings", "items": len(train), "seconds": seconds}]


def vector_rows(size: int, limit: int | None) -> list[dict]:
    """Build the store from cached embeddings, then 5-neighbour queries one at a time."""
    import tempfile

    import sentences
    import vectors

    train, test = the_split(size, limit)
    sentences.embed(train)
    sentences.embed(test[:QUERIES])
    with tempfile.TemporaryDirectory(dir=folder(size)) as where:
        start = time.perf_counter()
        store = vectors.VectorStore.build(train, path=where, progress=False)
        built = time.perf_counter() - start
        queried = []
        for item in test[:QUERIES]:
            start = time.perf_counter()
            store.similar([item], k=5)
            queried.append(time.perf_counter() - start)
    p50, p99 = np.percentile(queried, [50, 99]) * 1000
    return [{"stage": "vector store build (cached embeddings)", "items": len(train),
             "seconds": built},
            {"stage": f"vector store 5-neighbour query ({QUERIES} one by one)",
             "items": QUERIES, "seconds": float(sum(queried)), "fixed": True,
             "note": f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"}]


def ensemble_rows(size: int, limit: int | None) -> list[dict]:
    """The fitted ensemble of the stack and MiniLM + SVR, embeddings cached beforehand."""
    import sentences
    from ensemble import FittedEnsemble, cpu_members

    train, test = the_split(size, limit)
    sentences.embed(train)
    sentences.embed(test)
    model = FittedEnsemble(cpu_members())
    start = time.perf_counter()
    model.fit(train)
    fitted = time.perf_counter()
    model.predict_many(test)
    done = time.perf_counter()
    return [{"stage": "fit: fitted ensemble (embeddings cached)", "items": len(train),
             "seconds": fitted - start},
            {"stage": "predict 2,000: fitted ensemble", "items": len(test),
             "seconds": done - fitted, "fixed": True}]


def tester_rows(size: int, limit: int | None) -> list[dict]:
    """The Tester over the 2,000 test items, every line printed and the chart drawn, with
    a pricer that looks its guesses up (as a cached chat model's are)."""
    import contextlib
    import io

    import matplotlib

    matplotlib.use("Agg")
    from pricer import Pricer
    from testing import Tester

    _, test = the_split(size)

    class Cached(Pricer):
        name, needs_fit = "Cached guesses", False

        def __init__(self, guesses: dict[str, float]):
            self.guesses = guesses

        def _predict(self, items):
            return np.array([self.guesses[item.text] for item in items])

    cached = Cached({item.text: round(item.price * 1.1 + 5, 2) for item in test})
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        Tester.test(cached, test, size=TEST_SIZE, results=folder(size) / "results.csv")
    return [{"stage": "Tester on 2,000 items (cached pricer)", "items": len(test),
             "seconds": time.perf_counter() - start, "fixed": True}]


# --- stages -------------------------------------------------------------------------------

def corpus_stage(function, name: str):
    def rows(size: int, limit: int | None, source: str) -> list[dict]:
        start = time.perf_counter()
        answer = function(size, source)
        items, seconds = answer if isinstance(answer, tuple) else (answer, None)
        seconds = seconds if seconds is not None else time.perf_counter() - start
        return [{"stage": name, "items": items, "seconds": seconds}]
    return rows


def stages() -> dict:
    """Every stage, in the order a learner meets them: name -> rows(size, limit, source)."""
    import baselines

    found = {
        "raw records": corpus_stage(raw_records, "raw records (synthetic, 8 categories)"),
        "curate": corpus_stage(curate, "ItemLoader: raw records -> Items (8 categories)"),
        "balance": corpus_stage(balance, "balanced sample and split"),
        "save": corpus_stage(save, "split saved (pickles + parquet)"),
        "load": corpus_stage(load, "split loaded (parquet)"),
    }
    for model in baselines.all_pricers(embeddings=False):
        found[model.name] = (lambda name: lambda size, limit, source:
                             pricer_rows(name, size, limit))(model.name)
    found["embeddings"] = lambda size, limit, source: embed_rows(size, limit)
    found["vector store"] = lambda size, limit, source: vector_rows(size, limit)
    found["fitted ensemble"] = lambda size, limit, source: ensemble_rows(size, limit)
    found["tester"] = lambda size, limit, source: tester_rows(size, limit)
    return found


CORPUS = ("raw records", "curate", "balance", "save", "load")  # these run whole, in order
FIXED = ("tester",)  # work that does not grow with the training items
NEEDS_EMBEDDINGS = ("vector store", "fitted ensemble")


def child(stage: str, size: int, limit: int | None, source: str) -> None:
    """Run one stage here and print its rows, with its peak memory, as JSON."""
    load_before = os.getloadavg()[0]
    with TreePeak() as tree:
        rows = stages()[stage](size, limit, source)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    for row in rows:
        row.update(peak_mib=tree.peak_mib or own,  # own RSS where the kernel gives no PSS
                   own_peak_mib=own, workers_peak_mib=workers,
                   load=round((load_before + os.getloadavg()[0]) / 2, 2))
    print("ROWS " + json.dumps(rows), flush=True)


class TreePeak(threading.Thread):
    """The most memory this process and every process under it held at once, sampled every
    `every` seconds: the sum of their proportional set sizes (PSS, /proc/<pid>/smaps_rollup),
    which counts a page that forked workers share once, where their peak RSS counts it in
    each. 0 where the kernel does not give PSS."""

    def __init__(self, every: float = 0.5):
        super().__init__(daemon=True)
        self.every, self.peak_mib, self._done = every, 0.0, threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every):
            self.peak_mib = max(self.peak_mib, sum(pss_mib(pid) for pid in tree(os.getpid())))

    def __enter__(self) -> TreePeak:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self.join()


def tree(pid: int) -> list[int]:
    """`pid` and every process under it, from the kernel's lists of children."""
    found, waiting = [], [pid]
    while waiting:
        pid = waiting.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                waiting += [int(child) for child in task.read_text().split()]
            except OSError:  # gone meanwhile
                pass
    return found


def pss_mib(pid: int) -> float:
    """The process's proportional set size in MiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# --- the parent: plan, measure, extrapolate, tabulate --------------------------------------

class Results:
    """Rows by (stage key, size), kept in a JSON file, each written as soon as measured."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = json.loads(path.read_text()) if path.exists() else []

    def done(self, key: str, size: int) -> bool:
        return any(r["key"] == key and r["size"] == size for r in self.rows)

    def add(self, rows: list[dict]) -> None:
        self.rows += rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(self.rows, indent=1))
        partial.replace(self.path)

    def seconds(self, key: str, size: int) -> float | None:
        """The measured or extrapolated time of the stage `key`'s first row at `size`."""
        found = [r for r in self.rows if r["key"] == key and r["size"] == size]
        return found[0]["seconds"] if found else None


def run_child(stage: str, size: int, limit: int | None, source: str, timeout: float,
              log: Path) -> list[dict] | None:
    """The stage's rows from a fresh process; None when it ran past `timeout` seconds."""
    command = [sys.executable, __file__, "--child", stage, "--size", str(size),
               "--source", source] + (["--limit", str(limit)] if limit else [])
    with open(log, "a") as out:
        out.write(f"\n== {stage} at {size:,} (limit {limit})\n")
        out.flush()
        # A session of its own, so that a stage past its time goes with its workers.
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=out, text=True,
                              start_new_session=True) as done:
            try:
                stdout, _ = done.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(done.pid, signal.SIGKILL)
                done.communicate()
                out.write(f"-- ran past {timeout:.0f}s\n")
                return None
    lines = [line for line in stdout.splitlines() if line.startswith("ROWS ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{stage} at {size:,} failed (exit {done.returncode}); see {log}")
    return json.loads(lines[-1][5:])


def predicted(results: Results, key: str, size: int) -> float | None:
    """Seconds the stage should take at `size`, from the largest smaller size measured, grown
    with the exponent measured below it (at least 1)."""
    sizes = sorted({r["size"] for r in results.rows if r["key"] == key and r["size"] < size})
    if not sizes:
        return None
    last = sizes[-1]
    exponent = 1.0
    if len(sizes) > 1:
        earlier = sizes[-2]
        exponent = max(1.0, growth(results.seconds(key, earlier), results.seconds(key, last),
                                   earlier, last))
    return results.seconds(key, last) * (size / last) ** exponent


def growth(t1: float, t2: float, n1: int, n2: int) -> float:
    """The exponent b of t = c n^b through two measurements."""
    return math.log(max(t2, 1e-9) / max(t1, 1e-9)) / math.log(n2 / n1)


def extrapolated(small: list[dict], large: list[dict], n1: int, n2: int, size: int,
                 how: str) -> list[dict]:
    """Rows at `size` from rows measured on n1 and n2 training items: time grown with the
    exponent between them, at least 1 (below it, fixed costs or noise weigh at the small
    sizes: work that touches every item grows at least linearly), a fixed-size row keeping the
    larger measurement; memory grown linearly, never below the larger measurement."""
    rows = []
    for a, b in zip(small, large, strict=True):
        fixed = b.get("fixed", False)
        measured = growth(a["seconds"], b["seconds"], n1, n2)
        exponent = 0.0 if fixed else max(1.0, measured)
        grown = (size / n2) ** exponent
        more = 0.0 if fixed else max(0.0, b["peak_mib"] - a["peak_mib"]) * (size - n2) / (n2 - n1)
        row = {**b, "seconds": b["seconds"] * grown, "items": b["items"] if fixed else size,
               "extrapolated": f"from {how} of {n1:,} and {n2:,} items, exponent "
                               f"{measured:.2f}"
                               + ("" if fixed or measured >= 1 else ", grown linearly"),
               "peak_mib": b["peak_mib"] + more}
        if b.get("note"):
            row["note"] = f"{b['note']} on {n2:,} items"
        rows.append(row)
    return rows


def whole_rows(results: Results, key: str, size: int) -> dict[int, list[dict]]:
    """The stage's rows by smaller size, where it ran whole (on a split of that size)."""
    found: dict[int, list[dict]] = {}
    for row in results.rows:
        if row["key"] == key and row["size"] < size:
            found.setdefault(row["size"], []).append(row)
    return {n: rows for n, rows in sorted(found.items())
            if not any(r.get("extrapolated") for r in rows)}


def measure(stage: str, size: int, source: str, budget: float, results: Results,
            log: Path) -> None:
    """Measure `stage` at `size` whole when it fits the budget; else grow it from its whole
    runs at the two largest smaller sizes, or from runs on m and 2m of this split's items."""
    guess = predicted(results, stage, size)
    pilot = None
    # The store and the ensemble read cached embeddings: whole only where they were made.
    cached = stage not in NEEDS_EMBEDDINGS or results.done("embeddings", size) and not any(
        r.get("extrapolated") for r in results.rows
        if r["key"] == "embeddings" and r["size"] == size)
    if guess is None and stage not in CORPUS and stage not in FIXED and size > 2 * PILOT:
        pilot = run_child(stage, size, PILOT, source, budget, log)
        if pilot is not None:
            guess = pilot[0]["seconds"] * (size / PILOT) ** 1.5  # a cautious guess
    rows = None
    if stage in CORPUS or stage in FIXED or (cached and (guess is None or guess <= budget)):
        rows = run_child(stage, size, None, source, 3 * budget if stage in CORPUS else budget,
                         log)
    whole = whole_rows(results, stage, size)
    if rows is None and len(whole) >= 2:
        (n1, small), (n2, large) = list(whole.items())[-2:]
        rows = extrapolated(small, large, n1, n2, size, "whole runs")
    if rows is None:  # too slow whole: two smaller runs on this split, grown to size
        m = size // 2
        while m > PILOT // 2 and (guess or math.inf) * (2 * m / size) ** 1.2 > budget / 2:
            m //= 2
        m = max(m // 2, PILOT // 2)
        small = pilot if pilot is not None and m == PILOT else run_child(
            stage, size, m, source, budget, log)
        large = run_child(stage, size, 2 * m, source, budget, log)
        if small is None or large is None:
            raise RuntimeError(f"{stage} takes over {budget:.0f}s even on {2 * m:,} items")
        rows = extrapolated(small, large, m, 2 * m, size, "runs")
    cpu = str(hardware.cpu())
    results.add([{**row, "key": stage, "size": size, "cpu": cpu,
                  "threads": settings.threads(size), "embeddings": settings.embeddings()}
                 for row in rows])


def table(results: Results, sizes: list[int]) -> str:
    """Markdown: a row per stage in the order a learner meets them, a column group per size,
    the growth exponents last."""
    order = {key: i for i, key in enumerate(stages())}
    names = list(dict.fromkeys(r["stage"] for r in sorted(
        results.rows, key=lambda r: order.get(r["key"], len(order)))))
    head = "| stage | " + " | ".join(f"{s:,}: time | items/s | peak MiB" for s in sizes)
    head += " | growth |"
    lines = [head, "|---|" + "---:|---:|---:|" * len(sizes) + "---|"]
    notes = []
    for name in names:
        cells, times = [name], []
        for size in sizes:
            row = next((r for r in results.rows if r["stage"] == name and r["size"] == size),
                       None)
            if row is None:
                cells += ["-", "-", "-"]
                continue
            mark = "*" if row.get("extrapolated") else ""
            cells += [f"{duration(row['seconds'])}{mark}",
                      f"{row['items'] / max(row['seconds'], 1e-9):,.0f}{mark}",
                      f"{row['peak_mib']:,.0f}{mark}"]
            times.append((size, row["seconds"]))
            if row.get("note"):
                notes.append(f"{name} at {size:,}: {row['note']}")
            if row.get("extrapolated"):
                notes.append(f"{name} at {size:,}: extrapolated {row['extrapolated']}")
        exponents = [f"{growth(t1, t2, n1, n2):.2f}"
                     for (n1, t1), (n2, t2) in zip(times, times[1:], strict=False)]
        cells.append(", ".join(exponents) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"- {note}" for note in notes])


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="25000,100000,400000",
                        help="training sizes, comma-separated (each with 2,000 test items)")
    parser.add_argument("--source", default="sample", help="sample (offline) or hub")
    parser.add_argument("--stages", help="only these stages, comma-separated")
    parser.add_argument("--budget", type=float, default=1200,
                        help="seconds a stage may run whole at one size before it is "
                             "measured smaller and extrapolated")
    parser.add_argument("--table", action="store_true", help="print the table and stop")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.size, args.limit, args.source)
    # The synthetic corpus stands in for the hub's data, which embeds in the fast mode.
    os.environ.setdefault("PRICER_EMBEDDINGS", "fast")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    out = settings.data_dir() / "scale"
    results = Results(out / "results.json")
    cpu = hardware.cpu()
    print(f"CPU: {cpu.name}; fastest matrix path {cpu.fastest}; bf16 {cpu.bf16}; "
          f"{settings.cores()} cores; flags: {' '.join(sorted(cpu.flags))}")
    print(f"Python {platform.python_version()}, threads by size "
          f"{[settings.threads(s) for s in sizes]}, load average {os.getloadavg()}")
    if not args.table:
        wanted = args.stages.split(",") if args.stages else list(stages())
        plan = [(size, stage) for size in sizes for stage in wanted
                if not results.done(stage, size)]
        with tqdm(plan, unit="stage") as bar:
            for size, stage in bar:
                bar.set_description(f"{stage} at {size:,}")
                folder(size).mkdir(parents=True, exist_ok=True)
                measure(stage, size, args.source, args.budget, results, out / "log.txt")
    markdown = table(results, sizes)
    (out / "results.md").write_text(markdown + "\n")
    print(markdown)
    print(f"\n{results.path} and {out / 'results.md'}")


if __name__ == "__main__":
    main()
