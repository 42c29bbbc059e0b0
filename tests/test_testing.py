"""Tester: the course's figures, checked by hand, and what it adds on top."""

import math
import random
import re
import threading
import time

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import testing  # noqa: E402
from items import Item  # noqa: E402
from testing import Tester, bootstrap_interval, checked_guess, comparison_chart  # noqa: E402

PRICES = [100.0, 50.0, 200.0, 400.0]
GUESSES = [110.0, 80.0, 140.0, 100.0]
# By hand: errors 10, 30, 60, 300 -> $100.00. Squared log errors ln(101/111)^2 = 0.0089,
# ln(51/81)^2 = 0.2140, ln(201/141)^2 = 0.1257, ln(401/101)^2 = 1.9012 -> RMSLE
# sqrt(2.2498 / 4) = 0.75. Colours: green ($10), green ($30), orange ($60 is 30% of $200),
# red ($300 is 75% of $400) -> hits 50%.


def make_item(title: str, price: float, category: str = "Appliances") -> Item:
    return Item.from_text(f"{title}\nA product.", price, category)


@pytest.fixture(scope="module")
def items():
    return [make_item(f"Product {i}", p, "A" if i < 2 else "B") for i, p in enumerate(PRICES)]


def by_title(item: Item) -> float:
    return GUESSES[int(item.title.split()[1])]


@pytest.fixture
def titles(monkeypatch):
    """The titles of the charts shown."""
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gca().get_title()))
    return shown


def test_scores_match_hand_computed_values(items, titles, tmp_path, capsys):
    scores = Tester.test(by_title, items, title="Hand", results=tmp_path / "r.csv")
    assert scores.average_error == pytest.approx(100.0)
    assert scores.rmsle == pytest.approx(0.749973, abs=1e-6)
    assert scores.hits == 0.5 and scores.size == 4 and scores.failures == 0
    assert str(scores) == "Hand Error=$100.00 RMSLE=0.75 Hits=50.0%"
    assert titles == ["Hand Error=$100.00 RMSLE=0.75 Hits=50.0%"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("\033[92m1: Guess: $110.00 Truth: $100.00 Error: $10.00 SLE: 0.01 "
                        "Item: Product 0\033[0m")
    assert [line[:6] for line in lines[:4]] == ["\033[92m1", "\033[92m2", "\033[93m3",
                                                 "\033[91m4"]


def test_colours_follow_the_course_thresholds():
    assert testing.color_for(39.9, 10) == "green"       # under $40
    assert testing.color_for(100, 600) == "green"       # under 20%
    assert testing.color_for(79, 100) == "orange"       # under $80
    assert testing.color_for(150, 400) == "orange"      # under 40%
    assert testing.color_for(80, 200) == "red"


def test_error_by_category(items, titles):
    tester = Tester(by_title, items, results=False, verbose=False)
    tester.run()
    table = tester.by_category()
    assert table.loc["A", "items"] == 2 and table.loc["A", "average_error"] == pytest.approx(20)
    assert table.loc["B", "average_error"] == pytest.approx(180)
    assert table.loc["A", "hits"] == 1.0 and table.loc["B", "hits"] == 0.0
    assert table.loc["B", "rmsle"] == pytest.approx(math.sqrt((0.1257022 + 1.9012023) / 2))


def test_failures_are_counted_and_scored_as_zero(items, titles, capsys):
    def flaky(item: Item):
        i = int(item.title.split()[1])
        if i == 0:
            raise TimeoutError("the API timed out")
        return [None, float("nan"), -5.0][i - 1]

    tester = Tester(flaky, items, title="Flaky", results=False)
    scores = tester.run()
    assert scores.failures == 4
    assert scores.average_error == pytest.approx(sum(PRICES) / 4)   # every guess is $0
    out = capsys.readouterr().out
    assert "1: Guess: FAILED (raised TimeoutError) as $0.00 Truth: $100.00" in out
    assert ("Failures: 4 of 4 (1 raised TimeoutError, 1 returned None, 1 returned NaN, "
            "1 returned a negative price), scored as $0") in out
    assert tester.failures == {0: "raised TimeoutError", 1: "returned None",
                               2: "returned NaN", 3: "returned a negative price"}


def test_checked_guess():
    assert checked_guess("12.5") == (12.5, None)
    assert checked_guess("twelve") == (0.0, "returned a str")
    assert checked_guess(float("inf")) == (0.0, "returned infinity")
    assert checked_guess(0) == (0.0, None)


def test_threads_keep_the_printed_order(titles, capsys):
    many = [make_item(f"Product {i}", 10.0 + i) for i in range(40)]
    rng = random.Random(0)
    delays = [rng.uniform(0, 0.02) for _ in many]
    threads = set()

    def slow(item: Item) -> float:
        threads.add(threading.get_ident())
        i = int(item.title.split()[1])
        time.sleep(delays[i])
        return 2.0 * i

    serial = Tester(slow, many, results=False).run()
    first = capsys.readouterr().out
    concurrent = Tester(slow, many, results=False, workers=8).run()
    assert capsys.readouterr().out == first
    assert concurrent.average_error == serial.average_error
    assert len(threads) > 1
    numbers = [int(m) for m in re.findall(r"m(\d+): Guess", first)]
    assert numbers == list(range(1, 41))


class Batch:
    """A model with predict_many; raises in batch when any item is 'bad'."""

    name = "Batch Model"
    fit_seconds = 1.5

    def __init__(self):
        self.batches = 0

    def predict_many(self, items):
        self.batches += 1
        if any("bad" in i.title for i in items):
            raise ValueError("one bad item spoils the batch")
        return np.array([by_title(i) for i in items])

    def __call__(self, item):
        if "bad" in item.title:
            raise ValueError("bad item")
        return by_title(item)


def test_batch_predictors_are_asked_once_and_fall_back_one_by_one(items, titles, tmp_path):
    model = Batch()
    tester = Tester(model, items, results=tmp_path / "r.csv", verbose=False)
    scores = tester.run()
    assert model.batches == 1 and scores.title == "Batch Model"
    assert tester.report(scores).startswith(
        "Batch Model: mean error $100.00 (95% interval $")
    assert tester.report(scores).splitlines()[0].endswith(
        "RMSLE 0.75, hits 50.0%, R² -0.32 over 4 items; trained in 1.5s")
    assert scores.average_error == pytest.approx(100.0)
    spoiled = list(items[:3]) + [make_item("bad 3", 400.0)]
    scores = Tester.test(model, spoiled, results=False, verbose=False)
    assert scores.failures == 1 and scores.average_error == pytest.approx((10 + 30 + 60 + 400) / 4)


def test_bootstrap_interval():
    rng = np.random.default_rng(1)
    errors = rng.normal(100, 20, 400)
    low, high = bootstrap_interval(errors)
    assert (low, high) == bootstrap_interval(errors)                  # seeded
    assert low < errors.mean() < high
    half_width = 1.96 * errors.std() / math.sqrt(len(errors))        # normal approximation
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)
    assert bootstrap_interval([3.0] * 10) == (3.0, 3.0)


