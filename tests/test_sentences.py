"""MiniLM sentence embeddings: offline, unit length, cached on disk by content."""

import numpy as np
import pytest

import curation
import sentences


@pytest.fixture(scope="module")
def split():
    return curation.lite()


def test_embeddings_are_cached_on_disk_by_content(split, monkeypatch, tmp_path):
    _, test = split
    monkeypatch.setattr(sentences, "_cache", sentences.EmbeddingCache(tmp_path / "e.npz"))
    vectors = sentences.embed(test[:4])
    seconds = sentences.encoding_seconds(test[:4])
    assert (tmp_path / "e.npz").exists() and seconds > 0
    # A new process reads them back instead of encoding again.
    reread = sentences.EmbeddingCache(tmp_path / "e.npz")
    monkeypatch.setattr(sentences, "_cache", reread)
    monkeypatch.setattr(sentences, "sentence_encoder", None)   # encoding would fail
    assert np.array_equal(sentences.embed(test[:4]), vectors)
    assert sentences.encoding_seconds(test[:4]) == pytest.approx(seconds)
    sentences.clear_embedding_cache(test[:1])
    assert len(sentences.EmbeddingCache(tmp_path / "e.npz").file().read_bytes()) > 0
    reread = sentences.EmbeddingCache(tmp_path / "e.npz")
    reread.load()
    assert len(reread.vectors) == 3


def test_texts_seen_once_are_not_written_to_the_cache_and_few_stay_in_memory(
        split, monkeypatch, tmp_path):
    _, test = split
    cache = sentences.EmbeddingCache(tmp_path / "e.npz", passing_limit=2)
    monkeypatch.setattr(sentences, "_cache", cache)
    with sentences.transient():
        passing = sentences.embed(test[:3])
    assert not cache.file().exists() and not cache.vectors
    assert list(cache.passing) == [cache.key(item.text) for item in test[1:3]]  # the last 2
    kept = sentences.embed(test[:3])  # outside: all kept, the forgotten one encoded again
    assert np.array_equal(kept, passing)
    assert sorted(np.load(cache.file())["keys"]) == sorted(cache.key(t.text) for t in test[:3])
