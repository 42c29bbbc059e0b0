"""Saved guesses hold on every CPU, within what their arithmetic guarantees, and no further.

Model files saved when the shared features lived in baselines.py (a nearest-neighbour index
of scikit-learn's, `baselines.texts`) still load and guess as they did then. The guesses were
saved on one CPU; another computes them with other vector kernels, so each is compared within
the tolerance its precision and depth allow (tests/tolerance.py). The same check runs again on
the lesser kernels that OpenBLAS and numpy can be told to take, and it fails for a model
changed by a thousandth.
"""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tolerance import assert_close, rtol

import curation
import hardware
from pricer import Pricer

FIXTURES = Path(__file__).parent / "fixtures" / "old_layout"
SAVED = json.loads((FIXTURES / "guesses.json").read_text())
NAMES = list(SAVED["guesses"])

# Lesser kernels this machine can be told to take. OpenBLAS's SSE3 kernels (Prescott) sum
# float32 in another order than AVX2 or AVX-512 ones and move the MLP's guesses by an ulp or
# two; numpy's own loops without AVX-512 move nothing here, and join them to stay covered.
LESSER = {"OPENBLAS_CORETYPE": "Prescott",
          "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL "
                                      "AVX512_ICL AVX512_SPR"}


def guesses(name: str, folder: Path) -> np.ndarray:
    """The saved model `name`'s guesses on the saved items, computed here."""
    by_title = {item.title: item for item in curation.lite()[1]}
    path = folder / f"{name}.pkl"
    path.write_bytes(gzip.decompress((FIXTURES / f"{name}.pkl.gz").read_bytes()))
    return Pricer.load(path).predict_many([by_title[title] for title in SAVED["titles"]])


def tolerance(name: str) -> tuple[float, str]:
    """(relative tolerance, why) of the saved model `name`'s guesses."""
    saved = SAVED["tolerance"][name]
    why = f"{saved['dtype']}: {saved['why']}"
    return rtol(saved["dtype"], saved["terms"], saved["magnitude"]), why


def assert_as_saved(name: str, got: np.ndarray) -> None:
    assert_close(got, SAVED["guesses"][name], *tolerance(name), saved_on=SAVED["saved_on"])


@pytest.mark.parametrize("name", NAMES)
def test_models_saved_before_the_features_moved_still_load(name, tmp_path):
    assert_as_saved(name, guesses(name, tmp_path))


def test_they_guess_the_same_on_lesser_kernels(tmp_path):
    code = ("import json, sys; from pathlib import Path; import test_other_cpus as t; "
            "print(json.dumps({n: t.guesses(n, Path(sys.argv[1])).tolist() for n in t.NAMES}))")
    env = {**os.environ, **LESSER, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    for name, got in json.loads(child.stdout.splitlines()[-1]).items():
        assert_as_saved(name, got)


@pytest.mark.parametrize("name", NAMES)
def test_a_model_changed_by_a_thousandth_fails(name, tmp_path):
    """The tolerances are tight enough to matter: each model's guesses, a thousandth higher
    in log price (about 0.1%), are refused."""
    logs = np.log1p(guesses(name, tmp_path)) + 1e-3
    with pytest.raises(AssertionError, match="beyond .* expected on not recorded"):
        assert_as_saved(name, np.expm1(logs))


def test_a_mismatch_names_the_tolerance_its_reason_and_both_cpus():
    with pytest.raises(AssertionError) as refused:
        assert_close([1.0, 2.0], [1.0, 2.1], 1e-6, "a reason", saved_on="a CPU of old")
    message = str(refused.value)
    assert "1e-06 (a reason)" in message and "a CPU of old" in message
    assert str(hardware.cpu()) in message
    assert_close([1.0, 2.0 * (1 + 1e-7)], [1.0, 2.0], 1e-6, "within")


def test_tolerances_grow_with_the_terms_and_shrink_with_the_precision():
    assert rtol("float32", 1) == 6 * np.finfo(np.float32).eps
    assert rtol("float64", 300, 7) == pytest.approx(6 * 300 ** 0.5 * 7 * 2.0 ** -52)
    assert rtol("float32", 10) > rtol("float64", 10_000)
