"""The vector store: built whole, resumed after an interruption, never leaking a test item."""

import math

import pytest

import curation
import sentences
import vectors
from items import Item
from vectors import VectorStore


@pytest.fixture(scope="module")
def split():
    train, test = curation.lite()
    return train[:40], test[:12]


def test_a_store_holds_the_training_products_with_their_prices(split, tmp_path):
    train, _ = split
    store = VectorStore.build(train, tmp_path, progress=False)
    assert len(store) == store.collection.count() == len(train)
    # A near-copy of a training product finds it first, with its price and category.
    copy = Item.from_text(train[3].text + " Brand new.", 0.0)
    found = store.similar([copy, train[7]], k=5)
    assert [len(near) for near in found] == [5, 5]
    first = found[0][0]
    assert (first.text, first.price, first.category) == (train[3].text, train[3].price,
                                                          train[3].category)
    similarities = [n.similarity for n in found[0]]
    assert similarities == sorted(similarities, reverse=True) and 0.9 < similarities[0] <= 1.0
    assert VectorStore.build(train, tmp_path, progress=False).collection.name == \
        store.collection.name  # opened, not built again


def test_an_interrupted_build_is_never_served_and_resumes_with_what_is_missing(
        split, tmp_path, monkeypatch):
    train, _ = split
    added = []
    real_add = vectors._add

    def add_then_fail(collection, items, rows, mode):
        real_add(collection, items, rows, mode)
        added.append(rows)
        if len(added) == 2:
            raise KeyboardInterrupt  # the learner stops the cell after two batches

    monkeypatch.setattr(vectors, "_add", add_then_fail)
    with pytest.raises(KeyboardInterrupt):
        VectorStore.build(train, tmp_path, batch=8, progress=False)
    names = {c.name for c in vectors.client(tmp_path.resolve()).list_collections()}
    assert names == {f"partial-{vectors.items_digest(train)}"}  # nothing servable yet

    monkeypatch.setattr(vectors, "_add", lambda c, items, rows, mode: (
        added.append(rows), real_add(c, items, rows, mode)))
    store = VectorStore.build(train, tmp_path, batch=8, progress=False)
    resumed = [row for rows in added[2:] for row in rows]
    assert resumed == list(range(16, len(train)))  # only what was missing
    assert len(store) == store.collection.count() == len(train)
    assert store.collection.name == f"products-{vectors.items_digest(train)}"


def test_no_product_retrieves_itself_or_a_test_item(split, tmp_path):
    train, test = split
    twin = Item.from_text(train[0].text, train[0].price * 2, train[0].category)
    store = VectorStore.build([*train, twin], tmp_path, progress=False)
    stored = {item.text for item in train}
    for item, near in zip(test, store.similar(test), strict=True):
        assert all(n.text in stored for n in near) and len(near) == 5
        assert item.text not in stored
    # A training product, even one listed twice, never finds its own text.
    for item, near in zip(train[:5], store.similar(train[:5]), strict=True):
        assert item.text not in {n.text for n in near} and len(near) == 5


def test_a_store_answers_only_for_the_items_it_was_built_from(split, tmp_path):
    train, test = split
    one = VectorStore.build(train, tmp_path, progress=False)
    other = VectorStore.build([*train[:-1], test[0]], tmp_path, progress=False)
    assert one.collection.name != other.collection.name
    assert test[0].text not in {n.text for near in one.similar(test[1:]) for n in near}
    with pytest.raises(ValueError, match="at least one"):
        VectorStore.build([], tmp_path)


@pytest.mark.parametrize("price", [math.nan, math.inf, -0.01, None])
def test_a_price_that_is_not_one_never_enters_the_store(split, tmp_path, price):
    train, _ = split
    bad = Item.from_text(train[2].text, price, train[2].category)
    with pytest.raises(ValueError, match=r"vector store's training items: the price of item 2"):
        VectorStore.build([*train[:2], bad, *train[3:]], tmp_path, progress=False)
    assert vectors.client(tmp_path.resolve()).list_collections() == []  # nothing stored


def test_a_store_of_fast_embeddings_is_another_store_and_asks_in_its_own_mode(
        split, tmp_path, monkeypatch):
    train, test = split
    exact = VectorStore.build(train, tmp_path, progress=False)
    fast = VectorStore.build(train, tmp_path, progress=False, mode="fast")
    assert exact.mode == "exact" and fast.mode == "fast"
    assert fast.collection.name == f"products-{vectors.items_digest(train)}-" \
        f"{sentences.precision('fast')}" != exact.collection.name
    assert exact.collection.name == f"products-{vectors.items_digest(train)}"  # as before
    asked = []
    monkeypatch.setattr(vectors, "embed", lambda items, mode: asked.append(mode) or
                        sentences.embed(items, mode=mode))
    # Much the same neighbours in either mode: the vectors differ in their last digits, which
    # may swap two neighbours of all but equal similarity at the edge of the five.
    for a, b in zip(fast.similar(test[:3]), exact.similar(test[:3]), strict=True):
        assert len({n.text for n in a} & {n.text for n in b}) >= 4
    assert asked == ["fast", "exact"]
