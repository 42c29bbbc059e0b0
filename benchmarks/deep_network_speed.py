"""How fast the 2025 edition's deep network trains on this CPU, by width and precision, and
what 800,000 items x 5 epochs would take.

    PYTHONPATH=. python benchmarks/deep_network_speed.py
    PYTHONPATH=. python benchmarks/deep_network_speed.py --widths 256,1024,4096 --steps 20

Each configuration trains `--steps` batches of 64 synthetic rows (~50 of the 5,000 hashed
columns each, as a product's summary has) after 3 warm-up steps, exactly as
`DeepNetworkPricer` trains (embedding-bag first layer, 10 layers, L1 loss, fused AdamW,
gradient clipping), in float32 and in bf16 autocast. Useful FLOPs a step: 6 x the weights
that a batch uses (forward, backward to the inputs, weight gradients) per row; a rate is set
against them. Threads: settings.threads() (PRICER_THREADS).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import scipy.sparse as sp

import hardware
import settings
from deep_network import FEATURES, bag, network

BATCH, WORDS, ITEMS, EPOCHS = 64, 50, 800_000, 5


def seconds_a_step(width: int, layers: int, bf16: bool, steps: int) -> float:
    import torch

    torch.manual_seed(0)
    model = network(width, layers, 0.2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, fused=True)
    rows = sp.random(BATCH, FEATURES, density=WORDS / FEATURES, format="csr", dtype=np.float32,
                     random_state=0)
    goal = torch.randn(BATCH)
    inputs = bag(rows, "cpu")

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.l1_loss(model(*inputs).float(), goal)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="256,1024,4096")
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(f"{hardware.cpu()}; {settings.threads()} thread(s); load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| width | weights | precision | ms a batch of 64 | items/s | GFLOP/s | 800,000 x 5 "
          "epochs |\n|---:|---:|---|---:|---:|---:|---:|")
    with settings.torch_threads():
        for width in [int(w) for w in args.widths.split(",")]:
            weights = FEATURES * width + (args.layers - 2) * 2 * width * width + width
            used = WORDS * width + (args.layers - 2) * 2 * width * width + width
            for bf16 in (False, True):
                step = seconds_a_step(width, args.layers, bf16, args.steps)
                hours = ITEMS * EPOCHS / BATCH * step / 3600
                print(f"| {width:,} | {weights / 1e6:,.1f}M | {'bf16' if bf16 else 'float32'} | "
                      f"{step * 1000:,.1f} | {BATCH / step:,.0f} | "
                      f"{6 * used * BATCH / step / 1e9:,.1f} | {hours:,.1f} h |", flush=True)


if __name__ == "__main__":
    main()
