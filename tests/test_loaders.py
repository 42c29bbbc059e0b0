"""ItemLoader over each source, with every record accounted for."""

import gzip
import json
import random

import pytest

import curation
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


# --- bad records and damaged files: one rejection each, never a lost load --------------------

GOOD = json.dumps(raw())


@pytest.mark.parametrize("bad", [
    '{"title": "Kettle", "description": 5, "price": "20"}',
    '{"title": "Kettle", "features": true, "description": 7.5, "price": "20"}',
    '{"title": "Kettle", "price": "20", "details": {"a": ' + "[" * 1000 + "]" * 1000 + "}}",
    '{"title": "Kettle", "price": "20", "details": ' + '{"a": ' * 100_000 + "1"
    + "}" * 100_000 + "}",
    '{"title": "Kettle", "price": "20", "features": ' + "[" * 100_000 + "]" * 100_000 + "}",
], ids=["a number as description", "a bool as features", "details nested 1000 deep",
        "details nested 100,000 deep", "features nested 100,000 deep"])
@pytest.mark.parametrize("workers", [1, 2])
def test_one_bad_record_is_one_rejection(tmp_path, bad, workers):
    path = tmp_path / "meta_Appliances.jsonl"
    path.write_text(f"{GOOD}\n{bad}\n{GOOD}\n")
    loader = ItemLoader("Appliances", path)
    assert len(loader.load(workers=workers)) == 2
    assert loader.report.read == 3 and sum(loader.report.rejected.values()) == 1
    assert len(list(loader.records())) >= 2  # the good ones, and no crash


@pytest.mark.parametrize("line, depth", [
    (b'{"a": [[1], {"b": [2]}]}', 4), (b'{"a": "[[[[{{{{"}', 1), (b'{"a": "\\"}', 1),
    (b'{"a": "\\\"[[[["}', 1), (b"[" * 5000 + b"]" * 5000, 5000), (b"{}", 1), (b"5", 0),
])
def test_nesting_depth_skips_brackets_inside_strings(line, depth):
    assert loaders.nesting(line) == depth
    assert loaders.as_record(line) is None or depth <= loaders.MAX_DEPTH


def test_a_byte_order_mark_is_not_a_malformed_record(tmp_path):
    path = tmp_path / "meta_Appliances.jsonl"
    path.write_bytes(loaders.BOM + f"{GOOD}\n{GOOD}\n".encode())
    loader = ItemLoader("Appliances", path)
    assert len(loader.load(workers=1)) == 2 and not loader.report.rejected


