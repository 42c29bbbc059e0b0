"""Tests run offline and draw charts off screen."""

import os

import matplotlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Not through MPLBACKEND: the notebooks' kernels inherit the environment and must draw inline.
matplotlib.use("Agg")
