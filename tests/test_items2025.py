"""The 2025 edition's rules, checked against texts written out by hand from the rules (not by
the code under test): parsing a raw record, the prompt byte for byte, the hub's shape, and
the sample weighted by price squared."""

import json
import pickle
import random
import re

import numpy as np
import pytest

import curation
import curation2025
import items
import loaders
from items2025 import Item2025, drop_part_numbers, from_row, weight_in_pounds

FILLER = "Boils water fast. " * 40  # 720 characters: enough for an item
RECORD = {
    "title": "Crestwood Kettle KT40021X",
    "description": [FILLER, "Auto\noff."],
    "features": ["PREMIUM steel, 1.7 litres", "Quiet"],
    "details": json.dumps({"Brand": "Crestwood", "Item Weight": "24 ounces",
                           "Part Number": "KT40021X", "Best Sellers Rank": {"Kitchen": 5},
                           "Batteries Required?": "No", "Model": "AB12345C", "Color": "Red"}),
    "price": "24.99",
}
# By the rules: the title; str() of each list, its "\n" written "\\n" by str(); "PREMIUM"
# goes (its line holds a capital and a digit after it), as do the part numbers; the details
# as JSON without the five keys; stripped, so the title line keeps its space.
FULL = ("Crestwood Kettle \n"
        + "['" + FILLER + "', 'Auto\\noff.']\n"
        + "[' steel, 1.7 litres', 'Quiet']\n"
        + '{"Brand": "Crestwood", "Item Weight": "24 ounces", "Model": "", "Color": "Red"}')


def test_a_record_becomes_the_full_text_the_rules_make():
    item, why = loaders.item_from_record(RECORD, "Appliances", edition="2025")
    assert why is None and isinstance(item, Item2025)
    assert item.full.encode() == FULL.encode()
    assert (item.title, item.category, item.price, item.weight) == (
        "Crestwood Kettle KT40021X", "Appliances", 24.99, 1.5)
    assert item.summary is None and item.text == FULL  # models read the full text until then


def test_descriptions_are_flattened_as_str_writes_them():
    record = {**RECORD, "description": ["Tab\there,  two  spaces,    four"], "features": []}
    line = Item2025.from_record({**record, "description": [*record["description"], FILLER]},
                                24.99).full.split("\n")[1]
    # str() writes the tab as "\t"; each double space becomes one, once: four become two
    assert line.startswith("['Tab\\there, two spaces,  four', ")


def test_an_item_needs_600_characters_and_keeps_4000():
    short = {**RECORD, "description": [], "features": [], "details": "{}"}
    for length, kept in ((599, False), (600, True)):
        record = {**short, "title": "x" * length}
        item, why = loaders.item_from_record(record, "Appliances", edition="2025")
        assert (item is not None) == kept and why == (None if kept else "too short")
    huge = {**RECORD, "description": ["x" * 10_000], "features": ["y" * 10_000]}
    item = Item2025.from_record(huge, 24.99)
    description, features = item.full.split("\n")[1:3]
    assert len(description) == 3_000 and description.startswith("['xxx")
    assert len(item.full) == 4_000
    assert features == ("['" + "y" * 10_000)[:4_000 - len("Crestwood Kettle \n") - 3_001]


@pytest.mark.parametrize("raw, expected", [
    ("24.99", (24.99, None)), ("1e2", (100.0, None)), (" 7 ", (7.0, None)),
    ("$24.99", (None, "price malformed")), ("1,299.00", (None, "price malformed")),
    (None, (None, "price missing")), ("0.49", (None, "out of price range")),
    ("999.5", (None, "out of price range")), ("nan", (None, "out of price range")),
])
def test_prices_are_read_with_float(raw, expected):
    item, why = loaders.item_from_record({**RECORD, "price": raw}, "Appliances",
                                         edition="2025")
    assert ((item.price if item else None), why) == expected


def test_malformed_details_are_a_counted_rejection():
    for details in ("{not json", "[1, 2]", 5):
        item, why = loaders.item_from_record({**RECORD, "details": details}, "Appliances",
                                             edition="2025")
        assert item is None and why.startswith("malformed record")


@pytest.mark.parametrize("weight, pounds", [
    ("3 Pounds", 3.0), ("8 ounces", 0.5), ("453.592 grams", 1.0), ("907184 milligrams", 2.0),
    ("0.453592 Kilograms", 1.0), ("250 hundredths pounds", 2.5), ("2 kg", 0.0),
    ("heavy", 0.0), ("12", 0.0), ("", 0.0), (None, 0.0),
])
def test_weights_in_pounds(weight, pounds):
    assert weight_in_pounds({"Item Weight": weight}) == pytest.approx(pounds)


EDITION_PATTERN = r"\b(?=[A-Z0-9]{7,}\b)(?=.*[A-Z])(?=.*\d)[A-Z0-9]+\b"


