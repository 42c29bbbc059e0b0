"""The synthetic sample: raw schema, seeded, untidy, and priced by its text."""

import json
import statistics
from collections import defaultdict

import pytest

import sample_data
from items import parse_price

RAW_FIELDS = {"main_category", "title", "average_rating", "rating_number", "features",
              "description", "price", "images", "videos", "store", "categories", "details",
              "parent_asin", "bought_together"}


def priced(records):
    return [(r, parse_price(r["price"])[0]) for r in records if parse_price(r["price"])[0]]


def test_records_have_the_raw_schema():
    for r in sample_data.generate("Electronics", n=50):
        assert set(r) == RAW_FIELDS
        assert isinstance(r["description"], list) and isinstance(r["features"], list)
        assert isinstance(r["details"], str)
        details = json.loads(r["details"])
        assert not details or {"Brand", "Item Weight", "Best Sellers Rank"} <= set(details)
        assert r["price"] is None or isinstance(r["price"], str)


def test_seeded():
    assert sample_data.generate("Toys_and_Games", 20) == sample_data.generate("Toys_and_Games", 20)
    assert sample_data.generate("Toys_and_Games", 20) != sample_data.generate("Toys_and_Games",
                                                                              20, seed=7)
    assert sample_data.generate("Toys_and_Games", 20) != sample_data.generate("Automotive", 20)


def test_prices_are_missing_or_malformed_about_as_often_as_in_real_data():
    records = sample_data.generate("Appliances", 2000)
    reasons = [parse_price(r["price"])[1] for r in records]
    assert 0.35 < reasons.count("missing") / len(records) < 0.45
    assert 0.005 < sum(r not in (None, "missing") for r in reasons) / len(records) < 0.05
    short = [r for r in records if sum(map(len, r["description"] + r["features"])) < 300]
    assert len(short) > 100


def test_prices_follow_the_text():
    pairs = priced(sample_data.generate("Tools_and_Home_Improvement", 4000))
    by_tier = defaultdict(list)
    for record, price in pairs:
        tier = next(t for t, (_, names) in sample_data.BRANDS.items()
                    if json.loads(record["details"] or "{}").get("Brand", record["store"]) in names)
        product = record["categories"][1]
        by_tier[tier].append(price / dict(sample_data.PRODUCTS[
            "Tools_and_Home_Improvement"][1])[product])
    assert statistics.median(by_tier["premium"]) > 1.5 * statistics.median(by_tier["mid"])
    assert statistics.median(by_tier["mid"]) > 1.3 * statistics.median(by_tier["budget"])


def test_prices_have_a_long_right_tail():
    prices = [p for _, p in priced(sample_data.generate("Electronics", 3000))]
    assert statistics.mean(prices) > 1.5 * statistics.median(prices)
    assert max(prices) > 10 * statistics.median(prices)


def test_write_is_deterministic(tmp_path):
    a = sample_data.write("Automotive", tmp_path / "a.jsonl.gz", n=30)
    b = sample_data.write("Automotive", tmp_path / "b.jsonl.gz", n=30)
    assert a.read_bytes() == b.read_bytes()
    assert not list(tmp_path.glob("*.partial"))


def test_an_unknown_category_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="unknown category"):
        sample_data.write("Books", tmp_path / "meta_Books.jsonl.gz", n=3)
    assert not list(tmp_path.iterdir())
