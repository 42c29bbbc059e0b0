"""Tests run offline, draw charts off screen, and record scores away from data/."""

import os

import matplotlib
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Not through MPLBACKEND: the notebooks' kernels inherit the environment and must draw inline.
matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def private_results(tmp_path, monkeypatch):
    """Every Tester run in a test goes to its own results table, not the notebooks' one."""
    monkeypatch.setenv("PRICER_RESULTS", str(tmp_path / "results.csv"))
