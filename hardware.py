"""The processor this runs on: its model and the vector instructions that decide how fast, and
with which rounding, numbers are computed.

>>> cpu().name != "" and cpu().fastest in FASTEST and isinstance(cpu().bf16, bool)
True

CPUs differ in what they offer (AVX2 only; AVX-512, with bf16 and int8 dot products on some;
Intel's AMX tiles; Arm's NEON on Apple silicon), and libraries pick their kernels by it, so a
float32 result can differ in its last bits from one machine to the next. Benchmarks print
`cpu()`; test fixtures record it, so that a mismatch names both machines.

An open LLM trains in the precision the machine computes fastest (`precision()`): bf16 on a
CUDA GPU (float16 on one without bf16), where it answers in it too; bf16 autocast over float32
weights on a CPU that multiplies bf16 natively, float32 on other CPUs. On a CPU it answers in
float32, so that a trained model answers as its saved weights do. What that precision can
reach is measured, not assumed: `matmul_peak()` times torch's own matrix product on this
machine, the bound that benchmarks quote.

>>> str(precision("cpu")) in ("torch.float32", "torch.bfloat16")
True
"""

from __future__ import annotations

import functools
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import settings

if TYPE_CHECKING:
    import torch

# The fastest path for matrix work, best first, and the flag that marks it in /proc/cpuinfo.
FASTEST = {"amx": "amx_bf16", "avx512_bf16": "avx512_bf16", "avx512": "avx512f",
           "avx2": "avx2", "neon": "asimd", "baseline": ""}


@dataclass(frozen=True)
class Cpu:
    name: str
    flags: frozenset[str]

    @property
    def fastest(self) -> str:
        """The fastest instructions for matrix work it has: a key of `FASTEST`."""
        return next(path for path, flag in FASTEST.items() if not flag or flag in self.flags)

    @property
    def bf16(self) -> bool:
        """Whether it multiplies bfloat16 matrices natively (AMX or AVX-512 BF16): there bf16
        runs at 2x to 7x float32's rate; elsewhere it is emulated, and slower."""
        return self.fastest in ("amx", "avx512_bf16")

    def __str__(self) -> str:
        return f"{self.name} ({self.fastest})"


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (Linux), or nothing elsewhere."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return {}
    fields = {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip() and fields:
            break
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


@functools.cache
def cpu() -> Cpu:
    """This machine's processor, read once: it does not change while a process runs."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown"
    flags = set((info.get("flags") or info.get("Features") or "").split())
    if platform.machine() in ("arm64", "aarch64"):
        flags.add("asimd")  # every 64-bit Arm CPU has NEON (macOS has no /proc/cpuinfo)
    return Cpu(name, frozenset(flags))


def torch_bf16() -> bool:
    """Whether torch's own check finds native bf16 matrix instructions (AVX-512 BF16 or AMX
    tiles that the operating system lets it use): a flag in /proc/cpuinfo is not enough where
    a hypervisor or the kernel keeps them off."""
    import torch

    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(check is None for check in checks):  # a torch without them: oneDNN's own answer
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return any(check() for check in checks if check is not None)


def precision(device: str | None = None) -> torch.dtype:
    """The dtype an open LLM trains in on `device` ("cuda" or "cpu"; default: CUDA when a GPU
    is visible; on a CPU as autocast over float32 weights): bf16 on a GPU that supports it
    (float16 on older ones), and on a CPU whose flags and torch's own check (`torch_bf16`)
    both say it multiplies bf16 natively; float32 on other CPUs, where bf16 would be emulated
    and slower. PRICER_LLM_PRECISION (float32 or bf16) overrides it."""
    import torch

    cuda = torch.cuda.is_available() if device is None else device == "cuda"
    chosen = settings.llm_precision()
    if chosen == "auto" and cuda:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if chosen == "auto":
        chosen = "bf16" if cpu().bf16 and torch_bf16() else "float32"
    return torch.bfloat16 if chosen == "bf16" else torch.float32


def matmul_peak(dtype: str = "float32", threads: int | None = None, size: int = 1024,
                seconds: float = 1.0) -> float:
    """GFLOP/s of torch's matrix product of two `size` x `size` matrices in `dtype` on
    `threads` threads (default `settings.llm_threads()`), the best of repeated products over
    about `seconds`: what this machine's cores reach in that precision, measured.

    >>> matmul_peak("float32", threads=1, size=64, seconds=0.01) > 0
    True
    """
    import torch

    a, b = (torch.randn(size, size).to(getattr(torch, dtype)) for _ in range(2))
    best = float("inf")
    with settings.torch_threads(threads or settings.llm_threads()):
        a @ b  # warm up: kernels chosen, memory touched
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def fastest_runtime() -> str:
    """The open-LLM runtime that answers chats fastest on this CPU, of those installed:
    OpenVINO GenAI on an x86 CPU with AVX2 or more, whose kernels it compiles for the CPU's
    widest instructions (it answered 4.7 times as many chats as the prebuilt llama.cpp with
    AMX, twice as many with AVX2 alone); llama.cpp elsewhere; else transformers
    (docs/benchmarks.md).

    >>> fastest_runtime() in ("openvino", "llama.cpp", "transformers")
    True
    """
    import importlib.util

    x86 = cpu().fastest in ("amx", "avx512_bf16", "avx512", "avx2")
    ranked = (["openvino"] if x86 else []) + ["llama.cpp"]
    packages = {"openvino": "openvino_genai", "llama.cpp": "xllamacpp"}
    return next((runtime for runtime in ranked if importlib.util.find_spec(packages[runtime])),
                "transformers")