def test_results_table_keeps_one_row_per_title(items, titles, tmp_path):
    path = tmp_path / "results.csv"
    Tester.test(by_title, items, title="Hand", results=path, verbose=False)
    Tester.test(lambda item: 100.0, items, title="Flat", results=path, verbose=False)
    Tester.test(Batch(), items, results=path, verbose=False)
    Tester.test(lambda item: 150.0, items, title="Hand", results=path, verbose=False)
    table = testing.results(path)
    assert list(table["title"]) == ["Flat", "Batch Model", "Hand"]    # the latest run last
    hand = table.iloc[2]
    assert hand["average_error"] == pytest.approx((50 + 100 + 50 + 250) / 4)
    assert hand["size"] == 4 and hand["failures"] == 0
    assert table.iloc[1]["fit_seconds"] == 1.5 and math.isnan(hand["fit_seconds"])
    assert hand["error_low"] <= hand["average_error"] <= hand["error_high"]
    assert table["test_set"].nunique() == 1


def test_comparison_chart_sorts_and_labels(items, monkeypatch, tmp_path):
    path = tmp_path / "results.csv"
    for title, guess in [("Flat", 100.0), ("Close", None), ("Wild", 900.0)]:
        predictor = by_title if guess is None else (lambda item, g=guess: g)
        Tester.test(predictor, items, title=title, results=path, verbose=False, chart=False)
    drawn = {}

    def capture():
        axes = plt.gca()
        drawn["titles"] = [t.get_text() for t in axes.get_yticklabels()]
        drawn["labels"] = [t.get_text() for t in axes.texts]

    monkeypatch.setattr(plt, "show", capture)
    comparison_chart(path)
    assert drawn["titles"] == ["Wild", "Flat", "Close"]     # bottom to top: best on top
    assert drawn["labels"] == ["$712.50", "$112.50", "$100.00"]
    comparison_chart(path, titles=["Close"])
    assert drawn["titles"] == ["Close"]
    with pytest.raises(FileNotFoundError, match="no results recorded"):
        comparison_chart(tmp_path / "none.csv")
    with pytest.raises(ValueError, match="none of"):
        comparison_chart(path, titles=["Missing"])