def test_part_numbers_go_as_the_edition_s_pattern_removes_them():
    rng = random.Random(7)
    alphabet = "AB7 \n.x_-٣é"  # capitals, digits, space, line breaks, word and Arabic digits
    for _ in range(3_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        text = text.replace("A", "AAAAAA7", rng.randint(0, 2))
        assert drop_part_numbers(text) == re.sub(EDITION_PATTERN, "", text), repr(text)


@pytest.mark.parametrize("price, line", [
    (24.99, "Price is $25.00"), (24.5, "Price is $24.00"), (25.5, "Price is $26.00"),
    (0.5, "Price is $0.00"), (999.49, "Price is $999.00"),
])
def test_prompts_byte_for_byte(price, line):
    summary = "Title: Kettle\nCategory: Appliances\nBrand: Crestwood\nDescription: Boils.\n" \
              "Details: 1.7 litres"
    item = Item2025("Kettle", "Appliances", price, FULL, 1.5, summary)
    expected = ("What does this cost to the nearest dollar?\n\n" + summary + "\n\n" + line)
    assert item.prompt.encode() == expected.encode()
    assert item.test_prompt().encode() == expected[:-len(line) + len("Price is $")].encode()


def test_the_test_prompt_stops_at_the_first_price_line():
    item = Item2025("Kettle", "Appliances", 30, summary="Title: Kettle\nPrice is $5 off")
    assert item.test_prompt() == ("What does this cost to the nearest dollar?\n\n"
                                  "Title: Kettle\nPrice is $")


def test_an_item_without_a_summary_has_no_prompt_yet():
    with pytest.raises(ValueError, match="no summary yet"):
        Item2025("Kettle", "Appliances", 30, FULL).test_prompt()


def test_an_item_pickles_and_loads_back_safely(tmp_path):
    made = [Item2025("Kettle", "Appliances", 24.99, FULL, 1.5, "Title: Kettle", 7)]
    items.save_pickle(made, tmp_path / "train.pkl")
    back = items.load_pickle(tmp_path / "train.pkl")
    assert vars(back[0]) == vars(made[0])
    state = made[0].__getstate__() | {"price": "24.99"}
    with pytest.raises(pickle.UnpicklingError, match="'price'"):
        Item2025.__new__(Item2025).__setstate__(state)


def splits():
    raw = [Item2025(f"Kettle {n}", "Appliances", 10.0 + n, f"Kettle {n}\n{FILLER}", n / 4,
                    None, n) for n in range(6)]
    summarised = [Item2025(i.title, i.category, i.price, i.full, i.weight,
                           f"Title: {i.title}", i.id) for i in raw]
    return raw, summarised


def test_splits_round_trip_through_the_hub_shape(tmp_path):
    for made in splits():
        parts = (made[:3], made[3:5], made[5:])
        dataset = curation2025.to_dataset(*parts)
        assert list(dataset) == ["train", "validation", "test"]
        assert dataset["train"].column_names == ["title", "category", "price", "full",
                                                 "weight", "summary", "prompt", "id"]
        dataset.save_to_disk(str(tmp_path / "saved"))
        for back in (curation2025.from_dataset(dataset),
                     curation2025.load_prebuilt(tmp_path / "saved")):
            assert [[vars(i) for i in part] for part in back] == \
                   [[vars(i) for i in part] for part in parts]
        curation2025.save_split(parts, tmp_path / "split")
        assert [[vars(i) for i in p] for p in curation2025.load_split(tmp_path / "split")] == \
               [[vars(i) for i in p] for p in parts]


def test_the_edition_s_published_rows_load():
    """items_raw_* rows have no summary, prompt or id; items_* rows have both."""
    raw = {"title": "Kettle", "category": "Appliances", "price": 24.99, "full": FULL,
           "weight": 1.5}
    assert from_row(raw).summary is None and from_row(raw).id is None
    prompt = "What does this cost to the nearest dollar?\n\nTitle: Kettle\n\nPrice is $25.00"
    assert from_row({**raw, "summary": "Title: Kettle", "prompt": prompt}).prompt == prompt
    assert from_row({**raw, "prompt": prompt}).summary == "Title: Kettle"
    with pytest.raises(ValueError, match="not the one its summary makes"):
        from_row({**raw, "summary": "Title: Teapot", "prompt": prompt})
    with pytest.raises(ValueError, match="no field 'text'"):
        from_row({**raw, "text": "Kettle"})


@pytest.fixture(scope="module")
def pool():
    curated = curation.curate_all(edition="2025", show_cached=False)
    prices, categories = curation.prices_and_categories(curated)
    return prices, categories


def test_the_sample_is_drawn_as_the_edition_draws_it(pool):
    prices, categories = pool
    # The rule, written out: p scaled to 0..1, squared, Tools x0.5, Automotive x0.05.
    p = (prices - prices.min()) / (prices.max() - prices.min())
    w = p ** 2 * np.array([{"Tools_and_Home_Improvement": 0.5, "Automotive": 0.05}.get(c, 1)
                           for c in categories])
    np.random.seed(42)
    expected = np.random.choice(len(prices), 4_500, replace=False, p=w / w.sum())
    assert curation2025.weighted_indices(prices, categories, 4_500).tolist() == \
        expected.tolist()


def test_the_weighted_sample_leans_to_dear_items(pool):
    """On the synthetic corpus (8,700 items): the draw's prices against the pool's."""
    prices, categories = pool
    chosen = curation2025.weighted_indices(prices, categories, 4_500)
    drawn = prices[chosen]
    automotive = np.array(categories) == "Automotive"
    assert np.median(drawn) > 1.8 * np.median(prices)  # $87 against $40
    assert (drawn < 20).mean() < (prices < 20).mean() / 4  # 4% against 28%
    assert (drawn > 300).mean() > 1.5 * (prices > 300).mean()  # 11% against 6%
    assert automotive[chosen].mean() < automotive.mean() / 2  # 4% against 13%
    assert prices.argmin() not in set(chosen.tolist())  # the cheapest weighs 0
    with pytest.raises(ValueError, match="ask for smaller splits"):
        curation2025.weighted_indices(prices, categories, len(prices))


def test_the_lite_split_is_the_start_of_the_full_one():
    full = curation2025.raw("full")
    lite = curation2025.raw("lite")
    assert [len(part) for part in full] == [4_000, 250, 250]
    assert [len(part) for part in lite] == [800, 250, 250]
    for big, small in zip(full, lite, strict=True):
        assert [i.full for i in small] == [i.full for i in big[:len(small)]]
    assert [i.id for part in lite for i in part] == list(range(1_300))
