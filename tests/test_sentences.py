"""MiniLM sentence embeddings: offline, unit length, cached on disk by content and precision,
in a cache that only appends."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tolerance import FAST_EMBEDDINGS

import curation
import sentences
import settings


@pytest.fixture(scope="module")
def split():
    return curation.lite()


def test_embeddings_are_cached_on_disk_by_content(split, monkeypatch, tmp_path):
    _, test = split
    monkeypatch.setattr(sentences, "_cache", sentences.EmbeddingCache(tmp_path / "e"))
    vectors = sentences.embed(test[:4])
    seconds = sentences.encoding_seconds(test[:4])
    assert sentences.EmbeddingCache(tmp_path / "e").stored("float64") == 4 and seconds > 0
    # A new process reads them back instead of encoding again.
    monkeypatch.setattr(sentences, "_cache", sentences.EmbeddingCache(tmp_path / "e"))
    monkeypatch.setattr(sentences, "sentence_encoder", None)   # encoding would fail
    assert np.array_equal(sentences.embed(test[:4]), vectors)
    assert sentences.encoding_seconds(test[:4]) == pytest.approx(seconds)
    sentences.clear_embedding_cache(test[:1])
    reread = sentences.EmbeddingCache(tmp_path / "e")
    assert reread.stored("float64") == 3
    assert reread.lookup("float64", [reread.key(test[0].text)]) == {}


def test_texts_seen_once_are_not_written_to_the_cache_and_few_stay_in_memory(
        split, monkeypatch, tmp_path):
    _, test = split
    cache = sentences.EmbeddingCache(tmp_path / "e", passing_limit=2)
    monkeypatch.setattr(sentences, "_cache", cache)
    with sentences.transient():
        passing = sentences.embed(test[:3])
    assert cache.stored("float64") == 0 and not list(cache.folder().rglob("*.npy"))
    assert list(cache.passing) == [("float64", cache.key(item.text)) for item in test[1:3]]
    kept = sentences.embed(test[:3])  # outside: all kept, the forgotten one encoded again
    assert np.array_equal(kept, passing)
    assert cache.stored("float64") == 3 and not cache.passing


def test_the_mode_is_a_setting_read_when_used(monkeypatch):
    monkeypatch.delenv("PRICER_EMBEDDINGS", raising=False)
    monkeypatch.setenv("PRICER_SOURCE", "sample")
    assert settings.embeddings() == "exact" and sentences.precision() == "float64"
    monkeypatch.setenv("PRICER_SOURCE", "hub")  # the course's real sizes
    assert settings.embeddings() == "fast"
    assert sentences.precision() in ("bf16", "float32") and sentences.precision(
        device="cuda") == "float16"
    monkeypatch.setenv("PRICER_EMBEDDINGS", "Exact")
    assert settings.embeddings() == "exact"
    monkeypatch.setenv("PRICER_EMBEDDINGS", "quick")
    with pytest.raises(ValueError, match="PRICER_EMBEDDINGS must be one of exact, fast"):
        settings.embeddings()
    with pytest.raises(ValueError, match="embedding mode"):
        sentences.precision("quick")


@pytest.fixture(scope="module")
def both_modes(split, tmp_path_factory):
    """The sample's first 16 test texts embedded in each mode, into one cache, counting the
    texts each precision encoded."""
    _, test = split
    cache = sentences.EmbeddingCache(tmp_path_factory.mktemp("modes"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sentences, "_cache", cache)
        encoded = {}
        real = sentences.encode

        def counted(texts, arithmetic, *args):
            encoded[arithmetic] = encoded.get(arithmetic, 0) + len(texts)
            return real(texts, arithmetic, *args)

        patch.setattr(sentences, "encode", counted)
        exact = sentences.embed(test[:16], mode="exact")
        fast = sentences.embed(test[:16], mode="fast")
        again = sentences.embed(test[:16], mode="exact"), sentences.embed(test[:16], mode="fast")
    return cache, encoded, exact, fast, again


def test_exact_and_fast_embeddings_never_mix(both_modes):
    cache, encoded, exact, fast, again = both_modes
    fast_precision = sentences.precision("fast")
    # Each mode encoded every text once, and reads back only its own vectors.
    assert encoded == {"float64": 16, fast_precision: 16}
    assert cache.stored("float64") == 16 and cache.stored(fast_precision) == 16
    assert np.array_equal(again[0], exact) and np.array_equal(again[1], fast)
    assert not np.array_equal(exact, fast)
    assert exact.dtype == fast.dtype == np.float32


def test_openvino_reports_no_usage(both_modes):
    """The fast mode's compiler has its usage reporting (Google Analytics) off."""
    from openvino.tools.ovc import convert_impl, telemetry_utils

    assert convert_impl.tm.__name__ == telemetry_utils.tm.__name__ == \
        "openvino.tools.ovc.telemetry_stub"


def test_fast_embeddings_point_where_exact_ones_do(both_modes):
    _, _, exact, fast, _ = both_modes
    cosines = np.sum(exact.astype(np.float64) * fast, axis=1)
    assert cosines.min() >= FAST_EMBEDDINGS, (
        f"lowest cosine {cosines.min():.6f} in {sentences.precision('fast')}, below "
        f"{FAST_EMBEDDINGS:.6f} (tests/tolerance.py says why)")


