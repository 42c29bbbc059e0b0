"""The processor this runs on: its model and the vector instructions that decide how fast, and
with which rounding, numbers are computed.

>>> cpu().name != "" and cpu().fastest in FASTEST and isinstance(cpu().bf16, bool)
True

CPUs differ in what they offer (AVX2 only; AVX-512, with bf16 and int8 dot products on some;
Intel's AMX tiles; Arm's NEON on Apple silicon), and libraries pick their kernels by it, so a
float32 result can differ in its last bits from one machine to the next. Benchmarks print
`cpu()`; test fixtures record it, so that a mismatch names both machines.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

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
