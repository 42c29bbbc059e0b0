"""Curation: the course's balanced sample, resumable full curation, reproducible splits, and
every way of saving and loading them back."""

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest

import charts
import curation
import llama_tokens
import loaders
import sample_data
import settings
import testing
from items import Item

matplotlib.use("Agg")
SPLIT_FILES = ["train.pkl", "test.pkl", "train.parquet", "test.parquet"]


@pytest.fixture(scope="module")
def raw_folder(tmp_path_factory):
    """A small raw meta_<Category>.jsonl per category, in the hub's schema."""
    folder = tmp_path_factory.mktemp("raw")
    for category in sample_data.CATEGORIES:
        records = sample_data.generate(category, n=150, seed=3)
        (folder / f"meta_{category}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in records))
    return folder


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PRICER_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def build(raw_folder, workers=1):
    return curation.full(str(raw_folder), workers, sizes=(None, 20), cap=2)


def split_folder(data_dir):
    (folder,) = data_dir.glob("full-*")
    return folder


def course_sample(items):
    """The course's balanced sample, as its notebook wrote it."""
    slots = defaultdict(list)
    for item in items:
        slots[round(item.price)].append(item)
    np.random.seed(42)
    sample = []
    for i in range(1, 1000):
        slot = slots[i]
        if i >= 240 or len(slot) <= 1200:
            sample.extend(slot)
        else:
            weights = np.array([1 if item.category == "Automotive" else 5 for item in slot])
            weights = weights / np.sum(weights)
            selected_indices = np.random.choice(len(slot), size=1200, replace=False, p=weights)
            sample.extend([slot[i] for i in selected_indices])
    return sample


def test_balanced_sample_is_the_courses():
    rng = random.Random(0)
    things = [SimpleNamespace(price=rng.choice([0.5, 2.5, 3.5, 999.49]) if i % 50 == 0
                              else round(rng.lognormvariate(1.8, 0.8), 2),
                              category=rng.choice(sample_data.CATEGORIES))
              for i in range(40_000)]
    expected = course_sample(things)
    assert len(expected) < len(things) - 10_000  # many buckets were over the cap
    chosen = curation.balanced_indices([t.price for t in things], [t.category for t in things])
    assert [id(things[i]) for i in chosen] == [id(t) for t in expected]


def test_balanced_sample_weights_automotive_down():
    prices = [10.0] * 2000
    categories = ["Automotive"] * 1000 + ["Toys_and_Games"] * 1000
    chosen = curation.balanced_indices(prices, categories, cap=300)
    automotive = sum(categories[i] == "Automotive" for i in chosen)
    assert len(chosen) == len(set(chosen)) == 300
    assert 20 < automotive < 80  # weighted 1 against 5: about 1/6 of the draws


def test_split_refuses_more_than_there_is():
    with pytest.raises(ValueError, match="ask for smaller splits"):
        curation.split(list(range(5)), 4, 2)


def test_split_is_byte_identical_across_runs(raw_folder, tmp_path, monkeypatch):
    saved = []
    for run, workers in (("a", 1), ("b", 2)):
        monkeypatch.setenv("PRICER_DATA_DIR", str(tmp_path / run))
        train, test = build(raw_folder, workers)
        assert len(test) == 20 and len(train) > 100
        saved.append([(split_folder(tmp_path / run) / f).read_bytes() for f in SPLIT_FILES])
    assert saved[0] == saved[1]


class Interrupted(Exception):
    """Stands for a crash or a Ctrl-C in the middle of a category."""


def test_interrupted_curation_resumes(raw_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("PRICER_DATA_DIR", str(tmp_path / "whole"))
    build(raw_folder)
    whole = [(split_folder(tmp_path / "whole") / f).read_bytes() for f in SPLIT_FILES]

    monkeypatch.setenv("PRICER_DATA_DIR", str(tmp_path / "resumed"))
    stream, loaded, stop_at = loaders.ItemLoader.stream, [], [sample_data.CATEGORIES[3]]

    def interrupted(self, workers=8):
        loaded.append(self.name)
        for kept in stream(self, workers):
            if self.name in stop_at:
                stop_at.clear()
                raise Interrupted
            yield kept

    monkeypatch.setattr(loaders.ItemLoader, "stream", interrupted)
    with pytest.raises(Interrupted):
        build(raw_folder)
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "resumed").rglob("*.parquet"))
    assert cached == sorted(sample_data.CATEGORIES[:3])

    loaded.clear()
    build(raw_folder)
    assert loaded == sample_data.CATEGORIES[3:]
    assert [(split_folder(tmp_path / "resumed") / f).read_bytes() for f in SPLIT_FILES] == whole


