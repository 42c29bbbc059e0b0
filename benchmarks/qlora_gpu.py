"""QLoRA training speed and memory at Llama 3.1 8B's real shape, on one CUDA GPU.

    python3 benchmarks/qlora_gpu.py                        # 8B shape, random weights, 4-bit
    python3 benchmarks/qlora_gpu.py --weights ~/Llama-3.1-8B   # a folder with the real weights
    python3 benchmarks/qlora_gpu.py --no-quantize          # bf16 LoRA, for comparison
    python3 benchmarks/qlora_gpu.py --tiny                 # the same path on a CPU, in seconds

Without --weights (or when the folder holds no weights) the model is Llama 3.1 8B's config
with random weights, written once to --scratch and loaded back through the same
`lora.load_base` as real weights, so the 4-bit quantization is the real one. Training is the
course's: LoRA r 32 / alpha 64 / dropout 0.1 on q, k, v, o; lr 1e-4 cosine, 3% warmup; batch
4 of real-length price prompts (the offline sample, up to 182 tokens) with the loss on the
price only; gradient checkpointing, bf16 compute (float16, its loss scaled, on a GPU without
bf16) and paged 32-bit AdamW, as TRL's SFTTrainer sets them up. Prints steps/s, tokens/s and
the peak GPU memory.

Needs torch with CUDA, transformers (5.17 or later), peft, accelerate, bitsandbytes (4-bit),
tiktoken, llama-models (the tokenizer) and orjson (the sample loader); not TRL or datasets.
Where some are missing, wheels for Python 3.12 (about 50 MB) install without their dependencies:
    pip install --no-deps bitsandbytes==0.50.2 llama-models==0.3.0 orjson
The run takes a few minutes, most of it writing and quantizing the 16 GB of random weights.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, get_cosine_schedule_with_warmup

import hardware
import lora
import sample_data
from loaders import item_from_record


def batches(n: int, size: int, device: str) -> list[dict[str, torch.Tensor]]:
    """`n` batches of `size` real-length examples, padded on the right as TRL's collator does."""
    records = sample_data.generate("Appliances", n=4 * n * size)
    found = (item_from_record(r, "Appliances")[0] for r in records)
    items = [item for item in found if item][:n * size]
    if len(items) < n * size:
        raise RuntimeError(f"the sample gave {len(items)} items, fewer than {n * size}")
    encoded = [lora.encode(lora.example(item)) for item in items]
    pad = lora.tokenizer().pad_token_id
    out = []
    for i in range(0, len(encoded), size):
        chunk = encoded[i:i + size]
        width = max(len(e["input_ids"]) for e in chunk)
        ids = [e["input_ids"] + [pad] * (width - len(e["input_ids"])) for e in chunk]
        labels = [e["labels"] + [-100] * (width - len(e["labels"])) for e in chunk]
        mask = [[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in chunk]
        out.append({k: torch.tensor(v, device=device) for k, v in
                    (("input_ids", ids), ("labels", labels), ("attention_mask", mask))})
    return out


def random_weights(folder: Path, tiny: bool) -> Path:
    """Save a Llama with random weights (8B shape, or tiny) to `folder`, bf16 on a GPU."""
    config = LlamaConfig(**(lora.TINY if tiny else lora.LLAMA_31_8B))
    cuda = torch.cuda.is_available()
    torch.manual_seed(42)
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(
            config, dtype=hardware.precision("cuda") if cuda else torch.float32)
    model.save_pretrained(folder)
    del model
    if cuda:
        torch.cuda.empty_cache()
    return folder


def prepare(model, quantized: bool):
    """LoRA adapters with gradient checkpointing, as SFTTrainer prepares a PEFT model."""
    model = get_peft_model(model, lora.lora_config())
    model.gradient_checkpointing_enable()
    model.enable_input_require_grads()
    if quantized:  # QLoRA keeps the adapters in bf16 too
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.to(torch.bfloat16)
    return model


def optimizer_for(model) -> torch.optim.Optimizer:
    """Paged 32-bit AdamW from bitsandbytes on a GPU (the course's), else torch's AdamW."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    hyperparameters = lora.Hyperparameters()
    if torch.cuda.is_available():
        try:
            import bitsandbytes as bnb

            return bnb.optim.PagedAdamW32bit(trainable, lr=hyperparameters.learning_rate,
                                             weight_decay=0.001)
        except ImportError:
            pass
    return torch.optim.AdamW(trainable, lr=hyperparameters.learning_rate, weight_decay=0.001)


def synchronize() -> None:
    """Wait for the GPU's queued work, so that timings cover it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train(model, data: list[dict], warmup: int) -> tuple[list[float], float]:
    """One optimizer step per batch; returns the losses and the seconds of the timed steps."""
    optimizer = optimizer_for(model)
    schedule = get_cosine_schedule_with_warmup(optimizer, max(1, round(0.03 * len(data))),
                                               len(data))
    cuda = torch.cuda.is_available()
    precision = hardware.precision()  # bf16 on a GPU (float16 on older ones), and on a CPU
    # that multiplies bf16 natively; float16's small range needs its loss scaled
    scaler = torch.amp.GradScaler(enabled=precision == torch.float16)
    losses, start = [], 0.0
    model.train()
    for step, batch in enumerate(data):
        if step == warmup:
            synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda" if cuda else "cpu", dtype=precision,
                            enabled=precision != torch.float32):
            loss = model(**batch).loss
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 0.3)
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    synchronize()
    return losses, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="folder with real Llama 3.1 8B weights")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--no-quantize", action="store_true", help="bf16 LoRA instead of QLoRA")
    parser.add_argument("--tiny", action="store_true", help="a tiny Llama, runs on a CPU")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()),
                        help="where random weights are written (16 GB for the 8B shape)")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    quantize = not (args.no_quantize or args.tiny)
    if quantize and lora.quantization_unavailable():
        raise SystemExit(f"{lora.quantization_unavailable()}; run with --tiny on a CPU, or "
                         f"--no-quantize for bf16 LoRA on a GPU")
    start = time.perf_counter()
    real = args.weights and any(args.weights.glob("*.safetensors"))
    path = args.weights if real else random_weights(
        args.scratch / ("llama-tiny-random" if args.tiny else "llama-3.1-8b-random"), args.tiny)
    made = time.perf_counter()
    model = prepare(lora.load_base(path, quantize=quantize), quantize)
    loaded = time.perf_counter()
    data = batches(args.warmup + args.steps, args.batch_size, "cuda" if cuda else "cpu")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    losses, seconds = train(model, data, args.warmup)
    tokens = sum(int(b["attention_mask"].sum()) for b in data[args.warmup:])
    weights = "real weights" if real else "random weights"
    shape = "tiny Llama" if args.tiny else "Llama 3.1 8B"
    print(f"{shape}, {weights}, {'4-bit nf4 QLoRA' if quantize else 'LoRA, no quantization'} "
          f"on {torch.cuda.get_device_name() if cuda else 'CPU'}")
    print(f"random weights written in {made - start:.0f}s; " if not real else "", end="")
    print(f"model loaded and prepared in {loaded - made:.0f}s; "
          f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable")
    print(f"{args.steps} steps x batch {args.batch_size}: {args.steps / seconds:.2f} steps/s, "
          f"{tokens / seconds:,.0f} tokens/s; loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    if cuda:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB allocated, "
              f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB reserved")


if __name__ == "__main__":
    main()
