"""The 2025 edition's deep network: its architecture as the edition's, trained as the edition
trains it, its score on the 2025 sample as saved, and a numpy forward pass that is torch's."""

import numpy as np
import pytest
import torch
from tolerance import DEEP_NETWORK, assert_close, assert_scores_as_saved

import curation2025
from baselines import ConstantPricer
from deep_network import DeepNetworkPricer, bag, network, vectorizer
from testing import Tester

QUIET = {"verbose": False, "chart": False, "results": False}


@pytest.fixture(scope="module")
def split():
    """The 2025 sample's full split: 4,000 training items (it needs data, as the edition's)."""
    train, _, test = curation2025.full()
    return train, test


def test_the_architecture_is_the_edition_s():
    """10 layers of 4,096: a first layer, 8 residual blocks of two, an output; 290M weights."""
    with torch.device("meta"):  # shapes only: no 1.2 GB of weights
        model = network(4_096, 10, 0.2)
    assert len(model.blocks) == 8
    assert sum(p.numel() for p in model.parameters()) == (
        5_000 * 4_096 + 4_096 + 2 * 4_096  # the first layer and its LayerNorm
        + 8 * 2 * (4_096 * 4_096 + 4_096 + 2 * 4_096)  # each block's two layers and norms
        + 4_096 + 1)  # the output
    assert vectorizer().transform(["a kettle, a red kettle"]).nnz == 2  # binary, stop words out


def test_the_numpy_forward_pass_is_torch_s(split):
    train, test = split
    model = DeepNetworkPricer(width=64, layers=4, epochs=1).fit(train[:200])
    net = network(64, 4, 0.2)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.weights.items()})
    net.eval()
    with torch.no_grad():
        rows = vectorizer().transform([item.text for item in test[:20]]).tocsr()
        logs = net(*bag(rows, "cpu")).double().numpy() * model.scale + model.mean
    assert_close(model.predict_logs(test[:20]), logs, DEEP_NETWORK, "numpy against torch")


@pytest.mark.slow
def test_it_learns_and_leaves_torch_alone(split):
    train, test = split
    threads, state = torch.get_num_threads(), torch.random.get_rng_state()
    model = DeepNetworkPricer().fit(train)
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), state)
    assert model.losses[-1] < model.losses[0] and len(model.losses) == 5
    deep = Tester.test(model, test, **QUIET)
    constant = Tester.test(ConstantPricer().fit(train), test, **QUIET)
    assert deep.rmsle < 0.5 * constant.rmsle  # 0.63 against 2.0


@pytest.mark.slow
@pytest.mark.parametrize("bf16", [False, True])
def test_its_score_on_the_2025_sample_is_as_saved(split, bf16):
    """float32 and bf16 training (bf16 emulated where the CPU lacks it) land within the
    spread that reseeding shows: a wide one, for a run in twenty scores twice the median."""
    train, test = split
    model = DeepNetworkPricer(bf16=bf16).fit(train)
    assert model.precision == ("bf16" if bf16 else "float32")
    assert_scores_as_saved("deep network", Tester.test(model, test, **QUIET).average_error)


def test_it_refuses_too_few_layers():
    with pytest.raises(ValueError, match="at least 2 layers"):
        DeepNetworkPricer(layers=1)
    train, _, test = curation2025.lite()
    two = DeepNetworkPricer(layers=2, width=8, epochs=1).fit(train[:50])
    assert np.isfinite(two.predict_many(test[:3])).all()
