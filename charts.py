"""The notebooks' charts: the course's charts of curated data, and every chart at a quarter of
the bytes, so that a committed notebook stays small.

>>> import charts
>>> charts.compact()                      # once, in a notebook's first cell  # doctest: +SKIP
>>> charts.price_histogram(frame.price)   # the prices of curated items       # doctest: +SKIP

Matplotlib's inline charts are full-colour PNGs, mostly white with anti-aliased text. The
same picture at 80 dots per inch in a palette of 32 colours looks alike and takes about a
quarter of the space. Outside IPython, `compact` does nothing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

COLORS = 32
DPI = 80


def png(figure, colors: int = COLORS) -> bytes:
    """`figure` as a PNG of at most `colors` colours at DPI, cropped as Jupyter crops it."""
    from PIL import Image

    full = io.BytesIO()
    figure.canvas.print_figure(full, format="png", bbox_inches="tight", dpi=DPI)
    small = io.BytesIO()
    Image.open(full).convert("RGB").quantize(colors=colors).save(small, format="png",
                                                                   optimize=True)
    return small.getvalue()


def compact(colors: int = COLORS) -> None:
    """Show this notebook's charts as `png(figure, colors)` from now on."""
    from IPython import get_ipython
    from matplotlib.figure import Figure

    plt.close(plt.figure())  # the inline backend sets its own formatter on the first figure

    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(
            Figure, lambda figure: png(figure, colors))


# --- the course's charts of curated data ------------------------------------------------

def price_histogram(prices: Sequence[float], color: str = "darkblue") -> None:
    """Prices in $10 bins, with the average and the highest in the title."""
    plt.figure(figsize=(15, 6))
    plt.title(f"Prices: Avg {np.mean(prices):,.2f} and highest {max(prices):,}\n")
    plt.xlabel("Price ($)")
    plt.ylabel("Count")
    plt.hist(prices, rwidth=0.7, color=color, bins=range(0, 1000, 10))
    plt.show()


def token_histogram(token_counts: Sequence[int]) -> None:
    """Tokens per prompt, with the average and the highest in the title."""
    plt.figure(figsize=(15, 6))
    plt.title(f"Token counts: Avg {np.mean(token_counts):,.1f} and "
              f"highest {max(token_counts):,}\n")
    plt.xlabel("Length (tokens)")
    plt.ylabel("Count")
    plt.hist(token_counts, rwidth=0.7, color="green", bins=range(0, 300, 10))
    plt.show()


def category_bars(counts: dict[str, int]) -> None:
    """How many items in each category: bars with their values on top."""
    plt.figure(figsize=(15, 6))
    plt.bar(list(counts), list(counts.values()), color="goldenrod")
    plt.title("How many in each category")
    plt.xlabel("Categories")
    plt.ylabel("Count")
    plt.xticks(rotation=30, ha="right")
    for i, value in enumerate(counts.values()):
        plt.text(i, value, f"{value:,}", ha="center", va="bottom")
    plt.show()


def category_donut(counts: dict[str, int]) -> None:
    """Each category's share of the items, as a donut."""
    plt.figure(figsize=(12, 10))
    plt.pie(list(counts.values()), labels=list(counts), autopct="%1.0f%%", startangle=90,
            pctdistance=0.85)
    plt.gca().add_artist(plt.Circle((0, 0), 0.70, fc="white"))
    plt.title("Categories")
    plt.axis("equal")
    plt.show()


def size_against_price(chars: Sequence[int], prices: Sequence[float]) -> None:
    """Prompt length in characters against price: is there a simple correlation?"""
    plt.figure(figsize=(15, 8))
    plt.scatter(chars, prices, s=0.2, color="red")
    plt.xlabel("Size")
    plt.ylabel("Price")
    plt.title("Is there a simple correlation?")
    plt.show()


def price_shares(samples: dict[str, Sequence[float]]) -> None:
    """Each sample's prices as shares of it in $20 bins, side by side: how two ways of
    sampling the same items spread them over prices (e.g. the 2024 and 2025 editions')."""
    plt.figure(figsize=(15, 6))
    bins = np.arange(0, 1001, 20)
    for (name, prices), color in zip(samples.items(), ("darkblue", "darkorange", "green"),
                                     strict=False):
        plt.hist(prices, bins=bins, weights=np.full(len(prices), 100 / len(prices)),
                 histtype="step", linewidth=2, color=color,
                 label=f"{name}: {len(prices):,} items, median ${np.median(prices):,.2f}")
    plt.title("Share of each sample by price")
    plt.xlabel("Price ($)")
    plt.ylabel("% of the sample")
    plt.legend()
    plt.show()


def length_histogram(chars: Sequence[int]) -> None:
    """Characters of text per item, with the average and the longest in the title."""
    plt.figure(figsize=(15, 6))
    plt.title(f"Lengths: Avg {np.mean(chars):,.0f} and highest {max(chars):,}\n")
    plt.xlabel("Length (chars)")
    plt.ylabel("Count")
    plt.hist(chars, rwidth=0.7, color="lightblue", bins=range(0, 4100, 100))
    plt.show()
