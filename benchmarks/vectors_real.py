"""The vector store's speed and size: build rate, query latency, disk, projected to 400k items.

    PRICER_DATA_DIR=$(mktemp -d) PYTHONPATH=. python benchmarks/vectors_real.py \
        --data ../shared/data/real_priced_items.jsonl.gz
    PRICER_DATA_DIR=$(mktemp -d) PYTHONPATH=. python benchmarks/vectors_real.py --data ... \
        --limit 2000 --queries 200                        # a quicker look
    ... --mode exact                                       # float64, as the sample uses

For the lite split (the offline sample's Appliances) and for the training items of the real
pool (a seeded split holding out 2,000, as benchmarks/baselines_real.py does), it builds the
store twice, each time into an empty folder: first with nothing cached, so the rate includes
encoding every text with MiniLM; then again, reusing the cached embeddings (Chroma's own rate).
Then 5-neighbour queries, one at a time, for held-out items: their vectors ready (the store's
latency), and from text (encoding the query too). Disk is the second store's folder. The
full 400,000-item split cannot run here; it is projected linearly from the pool's figures
(a store's build and disk grow about linearly; HNSW queries grow about logarithmically).
Run it in a fresh data folder (PRICER_DATA_DIR), or cached embeddings hide the encoding.

Embeddings are computed in `--mode` (default fast: the course's real sizes), printed with
the CPU. Each precision's encoding rate against its bound, and the build from cached vectors
at 50,000 items and more: benchmarks/embeddings.py.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from baselines_real import load_items

import curation
import hardware
import sentences
import settings
import vectors
from items import Item
from vectors import VectorStore

FULL = 400_000
QUERIES = 500


def size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def measure(name: str, train: list[Item], queries: list[Item], mode: str) -> dict:
    """Build rates (cold, cached), query latencies (vector, text) and disk for one set."""
    scratch = Path(tempfile.mkdtemp(prefix="vectors-"))
    start = time.perf_counter()
    VectorStore.build(train, scratch / "cold", progress=False, mode=mode)
    cold = len(train) / (time.perf_counter() - start)
    start = time.perf_counter()
    store = VectorStore.build(train, scratch / "cached", progress=False, mode=mode)
    cached = len(train) / (time.perf_counter() - start)
    vectors = sentences.embed(queries, mode=mode)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="real_priced_items.jsonl.gz")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--limit", type=int, help="use at most this many training products")
    parser.add_argument("--queries", type=int, default=QUERIES, help="held-out items asked")
    parser.add_argument("--mode", choices=settings.EMBEDDING_MODES, default="fast",
                        help="how embeddings are computed (sentences.py)")
    args = parser.parse_args()

    print(f"CPU: {hardware.cpu()}; embeddings: {args.mode} ({sentences.precision(args.mode)})")
    vectors.client(Path(tempfile.mkdtemp(prefix="vectors-")))  # Chroma imported and started,
    sentences.encode(["a kettle"], sentences.precision(args.mode))  # MiniLM loaded, before
    lite_train, lite_test = curation.lite("sample")
    items, _, _ = load_items(args.data)
    train, test = curation.split(items, len(items) - args.test_size, args.test_size, args.seed)
    train = train[:args.limit] if args.limit else train
    rows = [measure("lite split (sample)", lite_train, lite_test[:args.queries], args.mode),
            measure("real pool, training items", train, test[:args.queries], args.mode)]
    print(table([*rows, projected(rows[-1])]))


if __name__ == "__main__":
    main()
