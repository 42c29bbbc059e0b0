"""The vector store's speed and size: build rate, query latency, disk, projected to 400k items.

    PRICER_DATA_DIR=$(mktemp -d) PYTHONPATH=. python benchmarks/vectors_real.py \
        --data ../shared/data/real_priced_items.jsonl.gz
    PRICER_DATA_DIR=$(mktemp -d) PYTHONPATH=. python benchmarks/vectors_real.py --data ... \
        --limit 2000 --queries 200                        # a quicker look
    PRICER_THREADS=2 ... --limit 300 --queries 50          # on 2 cores, as the target says

For the lite split (the offline sample's Appliances) and for the training items of the real
pool (a seeded split holding out 2,000, as benchmarks/baselines_real.py does), it builds the
store twice, each time into an empty folder: first with nothing cached, so the rate includes
encoding every text with MiniLM; then again, reusing the cached embeddings (Chroma's own rate).
Then 5-neighbour queries, one at a time, for held-out items: their vectors ready (the store's
latency), and from text (encoding the query too). Disk is the second store's folder. The
full 400,000-item split cannot run here; it is projected linearly from the pool's figures
(a store's build and disk grow about linearly; HNSW queries grow about logarithmically).
Run it in a fresh data folder (PRICER_DATA_DIR), or cached embeddings hide the encoding.

Then the physical bound on the build rate with encoding included: MiniLM's FLOPs per text
(2 per weight of its layers per token, plus attention's 4 x tokens^2 x width per layer, for
the real pool's texts as its tokenizer cuts them) against the float32 and float64 peak of the
cores that PRICER_THREADS lets torch use (AVX2 + FMA without AVX-512: 32 float32 or 16
float64 FLOPs per cycle per core, at the clock /proc/cpuinfo gives), with Chroma's cached rate
added in series; beside it, the encoding rate measured on `--encode-texts` real texts in
float64 (the project's embeddings, identical on any CPU) and in float32, and what share of the
bound each reaches.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from baselines_real import load_items

import curation
import sentences
import settings
import vectors
from items import Item
from vectors import VectorStore

FULL = 400_000
QUERIES = 500
ENCODE_TEXTS = 300
TARGET = 200  # items/s, encoding included, on 2 cores
FLOPS_PER_CYCLE = {"float32": 32, "float64": 16}  # per core: two 256-bit FMAs (AVX2, FMA)


def size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def measure(name: str, train: list[Item], queries: list[Item]) -> dict:
    """Build rates (cold, cached), query latencies (vector, text) and disk for one set."""
    scratch = Path(tempfile.mkdtemp(prefix="vectors-"))
    start = time.perf_counter()
    VectorStore.build(train, scratch / "cold", progress=False)
    cold = len(train) / (time.perf_counter() - start)
    start = time.perf_counter()
    store = VectorStore.build(train, scratch / "cached", progress=False)
    cached = len(train) / (time.perf_counter() - start)
    vectors = sentences.embed(queries)
    texts = [item.text for item in queries]
    by_vector = []
    for row in range(len(queries)):
        start = time.perf_counter()
        store.nearest(vectors[row:row + 1], texts[row:row + 1], 5)
        by_vector.append(time.perf_counter() - start)
    sentences.clear_embedding_cache(queries[:100])
    by_text = []
    for item in queries[:100]:
        start = time.perf_counter()
        store.similar([item], 5)
        by_text.append(time.perf_counter() - start)
    return {"set": name, "items": len(train), "cold": cold, "cached": cached,
            "p50": np.percentile(by_vector, 50) * 1000, "p99": np.percentile(by_vector, 99) * 1000,
            "text_p50": np.percentile(by_text, 50) * 1000,
            "text_p99": np.percentile(by_text, 99) * 1000,
            "disk": size(scratch / "cached") / 1e6}


def projected(row: dict) -> dict:
    scale = FULL / row["items"]
    return {**row, "set": f"{FULL:,} items (projected)", "items": FULL,
            "disk": row["disk"] * scale, "p50": np.nan, "p99": np.nan,
            "text_p50": np.nan, "text_p99": np.nan}


def table(rows: list[dict]) -> str:
    lines = ["| set | items | build items/s, encoding included | build items/s, cached "
             "embeddings | build time, encoding included | query p50 / p99 (ms) | from text "
             "p50 / p99 (ms) | disk (MB) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        queries = "-" if np.isnan(r["p50"]) else f"{r['p50']:.1f} / {r['p99']:.1f}"
        texts = "-" if np.isnan(r["text_p50"]) else f"{r['text_p50']:.0f} / {r['text_p99']:.0f}"
        lines.append(f"| {r['set']} | {r['items']:,} | {r['cold']:,.0f} | {r['cached']:,.0f} | "
                     f"{r['items'] / r['cold'] / 60:,.1f} min | {queries} | {texts} | "
                     f"{r['disk']:,.1f} |")
    return "\n".join(lines)


def clock_hz() -> float:
    """The cores' clock, the highest "cpu MHz" in /proc/cpuinfo."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    return max(float(line.split(":")[1]) for line in lines if line.startswith("cpu MHz")) * 1e6


