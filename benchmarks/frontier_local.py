"""Scoring 250 test items against the local OpenAI-compatible server: cold and warm cache.

    PYTHONPATH=. python benchmarks/frontier_local.py [--items 250] [--concurrency 8] [--runs 3]
                                                    [--latency 0.3]

The server serves a predictor in a background thread; the pricer calls it over real HTTP
with the same client code that calls OpenAI. A cold run starts from an empty cache file,
fetches every answer `--concurrency` calls at a time, then prices every item; a warm run
is a new pricer on the same file, as after a restart. Prints the median seconds per run.
`--latency` makes the served model take that many seconds per answer, as a real API does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import chat_api
import curation
import frontier
import server
from items import Item


def mean_price(train: list[Item], latency: float = 0.0) -> Callable[[Item], float]:
    """The simplest trained predictor, the training set's mean price, `latency` s per answer."""
    mean = statistics.fmean(item.price for item in train)

    def predict(item: Item) -> float:
        time.sleep(latency)
        return mean
    return predict


def one_run(base_url: str, model: str, cache_path: Path, items: list,
            concurrency: int) -> tuple[float, chat_api.Meter]:
    """Seconds to fetch and price every item with a fresh pricer on `cache_path`."""
    start = time.perf_counter()
    pricer = frontier.compatible_pricer(base_url, model, cache=chat_api.Cache(cache_path),
                                        concurrency=concurrency)
    pricer.prefetch(items, progress=False)
    guesses = [pricer(item) for item in items]
    seconds = time.perf_counter() - start
    assert len(guesses) == len(items) and pricer.meter.failed == 0
    pricer.cache.close()
    return seconds, pricer.meter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=250)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    train, test = curation.lite()
    items = test[:args.items]
    with server.start(mean_price(train, args.latency), model="mean-price") as local, \
            tempfile.TemporaryDirectory() as scratch:
        for label, concurrency in ((f"{args.concurrency} concurrent calls", args.concurrency),
                                   ("1 call at a time", 1)):
            cold, warm = [], []
            for run in range(args.runs):
                path = Path(scratch) / f"{concurrency}-{run}.sqlite"
                cold.append(one_run(local.base_url, local.model, path, items, concurrency))
                warm.append(one_run(local.base_url, local.model, path, items, concurrency))
            print(f"{len(items)} items, {label}, {args.latency:g} s per answer, "
                  f"median of {args.runs} runs:")
            for name, runs in (("cold cache", cold), ("warm cache", warm)):
                seconds = statistics.median(s for s, _ in runs)
                meter = runs[0][1]
                print(f"  {name}: {seconds:6.2f} s per run ({len(items) / seconds:,.0f} items/s);"
                      f" {meter.calls} calls, {meter.cached} from cache")


if __name__ == "__main__":
    main()