def test_results_go_to_the_data_folder_unless_told_otherwise(monkeypatch, tmp_path):
    monkeypatch.delenv("PRICER_RESULTS")
    monkeypatch.setenv("PRICER_DATA_DIR", str(tmp_path))
    Tester.test(by_title, [make_item("Product 0", 100.0)], verbose=False, chart=False)
    assert testing.results(tmp_path / "results.csv")["title"].tolist() == ["By Title"]


def test_default_titles():
    def constant_pricer(item):
        return 1.0

    assert testing.default_title(constant_pricer) == "Constant Pricer"
    assert testing.default_title(Batch()) == "Batch Model"


def test_no_items_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one test item"):
        Tester(by_title, [])


def test_compact_mode_shows_a_few_lines_then_the_summary(items, titles, capsys):
    Tester.test(by_title, items, title="Hand", results=False, examples=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line[5:20] for line in lines[:2]] == ["1: Guess: $110.", "2: Guess: $80.0"]
    assert lines[2] == "... and 2 more items"
    assert lines[3].startswith("Hand: mean error $100.00 (95% interval $")


def test_mse_and_r2_match_hand_computed_values(items, titles):
    scores = Tester.test(by_title, items, results=False, verbose=False)
    squares = [(g - p) ** 2 for g, p in zip(GUESSES, PRICES, strict=True)]
    assert scores.mse == pytest.approx(sum(squares) / 4)               # 23,725
    mean = sum(PRICES) / 4
    spread = sum((p - mean) ** 2 for p in PRICES) / 4
    assert scores.r2 == pytest.approx(1 - scores.mse / spread)         # -0.32: worse than a mean


def test_results_are_kept_per_test_set_and_charted_for_one(items, monkeypatch, tmp_path):
    path = tmp_path / "results.csv"
    others = [make_item(f"Product {i}", 10.0) for i in range(4)]
    Tester.test(by_title, items, title="Hand", results=path, verbose=False, chart=False)
    Tester.test(by_title, others, title="Hand", results=path, verbose=False, chart=False)
    Tester.test(lambda item: 50.0, others, title="Flat", results=path, verbose=False,
                chart=False)
    table = testing.results(path)
    assert list(table["title"]) == ["Hand", "Hand", "Flat"]
    assert table["test_set"].nunique() == 2
    drawn = {}
    monkeypatch.setattr(plt, "show", lambda: drawn.update(
        titles=[t.get_text() for t in plt.gca().get_yticklabels()]))
    comparison_chart(path)                                   # the test set scored last
    assert sorted(drawn["titles"]) == ["Flat", "Hand"]
    comparison_chart(path, test_set=table["test_set"].iloc[0])
    assert drawn["titles"] == ["Hand"]
    with pytest.raises(ValueError, match="nothing was scored on the test set"):
        comparison_chart(path, test_set="nope")


class Ranged:
    """A predictor with price ranges: the truth's neighbourhood, as wide as asked."""

    name, calibrated = "Ranged", True

    def __call__(self, item):
        return item.price

    def predict_interval(self, items, level):
        half = {0.8: 1.0, 0.95: 300.0}[level]
        return (np.array([i.price - half for i in items]) + [0, 0, 0, 5],
                np.array([i.price + half for i in items]))


def test_the_coverage_of_price_ranges_is_reported(items, titles, capsys):
    scores = Tester.test(Ranged(), items, results=False, chart=False)
    assert (scores.coverage80, scores.coverage95, scores.width80) == (0.75, 1.0, 2.0)
    assert ("Price ranges: the 80% range holds the price for 75.0% of items (median width $2), "
            "the 95% range for 100.0%") in capsys.readouterr().out
    assert math.isnan(Tester.test(by_title, items, results=False, verbose=False).coverage80)
