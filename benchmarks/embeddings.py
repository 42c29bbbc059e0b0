"""Sentence embeddings at the hardware's speed: every precision's encoding rate beside its
bound, what the fast mode costs a pricer in accuracy, and the vector store built from cached
vectors at 50,000 items and more, with its 5-neighbour queries.

    PRICER_DATA_DIR=$(mktemp -d) PYTHONPATH=. python benchmarks/embeddings.py \\
        --data ../shared/data/real_priced_items.jsonl.gz
    PRICER_DATA_DIR=$(mktemp -d) PYTHONPATH=. python benchmarks/embeddings.py --data ... \\
        --texts 96 --pool 1500 --test-size 500 --seeds 42 --store-sizes 5000   # a quick look
    ... --seeds "" --store-sizes ""                           # the encoding rates alone
    ... --texts 8 --pool 20000 --test-size 2000 --seeds "" --store-sizes "" --cache-vectors 0 \
        --svr-items 1500,3000,6000,12500 --svr-seeds 42,7,1234   # what capping the SVR costs

1. The CPU's model, flags, clock and cores (`hardware.cpu()`), and each precision's peak:
   the practical one, a 2,048-square matrix product in torch on every core (float64, float32,
   and bf16 where the CPU has it natively), timed here, in the same run; and the nominal one
   from the flags and clock (`nominal`), an upper bound.
2. MiniLM's FLOPs for each real text (2 per weight of its six layers per token, plus
   attention's 4 x tokens^2 x width per layer; about 3.5 GFLOP for a text of 160 tokens),
   so each precision's bound in texts/s is its peak over the mean FLOPs.
3. `--texts` real texts encoded by every path, side by side, each timed twice after a
   warm-up (the better of the two, as the machine may be shared; and the texts encoded per
   second of the CPU time the process took, all threads together, which contention on a
   shared machine slows less): the exact mode before the
   change (float64 on one thread), float64 on every core, torch in float32 and with bf16
   autocast, and OpenVINO in float32 and bf16 (the fast mode's path), with texts/s, the share
   of the precision's bound, the speed-up over float64 on one thread, and each path's lowest
   and mean cosine to the float64 vector.
4. Accuracy: `--pool` real products embedded in each mode, split by each of `--seeds` into
   `--test-size` held-out items and the rest to train; MiniLM + SVR and MiniLM + Ridge
   (`baselines.EmbeddingPricer`) fitted on each mode's vectors; the mean absolute error of
   each, and the fast mode's difference, per seed and as mean +- standard deviation.
5. The vector store, from cached vectors, at each of `--store-sizes` items: products made
   from the pool's (each text with a listing number, its fast vector moved by noise to a
   cosine of about 0.9, as many listings of one product), cached, then `VectorStore.build`
   timed (items/s by the clock and by the CPU time the process took: the second is what a
   quiet machine would show); 5-neighbour queries for 500 pool products, one at a time, from
   their vectors (p50 / p99 ms) and their recall of the exact 5 nearest; the growth between
   sizes, and the build time and p99 projected to 400,000 items with it.
6. MiniLM + SVR on `--svr-items` training items at most (`baselines.SVR_ITEMS`, its cap at
   the real sizes), in the fast mode, per seed of `--svr-seeds`: its error on the held-out
   items and its fit time, to show what the cap costs as the items it learns from double.
7. The embedding cache: `--cache-vectors` made-up vectors appended 1,024 at a time, the bytes
   written, and the seconds a fresh cache takes to read them all back.

Exact embeddings for the accuracy step are encoded with PRICER_THREADS set to every core (the
same float64 vectors to ~1e-15 as on one thread), in a fresh data folder a run of about 40
minutes on 2 free cores; a rerun reads them from the cache.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import tempfile
import time
import unittest.mock
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from baselines_real import load_items

import baselines
import curation
import hardware
import sentences
import settings
from baselines import EmbeddingPricer
from items import Item
from testing import Tester
from vectors import VectorStore

FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "asimd")
FULL = 400_000
QUERIES = 500


@contextmanager
def env(**values: str):
    """Settings set for the block (read when used), then restored."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def clock_hz() -> float:
    """The cores' clock, the highest "cpu MHz" in /proc/cpuinfo (0 where there is none)."""
    path = Path("/proc/cpuinfo")
    lines = path.read_text().splitlines() if path.exists() else []
    mhz = [float(line.split(":")[1]) for line in lines if line.startswith("cpu MHz")]
    return max(mhz, default=0.0) * 1e6


