"""The MiniLM fine-tune: trains, learns, predicts, saves and loads, scores with the Tester."""

import json
import math

import matplotlib
import pytest
import torch
from tolerance import MINILM, assert_close, assert_scores_as_saved

import testing
from items import Item
from minilm import Hyperparameters, MiniLMPricer

pytestmark = pytest.mark.slow  # trains a model with torch

matplotlib.use("Agg")


def item(text: str, price: float) -> Item:
    return Item.from_text(text, price)


# Cheap spare parts and expensive appliances: a signal a few steps can pick up.
CHEAP = [item(f"Replacement knob {n}\nSmall plastic knob for a stove, pack of {n}.", 5 + n)
         for n in range(12)]
DEAR = [item(f"French door refrigerator {n}\nLarge stainless steel fridge with ice maker.",
             800 + 10 * n) for n in range(12)]
TRAIN = [x for pair in zip(CHEAP, DEAR, strict=True) for x in pair]
FAST = Hyperparameters(max_length=24, batch_size=8, epochs=3, learning_rate=3e-4)


@pytest.fixture(scope="module")
def fitted():
    before = MiniLMPricer(FAST)
    frozen = before.model.encoder.encoder.layer[0].attention.self.query.weight.clone()
    top = before.model.encoder.encoder.layer[-1].output.dense.weight.clone()
    return before.fit(TRAIN, progress=False), frozen, top


def test_fit_trains_the_top_layers_and_learns_the_signal(fitted):
    model, frozen, top = fitted
    layers = model.model.encoder.encoder.layer
    assert torch.equal(layers[0].attention.self.query.weight, frozen)
    assert not torch.equal(layers[-1].output.dense.weight, top)
    assert model.mean == pytest.approx(sum(math.log1p(i.price) for i in TRAIN) / len(TRAIN))
    assert model.fit_seconds > 0 and model.examples_per_second > 0
    cheap, dear = model.predict(CHEAP[0]), model.predict(DEAR[0])
    assert 0 < cheap < dear


def test_predict_many_matches_one_at_a_time(fitted):
    model = fitted[0]
    many = model.predict_many(TRAIN[:5])
    # a padded batch of five and one text take other kernels: float32 to MiniLM's depth
    assert_close([model(i) for i in TRAIN[:5]], many, MINILM, "MiniLM one by one")


def test_save_and_load_give_the_same_predictions(fitted, tmp_path):
    model = fitted[0]
    loaded = MiniLMPricer.load(model.save(tmp_path / "minilm"))
    assert loaded.hyperparameters == model.hyperparameters
    assert loaded.fit_seconds == model.fit_seconds
    assert [loaded(i) for i in TRAIN[:4]] == [model(i) for i in TRAIN[:4]]
    # Saved before the hyperparameters had their name: they were under "settings".
    meta = tmp_path / "minilm" / "pricer.json"
    saved = json.loads(meta.read_text())
    saved["settings"] = saved.pop("hyperparameters")
    meta.write_text(json.dumps(saved))
    assert MiniLMPricer.load(tmp_path / "minilm").hyperparameters == model.hyperparameters


def test_tester_scores_it(fitted, capsys):
    scores = testing.Tester.test(fitted[0], TRAIN, size=8)
    assert scores.size == 8 and 0 <= scores.hits <= 1
    assert "Guess" in capsys.readouterr().out


def test_bad_input_gets_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved MiniLMPricer"):
        MiniLMPricer.load(tmp_path)
    with pytest.raises(ValueError, match="cannot fit on no training items"):
        MiniLMPricer(FAST).fit([])
    with pytest.raises(RuntimeError, match="not fitted"):
        MiniLMPricer(FAST).predict(TRAIN[0])


def test_the_notebooks_fine_tune_scores_as_in_the_notebook():
    """Notebook 06's MiniLM cell is not compared (torch's rounding differs by CPU and thread
    count, and training grows the differences): its score is checked here, within the spread
    that reseeding it shows (tests/fixtures/expected.json)."""
    import curation

    train, test = curation.lite()
    model = MiniLMPricer(Hyperparameters(max_length=64, frozen_layers=4)).fit(train, progress=False)
    scores = testing.Tester.test(model, test, verbose=False, chart=False, results=False)
    assert_scores_as_saved("minilm fine-tune", scores.average_error)
