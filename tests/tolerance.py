"""How far one computation may move from one CPU to another: tolerances derived, not guessed.

Every floating-point operation rounds to the nearest number of its type, an error of at most
u = eps / 2 relative to the exact result. CPUs take sums in different orders (vector width,
blocking, threads, fused multiply-adds), so the same sum of n terms rounds differently on
each. Treated as independent random errors, the n roundings of a sum stay within
λ √n u of the exact result, relative to the sum of the terms' magnitudes, with probability at
least 1 - 2 exp(-λ²/2) (Higham and Mary, "A new approach to probabilistic rounding error
analysis", SIAM J. Sci. Comput., 2019); the worst case, n u, is never approached in practice.
With λ = 6 that is one failure in 30 million; two CPUs differ by at most twice the bound:

    rtol(dtype, terms, magnitude) = 2 · 6 · √terms · u · magnitude = 6 √terms eps · magnitude

`terms` is the longest chain of roundings in the computation, and `magnitude` how much larger
the terms are than the result (a price read through expm1 of its log carries the log's
error, so relative to the price the log price, up to 7, is the magnitude).

Training is another matter: a last-bit difference in one step changes the next step's
gradient, and after hundreds of steps two CPUs' models are as far apart as two seeds' are. A
trained model's score is compared within the spread that reseeding it shows
(tests/fixtures/expected.json: each figure with its tolerance, its reason and its CPU).

>>> rtol("float64", 10_000, 7) < 1e-12 < 1e-5 < rtol("float32", 300, 7) < 1e-4
True
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hardware

FIXTURES = Path(__file__).parent / "fixtures"
LOG_PRICE = 7.0  # log1p($999.49), the largest log price an Item has


def rtol(dtype: str | type, terms: int, magnitude: float = 1.0) -> float:
    """The relative difference two CPUs may show on a result of `terms` roundings in `dtype`."""
    return 6 * terms ** 0.5 * float(np.finfo(dtype).eps) * magnitude


# The project's models, by the precision and the longest chain of roundings to a price.
FLOAT64_MODEL = rtol("float64", 20_000, LOG_PRICE)  # TF-IDF, ridge, trees, MiniLM in float64
WORD_VECTORS = rtol("float32", 300, LOG_PRICE)  # the mean of ~300 float32 word vectors
SPARSE_MLP = rtol("float32", 300, LOG_PRICE)  # ~200 words' weights, 256 then 64 units
# the deep network: ~100 hashed words, then 17 float32 layers of up to 4,096 units in a row
DEEP_NETWORK = rtol("float32", 17 * 4_096, LOG_PRICE)
MINILM = rtol("float32", 6 * 2_000, LOG_PRICE)  # 6 layers of 384 + 1,536 + 64 tokens, a head
# SmolLM2: 30 layers of 576 + 1,536 + a 200-token context; logits up to about 20 carry it
TRANSFORMER = rtol("float32", 30 * 2_300, 20)
# The lowest cosine of a fast MiniLM embedding to the exact one. Fast mode rounds both operands
# of MiniLM's 24 matrix products (6 layers of 4) to bf16, u = 2^-9 each, and keeps the layer
# norms and the residual sums in float32, which hold each product's error where it arose: as
# a random walk, 48 roundings move a unit vector by sqrt(48) u = 1.4%, so 1 - cos = 1e-4. Thrice
# that move (1 - cos nine times larger) is allowed: 0.9992. (Measured on 1,000 real texts:
# docs/benchmarks.md.) Float32, the fast mode without native bf16, is far closer.
FAST_EMBEDDINGS = 1 - (3 * 48 ** 0.5 * 2.0 ** -9) ** 2 / 2


def assert_close(got, expected, tolerance: float, why: str, saved_on: str = "this CPU") -> None:
    """`got` equals `expected` within relative `tolerance`; a failure names the tolerance, its
    reason, and both CPUs."""
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    worst = float(np.max(np.abs(got - expected) / np.maximum(np.abs(expected), 1e-300)))
    assert worst <= tolerance, (
        f"{got.tolist()} differ from {expected.tolist()} by {worst:.3g} relative, beyond "
        f"{tolerance:.3g} ({why}); expected on {saved_on}, computed on {hardware.cpu()}")


def expected(name: str) -> dict:
    """A figure saved from an earlier run: its value, tolerance, reason and CPU."""
    return json.loads((FIXTURES / "expected.json").read_text())[name]


def assert_scores_as_saved(name: str, score: float) -> None:
    """A model's score on the sample against its saved figure, within the saved tolerance."""
    saved = expected(name)
    assert score == pytest.approx(saved["value"], abs=saved["tolerance"]), (
        f"{name}: ${score:.2f} against ${saved['value']:.2f} ± {saved['tolerance']} "
        f"({saved['why']}); saved on {saved['cpu']}, run on {hardware.cpu()}")
