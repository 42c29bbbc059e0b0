"""Both editions side by side on real products: the same pricers on the 2024 edition's curated
texts and on the 2025 edition's LLM summaries; and an open LLM's summaries, offline.

    PYTHONPATH=. python benchmarks/editions_real.py \
        --data ../shared/data/real_priced_items.jsonl.gz --seeds 42,7,1234
    PYTHONPATH=/tmp/xgb:. python benchmarks/editions_real.py --data ... --xgboost
        # XGBoost beside LightGBM (pip install --target /tmp/xgb --no-deps xgboost-cpu)
    PRICER_SERVER_TIMEOUT=900 PYTHONPATH=. python benchmarks/editions_real.py --data ... \
        --summarise 200   # SmolLM2 summaries of 200 of the 2024 texts, offline

The real pool holds texts and prices, not raw records (README beside it): 11,774 bodies of
2024-edition prompts (title line first, then the curated description, ~160 Llama tokens) and
2,496 prompts from the 2025 edition's notebooks, each "Estimate the price of this product..."
followed by gpt-oss-20b's five-line summary ("Title: / Category: / Brand: / Description: /
Details:"). The 2025 rows are the edition's own summaries, so its models can be scored on what
they read there; its parsing and its sampling cannot be rerun (no raw records, no full texts),
and the two sets are different products at different prices (the 2025 ones drawn towards dear
items): compare each model with its own edition's constant guess, and RMSLE rather than
dollars across editions. Each edition's distinct texts are split with each seed; `--test-size`
items are held out; models train on the rest, and once more on the 2024 texts cut to the 2025
training size (`2024, same size`), so that the texts, not their number, are compared.

`--summarise N` takes N of the 2024 texts (seed 42), has the open LLM (PRICER_OPEN_MODEL,
SmolLM2 135M by default) summarise each through `batches.start` and `summaries.BatchSummaries`
(timed: summaries/s, tokens/s), then prices each product with TF-IDF + ridge and LightGBM
trained on the other four fifths (5 folds), on the texts and on the summaries: the same
pricer's error on the same products. A summary on a busy CPU can take longer than the
server's 60 seconds (PRICER_SERVER_TIMEOUT): a request timed out is left without a summary,
so the command raises the limit.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np

import baselines
import batches
import curation
import hardware
import settings
import summaries
from chat_api import Cache, OpenAIChat
from deep_network import DeepNetworkPricer
from features import kfold
from items import MAX_PRICE, MIN_PRICE, Item
from items2025 import Item2025
from testing import Tester

QUESTION_2025 = "Estimate the price of this product. Respond with the price, no explanation\n\n"
QUIET = {"verbose": False, "chart": False, "results": False}


def load(path: Path) -> dict[str, list[Item]]:
    """Each edition's distinct, priced items: 2024 Items of the course-prompt bodies, 2025
    Items of the summaries in the edition's prompts."""
    found: dict[str, dict[str, Item]] = {"2024": {}, "2025": {}}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            text, price = str(row.get("text") or "").strip(), row.get("price")
            if not isinstance(price, (int, float)) or not MIN_PRICE <= price <= MAX_PRICE:
                continue
            category = row.get("category") or ""
            if row.get("format") == "course-prompt" and text:
                found["2024"].setdefault(text, Item.from_text(text, float(price), category))
            elif text.startswith(QUESTION_2025):
                summary = text.removeprefix(QUESTION_2025).strip()
                title = summary.split("\n", 1)[0].removeprefix("Title:").strip()
                found["2025"].setdefault(summary, Item2025(title, category, float(price),
                                                           summary=summary))
    return {edition: list(items.values()) for edition, items in found.items()}


def models(xgboost: bool) -> list:
    made = [baselines.ConstantPricer(), baselines.TfidfRidgePricer(),
            baselines.LightGBMPricer()]
    if xgboost:
        made.append(XGBoostPricer())
    return made + [DeepNetworkPricer(), baselines.best()]


class XGBoostPricer(baselines.LightGBMPricer):
    """LightGBM's features and target, with XGBoost's trees of the same size instead."""

    name = "XGBoost"

    def make_regressor(self, items: int):
        import xgboost

        return xgboost.XGBRegressor(n_estimators=self.rounds, learning_rate=self.learning_rate,
                                    max_leaves=self.leaves, grow_policy="lossguide",
                                    tree_method="hist", random_state=self.seed,
                                    n_jobs=settings.threads(items))


def scores(train: list[Item], test: list[Item], xgboost: bool) -> dict[str, tuple]:
    """Each model's (fit seconds, Tester scores on `test`)."""
    out = {}
    for model in models(xgboost):
        model.fit(train)
        out[model.name] = (model.fit_seconds, Tester.test(model, test, size=len(test), **QUIET))
        print(f"  {model.name}: {out[model.name][1]} (fit {model.fit_seconds:.1f}s)", flush=True)
    return out