def nominal(arithmetic: str) -> float:
    """FLOP/s the flags and clock allow on every core, at most: two FMA units of the widest
    vector the flags list (2 FLOPs a lane), bf16 dot products twice float32's lanes, AMX's
    tiles 1,024 bf16 products a cycle. Some CPUs run 512-bit instructions on 256-bit units
    (AMD's Zen 4), which halves it: the measured matrix product is the practical bound."""
    flags = hardware.cpu().flags
    width = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    per_cycle = {"float64": width / 16, "float32": width / 8}
    per_cycle["bf16"] = (2048 if "amx_bf16" in flags else 2 * per_cycle["float32"]
                         if "avx512_bf16" in flags else per_cycle["float32"])
    return per_cycle[arithmetic] * clock_hz() * settings.cores()


def peak(dtype: torch.dtype, size: int = 2048, rounds: int = 5) -> float:
    """FLOP/s of a `size`-square matrix product in `dtype` on every core: the best of `rounds`."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    with settings.torch_threads(settings.cores()):
        a @ b
        best = math.inf
        for _ in range(rounds):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def flops_per_text(texts: list[str]) -> float:
    """Mean FLOPs to encode one of `texts`: each layer weight multiplies and adds once per
    token (2 FLOPs), attention's scores and weighted sum take 2 x tokens^2 x width each."""
    encoder = sentences.sentence_encoder("cpu", "float32")
    config = encoder[0].auto_model.config
    weights = sum(module.weight.numel() for name, module in encoder.named_modules()
                  if isinstance(module, torch.nn.Linear) and ".encoder.layer." in name)
    tokens = np.array([len(ids) for ids in encoder.tokenizer(
        texts, truncation=True, max_length=encoder.max_seq_length)["input_ids"]], dtype=float)
    attention = 4 * config.num_hidden_layers * config.hidden_size * tokens ** 2
    return float(np.mean(2 * weights * tokens + attention))


def torch_encode(texts: list[str], autocast: bool) -> np.ndarray:
    """MiniLM in torch float32 on every core, with bf16 matrix products when `autocast`."""
    model = sentences.sentence_encoder("cpu", "float32")
    with settings.torch_threads(settings.cores()), torch.autocast("cpu", enabled=autocast):
        return model.encode(texts, batch_size=64, normalize_embeddings=True,
                            show_progress_bar=False).astype(np.float32)


def paths() -> dict[str, tuple[str, callable]]:
    """Each encoding path: its precision (for the bound) and a function of the texts."""
    cores = str(settings.cores())
    found = {
        "float64, 1 thread (exact, before)": ("float64", lambda t: encode_with("float64", t, "1")),
        f"float64, {cores} threads": ("float64", lambda t: encode_with("float64", t, cores)),
        "float32, torch": ("float32", lambda t: torch_encode(t, False)),
        "float32, OpenVINO (fast without bf16)": ("float32", lambda t: encode_with("float32", t)),
    }
    if hardware.cpu().bf16:
        found["bf16 autocast, torch"] = ("bf16", lambda t: torch_encode(t, True))
        found["bf16, OpenVINO (fast)"] = ("bf16", lambda t: encode_with("bf16", t))
    return found


def encode_with(arithmetic: str, texts: list[str], threads: str = "1") -> np.ndarray:
    with env(PRICER_THREADS=threads):
        return sentences.encode(texts, arithmetic)