def test_a_truncated_gzip_keeps_what_came_before_and_names_the_file(tmp_path):
    path = tmp_path / "meta_Appliances.jsonl.gz"
    whole = gzip.compress("".join(json.dumps(raw(title=f"Kettle {i}")) + "\n"
                                  for i in range(200)).encode())
    path.write_bytes(whole[: len(whole) * 2 // 3])
    loader = ItemLoader("Appliances", path)
    with pytest.warns(UserWarning, match="meta_Appliances.jsonl.gz is damaged"):
        items = loader.load(workers=1)
    assert 50 < len(items) < 200 and items[0].title == "Kettle 0"
    assert loader.report.rejected == {"damaged file: rest unreadable": 1}
    assert loader.report.read == len(items) + 1


def test_a_plain_file_named_gz_is_read_as_what_it_is(tmp_path):
    path = write_jsonl(tmp_path / "meta_Appliances.jsonl", RECORDS)
    named = path.rename(tmp_path / "meta_Appliances.jsonl.gz")
    assert len(ItemLoader("Appliances", named).load(workers=1)) == 3


def fuzz_value(rng: random.Random, depth: int = 0):
    """A value of any JSON type, of any size and script."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice([None, True, False, 0, -1, 10 ** 30, 7.5, -0.0, 1e308])
    if kind == 1:
        return rng.choice(["", " ", "None", "$12.99", "12.99 - 19.99", "1.299", "9" * 400,
                           "USD 12", "\ufeff5", "12—19", "\u200b", "1" + " " * 50_000 + "2",
                           "1-" + " " * 50_000 + "x", "$" * 20_000 + "5"])
    if kind == 2:
        return " ".join(rng.choice(["Kettle", "boils", "WR57X10051", "水壶", "😀", "\x00",
                                    "\ud7ff", "é"]) for _ in range(rng.randrange(400)))
    if kind == 3:
        return rng.choice(["x", "中", "a b ", "T", "😀 "]) * rng.choice([1, 5_000, 200_000])
    if kind in (4, 5):
        return LONG
    if kind == 6:
        return [fuzz_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 7:
        return {str(rng.random()): fuzz_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    deep: list = []
    for _ in range(rng.choice([50, 990, 1100])):
        deep = [deep]
    return deep


def deep_line(rng: random.Random) -> bytes:
    """A record nesting far deeper than any JSON library's recursion limit."""
    depth = rng.choice([1_025, 20_000, 100_000])
    field = rng.choice([b'"details": ' + b'{"a": ' * depth + b"1" + b"}" * depth,
                        b'"features": ' + b"[" * depth + b"]" * depth])
    return b'{"title": "Kettle", "price": "5", ' + field + b"}"


def fuzz_line(rng: random.Random) -> bytes:
    """One line of a raw file: mostly records in the raw schema, some of them broken."""
    record = {f: fuzz_value(rng) for f in loaders.FIELDS if rng.random() < 0.8}
    if rng.random() < 0.6:
        record.update(title="Kettle", price=rng.choice(["24.99", 24.99, "$5", "None"]))
    try:
        text = json.dumps(record, ensure_ascii=rng.random() < 0.5)
    except RecursionError:
        return b'{"title": "Kettle", "price": "5", "details": {"a": ' + b"[" * 1000 \
            + b"]" * 1000 + b"}}"
    line, kind = text.encode(), rng.randrange(10)
    if kind == 0:
        return loaders.BOM + line
    if kind == 1:
        return line[: rng.randrange(1, len(line) + 1)]
    if kind == 2:
        return text.encode("latin-1", "replace")  # é and the like: not UTF-8
    if kind == 3:
        return b"#" + bytes(rng.choice([b for b in range(256) if b != 10]) for _ in range(50))
    if kind == 4:
        return rng.choice([b"5", b"[]", b'"Kettle"', b"null", b"{}", b'{"title": 5}'])
    if kind == 5 and rng.random() < 0.3:
        return deep_line(rng)
    if kind == 6 and rng.random() < 0.3:  # a record as another file type would hold it
        return rng.choice([line.decode("utf-8", "replace").encode("utf-16"), b"[" + line + b"]",
                           line.replace(b", ", b"\r")])
    if kind == 7 and rng.random() < 0.3:
        return text.replace('"Kettle"', json.dumps("Kettle " * rng.choice([100, 1_000]))).encode()
    return line


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzed_records_are_all_accounted_for(tmp_path, seed):
    rng = random.Random(seed)
    lines = [fuzz_line(rng) for _ in range(300)]
    data = b"\n".join(lines) + b"\n"
    loaded = []
    for name, content in (("plain.jsonl", data), ("zipped.jsonl.gz", gzip.compress(data))):
        (tmp_path / name).write_bytes(content)
        for workers in (1, 2):
            loader = ItemLoader("Appliances", tmp_path / name)
            items = loader.load(workers=workers)
            report = loader.report
            assert report.read == len(lines) == report.kept + sum(report.rejected.values())
            assert report.kept == len(items)
            loaded.append(([i.prompt for i in items], dict(report.rejected)))
    assert all(run == loaded[0] for run in loaded)
    assert 10 < len(loaded[0][0]) < 250  # some kept, many rejected


def test_fuzzed_dicts_from_the_hub_path_are_all_accounted_for():
    rng = random.Random(3)
    records = [{f: fuzz_value(rng) for f in loaders.FIELDS} | {"title": "Kettle", "price": "5"}
               for _ in range(200)]
    records += [{"title": "Kettle", "price": "5", "description": fuzz_value(rng), "details":
                 {"a": [[[[[[[[[[]]]]]]]]]] * 1}} for _ in range(20)]
    kept, rejected = items_from_chunk(records + [5, None, {"title": ["x"]}], "Appliances")
    assert len(kept) + sum(rejected.values()) == len(records) + 3


def no_records_files() -> dict[str, tuple[bytes, str]]:
    """Files from which no record can be read, and what the error says of each."""
    import bz2
    import lzma

    lines = f"{GOOD}\n{GOOD}\n"
    return {
        "empty": (b"", "it is empty"),
        "a gzip of nothing": (gzip.compress(b""), "it is empty"),
        "blank lines": (b"\n  \n\t\n" * 50, "blank lines"),
        "binary": (random.Random(0).randbytes(1 << 20).replace(b"{", b"("), "a title"),
        "bz2 named .gz": (bz2.compress(lines.encode()), "bz2"),
        "xz named .gz": (lzma.compress(lines.encode()), "xz"),
        "UTF-16": (lines.encode("utf-16"), "UTF-16"),
        "a JSON array": (("[" + ", ".join([GOOD, GOOD]) + "]").encode(), "JSON array"),
        "an indented JSON array": (json.dumps([json.loads(GOOD)] * 2, indent=2).encode(),
                                   "JSON array"),
        "CR line ends": (lines.replace("\n", "\r").encode(), "CR only"),
        "only malformed lines": (b"not json\n" * 20, "a title"),
    }


@pytest.mark.parametrize("kind", sorted(no_records_files()))
def test_a_file_with_no_records_is_a_clear_error_naming_it(tmp_path, kind, monkeypatch):
    content, said = no_records_files()[kind]
    path = tmp_path / "meta_Appliances.jsonl.gz"
    path.write_bytes(content)
    for workers in (1, 2):
        with pytest.raises(loaders.NoRecords, match=f"meta_Appliances.jsonl.gz.*{said}"):
            ItemLoader("Appliances", path).load(workers=workers)
    with pytest.raises(loaders.NoRecords, match="meta_Appliances.jsonl.gz"):
        list(ItemLoader("Appliances", path).records())
    monkeypatch.setenv("PRICER_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(loaders.NoRecords):
        curation.curate("Appliances", str(path), workers=1)
    assert not list((tmp_path / "data").rglob("*.parquet"))  # no empty category cached


def test_a_file_of_records_that_all_fail_curation_is_no_error(tmp_path):
    path = tmp_path / "meta_Appliances.jsonl"
    path.write_text(json.dumps({"title": "Kettle", "price": "None"}) + "\n")
    loader = ItemLoader("Appliances", path)
    assert loader.load(workers=1) == [] and loader.report.rejected == {"price missing": 1}
