"""Compact charts: the same picture in a palette, a fraction of the bytes."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

import charts  # noqa: E402


def test_a_chart_is_a_small_palette_png():
    figure = plt.figure(figsize=(12, 8))
    plt.scatter(range(250), [i * 1.5 % 97 for i in range(250)], s=3, c="green")
    plt.title("Truth against guess")
    full = io.BytesIO()
    figure.savefig(full, format="png", bbox_inches="tight")
    small = charts.png(figure)
    plt.close(figure)
    image = Image.open(io.BytesIO(small))
    assert image.mode == "P" and len(image.getcolors()) <= charts.COLORS
    assert image.width < 1200 and len(small) < len(full.getvalue()) / 2

