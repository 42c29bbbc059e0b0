"""The RAG pricer: the course's week-8 prompt, over a real local chat server, cached and metered."""

import math

import numpy as np
import pytest
from tolerance import assert_scores_as_saved

import chat_api
import curation
import server
from chat import CONTEXT, NO_RELATED, NOW, RELATED, messages_for, rag_messages
from ensemble import FittedEnsemble, held_out
from pricer import NoPrice
from rag import RagPricer
from testing import Tester


@pytest.fixture(scope="module")
def split():
    train, test = curation.lite()
    return train[:40], test[:6]


@pytest.fixture(scope="module")
def served():
    """A local server pricing each item at its text's length, remembering what it was asked."""
    asked = []

    def length(item):
        asked.append(item.text)
        if "out of stock" in item.text:
            raise RuntimeError("no price for this one")
        return float(len(item.text))

    with server.start(length, model="length") as running:
        yield running, asked


def test_the_prompt_lists_the_five_most_similar_training_products_then_the_question(
        split, tmp_path, served):
    train, test = split
    running, _ = served
    rag = RagPricer.over(running.pricer(), store_path=tmp_path).fit(train)
    item = test[0]
    system, user, prefill = rag.messages(item)
    related = rag.related([item])[0]
    assert len(related) == 5 and {n.text for n in related} <= {t.text for t in train}
    assert user["content"] == (CONTEXT + "".join(f"{RELATED}{n.text}\nPrice is ${n.price:.2f}\n\n"
                                                 for n in related)
                               + NOW + f"How much does this cost?\n\n{item.text}")
    assert (system["role"], prefill["content"]) == ("system", "Price is $")
    assert rag.messages(item) == rag_messages(item, [(n.text, n.price) for n in related])


def test_an_item_without_similar_products_is_asked_alone_and_says_so(split, tmp_path, served):
    train, test = split
    running, _ = served
    rag = RagPricer.over(running.pricer(), store_path=tmp_path).fit(train[:1] * 3)
    with pytest.warns(UserWarning, match="no product similar to an item"):
        guesses = rag.predict_many([train[0], test[0]])
    assert rag.alone == {train[0].text}  # its only copies in the store are not context
    system, user, prefill = rag.messages(train[0])
    zero_shot = messages_for(train[0])[1]["content"]
    assert user["content"] == NO_RELATED + zero_shot
    assert rag.messages(test[0])[1]["content"].startswith(CONTEXT)  # a different product
    assert guesses.tolist() == [float(len(train[0].text)), float(len(test[0].text))]


def test_a_served_predictor_prices_the_item_not_its_context(split, tmp_path, served):
    train, test = split
    running, asked = served
    rag = RagPricer.over(running.pricer(), store_path=tmp_path).fit(train)
    guesses = rag.predict_many(test)
    assert guesses.tolist() == [float(len(item.text)) for item in test]
    assert set(asked) >= {item.text for item in test}
    assert rag.meter.calls == len(test) and rag.name == "length + RAG"
    again = RagPricer.over(running.pricer(), store_path=tmp_path).fit(train)
    assert again.predict_many(test).tolist() == guesses.tolist()
    assert (again.meter.calls, again.meter.cached) == (0, len(test))  # from the reply cache


def test_a_failing_item_is_counted_and_has_no_price(split, tmp_path, served):
    train, test = split
    running, _ = served
    rag = RagPricer.over(running.pricer(backoff=chat_api.Backoff(attempts=2, base=0.01)),
                         store_path=tmp_path).fit(train)
    broken = type(test[0]).from_text(test[0].text + " Sadly out of stock.", 10.0)
    guesses = rag.predict_many([broken, test[1]])
    assert math.isnan(guesses[0]) and guesses[1] == len(test[1].text)
    assert rag.meter.failed == 1 and rag.meter.retries == 1
    with pytest.raises(NoPrice, match="gave up after 2 attempts"):
        rag.predict(broken)


def test_it_must_be_fitted_first(served):
    running, _ = served
    rag = RagPricer.over(running.pricer())
    with pytest.raises(RuntimeError, match="not fitted"):
        rag.related([])


# Notebook 07 does not compare SmolLM2's scores (greedy answers can flip with a CPU's float
# rounding): its figures with RAG on the first 10 test items are checked here, within the
# tolerance tests/fixtures/expected.json gives (zero-shot in tests/test_open_chat.py).
@pytest.mark.slow
def test_smollm2_with_rag_scores_as_in_notebook_07(tmp_path):
    train, test = curation.lite()
    with server.start(model="smollm2-135m") as local:
        rag = RagPricer.over(local.pricer(concurrency=1), store_path=tmp_path).fit(train)
        scores = Tester.test(rag, test, size=10, verbose=False, chart=False, results=False)
    assert scores.failures == 0 and rag.meter.retries == 0
    assert_scores_as_saved("smollm2 rag", scores.average_error)


def test_as_an_ensemble_member_it_retrieves_only_what_it_was_fitted_on(split, tmp_path, served):
    train, test = split
    running, _ = served
    rag = RagPricer.over(running.pricer(), store_path=tmp_path)
    model = FittedEnsemble([rag]).fit(train)
    held, _ = held_out(train)
    assert len(rag.store) == len(train) and model.held_size == len(held)
    assert np.isfinite(model.predict_many(test)).all()