def flops_per_text(encoder, texts: list[str]) -> float:
    """Mean FLOPs to encode one of `texts`: each layer weight multiplies and adds once per
    token (2 FLOPs), attention's scores and weighted sum take 2 x tokens^2 x width each."""
    config = encoder[0].auto_model.config
    weights = sum(module.weight.numel() for name, module in encoder.named_modules()
                  if isinstance(module, torch.nn.Linear) and ".encoder.layer." in name)
    tokens = np.array([len(ids) for ids in encoder.tokenizer(
        texts, truncation=True, max_length=encoder.max_seq_length)["input_ids"]], dtype=float)
    attention = 4 * config.num_hidden_layers * config.hidden_size * tokens ** 2
    return float(np.mean(2 * weights * tokens + attention))


def encode_rate(encoder, texts: list[str]) -> float:
    """Texts encoded per second, batched as sentences.embed does, after a warm-up batch."""
    with settings.torch_threads():
        encoder.encode(texts[:8])
        start = time.perf_counter()
        encoder.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return len(texts) / (time.perf_counter() - start)


def bounds(texts: list[str], pool: dict) -> str:
    """The bound on the pool's build rate from MiniLM's FLOPs and the cores' peak, beside
    the measured rates, for float64 and float32."""
    encoder = sentences.sentence_encoder()
    flops, cores, clock = flops_per_text(encoder, texts), settings.threads(), clock_hz()
    lines = [f"MiniLM: {flops / 1e9:.2f} GFLOP per real text; {cores} core(s) at "
             f"{clock / 1e9:.2f} GHz", "| precision | peak GFLOP/s | encode bound items/s | "
             "encode measured items/s | share | build bound items/s, encoding included | "
             "build measured | share |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for precision, model in [("float64", encoder),
                             ("float32", copy.deepcopy(encoder).to(torch.float32))]:
        peak = cores * FLOPS_PER_CYCLE[precision] * clock
        bound, rate = peak / flops, encode_rate(model, texts)
        build = 1 / (1 / bound + 1 / pool["cached"])  # encoding, then Chroma, one after another
        measured = (f"{pool['cold']:,.1f} | {pool['cold'] / build:.0%}" if precision == "float64"
                    else "- | -")  # the store is built from the project's float64 embeddings
        lines.append(f"| {precision} | {peak / 1e9:,.0f} | {bound:,.1f} | {rate:,.1f} | "
                     f"{rate / bound:.0%} | {build:,.1f} | {measured} |")
    need = TARGET * flops / (cores * FLOPS_PER_CYCLE["float32"] * clock)
    lines.append(f"{TARGET} items/s, encoding included, takes over {TARGET * flops / 1e9:,.0f} "
                 f"GFLOP/s: {need:.1f} times the float32 peak of {cores} core(s)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="real_priced_items.jsonl.gz")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--limit", type=int, help="use at most this many training products")
    parser.add_argument("--queries", type=int, default=QUERIES, help="held-out items asked")
    parser.add_argument("--encode-texts", type=int, default=ENCODE_TEXTS,
                        help="training texts encoded in each precision for the bound")
    args = parser.parse_args()

    vectors.client(Path(tempfile.mkdtemp(prefix="vectors-")))  # Chroma imported and started,
    sentences.sentence_encoder()  # and MiniLM loaded, before anything is timed
    lite_train, lite_test = curation.lite("sample")
    items, _, _ = load_items(args.data)
    train, test = curation.split(items, len(items) - args.test_size, args.test_size, args.seed)
    train = train[:args.limit] if args.limit else train
    rows = [measure("lite split (sample)", lite_train, lite_test[:args.queries]),
            measure("real pool, training items", train, test[:args.queries])]
    print(table([*rows, projected(rows[-1])]))
    print(bounds([item.text for item in train[:args.encode_texts]], rows[-1]))


if __name__ == "__main__":
    main()
