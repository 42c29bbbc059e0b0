"""The features the classical models share: product facts, the nearest rows, retrieval."""

import json

import numpy as np
import pytest

import curation
import features
from features import nearest
from items import Item


@pytest.fixture(scope="module")
def split():
    return curation.lite()


def test_product_facts_read_details_or_text(split):
    train, _ = split
    with_details = next(i for i in train if "Weight " in i.text and "Brand " in i.text)
    facts = features.product_facts(with_details)
    details = json.loads(with_details.details)
    assert f"{facts['weight']} pounds" == details["Item Weight"]
    assert facts["brand"] == details["Brand"].lower()
    ranks = list(details["Best Sellers Rank"].values())
    assert facts["rank"] == pytest.approx(sum(ranks) / len(ranks))
    text_only = Item.from_text(with_details.text, with_details.price)
    from_text = features.product_facts(text_only)
    assert from_text["weight"] == facts["weight"] and from_text["brand"] == facts["brand"]
    assert from_text["rank"] is None and from_text["length"] == facts["length"]


def test_pounds():
    assert features.pounds("12 Ounces") == pytest.approx(0.75)
    assert features.pounds("2 kg") == pytest.approx(4.40924)
    assert features.pounds("500 grams") == pytest.approx(1.10231)
    assert features.pounds("3 lbs") == 3.0 and features.pounds("") is None


def test_nearest_finds_the_most_similar_rows():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 8))
    queries = rng.normal(size=(7, 8))
    sims, rows = nearest(queries, base, 3)
    expected = np.argsort(-(queries @ base.T), axis=1)[:, :3]
    assert np.array_equal(rows, expected)
    assert np.array_equal(sims, np.take_along_axis(queries @ base.T, expected, axis=1))
    assert nearest(queries, base[:2], 5)[1].shape == (7, 2)
