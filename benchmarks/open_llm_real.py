"""An open LLM on real products: zero-shot, then the course's fine-tune within time budgets.

    PYTHONPATH=. python benchmarks/open_llm_real.py \
        --data ../shared/data/real_priced_items.jsonl.gz --model smollm2-135m --train-minutes 30
    PYTHONPATH=. python benchmarks/open_llm_real.py --data ... --train-minutes 5 --method both

The real items (`baselines_real.load_items`) are split with a seed; the first `--test-size`
held-out items are scored. The training mean and median are the floors. Zero-shot, the base
model reads each item's plain test prompt (ending "Price is $"); its price is read by each
decoding (greedy digits, and the mean and median of the likeliest digit paths); the first
`--served` of them are also asked through the local server, as notebook 05 asks, for its
chats/s against the bound the float32 peak sets. Then LoRA with the course's recipe trains on
the training items for `--train-minutes`, and its adapters are saved at each budget mark (5,
15, 30 minutes, whichever fit), each scored afterwards, so that the error per CPU-minute can be
drawn. `--method full` trains every weight instead (at a tenth of the learning rate), `--method
both` the one after the other, each for the same time. The last lines read each price by
`lora.LlamaPricer`'s default decoding (the mean of the digit paths), not by whichever of the
three did best on these items. Training examples/s and tokens/s count the real tokens of the
examples trained on (no padding); the share of float32 peak counts the useful FLOPs of a
training step: per token, 2 x the parameters forward, 2 x backward to the inputs, and 2 more
for the weights' gradients when every weight trains (6 x for full fine-tuning, 4 x for LoRA,
whose frozen weights need no gradient), over the parameters outside the embedding (the output
layer runs only at the price's positions), against `--peak-gflops` (AVX2 with two FMA units:
cores x GHz x 32). Torch uses `settings.llm_threads()` threads: every core unless
PRICER_LLM_THREADS says less. Peak memory is the process's maximum resident set. The last line
(a line a method) sums it up.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).parent))

from baselines_real import load_items  # noqa: E402

import curation  # noqa: E402
import decoding  # noqa: E402
import lora  # noqa: E402
import open_models  # noqa: E402
import server  # noqa: E402
import settings  # noqa: E402
from items import Item  # noqa: E402
from testing import Tester  # noqa: E402

MARKS = (5, 15, 30)  # minutes at which the adapters are saved and scored


class Marks(TrainerCallback):
    """Saves the model (and tokenizer) into `folder/<m>min` once training passes each mark."""

    def __init__(self, folder: Path, marks: list[float], tok):
        self.folder, self.marks, self.tok = folder, list(marks), tok
        self.start, self.saved = None, {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        elapsed = (time.monotonic() - self.start) / 60
        while self.marks and elapsed >= self.marks[0]:
            mark = self.marks.pop(0)
            model.save_pretrained(self.folder / f"{mark:g}min")
            self.tok.save_pretrained(self.folder / f"{mark:g}min")
            self.saved[mark] = state.global_step


def error(pricer, test: list[Item]) -> float:
    return Tester.test(pricer, test, verbose=False, chart=False, results=False,
                       size=len(test)).average_error


def decoded(model, tok, test: list[Item]) -> dict[str, float]:
    """The average error of each decoding (no price scores $0, as in the Tester), and items/s
    of greedy digits and of the digit paths (which give both the mean and the median)."""
    guesses = {"greedy": [], "mean": [], "median": []}
    seconds = {"greedy": 0.0, "paths": 0.0}
    with settings.torch_threads(settings.llm_threads()):
        for item in tqdm(test, desc="decoding", leave=False):
            ids = tok(item.test_prompt(), return_tensors="pt")["input_ids"]
            start = time.perf_counter()
            guesses["greedy"].append(decoding.greedy_digits(model, ids, tok))
            seconds["greedy"] += time.perf_counter() - start
            paths = decoding.digit_paths(model, ids, tok)
            seconds["paths"] += time.perf_counter() - start
            for how in ("mean", "median"):
                guesses[how].append(decoding.expected_price(paths, how))
    truths = np.array([item.price for item in test])
    errors = {how: float(np.abs(np.nan_to_num(np.array(g), nan=0.0) - truths).mean())
              for how, g in guesses.items()}
    distinct = len(set(guesses["greedy"]))
    print(f"  greedy: {len(test) / seconds['greedy']:.2f} items/s, {distinct} distinct guesses; "
          f"digit paths: {len(test) / (seconds['paths'] - seconds['greedy']):.2f} items/s",
          flush=True)
    return errors


def layer_parameters(model) -> int:
    """Parameters outside the embedding (which the output layer shares in SmolLM2): what each
    token goes through, bar the output layer, which runs only where a token is read."""
    embedding = model.get_input_embeddings().weight
    return sum(p.numel() for p in model.parameters() if p is not embedding)


def served(name: str, test: list[Item], params: int, peak_gflops: float) -> float:
    """Zero-shot chats/s through the local server (chat template, greedy, one at a time), and
    the bound that the prompts' FLOPs (2 x parameters a token) and the float32 peak set."""
    with server.start(model=name) as local:
        pricer = local.pricer(concurrency=1)
        start = time.perf_counter()
        pricer.prefetch(test, progress=False)
        seconds = time.perf_counter() - start
        meter = pricer.meter
    tokens = (meter.input_tokens + meter.output_tokens) / len(test)
    bound = peak_gflops * 1e9 / (2 * params * tokens)
    rate = len(test) / seconds
    print(f"  served: {rate:.2f} chats/s, {tokens:.0f} tokens a chat = "
          f"{2 * params * tokens / 1e9:.0f} GFLOP; the float32 peak bounds it at "
          f"{bound:.1f} chats/s ({rate / bound:.0%} of that)", flush=True)
    return rate