def encoding(texts: list[str], peaks: dict[str, float], rounds: int = 2) -> list[dict]:
    """Every path's rate on `texts`, the better of `rounds` interleaved timings."""
    flops = flops_per_text(texts)
    reference = encode_with("float64", texts).astype(np.float64)
    found = paths()
    for _, run in found.values():
        run(texts[:8])  # loaded, compiled and warm before anything is timed
    best, cpu = dict.fromkeys(found, math.inf), dict.fromkeys(found, math.inf)
    vectors = {}
    for _ in range(rounds):
        for name, (_, run) in found.items():
            start, used = time.perf_counter(), time.process_time()
            vectors[name] = run(texts)
            best[name] = min(best[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - used)
    rows = []
    for name, (arithmetic, _) in found.items():
        rate, cosines = len(texts) / best[name], np.sum(reference * vectors[name], axis=1)
        rows.append({"path": name, "precision": arithmetic, "rate": rate,
                     "per_cpu": len(texts) / cpu[name],
                     "gflops": rate * flops / 1e9, "bound": peaks[arithmetic] / flops,
                     "nominal": nominal(arithmetic) / flops,
                     "low": cosines.min(), "mean": cosines.mean()})
    before = rows[0]["rate"]
    print(f"MiniLM: {flops / 1e9:.2f} GFLOP per text on average over {len(texts)} real texts")
    print("| path | texts/s | texts per CPU second | GFLOP/s | bound texts/s, measured peak | "
          "share | bound, flags and clock | share | vs before | cosine to float64, lowest / "
          "mean |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['path']} | {r['rate']:.1f} | {r['per_cpu']:.1f} | {r['gflops']:.0f} | "
              f"{r['bound']:.1f} | "
              f"{r['rate'] / r['bound']:.0%} | {r['nominal']:.1f} | "
              f"{r['rate'] / r['nominal']:.0%} | {r['rate'] / before:.1f}x | "
              f"{r['low']:.6f} / {r['mean']:.6f} |")
    return rows


def accuracy(pool: list[Item], test_size: int, seeds: list[int]) -> None:
    """MiniLM + SVR and + Ridge fitted on exact and on fast vectors, per split seed."""
    with env(PRICER_THREADS=str(settings.cores())):
        for mode in ("exact", "fast"):
            start = time.perf_counter()
            sentences.embed(pool, mode=mode)
            print(f"{len(pool):,} texts embedded in {mode} mode "
                  f"({sentences.precision(mode)}): {time.perf_counter() - start:,.0f} s "
                  "(0 when cached)", flush=True)
    print("| seed | model | exact | fast | fast - exact |\n|---|---|---:|---:|---:|")
    differences: dict[str, list[float]] = {}
    errors: dict[tuple[str, str], list[float]] = {}
    for seed in seeds:
        train, test = curation.split(pool, len(pool) - test_size, test_size, seed)
        for kind in ("svr", "ridge"):
            scored = {}
            for mode in ("exact", "fast"):
                with env(PRICER_EMBEDDINGS=mode):
                    model = EmbeddingPricer(kind).fit(train)
                scored[mode] = Tester.test(model, test, size=len(test), verbose=False,
                                           chart=False, results=False).average_error
                errors.setdefault((model.name, mode), []).append(scored[mode])
            differences.setdefault(model.name, []).append(scored["fast"] - scored["exact"])
            print(f"| {seed} | {model.name} | ${scored['exact']:.2f} | ${scored['fast']:.2f} | "
                  f"{scored['fast'] - scored['exact']:+.2f} |", flush=True)
    for name, moved in differences.items():
        exact, fast = errors[name, "exact"], errors[name, "fast"]
        print(f"| mean +- sd | {name} | ${np.mean(exact):.2f} +- {np.std(exact):.2f} | "
              f"${np.mean(fast):.2f} +- {np.std(fast):.2f} | {np.mean(moved):+.2f} +- "
              f"{np.std(moved):.2f} |")


def svr_curve(pool: list[Item], test_size: int, seeds: list[int], sizes: list[int]) -> None:
    """MiniLM + SVR's error, fast mode, learning from at most each of `sizes` items."""
    sentences.embed(pool, mode="fast")
    print("| seed | SVR items | error | fit s |\n|---|---:|---:|---:|")
    errors: dict[int, list[float]] = {}
    for seed in seeds:
        train, test = curation.split(pool, len(pool) - test_size, test_size, seed)
        for size in sizes:
            with env(PRICER_EMBEDDINGS="fast"), \
                    unittest.mock.patch.object(baselines, "SVR_ITEMS", size):
                start = time.perf_counter()
                model = EmbeddingPricer("svr").fit(train)
                seconds = time.perf_counter() - start
            error = Tester.test(model, test, size=len(test), verbose=False, chart=False,
                                results=False).average_error
            errors.setdefault(min(size, len(train)), []).append(error)
            print(f"| {seed} | {min(size, len(train)):,} | ${error:.2f} | {seconds:.0f} |",
                  flush=True)
    for size, found in errors.items():
        print(f"| mean +- sd | {size:,} | ${np.mean(found):.2f} +- {np.std(found):.2f} | |")


def listings(pool: list[Item], vectors: np.ndarray, n: int) -> tuple[list[Item], np.ndarray]:
    """`n` products made from the pool's: its text with a listing number and `n`, its vector
    moved by noise (seeded by `n`) to a cosine of about 0.9 with the original. The embedding
    cache holds a text's first vector: a text names one vector, in every size and every run."""
    rows = np.arange(n) % len(pool)
    made = vectors[rows] + np.random.default_rng(n).normal(
        0, 0.5 / math.sqrt(vectors.shape[1]), (n, vectors.shape[1]))
    made = (made / np.linalg.norm(made, axis=1, keepdims=True)).astype(np.float32)
    items = [Item.from_text(f"{pool[row].text}\nListing {i} of {n}", pool[row].price,
                            pool[row].category) for i, row in enumerate(rows)]
    return items, made


def store(pool: list[Item], sizes: list[int]) -> None:
    """Build rate from cached vectors, query latency and recall at each size; growth."""
    arithmetic = sentences.precision("fast")
    vectors = sentences.embed(pool, mode="fast")
    VectorStore.build(pool[:10], tempfile.mkdtemp(prefix="store-"), progress=False,
                      mode="fast")  # Chroma imported and started before anything is timed
    rng = np.random.default_rng(0)
    queries = rng.choice(len(pool), min(QUERIES, len(pool)), replace=False)
    print("| items | build s | items/s by the clock | items/s by CPU time | query p50 / p99 ms "
          "| recall of the exact 5 nearest |\n|---:|---:|---:|---:|---:|---:|")
    rows = []
    for n in sizes:
        items, made = listings(pool, vectors, n)
        cache = sentences._cache
        cache.add(arithmetic, {cache.key(item.text): (vector, 0.0)
                               for item, vector in zip(items, made, strict=True)})
        folder = Path(tempfile.mkdtemp(prefix="store-"))
        start, cpu = time.perf_counter(), time.process_time()
        built = VectorStore.build(items, folder, progress=False, mode="fast")
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        latencies, recalls = [], []
        for row in queries:
            start = time.perf_counter()
            near = built.nearest(vectors[row:row + 1], [pool[row].text], 5)[0]
            latencies.append(time.perf_counter() - start)
            exact = np.argsort(-(made @ vectors[row]))[:5]
            recalls.append(len({n.text for n in near} & {items[i].text for i in exact}) / 5)
        p50, p99 = np.percentile(latencies, [50, 99]) * 1000
        rows.append({"n": n, "wall": wall, "p99": p99})
        print(f"| {n:,} | {wall:,.1f} | {n / wall:,.0f} | {n / cpu:,.0f} | {p50:.1f} / "
              f"{p99:.1f} | {np.mean(recalls):.3f} |", flush=True)
    if len(rows) > 1:
        a, b = rows[-2], rows[-1]
        grow = math.log(b["wall"] / a["wall"]) / math.log(b["n"] / a["n"])
        query = math.log(b["p99"] / a["p99"]) / math.log(b["n"] / a["n"])
        seconds = b["wall"] * (FULL / b["n"]) ** grow
        print(f"growth from {a['n']:,} to {b['n']:,}: build time n^{grow:.2f}, query p99 "
              f"n^{query:.2f}; projected to {FULL:,} items: build {seconds / 60:,.1f} min "
              f"({FULL / seconds:,.0f} items/s), query p99 "
              f"{b['p99'] * (FULL / b['n']) ** max(query, 0):.1f} ms")


def cache_speed(n: int) -> None:
    """`n` made-up vectors appended to an empty cache 1,024 at a time (as `embed` does): the
    bytes written by this process, and the seconds to read them all back afresh."""
    folder = Path(tempfile.mkdtemp(prefix="cache-"))
    keys = [sentences.EmbeddingCache.key(f"text {i}") for i in range(n)]
    vectors = np.random.default_rng(0).random((n, sentences.WIDTH), np.float32)
    cache, written = sentences.EmbeddingCache(folder), written_bytes()
    start = time.perf_counter()
    for first in range(0, n, sentences.CHUNK):
        rows = range(first, min(first + sentences.CHUNK, n))
        cache.add("float32", {keys[row]: (vectors[row], 0.0) for row in rows})
    seconds, written = time.perf_counter() - start, written_bytes() - written
    start, cpu = time.perf_counter(), time.process_time()
    read, _, found = sentences.EmbeddingCache(folder).gather("float32", keys)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert found.all() and np.array_equal(read, vectors)
    print(f"Cache: {n:,} vectors appended {sentences.CHUNK:,} at a time in {seconds:.1f} s, "
          f"{written / 1e6:,.0f} MB written ({written / vectors.nbytes:.2f} x the vectors' "
          f"bytes); read back by a fresh cache in {wall:.1f} s ({cpu:.1f} s of CPU time)")


def written_bytes() -> int:
    """Bytes this process has written so far (Linux's /proc/self/io; 0 elsewhere)."""
    path = Path("/proc/self/io")
    lines = path.read_text().splitlines() if path.exists() else []
    return next((int(line.split()[1]) for line in lines if line.startswith("wchar:")), 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="real_priced_items.jsonl.gz")
    parser.add_argument("--texts", type=int, default=192, help="real texts each path encodes")
    parser.add_argument("--pool", type=int, default=4000, help="real products for accuracy")
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--seeds", default="42,7,1234")
    parser.add_argument("--store-sizes", default="12500,50000")
    parser.add_argument("--svr-items", default="", help="MiniLM + SVR's caps to compare")
    parser.add_argument("--svr-seeds", default="42,7,1234")
    parser.add_argument("--cache-vectors", type=int, default=FULL,
                        help="made-up vectors appended to the cache and read back (0: none)")
    args = parser.parse_args()

    cpu = hardware.cpu()
    print(f"CPU: {cpu}; flags: {' '.join(f for f in FLAGS if f in cpu.flags)}; clock "
          f"{clock_hz() / 1e9:.2f} GHz; {settings.cores()} cores; fast mode: "
          f"{sentences.precision('fast')}; load average {os.getloadavg()[0]:.1f}")
    peaks = {"float64": peak(torch.float64), "float32": peak(torch.float32)}
    if cpu.bf16:
        peaks["bf16"] = peak(torch.bfloat16)
    print("Peak on every core, measured (a matrix product) / from the flags and clock: " +
          ", ".join(f"{name} {value / 1e9:,.0f} / {nominal(name) / 1e9:,.0f} GFLOP/s"
                    for name, value in peaks.items()))
    items, _, _ = load_items(args.data)
    random.Random(0).shuffle(items)
    encoding([item.text for item in items[:args.texts]], peaks)
    pool = items[:args.pool]
    if args.seeds:
        accuracy(pool, args.test_size, [int(s) for s in args.seeds.split(",")])
    if args.svr_items:
        svr_curve(pool, args.test_size, [int(s) for s in args.svr_seeds.split(",")],
                  [int(s) for s in args.svr_items.split(",")])
    if args.store_sizes:
        store(pool, [int(s) for s in args.store_sizes.split(",")])
    if args.cache_vectors:
        cache_speed(args.cache_vectors)
    print(f"load average at the end {os.getloadavg()[0]:.1f}; peak memory "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB")


if __name__ == "__main__":
    main()
