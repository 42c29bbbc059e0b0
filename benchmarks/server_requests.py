"""Requests a second against the local server: the course's chat, one predictor, real HTTP.

    PYTHONPATH=. python benchmarks/server_requests.py [--requests 400] [--runs 5]

A server serves the simplest predictor (a constant) in a background thread; a keep-alive
client posts the course's chat for one product `--requests` times, one after another, then
as many again from 8 threads at once. No cache, no retries: each figure is the server's own
cost per request (parsing, the chat turned back into an Item, the answer's tokens counted,
the reply) plus the client's. Prints the median of `--runs` runs, with the CPU it ran on:
requests a second, and the CPU time of the process (server and client) per request, which
a busy machine disturbs far less than the wall clock.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

import server
from chat import messages_for
from items import Item

ITEM = Item.from_text("Stainless steel kettle\n1.7 litres, boils fast, switches itself off, "
                      "with a filter that lifts out for cleaning. " * 4, 35.0)


def cpu() -> str:
    """The CPU's model name (Linux), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def measured(base_url: str, count: int, threads: int) -> tuple[float, float]:
    """(requests a second, CPU milliseconds per request) for `count` chat completions,
    `threads` at a time, each thread on its own connection."""
    body = {"model": "flat", "messages": messages_for(ITEM), "max_tokens": 5, "seed": 42}

    def ask(n: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            for _ in range(n):
                client.post("/chat/completions", json=body).raise_for_status()

    sent = count // threads * threads
    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(ask, [count // threads] * threads))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return sent / seconds, cpu / sent * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"CPU: {cpu()}")
    with server.start(lambda item: 35.0, model="flat") as local:
        measured(local.base_url, 50, 1)  # warm: imports, tokenizer, connections
        for threads in (1, 8):
            rates, cpus = zip(*(measured(local.base_url, args.requests, threads)
                                for _ in range(args.runs)), strict=True)
            print(f"{threads} client thread(s): {statistics.median(rates):,.0f} requests/s "
                  f"({min(rates):,.0f} to {max(rates):,.0f}), {statistics.median(cpus):.3f} "
                  f"CPU ms a request ({min(cpus):.3f} to {max(cpus):.3f}); median of "
                  f"{args.runs} runs of {args.requests}")

if __name__ == "__main__":
    main()