def test_cache_is_keyed_by_source_and_settings(raw_folder, data_dir, tmp_path):
    fixed = curation.cache_path("Appliances", str(raw_folder))
    assert curation.cache_path("Appliances", str(raw_folder), course_compatible=True) != fixed
    copy = tmp_path / "copy"
    shutil.copytree(raw_folder, copy)
    before = curation.cache_path("Appliances", str(copy))
    assert before.parent != fixed.parent  # another source, another folder
    with open(copy / "meta_Appliances.jsonl", "a") as f:
        f.write("{}\n")
    assert curation.cache_path("Appliances", str(copy)) != before  # the raw file changed


def names_under(code: Path, data: Path) -> list[str]:
    """The category cache and lite split folder that the project's code at `code` names."""
    script = ("import curation; print(curation.cache_path('Appliances', 'sample').name); "
              "print(curation.folder_for('lite', 'sample').name)")
    env = dict(os.environ, PYTHONPATH=str(code), PRICER_DATA_DIR=str(data))
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=code,
                          capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.mark.parametrize("module, edit", [
    ("items.py", ("REMOVALS = [", "REMOVALS = [\"Color\", ")),    # one boilerplate key more
    ("loaders.py", ("CHUNK_SIZE = 1000", "CHUNK_SIZE = 999")),
])
def test_a_rule_change_names_new_caches_and_splits(tmp_path, module, edit):
    for name in ("before", "after"):
        (tmp_path / name).mkdir()
        for path in settings.ROOT.glob("*.py"):
            shutil.copy(path, tmp_path / name)
    changed = tmp_path / "after" / module
    old, new = edit
    assert old in changed.read_text()
    changed.write_text(changed.read_text().replace(old, new, 1))
    before = names_under(tmp_path / "before", tmp_path / "data")
    after = names_under(tmp_path / "after", tmp_path / "data")
    assert before[0] != after[0] and before[1] != after[1]
    assert names_under(tmp_path / "before", tmp_path / "data") == before  # and only then


def test_saved_split_loads_back_every_way(raw_folder, data_dir, tmp_path, capsys):
    train, test = build(raw_folder)
    folder = split_folder(data_dir)

    def same(loaded, attributes=("prompt", "price", "category", "title", "details")):
        """Whether loaded (train, test) hold the built Items' `attributes`."""
        def values(split):
            return [[getattr(i, n) for n in attributes] for i in split]
        return [values(s) for s in loaded] == [values(train), values(test)]

    assert same(curation.load_split(folder))
    course = tmp_path / "course"  # the course's published form: pickles only
    course.mkdir()
    for name in ("train.pkl", "test.pkl"):
        shutil.copy(folder / name, course / name)
    assert same(curation.load_prebuilt(course))

    dataset = curation.to_dataset(train, test)
    assert dataset["test"][0]["text"].endswith("Price is $")
    dataset.save_to_disk(str(tmp_path / "hub"))
    for loaded in (curation.load_prebuilt(dataset), curation.load_prebuilt(tmp_path / "hub")):
        assert same(loaded, ("prompt", "price", "token_count"))

    scores = testing.Tester(lambda item: 100.0, curation.load_prebuilt(course)[1]).run()
    assert scores.size == len(test)
    assert capsys.readouterr().out.count("Guess: $100.00") == len(test)


def test_course_shaped_hub_dataset_loads():
    from datasets import Dataset, DatasetDict

    body = "Kettle\n" + "Boils water fast and keeps it warm. " * 30
    shape = DatasetDict({
        "train": Dataset.from_dict({"text": [f"{Item.QUESTION}\n\n{body}\n\nPrice is $25.00"],
                                    "price": [24.99]}),
        "test": Dataset.from_dict({"text": [f"{Item.QUESTION}\n\n{body}\n\nPrice is $"],
                                   "price": [310.5]}),
    })
    train, test = curation.from_dataset(shape)
    assert train[0].title == "Kettle" and train[0].price == 24.99
    assert test[0].prompt.endswith("Price is $310.00")  # the course's round() halves to even
    assert test[0].test_prompt() == shape["test"][0]["text"]
    assert test[0].token_count == llama_tokens.count(test[0].prompt)


def test_push_to_hub_needs_a_token(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ValueError, match="HF_TOKEN"):
        curation.push_to_hub([], [], "someone/pricer-data")