def editions(args) -> None:
    pools = load(args.data)
    runs: dict[str, list[dict]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        cuts = {}
        for edition, items in pools.items():
            cuts[edition] = curation.split(items, len(items) - args.test_size, args.test_size,
                                           seed)
        size = len(cuts["2025"][0])
        cuts["2024, same size"] = (cuts["2024"][0][:size], cuts["2024"][1])
        for name, (train, test) in cuts.items():
            print(f"seed {seed}, {name}: {len(train):,} train, {len(test):,} test, median "
                  f"price ${np.median([i.price for i in test]):,.2f}", flush=True)
            runs.setdefault(name, []).append(scores(train, test, args.xgboost))
    print(f"\n{hardware.cpu()}; {settings.threads()} thread(s) a model; load average "
          f"{os.getloadavg()[0]:.1f}; seeds {args.seeds}, {args.test_size} held out each")
    print(table(runs))


def table(runs: dict[str, list[dict]]) -> str:
    """Average error (mean ± sd over seeds), RMSLE and hits, each edition side by side."""
    names = list(runs)
    lines = ["| model | " + " | ".join(f"{n}: error, RMSLE, hits" for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    for model in runs[names[0]][0]:
        cells = []
        for name in names:
            found = [run[model][1] for run in runs[name]]
            errors = [s.average_error for s in found]
            cells.append(f"${np.mean(errors):,.2f} ± {np.std(errors):,.2f}, "
                         f"{np.mean([s.rmsle for s in found]):.2f}, "
                         f"{np.mean([s.hits for s in found]):.0%}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarise(args) -> None:
    """The open LLM's summaries of real texts: their speed, and a pricer on them."""
    items = random.Random(42).sample(load(args.data)["2024"], args.summarise)
    products = [Item2025(i.title, i.category, i.price, full=i.text) for i in items]
    scratch = Path(tempfile.mkdtemp())
    local = batches.start(model=settings.open_model())
    chat = OpenAIChat(local.model, base_url=local.base_url, params=summaries.LOCAL_PARAMS)
    run = summaries.BatchSummaries(chat, scratch, Cache(scratch / "replies.sqlite"),
                                   poll_seconds=1.0)
    start = time.perf_counter()
    left = run.summarise(products)
    seconds = time.perf_counter() - start
    local.stop()
    print(f"{hardware.cpu()}; {settings.llm_threads()} threads; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{len(products) - len(left):,} summaries in {seconds:,.0f}s: "
          f"{(len(products) - len(left)) / seconds:.2f} summaries/s, "
          f"{run.meter.output_tokens / seconds:.1f} tokens/s written "
          f"({run.meter.output_tokens / len(products):.0f} a summary), "
          f"{run.meter.input_tokens / len(products):.0f} tokens read a summary")
    for product in products[:2]:
        print(f"--- {product.full[:200]!r}...\n{product.summary}")
    done = [p for p in products if p.summary is not None]
    texts = [Item.from_text(p.full, p.price, p.category) for p in done]
    print(f"\nEach pricer's error over {len(done)} products, each priced by the model of the "
          "5 folds that did not see it (mean, and the paired difference's standard error):")
    for maker in (baselines.ConstantPricer, baselines.TfidfRidgePricer,
                  baselines.LightGBMPricer):
        on_texts, on_summaries = (out_of_fold(maker, pool) for pool in (texts, done))
        change = on_summaries - on_texts
        print(f"  {maker().name}: texts ${on_texts.mean():.2f}, summaries "
              f"${on_summaries.mean():.2f}, difference ${change.mean():+.2f} ± "
              f"{change.std(ddof=1) / np.sqrt(len(change)):.2f}")


def out_of_fold(maker, items: list[Item], folds: int = 5) -> np.ndarray:
    """Each item's absolute error by a fresh `maker()` fitted on the other folds."""
    errors = np.empty(len(items))
    for fit, held in kfold(len(items), folds, 42, "the comparison"):
        model = maker().fit([items[i] for i in fit])
        errors[held] = np.abs(model.predict_many([items[i] for i in held])
                              - np.array([items[i].price for i in held]))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="real_priced_items.jsonl.gz")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--test-size", type=int, default=400)
    parser.add_argument("--xgboost", action="store_true", help="XGBoost beside LightGBM")
    parser.add_argument("--summarise", type=int, help="summarise this many 2024 texts with the "
                                                      "open LLM, and score a pricer on them")
    args = parser.parse_args()
    if args.summarise:
        summarise(args)
    else:
        editions(args)


if __name__ == "__main__":
    main()
