"""Tester: score any price predictor the way the course does, and keep a table of results.

>>> from testing import Tester
>>> Tester.test(lambda item: 100.0, test)      # the course's report: a line per item, a chart
...                                             # doctest: +SKIP
>>> Tester.test(model, test, examples=5)        # five lines, then the summary  # doctest: +SKIP
>>> comparison_chart()                          # every predictor scored on this test set
...                                             # doctest: +SKIP

A predictor is a `pricer.Pricer` or any function from an Item to a price. Each item's error
is |guess - truth|, its squared log error (ln(truth+1) - ln(guess+1))^2, and its colour green
(error < $40 or < 20% of the truth), orange (< $80 or < 40%) or red. Hits are the green share.

Beyond the course: a guess that raises, is missing (`NoPrice`, None, NaN), infinite or
negative is a failure: counted with its reason, shown, and scored as a guess of $0 (as the
course scored an unreadable reply), so one bad call never ends a run; a `PricerError` (a
rejected key) does end it. Slow predictors (API calls) can run on threads (`workers`). The
summary adds MSE, R² and a bootstrap 95% interval of the mean error, `by_category()` splits
the error, and every run is recorded in the results table, one row per title and test set.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import settings
from files import written
from items import Item
from pricer import NoPrice, Predictor, Pricer, PricerError

GREEN, ORANGE, RED = "green", "orange", "red"
ANSI = {GREEN: "\033[92m", ORANGE: "\033[93m", RED: "\033[91m"}
RESET = "\033[0m"
BOOTSTRAP_SAMPLES = 1000


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


def checked_guess(value: object) -> tuple[float, str | None]:
    """A predictor's answer as (guess, None), or (0.0, why it is not a usable price).

    >>> checked_guess(12), checked_guess(None), checked_guess(float("nan"))
    ((12.0, None), (0.0, 'returned None'), (0.0, 'returned NaN'))
    """
    if value is None:
        return 0.0, "returned None"
    try:
        guess = float(value)
    except (TypeError, ValueError):
        return 0.0, f"returned a {type(value).__name__}"
    if math.isnan(guess):
        return 0.0, "returned NaN"
    if math.isinf(guess):
        return 0.0, "returned infinity"
    if guess < 0:
        return 0.0, "returned a negative price"
    return guess, None


def bootstrap_interval(values: Sequence[float], level: float = 0.95,
                       samples: int = BOOTSTRAP_SAMPLES, seed: int = 42) -> tuple[float, float]:
    """A seeded percentile-bootstrap interval for the mean of `values`.

    >>> bootstrap_interval([5.0, 5.0, 5.0])
    (5.0, 5.0)
    """
    data = np.asarray(values, dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(data), size=(samples, len(data)))
    means = data[picks].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def fingerprint(items: Sequence[Item]) -> str:
    """A short hash of the items scored, so results on different test sets tell apart."""
    digest = hashlib.sha1()
    for item in items:
        digest.update(f"{item.title}\t{item.price}\n".encode())
    return digest.hexdigest()[:10]


@dataclass
class Scores:
    """The summary figures of one run; str() is the course's chart title."""

    title: str
    average_error: float
    rmsle: float
    hits: float  # share of green guesses, 0..1
    size: int
    error_low: float = math.nan  # bootstrap 95% interval of the average error
    error_high: float = math.nan
    failures: int = 0
    seconds: float = 0.0  # wall time spent predicting
    mse: float = math.nan  # mean squared error, in dollars squared
    r2: float = math.nan  # 1 - MSE / variance of the truths: the share of the spread explained
    coverage80: float = math.nan  # share of truths inside the predictor's 80% price ranges
    coverage95: float = math.nan  # ... and its 95% ranges (NaN: it gives no ranges)
    width80: float = math.nan  # median width of the 80% ranges, in dollars

    def __str__(self) -> str:
        return (f"{self.title} Error=${self.average_error:,.2f} RMSLE={self.rmsle:,.2f} "
                f"Hits={self.hits * 100:.1f}%")

    def __repr__(self) -> str:
        return str(self)

    @property
    def per_second(self) -> float:
        return self.size / self.seconds if self.seconds else math.inf