def test_columns_of_the_courses_prompts_load():
    prompt = f"{Item.QUESTION}\n\nKettle\nBoils.\n\nPrice is $25.00"
    (item,) = curation.items_from_columns({"title": ["Kettle"], "category": ["Appliances"],
                                           "price": [24.99], "prompt": [prompt]})
    assert item.text == "Kettle\nBoils." and item.prompt == prompt and item.details is None
    assert item.token_count == llama_tokens.count(prompt)


def test_a_row_whose_price_is_not_one_is_refused_by_name():
    columns = {"text": ["Kettle\nBoils.", "Teapot\nPours."], "price": [24.99, float("nan")]}
    with pytest.raises(ValueError, match=r"split's rows: the price of item 1 \('Teapot'\) is not"):
        curation.items_from_columns(columns)


def test_summary_and_charts(raw_folder, data_dir):
    curated = curation.curate_all(str(raw_folder))
    frame = curation.summary(curated)
    counts = frame.category.value_counts(sort=False).to_dict()
    assert counts == {c.category: c.report.kept for c in curated}
    assert (frame.chars > frame.token_count).all()
    charts.category_bars(counts)
    labels = [t.get_text() for t in matplotlib.pyplot.gca().texts]
    assert labels == [f"{n:,}" for n in counts.values()]
    charts.category_donut(counts)
    charts.price_histogram(frame.price)
    charts.token_histogram(frame.token_count)
    charts.size_against_price(frame.chars, frame.price)
    matplotlib.pyplot.close("all")


def test_fast_tokenizing_matches_plain(raw_folder):
    items = loaders.ItemLoader("Electronics", str(raw_folder)).load(workers=1)
    items += loaders.ItemLoader("Toys_and_Games", str(raw_folder), True).load(workers=1)
    assert items and all(i.token_count == llama_tokens.count(i.prompt) for i in items)
    rng = random.Random(1)
    for item in items[:40]:
        text = item.text + " " + item.text
        n = rng.randint(1, 400)
        assert llama_tokens.encode_head(text, n) == llama_tokens.encode(text)[:n]
        cut = rng.randint(0, len(text))
        assert llama_tokens.count_joined(text[:cut], llama_tokens.encode(text), "\n\nPrice") \
            == llama_tokens.count(text[:cut] + "\n\nPrice")


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("stall_at", [1, 2])  # in train.parquet, then in test.parquet
def test_a_split_save_killed_midway_is_redone(raw_folder, data_dir, tmp_path, stall_at):
    build(raw_folder)
    folder = split_folder(data_dir)
    whole = [(folder / f).read_bytes() for f in SPLIT_FILES]
    shutil.rmtree(folder)  # the categories stay curated: a rerun only saves the split again
    ready = tmp_path / "ready"
    code = (f"import time, curation\n"
            f"write, calls = curation.pq.ParquetWriter.write_table, []\n"
            f"def stall(self, table, **kw):\n"
            f"    write(self, table, **kw)\n"
            f"    calls.append(1)\n"
            f"    if len(calls) == {stall_at}:\n"
            f"        open({str(ready)!r}, 'w').close()\n"
            f"        time.sleep(60)\n"
            f"curation.pq.ParquetWriter.write_table = stall\n"
            f"curation.full({str(raw_folder)!r}, 1, sizes=(None, 20), cap=2)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    while not ready.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    run.kill()  # kill -9: no clean-up of any kind
    run.wait()
    assert ready.exists() and not curation.is_saved(folder)
    build(raw_folder)
    assert curation.is_saved(folder)
    assert [(folder / f).read_bytes() for f in SPLIT_FILES] == whole


def test_two_curations_of_one_category_at_once_both_finish(raw_folder, data_dir, monkeypatch):
    stream, inner = loaders.ItemLoader.stream, []

    def racing(self, workers=8):
        for kept in stream(self, workers):
            if not inner:  # halfway through its file, another run curates the same category
                inner.append(None)
                inner[0] = curation.curate("Appliances", str(raw_folder))
            yield kept

    monkeypatch.setattr(loaders.ItemLoader, "stream", racing)
    outer = curation.curate("Appliances", str(raw_folder))
    assert outer.path == inner[0].path and outer.report.kept == inner[0].report.kept > 0
    assert len(curation.prices_and_categories([outer])[0]) == outer.report.kept
    assert not list(outer.path.parent.glob("*.partial"))