def train(model, tok, items, minutes: float, folder: Path, full: bool,
          h: lora.Hyperparameters) -> dict:
    """Train for `minutes`, saving at the marks; its throughput figures."""
    marks = sorted({m for m in MARKS if m < minutes} | {minutes})
    h = dataclasses.replace(h, full=full, max_minutes=minutes)
    batch = h.batch_size
    run = lora.trainer(model, items, folder, h, tok, logging_steps=10, save_steps=10**9)
    callback = Marks(folder, marks, tok)
    run.add_callback(callback)
    start = time.perf_counter()
    with settings.torch_threads(settings.llm_threads()):
        run.train()
    seconds = time.perf_counter() - start
    examples = run.state.global_step * batch
    lengths = [len(row["input_ids"]) for row in run.train_dataset]
    tokens = examples * statistics.mean(lengths)
    params = layer_parameters(model)
    losses = [log["loss"] for log in run.state.log_history if "loss" in log]
    return {"seconds": seconds, "examples": examples, "tokens_s": tokens / seconds,
            "examples_s": examples / seconds,
            "flops_s": (6 if full else 4) * params * tokens / seconds,
            "marks": callback.saved, "losses": losses, "model": run.model}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="real_priced_items.jsonl.gz")
    parser.add_argument("--model", default="smollm2-135m", choices=list(open_models.REGISTRY))
    parser.add_argument("--train-minutes", type=float, default=30)
    parser.add_argument("--test-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=lora.Hyperparameters.learning_rate,
                        help="LoRA's (default: the course's); full fine-tuning takes a tenth")
    parser.add_argument("--method", choices=("lora", "full", "both"), default="lora",
                        help="LoRA (the course's), full fine-tuning, or both, one after the other")
    parser.add_argument("--served", type=int, default=50,
                        help="held-out items asked through the local server")
    parser.add_argument("--peak-gflops", type=float, default=2 * 2.45 * 32,
                        help="the CPU's float32 peak (default: 2 Zen 3 cores at 2.45 GHz)")
    parser.add_argument("--out", type=Path, default=settings.data_dir() / "open-llm-bench")
    args = parser.parse_args()

    items, _, _ = load_items(args.data)
    train_items, test = curation.split(items, len(items) - args.test_size, args.test_size,
                                       args.seed)
    prices = sorted(item.price for item in train_items)
    mean, median = statistics.mean(prices), statistics.median(prices)
    constant = error(lambda item: mean, test)
    print(f"{len(train_items):,} train, {len(test)} held out (seed {args.seed}); "
          f"{settings.llm_threads()} thread(s); constant (mean ${mean:.2f}) ${constant:.2f}, "
          f"median (${median:.2f}) ${error(lambda item: median, test):.2f}", flush=True)

    model, tok = open_models.load(args.model)
    zero = decoded(model, tok, test)
    served(args.model, test[:args.served], layer_parameters(model), args.peak_gflops)
    print("zero-shot: " + ", ".join(f"{how} ${e:.2f}" for how, e in zero.items()), flush=True)

    results, summaries = {}, []
    for full in {"lora": [False], "full": [True], "both": [False, True]}[args.method]:
        kind = "full" if full else "lora"
        model, tok = open_models.load(args.model, progress=False)
        rate = args.learning_rate / (10 if full else 1)
        h = lora.Hyperparameters(batch_size=args.batch_size, learning_rate=rate, warmup=0.03)
        run = train(model, tok, train_items, args.train_minutes, args.out / kind, full, h)
        print(f"{kind}: {run['examples']:,} examples in {run['seconds'] / 60:.1f} min, "
              f"{run['examples_s']:.2f} examples/s, {run['tokens_s']:.0f} tokens/s, "
              f"{run['flops_s'] / 1e9:.1f} GFLOP/s = {run['flops_s'] / 1e9 / args.peak_gflops:.0%} "
              f"of float32 peak; peak memory "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB; losses "
              f"{[round(loss, 2) for loss in run['losses']]}", flush=True)
        for mark, step in run["marks"].items():
            folder = args.out / kind / f"{mark:g}min"
            base = None if full else open_models.load(args.model, progress=False)[0]
            tuned = lora.LlamaPricer.load(folder, base=base)
            errors = decoded(tuned.model, tuned.tokenizer, test)
            results.update({(kind, mark, how): e for how, e in errors.items()})
            print(f"{kind} after {mark:g} min ({step * args.batch_size:,} examples): "
                  + ", ".join(f"{how} ${e:.2f}" for how, e in errors.items()), flush=True)
        last, how = max(run["marks"]), lora.DIGIT_DECODING
        summaries.append(f"{args.model}: constant ${constant:.2f}, zero-shot ${zero[how]:.2f}, "
                         f"fine-tuned{' (full)' if full else ''} ${results[(kind, last, how)]:.2f} "
                         f"({run['marks'][last] * args.batch_size:,} examples, {last:g} min, "
                         f"{run['tokens_s']:.0f} tok/s)")
    print("\n".join(summaries))


if __name__ == "__main__":
    main()