class Tester:
    """Run a predictor over the first `size` test items, print its guesses, chart, score.

    `examples` limits the per-item lines to that many (None: every item, as the course does).
    `workers` > 1 calls a plain function on that many threads (for slow API calls); lines
    still print in item order. A predictor with `predict_many(items)` is asked for all
    guesses at once. `results` is the results table to record into (None: do not record);
    `verbose` and `chart` turn the printing and the scatter chart off.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, predictor: Predictor | Pricer, data: Sequence[Item],
                 title: str | None = None, size: int = 250, workers: int = 1,
                 results: str | Path | None | bool = True, verbose: bool = True,
                 chart: bool = True, examples: int | None = None):
        if not data:
            raise ValueError("Tester needs at least one test item")
        self.predictor = predictor
        self.data = data
        self.title = title or default_title(predictor)
        self.size = min(size, len(data))
        self.workers = workers
        self.results = settings.results_path() if results is True else (results or None)
        self.verbose = verbose
        self.show_chart = chart
        self.examples = examples
        self.seconds = 0.0
        self.guesses: list[float] = []
        self.truths: list[float] = []
        self.errors: list[float] = []
        self.sles: list[float] = []
        self.colors: list[str] = []
        self.failures: dict[int, str] = {}  # item index -> why its guess failed

    def predict(self, item: Item) -> tuple[float, str | None]:
        """One guess, checked; an exception becomes a failure instead of ending the run,
        except a PricerError, which says the predictor cannot work at all."""
        try:
            return checked_guess(self.predictor(item))
        except PricerError:
            raise
        except NoPrice as why:
            return 0.0, str(why)
        except Exception as error:  # noqa: BLE001 - any predictor error is a counted failure
            return 0.0, f"raised {type(error).__name__}"

    def outcomes(self, items: Sequence[Item]) -> Iterator[tuple[float, str | None]]:
        """(guess, failure) for each item, in order."""
        batch = getattr(self.predictor, "predict_many", None)
        if batch is not None:
            try:
                guesses = list(batch(items))
            except PricerError:
                raise
            except Exception:  # noqa: BLE001 - ask one by one to find the failing items
                guesses = []
            if len(guesses) == len(items):
                for item, guess in zip(items, guesses, strict=True):
                    checked = checked_guess(guess)
                    # No usable guess: asking for it alone says why (a Pricer raises NoPrice).
                    yield checked if checked[1] is None else self.predict(item)
                return
        if self.workers > 1:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                yield from pool.map(self.predict, items)
            return
        yield from map(self.predict, items)

    def add(self, i: int, guess: float, failure: str | None = None) -> None:
        """Score item `i` against `guess`, and print its coloured line if it is shown."""
        item = self.data[i]
        truth = item.price
        error = abs(guess - truth)
        sle = (math.log(truth + 1) - math.log(guess + 1)) ** 2
        color = color_for(error, truth)
        self.guesses.append(guess)
        self.truths.append(truth)
        self.errors.append(error)
        self.sles.append(sle)
        self.colors.append(color)
        if failure:
            self.failures[i] = failure
        if self.verbose and (self.examples is None or i < self.examples):
            title = item.title if len(item.title) <= 40 else item.title[:40] + "..."
            shown = f"FAILED ({failure}) as $0.00" if failure else f"${guess:,.2f}"
            print(f"{ANSI[color]}{i + 1}: Guess: {shown} Truth: ${truth:,.2f} "
                  f"Error: ${error:,.2f} SLE: {sle:,.2f} Item: {title}{RESET}")

    def scores(self) -> Scores:
        n = len(self.errors)
        low, high = bootstrap_interval(self.errors)
        truths, guesses = np.array(self.truths), np.array(self.guesses)
        mse = float(np.mean((guesses - truths) ** 2))
        spread = float(np.mean((truths - truths.mean()) ** 2))
        return Scores(self.title, sum(self.errors) / n, math.sqrt(sum(self.sles) / n),
                      self.colors.count(GREEN) / n, n, low, high, len(self.failures),
                      self.seconds, mse, 1 - mse / spread if spread else math.nan,
                      **self.coverage())

    def coverage(self) -> dict[str, float]:
        """How often the predictor's 80% and 95% price ranges hold the truth, and how wide
        the 80% ones are; nothing when it gives no ranges (see Pricer.predict_interval)."""
        if not getattr(self.predictor, "calibrated", False):
            return {}
        items, truths = self.data[:len(self.truths)], np.array(self.truths)
        found = {}
        for level in (80, 95):
            low, high = self.predictor.predict_interval(items, level / 100)
            found[f"coverage{level}"] = float(np.mean((low <= truths) & (truths <= high)))
            if level == 80:
                found["width80"] = float(np.nanmedian(high - low))
        return found

    def by_category(self) -> pd.DataFrame:
        """Items, average error, RMSLE and hits for each category scored, largest first."""
        frame = pd.DataFrame({
            "category": [self.data[i].category or "unknown" for i in range(len(self.errors))],
            "error": self.errors, "sle": self.sles,
            "hit": [c == GREEN for c in self.colors]})
        table = frame.groupby("category").agg(
            items=("error", "size"), average_error=("error", "mean"),
            rmsle=("sle", lambda s: math.sqrt(s.mean())), hits=("hit", "mean"))
        return table.sort_values(["items", "average_error"], ascending=[False, True])

    def chart(self, title: str) -> None:
        """Truth against guess, one dot per item in its colour, and the y = x line."""
        top = max(max(self.truths), max(self.guesses))
        figure = plt.figure(figsize=(12, 8))
        plt.plot([0, top], [0, top], color="deepskyblue", lw=2, alpha=0.6)
        plt.scatter(self.truths, self.guesses, s=3, c=self.colors)
        plt.xlabel("Ground Truth")
        plt.ylabel("Model Estimate")
        plt.xlim(0, top)
        plt.ylim(0, top)
        plt.title(title)
        plt.show()
        plt.close(figure)

    def report(self, scores: Scores) -> str:
        """The summary, any failures, and the error by category when there are several."""
        lines = [f"{scores.title}: mean error ${scores.average_error:,.2f} (95% interval "
                 f"${scores.error_low:,.2f} to ${scores.error_high:,.2f}), RMSLE "
                 f"{scores.rmsle:,.2f}, hits {scores.hits:.1%}, R² {scores.r2:.2f} over "
                 f"{scores.size} items"]
        fit_seconds = getattr(self.predictor, "fit_seconds", None)
        if isinstance(fit_seconds, (int, float)):
            lines[0] += f"; trained in {fit_seconds:.1f}s"
        if not math.isnan(scores.coverage80):
            lines.append(f"Price ranges: the 80% range holds the price for "
                         f"{scores.coverage80:.1%} of items (median width "
                         f"${scores.width80:,.0f}), the 95% range for {scores.coverage95:.1%}")
        if self.failures:
            tally = Counter(self.failures.values()).most_common()
            reasons = ", ".join(f"{n} {why}" for why, n in tally)
            lines.append(f"Failures: {len(self.failures)} of {scores.size} ({reasons}), "
                         "scored as $0 as the course did")
        table = self.by_category()
        if len(table) > 1:
            lines.append(table.to_string(float_format=lambda x: f"{x:,.2f}"))
        return "\n".join(lines)

    def run(self) -> Scores:
        items = self.data[:self.size]
        start = time.perf_counter()
        for i, (guess, failure) in enumerate(self.outcomes(items)):
            self.add(i, guess, failure)
        self.seconds = time.perf_counter() - start
        if self.verbose and self.examples is not None and len(items) > self.examples:
            print(f"... and {len(items) - self.examples} more items")
        scores = self.scores()
        if self.show_chart:
            self.chart(str(scores))
        if self.verbose:
            print(self.report(scores))
        if self.results:
            record(scores, self.results, fit_seconds=getattr(self.predictor, "fit_seconds", None),
                   test_set=fingerprint(items))
        return scores

    @classmethod
    def test(cls, function: Predictor | Pricer, data: Sequence[Item], **kwargs) -> Scores:
        return cls(function, data, **kwargs).run()


def default_title(predictor: Predictor | Pricer) -> str:
    """A model's `name`, else the function's name titled: constant_pricer -> Constant Pricer."""
    name = getattr(predictor, "name", None)
    if isinstance(name, str) and name:
        return name
    return getattr(predictor, "__name__", "predictor").replace("_", " ").title()


def record(scores: Scores, path: str | Path | None = None, test_set: str = "",
           **extra) -> pd.DataFrame:
    """Put one run into the results table as its last row, replacing any earlier run of the
    same title on the same test set (`test_set`: a `fingerprint` of the items scored)."""
    path = Path(path or settings.results_path())
    row = {**asdict(scores), "predictions_per_second": scores.per_second, "test_set": test_set,
           **extra}
    rows = [old for old in results(path).to_dict("records")
            if (old["title"], str(old.get("test_set", ""))) != (scores.title, test_set)]
    table = pd.DataFrame([*rows, row])
    with written(path) as partial:  # a reader never sees half a table
        table.to_csv(partial, index=False)
    return table


def results(path: str | Path | None = None) -> pd.DataFrame:
    """The results table: one row per title and test set, the latest run last (empty when
    nothing was recorded yet)."""
    path = Path(path or settings.results_path())
    if not path.exists():
        return pd.DataFrame()
    return pd.read_csv(path, dtype={"test_set": str, "title": str})


def comparison_chart(path: str | Path | None = None, titles: Sequence[str] | None = None,
                     title: str = "Average error by predictor (lower is better)",
                     test_set: str | None = None) -> None:
    """The course's closing chart: the average error of every predictor recorded on one test
    set (by default the one scored last), best on top, with its value and 95% interval."""
    table = results(path)
    if table.empty:
        raise FileNotFoundError(f"no results recorded in {path or settings.results_path()} yet: "
                                "score a predictor with Tester.test first")
    test_set = table["test_set"].iloc[-1] if test_set is None else test_set
    table = table[table["test_set"] == test_set]
    if table.empty:
        raise ValueError(f"nothing was scored on the test set {test_set!r}")
    if titles is not None:
        table = table[table["title"].isin(titles)]
        if table.empty:
            raise ValueError(f"none of {list(titles)} is in the results table")
    table = table.sort_values("average_error", ascending=False)
    errors = table["average_error"].to_numpy()
    spread = np.nan_to_num(np.abs(table[["error_low", "error_high"]].to_numpy().T - errors))
    figure, axes = plt.subplots(figsize=(12, 8))
    axes.barh(table["title"], errors, xerr=spread, color="steelblue", ecolor="gray",
              capsize=3)
    right = errors + spread[1]  # labels go past the interval's whisker
    for row, (error, end) in enumerate(zip(errors, right, strict=True)):
        axes.text(end + right.max() * 0.01, row, f"${error:,.2f}", va="center")
    axes.set_xlabel("Average absolute error ($)")
    axes.set_xlim(0, right.max() * 1.15)
    axes.set_title(title)
    figure.tight_layout()
    plt.show()
    plt.close(figure)
