"""Tester: score any price predictor the way the course does.

>>> from testing import Tester
>>> Tester.test(lambda item: 100.0, test)      # doctest: +SKIP

A predictor is any function from an Item to a price. Each item's error is |guess - truth|,
its squared log error (ln(truth+1) - ln(guess+1))^2, and its colour green (error < $40 or
< 20% of the truth), orange (< $80 or < 40%) or red. Hits are the green share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt

from items import Item

GREEN, ORANGE, RED = "green", "orange", "red"
ANSI = {GREEN: "\033[92m", ORANGE: "\033[93m", RED: "\033[91m"}
RESET = "\033[0m"


def color_for(error: float, truth: float) -> str:
    """The course's traffic light for one guess.

    >>> color_for(39, 1000), color_for(50, 200), color_for(100, 150)
    ('green', 'orange', 'red')
    """
    if error < 40 or error / truth < 0.2:
        return GREEN
    if error < 80 or error / truth < 0.4:
        return ORANGE
    return RED


@dataclass
class Scores:
    """The summary figures of one run."""

    title: str
    average_error: float
    rmsle: float
    hits: float  # share of green guesses, 0..1
    size: int

    def __str__(self) -> str:
        return (f"{self.title} Error=${self.average_error:,.2f} RMSLE={self.rmsle:,.2f} "
                f"Hits={self.hits * 100:.1f}%")


class Tester:
    """Run a predictor over the first `size` test items, print each guess, chart, score."""

    def __init__(self, predictor: Callable[[Item], float], data: Sequence[Item],
                 title: str | None = None, size: int = 250):
        self.predictor = predictor
        self.data = data
        self.title = title or getattr(predictor, "__name__", "predictor").replace("_", " ").title()
        self.size = min(size, len(data))
        self.guesses: list[float] = []
        self.truths: list[float] = []
        self.errors: list[float] = []
        self.sles: list[float] = []
        self.colors: list[str] = []

    def run_datapoint(self, i: int) -> None:
        item = self.data[i]
        guess, truth = float(self.predictor(item)), item.price
        error = abs(guess - truth)
        sle = (math.log(truth + 1) - math.log(guess + 1)) ** 2
        color = color_for(error, truth)
        self.guesses.append(guess)
        self.truths.append(truth)
        self.errors.append(error)
        self.sles.append(sle)
        self.colors.append(color)
        title = item.title if len(item.title) <= 40 else item.title[:40] + "..."
        print(f"{ANSI[color]}{i + 1}: Guess: ${guess:,.2f} Truth: ${truth:,.2f} "
              f"Error: ${error:,.2f} SLE: {sle:,.2f} Item: {title}{RESET}")

    def scores(self) -> Scores:
        n = len(self.errors)
        return Scores(self.title, sum(self.errors) / n, math.sqrt(sum(self.sles) / n),
                      self.colors.count(GREEN) / n, n)

    def chart(self, title: str) -> None:
        """Truth against guess, one dot per item in its colour, and the y = x line."""
        top = max(max(self.truths), max(self.guesses))
        plt.figure(figsize=(12, 8))
        plt.plot([0, top], [0, top], color="deepskyblue", lw=2, alpha=0.6)
        plt.scatter(self.truths, self.guesses, s=3, c=self.colors)
        plt.xlabel("Ground Truth")
        plt.ylabel("Model Estimate")
        plt.xlim(0, top)
        plt.ylim(0, top)
        plt.title(title)
        plt.show()

    def run(self) -> Scores:
        for i in range(self.size):
            self.run_datapoint(i)
        scores = self.scores()
        self.chart(str(scores))
        return scores

    @classmethod
    def test(cls, function: Callable[[Item], float], data: Sequence[Item], **kwargs) -> Scores:
        return cls(function, data, **kwargs).run()