def fake(keys: list[str]) -> dict[str, tuple[np.ndarray, float]]:
    """Vectors made from their keys, so that any process can check what another wrote."""
    return {key: (np.random.default_rng(int(key[:8], 16)).random(384, np.float32), 0.25)
            for key in keys}


def keys(start: int, stop: int) -> list[str]:
    return [hashlib.sha1(f"text {i}".encode()).hexdigest() for i in range(start, stop)]


def written_bytes() -> int:
    """Bytes this process has written by any write call so far (Linux's /proc/self/io)."""
    line = next(line for line in Path("/proc/self/io").read_text().splitlines()
                if line.startswith("wchar:"))
    return int(line.split()[1])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts writes with /proc (Linux)")
def test_encoding_n_texts_writes_n_vectors_once(tmp_path):
    def cost(batches: list[list[str]], folder: Path) -> int:
        cache = sentences.EmbeddingCache(folder)
        before = written_bytes()
        for batch in batches:
            cache.add("float64", fake(batch))
        return written_bytes() - before

    one = cost([keys(0, 2000)], tmp_path / "one")
    two = cost([keys(0, 1000), keys(1000, 2000)], tmp_path / "two")
    ten = cost([keys(i, i + 200) for i in range(0, 2000, 200)], tmp_path / "ten")
    vector_bytes = 2000 * (384 * 4)
    assert vector_bytes <= one <= 1.1 * vector_bytes  # the vectors, keys and seconds: no more
    assert abs(two - one) <= 0.1 * one and abs(ten - one) <= 0.1 * one
    assert np.array_equal(sentences.EmbeddingCache(tmp_path / "ten").lookup(
        "float64", keys(1999, 2000))[keys(1999, 2000)[0]][0], fake(keys(1999, 2000))[
        keys(1999, 2000)[0]][0])


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    import sentences
    from test_sentences import fake, keys
    folder, start, stop, batch = Path(sys.argv[1]), *map(int, sys.argv[2:5])
    cache = sentences.EmbeddingCache(folder)
    for first in range(start, stop, batch):
        wanted = keys(first, min(first + batch, stop))
        cache.lookup("float64", wanted)        # as embed does: shards others wrote are read
        cache.add("float64", fake(wanted))
        print(min(first + batch, stop) - start, flush=True)
""")


def writer(folder: Path, start: int, stop: int, batch: int) -> subprocess.Popen:
    """A process appending the fake vectors of keys start..stop, `batch` at a time, that
    prints how many it has appended after each batch."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(settings.ROOT),
                                                         str(Path(__file__).parent)])}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(start), str(stop),
                             str(batch)], stdout=subprocess.PIPE, text=True, env=env)


def test_a_kill_mid_append_loses_at_most_the_batch_in_flight(tmp_path):
    child = writer(tmp_path, 0, 10**6, 2000)
    done = [int(child.stdout.readline()) for _ in range(3)]
    os.kill(child.pid, signal.SIGKILL)  # in the middle of writing the fourth, or about to
    child.wait()
    cache = sentences.EmbeddingCache(tmp_path)
    stored = cache.stored("float64")
    assert stored in (done[-1], done[-1] + 2000)
    wanted = keys(0, stored)
    found = cache.lookup("float64", wanted)
    assert len(found) == stored
    assert all(np.array_equal(found[key][0], vector) for key, (vector, _) in
               fake(wanted[-5:]).items())
    cache.add("float64", fake(keys(stored, stored + 10)))  # and it takes more
    assert sentences.EmbeddingCache(tmp_path).stored("float64") == stored + 10


def test_two_processes_appending_at_once_lose_nothing(tmp_path):
    # Overlapping keys, as two notebooks embedding the same split would.
    children = [writer(tmp_path, 0, 3000, 100), writer(tmp_path, 2000, 5000, 100)]
    for child in children:
        child.communicate()
        assert child.returncode == 0
    cache = sentences.EmbeddingCache(tmp_path)
    assert cache.stored("float64") == 5000
    wanted = keys(0, 5000)
    found = cache.lookup("float64", wanted)
    assert all(np.array_equal(found[key][0], vector) for key, (vector, _) in
               fake(wanted[::97]).items())


def test_the_single_file_of_earlier_versions_is_read_once_and_migrated(tmp_path):
    cache = sentences.EmbeddingCache(tmp_path / "embeddings")
    old = fake(keys(0, 3))
    np.savez(cache.legacy(), keys=np.array(list(old)),
             vectors=np.stack([v for v, _ in old.values()]).astype(np.float64),
             seconds=np.array([s for _, s in old.values()]))
    found = cache.lookup("float64", list(old))
    assert all(np.array_equal(found[key][0], old[key][0]) for key in old)
    assert not cache.legacy().exists()  # migrated: the next process reads the shard
    assert sentences.EmbeddingCache(tmp_path / "embeddings").stored("float64") == 3
    assert sentences.EmbeddingCache(tmp_path / "embeddings").stored("bf16") == 0
