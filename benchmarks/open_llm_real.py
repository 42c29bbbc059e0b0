"""An open LLM on real products at the limit of this machine's CPU: zero-shot, then the
course's fine-tune within time budgets; with --speed, what training and serving reach against
the bound that this machine's measured matrix-product peak sets.

    PYTHONPATH=. python benchmarks/open_llm_real.py \
        --data ../shared/data/real_priced_items.jsonl.gz --speed
    PYTHONPATH=. python benchmarks/open_llm_real.py --data ... --train-minutes 30
    PYTHONPATH=. python benchmarks/open_llm_real.py --data ... --train-minutes 30 \
        --method full --batch-size 8 --marks 30 --no-zero-shot   # every weight, 8 a step
    PYTHONPATH=. python benchmarks/open_llm_real.py --data ... --train-minutes 5 --method both
    PYTHONPATH=. python benchmarks/open_llm_real.py --data ... --max-steps 100 \
        --precision float32,bf16        # the same steps in each precision, errors compared

Every run first prints the CPU (model, the flags that matter for matrix work, the fastest
path), the precision an open LLM trains in here (`hardware.precision`: bf16 autocast where the
CPU multiplies bf16 natively, float32 elsewhere) and the peak GFLOP/s of torch's matrix product
in float32 and bf16 on the threads used (`hardware.matmul_peak`), the bounds below.

--speed: the course's LoRA recipe and full fine-tuning each train for --speed-minutes in
float32 (the path before) and, where the CPU multiplies bf16 natively, in bf16 autocast, on
real examples; tokens/s count the real tokens of the examples trained (no padding), and the
share of the bound counts a training step's useful FLOPs: per token, 2 x the parameters
forward, 2 x backward to the inputs, and 2 more for the weights' gradients when every weight
trains (6 x for full fine-tuning, 4 x for LoRA, whose frozen weights need no gradient), over
the parameters outside the embedding (the output layer runs only at the price's positions),
against that precision's peak. Then the local server answers the notebooks' chats
(`chat.messages_for`, greedy, 5 tokens): through transformers (one at a time, the path before),
and through llama.cpp and OpenVINO GenAI from 1, 4 and 16 concurrent clients, each level on
held-out items of its own: chats/s, p50/p99 latency, and llama.cpp's own prefill and decode
tokens/s. The bound: the peak of the precision the runtime multiplies in (llama.cpp: float32,
the served GGUF's; OpenVINO GenAI: bf16 where the CPU multiplies it natively, else float32)
over the FLOPs a chat needs, 2 x the parameters for each token read (uncached tokens: the
system prompt and template come from each runtime's prefix cache) or written. With --speed,
--served is the number of held-out items a level (transformers, then each number of clients),
--speed-minutes 0 measures the serving alone, --served 0 the training alone, and
--batch-size trains that many examples a step (the course's 4 by default):
    PYTHONPATH=. python benchmarks/open_llm_real.py --data ... --speed --speed-minutes 0 \
        --served 16
    PYTHONPATH=. python benchmarks/open_llm_real.py --data ... --speed --speed-minutes 1 \
        --served 0 --batch-size 8

Otherwise, the accuracy run: the real items (`baselines_real.load_items`) are split with a
seed; the first --test-size held-out items are scored. The training mean and median are the
floors. Zero-shot, the base model reads each item's plain test prompt (ending "Price is $");
its price is read by each decoding (greedy digits, and the mean and median of the likeliest
digit paths), and the first --served are asked through the local server. Then the course's
recipe (LoRA; --method full trains every weight at a tenth of the learning rate, --method both
the one after the other; a --batch-size other than the course's 4 scales the rate by the
root of the ratio) trains for --train-minutes (or --max-steps), in each --precision, its learning
rate over the budget's time (--schedule), and the model is saved at each of --marks (5, 15,
30, 60 minutes, whichever fit, and the budget's end) and scored afterwards; --no-zero-shot
skips the base model's scores and serving. --text-tokens cuts each
product's text to that many of the model's tokens, in training and when priced (fewer tokens
an example, more examples a minute). With two precisions, the last lines give the paired
difference of their errors on the same items, with a 95% bootstrap interval. The summary reads
each price by `lora.LlamaPricer`'s default decoding (the mean of the digit paths). Peak memory
is the process's maximum resident set. Torch and llama.cpp use `settings.llm_threads()`
threads: every core unless PRICER_LLM_THREADS says less.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from tqdm.auto import tqdm
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).parent))

from baselines_real import load_items  # noqa: E402

import curation  # noqa: E402
import decoding  # noqa: E402
import hardware  # noqa: E402
import lora  # noqa: E402
import open_models  # noqa: E402
import server  # noqa: E402
import settings  # noqa: E402
from chat import messages_for  # noqa: E402
from items import Item  # noqa: E402
from llamacpp_chat import LlamaCppChat, metrics  # noqa: E402
from open_chat import OpenChat  # noqa: E402
from openvino_chat import OpenVinoChat  # noqa: E402

MARKS = (5, 15, 30, 60)  # minutes at which the model is saved and scored
FLAGS = {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16",
         "amx_int8", "asimd"}
HOWS = ("greedy", "mean", "median")


def learning_rate(rate: float, batch_size: int, full: bool) -> float:
    """The learning rate for a batch of `batch_size`, from LoRA's `rate` at the course's batch
    of 4: a tenth of it to train every weight, and the square root of the batches' ratio
    times it (Adam's square-root scaling rule, Malladi et al. 2022).

    >>> learning_rate(1e-4, 16, full=True)
    2e-05
    """
    return rate / (10 if full else 1) * math.sqrt(batch_size / 4)


def minutes_list(text: str) -> tuple[float, ...]:
    """--marks: minutes, comma-separated, each above 0.

    >>> minutes_list("5,30")
    (5.0, 30.0)
    """
    try:
        minutes = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not minutes separated by commas, e.g. "
                                         "5,15,30") from None
    if not all(m > 0 for m in minutes):
        raise argparse.ArgumentTypeError(f"every mark is a number of minutes above 0: {text!r}")
    return minutes


def machine() -> dict[str, float]:
    """Print the CPU, its flags for matrix work, the precision chosen and the measured peaks;
    the peaks (GFLOP/s) by precision."""
    cpu = hardware.cpu()
    peaks = {name: hardware.matmul_peak(dtype, size=1536, seconds=3)
             for name, dtype in (("float32", "float32"), ("bf16", "bfloat16"))}
    print(f"CPU: {cpu.name}; flags: {' '.join(sorted(cpu.flags & FLAGS))}; fastest path: "
          f"{cpu.fastest}; torch finds native bf16: {hardware.torch_bf16()}; "
          f"{settings.llm_threads()} thread(s); training precision: "
          f"{str(hardware.precision('cpu')).removeprefix('torch.')}; matrix-product peak "
          f"(torch, 1536 x 1536, best of 3 s): float32 {peaks['float32']:.0f} GFLOP/s, "
          f"bf16 {peaks['bf16']:.0f} GFLOP/s; load average {os.getloadavg()[0]:.2f}",
          flush=True)
    return peaks


def named(precision: str) -> str:
    """"float32" or "bf16": `precision`, or for "auto" what the machine trains in."""
    if precision != "auto":
        return precision
    return "bf16" if hardware.precision("cpu").itemsize == 2 else "float32"


def layer_parameters(model) -> int:
    """Parameters outside the embedding (which the output layer shares in SmolLM2): what each
    token goes through, bar the output layer, which runs only where a token is read."""
    embedding = model.get_input_embeddings().weight
    return sum(p.numel() for p in model.parameters() if p is not embedding)


def shortened(items: list[Item], tok, tokens: int | None) -> list[Item]:
    """The items with their text cut to `tokens` of the model's tokens (all of it: None)."""
    if tokens is None:
        return items
    return [Item.from_text(tok.decode(tok(item.text, add_special_tokens=False)["input_ids"]
                                      [:tokens]), item.price) for item in items]


class Clock(TrainerCallback):
    """The time of each step's end; the model saved into `folder/<m>min` at each mark."""

    def __init__(self, folder: Path | None = None, marks: list[float] = (), tok=None):
        self.folder, self.marks, self.tok = folder, list(marks), tok
        self.start, self.ends, self.saved = None, [], {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ends.append(time.monotonic())
        elapsed = (self.ends[-1] - self.start) / 60
        while self.marks and elapsed >= self.marks[0]:
            mark = self.marks.pop(0)
            model.save_pretrained(self.folder / f"{mark:g}min")
            self.tok.save_pretrained(self.folder / f"{mark:g}min")
            self.saved[mark] = state.global_step


def train(name: str, items: list[Item], h: lora.Hyperparameters, precision: str,
          folder: Path, marks: list[float] = ()) -> dict:
    """Train a fresh copy of the model in `precision`, saving at `marks`; its figures. The
    rate counts the steps after the first three (the kernels' first calls set them up), or
    after the first when there are six or fewer."""
    os.environ["PRICER_LLM_PRECISION"] = precision
    model, tok = open_models.load(name, progress=False)
    params = layer_parameters(model)
    run = lora.trainer(model, items, folder, h, tok, logging_steps=10, save_steps=10**9,
                       disable_tqdm=True)
    clock = Clock(folder, marks, tok)
    run.add_callback(clock)
    with settings.torch_threads(settings.llm_threads()):
        run.train()
    if not marks:  # a run of a number of steps: saved at its end
        run.model.save_pretrained(folder / "end")
        tok.save_pretrained(folder / "end")
        clock.saved["end"] = run.state.global_step
    lengths = [len(row["input_ids"]) for row in run.train_dataset]
    skip = 3 if len(clock.ends) > 6 else 1  # too few steps: all but the first
    steps = len(clock.ends) - skip
    seconds = clock.ends[-1] - clock.ends[skip - 1] if steps > 0 else float("nan")
    tokens_s = steps * h.batch_size * statistics.mean(lengths) / seconds
    return {"examples": run.state.global_step * h.batch_size, "tokens_s": tokens_s,
            "minutes": (clock.ends[-1] - clock.start) / 60,
            "flops_s": (6 if h.full else 4) * params * tokens_s, "saved": clock.saved,
            "losses": [log["loss"] for log in run.state.log_history if "loss" in log]}


def speed(name: str, items: list[Item], test: list[Item], peaks: dict, minutes: float,
          folder: Path, batch_size: int = 4) -> None:
    """Training throughput by method and precision (unless `minutes` is 0), then serving
    (unless `test` is empty), against the bounds."""
    if minutes > 0:
        print(f"\nTraining, {minutes:g} minutes each (tokens/s; GFLOP/s of useful work; share "
              "of that precision's peak):", flush=True)
    for full in (False, True) if minutes > 0 else ():
        train_speed(name, items, peaks, minutes, folder, full, batch_size)
    os.environ.pop("PRICER_LLM_PRECISION", None)
    serving(name, test, peaks)


def train_speed(name: str, items: list[Item], peaks: dict, minutes: float, folder: Path,
                full: bool, batch_size: int = 4) -> None:
    """LoRA's (or, `full`, full fine-tuning's) tokens/s in float32 and, where the CPU
    multiplies bf16 natively, in bf16 autocast (elsewhere torch emulates it, far slower)."""
    rate = learning_rate(lora.Hyperparameters.learning_rate, batch_size, full)
    h = lora.Hyperparameters(batch_size=batch_size, learning_rate=rate, full=full,
                             max_minutes=minutes, scheduler="constant")
    method, native = "full" if full else "LoRA", named("auto") == "bf16"
    if not native:
        print(f"  {method} in bf16: not trained, this CPU has no native bf16 (torch's bf16 "
              f"products: {peaks['bf16']:.0f} GFLOP/s)", flush=True)
    for precision in ("float32", "bf16") if native else ("float32",):
        run = train(name, items, h, precision, folder / f"speed-{full}-{precision}")
        if not np.isfinite(run["tokens_s"]):  # a step or two: nothing after the first to time
            print(f"  {method} in {precision}: {run['examples'] // h.batch_size} step(s) in "
                  f"{minutes:g} minutes, too few to time: give --speed-minutes more", flush=True)
            continue
        print(f"  {method} in {precision}: {run['tokens_s']:.0f} "
              f"tokens/s, {run['flops_s'] / 1e9:.0f} GFLOP/s = "
              f"{run['flops_s'] / 1e9 / peaks[precision]:.0%} of {peaks[precision]:.0f}; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)


def ask(running, item: Item, client: httpx.Client) -> float:
    """Seconds for one of the notebooks' chats through the local server."""
    body = {"model": running.model, "messages": messages_for(item), "max_tokens": 5, "seed": 42}
    start = time.perf_counter()
    client.post(f"{running.base_url}/chat/completions", json=body).raise_for_status()
    return time.perf_counter() - start


def clients(running, items: list[Item], count: int) -> tuple[float, list[float]]:
    """(chats/s, latencies) for `items` asked by `count` concurrent clients, which share one
    HTTP client, as a ChatPricer's requests do."""
    start = time.perf_counter()
    with (httpx.Client(timeout=600, limits=httpx.Limits(max_connections=count)) as client,
          concurrent.futures.ThreadPoolExecutor(count) as pool):
        latencies = list(pool.map(lambda item: ask(running, item, client), items))
    return len(items) / (time.perf_counter() - start), latencies


def serving(name: str, test: list[Item], peaks: dict, levels=(1, 4, 16),
            baseline: bool = True) -> dict[str, float]:
    """Chats/s through the local server: transformers at 1 client (with `baseline`), then
    llama.cpp and OpenVINO GenAI at each level of concurrent clients, each level on its share
    of `test`; each runtime's chats/s at the first level (none: `test` is empty)."""
    if not test:
        return {}
    params = layer_parameters(open_models.load(name, progress=False)[0])
    share = len(test) // (len(levels) + baseline)
    print(f"\nServed (the notebooks' chats, greedy, 5 tokens; {share} held-out items a level):",
          flush=True)
    if baseline:
        with server.start(OpenChat(name), model=name) as running:
            clients(running, test[-1:], 1)  # warm up
            rate, latencies = clients(running, test[-1 - share:-1], 1)
        print(f"  transformers, 1 client: {rate:.2f} chats/s, p50 "
              f"{np.percentile(latencies, 50):.2f} s, p99 {np.percentile(latencies, 99):.2f} s",
              flush=True)
    first = {}
    for chat in (LlamaCppChat(name), OpenVinoChat(name)):
        with server.start(chat, model=name) as running:
            clients(running, test[-1:], 1)
            for level, count in enumerate(levels):
                items = test[share * level:share * (level + 1)]
                before = counters(chat)
                rate, latencies = clients(running, items, count)
                runtime, arithmetic = described(chat)
                first.setdefault(runtime, rate)
                print(f"  {runtime} ({arithmetic}), {count:2d} "
                      f"client(s): {rate:.2f} chats/s, p50 {np.percentile(latencies, 50):.2f} s, "
                      f"p99 {np.percentile(latencies, 99):.2f} s; "
                      f"{bound_line(chat, before, items, params, peaks, rate)}; "
                      f"load average {os.getloadavg()[0]:.2f}", flush=True)
        chat.close()
    return first


def counters(chat) -> dict[str, float]:
    """The runtime's own counts so far: llama.cpp's metrics, or OpenVINO's tokens written."""
    return metrics(chat.server) if isinstance(chat, LlamaCppChat) else {"written": chat.written}


def described(chat) -> tuple[str, str]:
    """The runtime's name, and the weights and precision its products run in."""
    if isinstance(chat, LlamaCppChat):
        return "llama.cpp", "float32 GGUF"
    return "OpenVINO GenAI", f"float16 GGUF, {'bf16' if hardware.cpu().bf16 else 'float32'}"


def bound_line(chat, before: dict, items: list[Item], params: int, peaks: dict,
               rate: float) -> str:
    """Tokens a chat reads and writes, and the chats/s that the runtime's precision's peak
    allows at 2 x the parameters a token (a prefix cached from an earlier chat is not read
    again: llama.cpp counts it, and OpenVINO GenAI's is what the chat shares with another)."""
    if isinstance(chat, LlamaCppChat):
        done = {k: v - before.get(k, 0) for k, v in metrics(chat.server).items()}
        read, written = (done[k] / len(items) for k in ("prompt_tokens_total",
                                                          "tokens_predicted_total"))
        cached = done.get("prompt_tokens_cached_total", 0) / len(items)
        prefill = done["prompt_tokens_total"] / done["prompt_seconds_total"]
        decode = done["tokens_predicted_total"] / done["tokens_predicted_seconds_total"]
        peak, speeds = peaks["float32"], (f"prefill {prefill:.0f} tokens/s, decode "
                                          f"{decode:.0f} tokens/s (llama.cpp's clocks); ")
    else:
        asked = [chat.tokenizer(chat.prompt(messages_for(item)), add_special_tokens=False)
                 ["input_ids"] for item in items]
        # the beginning each chat shares with the others comes from the prefix cache
        cached = np.mean([len(os.path.commonprefix([ids, asked[i - 1]]))
                          for i, ids in enumerate(asked)])
        read = np.mean([len(ids) for ids in asked]) - cached
        written = (chat.written - before["written"]) / len(items)
        peak, speeds = peaks["bf16" if hardware.cpu().bf16 else "float32"], ""
    bound = peak * 1e9 / (2 * params * (read + written))
    return (f"{speeds}a chat reads {read:.0f} tokens (+{cached:.0f} cached), writes "
            f"{written:.1f}: the peak of {peak:.0f} GFLOP/s bounds it at {bound:.1f} chats/s "
            f"({rate / bound:.0%} of that)")


def decoded(model, tok, test: list[Item]) -> dict[str, np.ndarray]:
    """Each decoding's guesses (NaN: no price), and items/s of greedy digits and of the digit
    paths (which give both the mean and the median)."""
    guesses = {how: [] for how in HOWS}
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
    distinct = len(set(guesses["greedy"]))
    print(f"  greedy: {len(test) / seconds['greedy']:.2f} items/s, {distinct} distinct guesses; "
          f"digit paths: {len(test) / (seconds['paths'] - seconds['greedy']):.2f} items/s",
          flush=True)
    return {how: np.array(g) for how, g in guesses.items()}


def errors(guesses: np.ndarray, test: list[Item]) -> np.ndarray:
    """Each item's absolute error (no price scores $0, as in the Tester)."""
    return np.abs(np.nan_to_num(guesses, nan=0.0) - np.array([item.price for item in test]))


def paired(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """The mean of b - a on the same items, and its 95% bootstrap interval."""
    rng = np.random.default_rng(seed)
    diffs = b - a
    means = [diffs[rng.integers(0, len(diffs), len(diffs))].mean() for _ in range(10_000)]
    return float(diffs.mean()), *np.percentile(means, [2.5, 97.5]).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="real_priced_items.jsonl.gz")
    parser.add_argument("--model", default="smollm2-135m", choices=list(open_models.REGISTRY))
    parser.add_argument("--speed", action="store_true",
                        help="training and serving throughput against the bound, no scores")
    parser.add_argument("--speed-minutes", type=float, default=3)
    parser.add_argument("--train-minutes", type=float, default=30)
    parser.add_argument("--max-steps", type=int, default=-1, help="> 0: train this many steps")
    parser.add_argument("--test-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=lora.Hyperparameters.learning_rate,
                        help="LoRA's at batch size 4 (default: the course's); full fine-tuning "
                             "takes a tenth; another batch size, this times the root of its "
                             "ratio to 4")
    parser.add_argument("--marks", type=minutes_list, default=MARKS,
                        help="minutes at which the model is saved and scored (with the budget's "
                             "end), e.g. 30 to score the end of a 30-minute run alone")
    parser.add_argument("--zero-shot", action=argparse.BooleanOptionalAction, default=True,
                        help="score the base model and serve it first")
    parser.add_argument("--schedule", default="cosine", choices=list(lora.DECAYS),
                        help="the learning rate over the time budget")
    parser.add_argument("--text-tokens", type=int, help="cut each text to this many tokens")
    parser.add_argument("--method", choices=("lora", "full", "both"), default="lora",
                        help="LoRA (the course's), full fine-tuning, or both, one after the other")
    parser.add_argument("--precision", default="auto",
                        help="auto (the machine's: hardware.precision), float32, bf16, or a "
                             "comma-separated list to train in each")
    parser.add_argument("--served", type=int, default=50,
                        help="held-out items asked through the local server (--speed: a "
                             "level; 0: training speed alone)")
    parser.add_argument("--out", type=Path, default=settings.data_dir() / "open-llm-bench")
    args = parser.parse_args()

    peaks = machine()
    items, _, _ = load_items(args.data)
    train_items, test = curation.split(items, len(items) - args.test_size, args.test_size,
                                       args.seed)
    if args.speed:
        speed(args.model, train_items, test[:4 * args.served], peaks, args.speed_minutes,
              args.out, args.batch_size)
        return
    prices = sorted(item.price for item in train_items)
    mean, median = statistics.mean(prices), statistics.median(prices)
    truths = np.array([item.price for item in test])
    constant = float(np.abs(truths - mean).mean())
    print(f"{len(train_items):,} train, {len(test)} held out (seed {args.seed}); "
          f"constant (mean ${mean:.2f}) ${constant:.2f}, median (${median:.2f}) "
          f"${float(np.abs(truths - median).mean()):.2f}", flush=True)

    model, tok = open_models.load(args.model)
    train_items, test = (shortened(part, tok, args.text_tokens) for part in (train_items, test))
    zero, served = {}, {}
    if args.zero_shot:
        zero = {how: float(errors(g, test).mean()) for how, g in decoded(model, tok, test).items()}
        served = serving(args.model, test[:args.served], peaks, levels=(1,), baseline=False)
        print("zero-shot: " + ", ".join(f"{how} ${e:.2f}" for how, e in zero.items()), flush=True)

    precisions = args.precision.split(",")
    kept, summaries = {}, []
    for full in {"lora": [False], "full": [True], "both": [False, True]}[args.method]:
        for precision in precisions:
            kind = f"{'full' if full else 'lora'}-{precision}"
            rate = learning_rate(args.learning_rate, args.batch_size, full)
            minutes = None if args.max_steps > 0 else args.train_minutes
            h = lora.Hyperparameters(batch_size=args.batch_size, learning_rate=rate, full=full,
                                     max_minutes=minutes, max_steps=args.max_steps,
                                     scheduler=args.schedule)
            marks = [] if minutes is None else sorted({m for m in args.marks if m < minutes}
                                                      | {minutes})
            run = train(args.model, train_items, h, precision, args.out / kind, marks)
            bound = peaks[named(precision)]
            print(f"{kind}: {run['examples']:,} examples in {run['minutes']:.1f} min, "
                  f"{run['tokens_s']:.0f} tokens/s, {run['flops_s'] / 1e9:.1f} GFLOP/s = "
                  f"{run['flops_s'] / 1e9 / bound:.0%} of the {named(precision)} peak; peak "
                  f"memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB; "
                  f"load average {os.getloadavg()[0]:.2f}; losses "
                  f"{[round(loss, 2) for loss in run['losses']]}", flush=True)
            for mark, step in run["saved"].items():
                at = "end" if mark == "end" else f"{mark:g}min"
                base = None if full else open_models.load(args.model, progress=False)[0]
                tuned = lora.LlamaPricer.load(args.out / kind / at, base=base)
                guesses = decoded(tuned.model, tuned.tokenizer, test)
                kept[(kind, at)] = {how: errors(g, test) for how, g in guesses.items()}
                print(f"{kind} after {at} ({step * args.batch_size:,} examples): "
                      + ", ".join(f"{how} ${e.mean():.2f}" for how, e in
                                  kept[(kind, at)].items()), flush=True)
            last, how = list(kept)[-1], lora.DIGIT_DECODING
            summaries.append(
                f"{args.model} {kind}: constant ${constant:.2f}, "
                + (f"zero-shot ${zero[how]:.2f}, " if zero else "")
                + f"fine-tuned ${kept[last][how].mean():.2f} ({run['examples']:,} examples, "
                f"{run['minutes']:.3g} min, {run['tokens_s']:.0f} tok/s)"
                + ("; served " + ", ".join(f"{runtime} {rate:.2f}" for runtime, rate in
                                           served.items()) + " chats/s" if served else ""))
    ends = {kind: errors_ for (kind, _), errors_ in kept.items()}  # each run's last mark
    if len(precisions) == 2:
        for method in ("lora", "full"):
            a, b = (ends.get(f"{method}-{p}") for p in precisions)
            if a is not None and b is not None:
                for how in HOWS:
                    diff, low, high = paired(a[how], b[how])
                    print(f"{method}, {how}: {precisions[1]} - {precisions[0]} = ${diff:+.2f} "
                          f"[95% interval {low:+.2f} to {high:+.2f}]")
    print("\n".join(summaries))


if __name__ == "__main__":
    main()
