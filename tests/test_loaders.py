"""ItemLoader over each source, with every record accounted for."""

import gzip
import json

import pytest

import loaders
from loaders import ItemLoader, LoadReport, items_from_chunk

LONG = "A sturdy kettle that boils water fast and switches itself off when done. " * 12


def raw(title="Kettle", price="24.99", description=(LONG,), **fields) -> dict:
    return {"title": title, "price": price, "description": list(description), "features": [],
            "details": "{}", **fields}


RECORDS = [
    raw(),                                          # kept
    raw(price="$1,299.99"),                         # out of range
    raw(price="None"),                              # price missing
    raw(price="from 9.99"),                         # price qualified
    raw(price="9.99 - 12.99"),                      # price a range
    raw(description=["Too short."]),                # too short
    raw(title=None),                                # malformed: no title
    raw(description=LONG, details={"Brand": "Acme", "Color": None}),  # odd shapes, kept
    raw(price=12),                                  # numeric price, kept
]
EXPECTED = {"out of price range": 1, "price missing": 1, "price qualified or not a price": 1,
            "price a range": 1, "too short": 1, "malformed record": 2}


def write_jsonl(path, records, extra_lines=()):
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("name", ["meta_Appliances.jsonl", "meta_Appliances.jsonl.gz"])
def test_local_file_counts_every_record(tmp_path, name):
    path = write_jsonl(tmp_path / name, RECORDS, extra_lines=['{"title": "cut off', ""])
    loader = ItemLoader("Appliances", path)
    items = loader.load(workers=1)
    report = loader.report
    assert [i.price for i in items] == [24.99, 24.99, 12.0]
    assert all(i.category == "Appliances" for i in items)
    assert dict(report.rejected) == EXPECTED
    assert (report.read, report.kept) == (10, 3)
    assert (report.priced, report.in_range) == (5, 4)
    assert "kept 3" in str(report) and "price a range" in str(report)


def test_folder_source_finds_the_category_file(tmp_path):
    write_jsonl(tmp_path / "meta_Toys_and_Games.jsonl", RECORDS)
    assert len(ItemLoader("Toys_and_Games", tmp_path).load(workers=1)) == 3
    with pytest.raises(FileNotFoundError, match="meta_Appliances"):
        ItemLoader("Appliances", tmp_path).load(workers=1)


def test_missing_path_says_what_a_source_may_be(tmp_path):
    with pytest.raises(FileNotFoundError, match="'sample', 'hub'"):
        ItemLoader("Appliances", tmp_path / "nope.jsonl").load(workers=1)


def test_sample_source_accounts_for_every_record():
    loader = ItemLoader("Appliances", "sample")
    items = loader.load(workers=1)
    report = loader.report
    assert report.read == loaders.SAMPLE_SIZE
    assert report.kept == len(items) > 500
    assert report.read == report.kept + sum(report.rejected.values())
    assert report.read > report.priced > report.in_range > report.kept
    assert all(i.include and i.category == "Appliances" for i in items)


def test_workers_give_the_same_items_in_the_same_order():
    one = ItemLoader("Musical_Instruments").load(workers=1)
    two = ItemLoader("Musical_Instruments").load(workers=2)
    assert [i.prompt for i in one] == [i.prompt for i in two]


def test_unknown_sample_category_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown category"):
        ItemLoader("Books").load(workers=1)


def test_hub_path_reads_through_the_generic_json_builder(tmp_path, monkeypatch):
    # The hub's raw files hold `details` as objects; the JSON builder gives every record
    # every key of the file, which the Item must not turn into text.
    records = [raw(details={"Brand": "Acme"}), raw(details={"Color": "Red"}), raw(price="None")]
    path = write_jsonl(tmp_path / "meta_Appliances.jsonl", records)
    monkeypatch.setattr(loaders, "hub_url", lambda category: str(path))
    loader = ItemLoader("Appliances", "hub")
    items = loader.load(workers=1)
    assert [json.loads(i.details) for i in items] == [{"Brand": "Acme"}, {"Color": "Red"}]
    assert loader.report.rejected == {"price missing": 1}


def test_chunks_of_dicts_and_lines_are_treated_alike():
    lines = [json.dumps(r).encode() for r in RECORDS]
    from_dicts, from_lines = items_from_chunk(RECORDS, "X"), items_from_chunk(lines, "X")
    assert [i.prompt for i in from_dicts[0]] == [i.prompt for i in from_lines[0]]
    assert from_dicts[1] == from_lines[1]


def test_report_arithmetic():
    report = LoadReport("X")
    report.add(2, {"price missing": 3, "out of price range": 1, "malformed record": 1})
    assert (report.read, report.priced, report.in_range, report.kept) == (7, 3, 2, 2)
