"""A chat model with and without RAG on the lite split: the same model, the same test items.

    python server.py --model smollm2-135m --port 8011 &          # any OpenAI-compatible model
    PYTHONPATH=. python benchmarks/rag_chat.py --base-url http://127.0.0.1:8011/v1 \\
        --model smollm2-135m --items 100

It asks the model each test item's price zero-shot (the course's chat) and with the five most
similar training products in the prompt (rag.RagPricer), through frontier (cached, retried,
metered), and prints the Tester's figures for both, the median guess (a model that says one
price to everything can look better than the mean), failures, and seconds per answer.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import curation
import frontier
from rag import RagPricer
from testing import Tester


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    train, test = curation.lite()
    test = test[:args.items]
    plain = frontier.compatible_pricer(args.base_url, args.model, concurrency=args.concurrency)
    rag = RagPricer.over(plain).fit(train)
    for pricer in (plain, rag):
        start = time.perf_counter()
        pricer.prefetch(test)
        seconds = (time.perf_counter() - start) / len(test)
        scores = Tester.test(pricer, test, size=len(test), verbose=False, chart=False,
                             results=False)
        guesses = pricer.predict_many(test)
        print(f"{scores}  median guess ${np.nanmedian(guesses):,.2f}, "
              f"{scores.failures} failures, {seconds:.2f} s per answer")
        print(f"  {pricer.meter}")


if __name__ == "__main__":
    main()
