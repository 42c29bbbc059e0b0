"""One contract, every predictor: each Pricer of the project runs through the same checks.

A name; fit(train) returns the model and records its time (or it needs no fit); before that,
a clear "not fitted" error; predict_many gives one finite, non-negative price per item, and
predict / __call__ give the same price one at a time; save and load give the same prices
back; the Tester scores it. A new Pricer subclass that is not listed here fails the last test.
"""

import copy
import csv
import importlib
import math

import numpy as np
import pytest
from project import modules
from tolerance import (
    DEEP_NETWORK,
    FLOAT64_MODEL,
    MINILM,
    SPARSE_MLP,
    TRANSFORMER,
    WORD_VECTORS,
    assert_close,
)

import baselines
import curation
import deep_network
import ensemble
import lora
import minilm
import mlp
import rag
import server
import stacking
from pricer import Pricer
from testing import Tester


@pytest.fixture(scope="module")
def data():
    train, test = curation.lite()
    return train[:200], test[:6]


def human(tmp_path, items):
    """A person who guessed $50 for every item."""
    path = baselines.write_human_csv(items, tmp_path / "human.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [{**row, "guess": "50"} for row in csv.DictReader(f)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=baselines.HUMAN_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return baselines.HumanPricer(path)


@pytest.fixture(scope="module")
def chat_server():
    """A local OpenAI-compatible server pricing every item at $42.50."""
    with server.start(lambda item: 42.5, model="flat") as running:
        yield running


TINY = lora.Hyperparameters(max_steps=1, batch_size=1)
# Every predictor class, made fresh: (id, factory(tmp_path, test items, chat server)).
PREDICTORS = {
    "random": lambda *_: baselines.RandomPricer(),
    "constant": lambda *_: baselines.ConstantPricer(),
    "features": lambda *_: baselines.FeaturePricer(),
    "bag of words": lambda *_: baselines.BagOfWordsPricer(),
    "word2vec": lambda *_: baselines.Word2VecPricer("linear", vector_size=50),
    "tf-idf ridge": lambda *_: baselines.TfidfRidgePricer(),
    "neighbours": lambda *_: baselines.NeighboursPricer(),
    "lightgbm": lambda *_: baselines.LightGBMPricer(rounds=50),
    "minilm + ridge": lambda *_: baselines.EmbeddingPricer("ridge"),
    "ensemble": lambda *_: baselines.FixedEnsemble([baselines.ConstantPricer(),
                                                     baselines.TfidfRidgePricer()]),
    "sparse mlp": lambda *_: mlp.SparseMLPPricer(members=2),
    "deep network": lambda *_: deep_network.DeepNetworkPricer(width=32, layers=4, epochs=2),
    "stack": lambda *_: stacking.StackPricer(embeddings=False),
    "human": lambda tmp_path, test, _: human(tmp_path, test),
    "minilm fine-tune": lambda *_: minilm.MiniLMPricer(minilm.Hyperparameters(max_length=32)),
    # A random tiny Llama's likeliest tokens are rarely prices: read the likeliest prices.
    "llama": lambda tmp_path, *_: lora.LlamaPricer(
        lora.tiny_llama(), prices_first=True, hyperparameters=TINY,
        output_dir=tmp_path / "adapter"),
    "chat": lambda tmp_path, _, running: running.pricer(),
    "fitted ensemble": lambda *_: ensemble.FittedEnsemble([baselines.ConstantPricer(),
                                                           baselines.TfidfRidgePricer()]),
    "rag": lambda tmp_path, _, running: rag.RagPricer.over(running.pricer(),
                                                           store_path=tmp_path / "vectors"),
}


def reload(model: Pricer, path):
    """The model saved to `path` and loaded back, as a learner would."""
    saved = model.save(path)
    if isinstance(model, lora.LlamaPricer):
        return lora.LlamaPricer.load(saved, base=lora.tiny_llama(), prices_first=True)
    return type(model).load(saved)


SLOW = {"minilm + ridge", "minilm fine-tune", "llama"}  # torch models
# One item or a batch of six takes other kernels, and so sums in another order: each model
# agrees with itself within what its precision and depth allow (tests/tolerance.py); the
# rest compute in float64, or answer from a server to the cent.
TOLERANCE = {"word2vec": WORD_VECTORS, "sparse mlp": SPARSE_MLP, "stack": SPARSE_MLP,
             "deep network": DEEP_NETWORK,
             "minilm fine-tune": MINILM, "llama": TRANSFORMER}


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.slow) if k in SLOW else k
                                 for k in PREDICTORS])
def test_every_predictor_keeps_the_contract(key, data, chat_server, tmp_path):
    train, test = data
    model = PREDICTORS[key](tmp_path, test, chat_server)
    assert isinstance(model, Pricer) and isinstance(model.name, str) and model.name
    if model.needs_fit:
        assert not model.fitted and model.fit_seconds is None
        with pytest.raises(RuntimeError, match="not fitted"):
            model.predict(test[0])
    assert model.fit(train) is model
    assert model.fitted and model.fit_seconds > 0
    guesses = model.predict_many(test)
    assert isinstance(guesses, np.ndarray) and guesses.shape == (len(test),)
    assert np.isfinite(guesses).all() and (guesses >= 0).all()
    tolerance = TOLERANCE.get(key, FLOAT64_MODEL)
    one_by_one = [(model.predict(item), model(item)) for item in test[:3]]
    assert_close(one_by_one, np.repeat(guesses[:3, None], 2, axis=1), tolerance, key)
    if model.savable:
        again = reload(model, tmp_path / "model")
        assert_close(again.predict_many(test), guesses, tolerance, key)
    else:
        with pytest.raises(TypeError, match="nothing to save"):
            model.save(tmp_path / "model")
    scores = Tester.test(model, test, verbose=False, chart=False, results=False)
    assert scores.size == len(test) and scores.failures == 0
    assert math.isfinite(scores.average_error)


@pytest.mark.parametrize("key", [pytest.param(k, marks=pytest.mark.slow) if k in SLOW else k
                                 for k in PREDICTORS])
def test_every_predictor_refuses_a_price_it_cannot_learn_from(key, data, chat_server,
                                                             tmp_path):
    train, test = data
    model = PREDICTORS[key](tmp_path, test, chat_server)
    for price in (math.nan, math.inf, -5.0, "12.99"):
        bad = copy.copy(train[5])
        bad.price = price  # an Item changed after it was made, as a learner may do
        items = [*train[:5], bad, *train[6:]]
        with pytest.raises(ValueError, match=r"training items: the price of item 5 \("):
            model.fit(items)
        with pytest.raises(ValueError, match=r"calibration items: the price of item 5 \("):
            model.calibrate(items)
    assert model.fit_seconds is None and model.residuals is None  # nothing learnt


def subclasses(cls: type) -> set[type]:
    return {c for sub in cls.__subclasses__() for c in {sub, *subclasses(sub)}}


def test_the_contract_covers_every_predictor_class(data, chat_server, tmp_path):
    for module in modules():
        importlib.import_module(module)
    project = {c for c in subclasses(Pricer) if c.__module__ in modules()}
    concrete = {c for c in project if not subclasses(c) & project}  # not a shared base
    covered = {type(make(tmp_path, data[1], chat_server)) for make in PREDICTORS.values()}
    assert concrete - covered == set()
