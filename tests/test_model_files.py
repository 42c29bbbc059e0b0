"""A model file runs no code: every crafted pickle below would create a marker file (or do
worse) if loaded with plain `pickle.load`; `Pricer.load` refuses each one by name."""

import pickle
import sys

import numpy as np
import pytest

import baselines
import pickles
import sentences
from items import Item
from pricer import Pricer


def global_call(module: str, name: str, *args: str, stack: bool = True) -> bytes:
    """A protocol-4 pickle calling module.name(*args): STACK_GLOBAL, or the older GLOBAL."""
    def unicode(text: str) -> bytes:
        data = text.encode()
        return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE
    if stack:
        head = unicode(module) + unicode(name) + b"\x93"  # STACK_GLOBAL
    else:
        head = b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL
    return (b"\x80\x04" + head + b"(" + b"".join(unicode(a) for a in args)  # MARK, args
            + b"tR.")  # TUPLE, REDUCE, STOP


def marker_command(marker) -> str:
    return f"touch {marker}"


def marker_code(marker) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def crafted(marker) -> dict[str, bytes]:
    """Each would create `marker` through plain pickle.load."""
    shell, code = marker_command(marker), marker_code(marker)
    return {
        # The three: attribute walks out of an allowed package into os.
        "numpy.lib._datasource -> os.system": global_call("numpy.lib._datasource",
                                                          "os.system", shell),
        "scipy._lib._util -> os.system": global_call("scipy._lib._util", "os.system", shell),
        "numpy.testing runstring": global_call("numpy.testing._private.utils", "runstring",
                                               code, "{}"),
        # Walks from the project's own modules.
        "pricer -> pickle.loads": global_call("pricer", "pickle.loads", "x"),
        "baselines -> settings.os.system": global_call("baselines", "settings.os.system",
                                                       shell),
        "frontier -> os.system": global_call("frontier", "os.system", shell),
        "files -> os.system (GLOBAL)": global_call("files", "os.system", shell, stack=False),
        # Plain dangerous names, both opcodes.
        "os.system": global_call("os", "system", shell),
        "posix.system (GLOBAL)": global_call("posix", "system", shell, stack=False),
        "builtins.eval": global_call("builtins", "eval", f"exec({code!r})"),
        "builtins.exec (GLOBAL)": global_call("builtins", "exec", code, stack=False),
        "subprocess.getoutput": global_call("subprocess", "getoutput", shell),
        "importlib.import_module": global_call("importlib", "import_module", "antigravity"),
        "numpy.load (pickles)": global_call("numpy", "load", "evil.npy"),
        "sklearn walk to joblib": global_call("sklearn.utils", "_joblib.load", "evil.pkl"),
        "allowed module, unlisted name": global_call("numpy", "fromfile", "evil"),
        "collections -> os (walk)": global_call("collections", "_os.system", shell),
        "renamed module's other name": global_call("numpy.core.multiarray", "_vec_string",
                                                   "x"),
        "runpy.run_path": global_call("runpy", "run_path", "evil.py"),
        "code.InteractiveInterpreter": global_call("code", "InteractiveInterpreter", code),
    }


@pytest.mark.parametrize("name", sorted(crafted("marker")))
def test_a_crafted_model_file_runs_nothing(name, tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "model.pkl"
    path.write_bytes(crafted(marker)[name])
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        baselines.TfidfRidgePricer.load(path)
    assert not marker.exists()


def test_the_canary_would_fire_without_the_allow_list(tmp_path):
    """The crafted files really are harmful: plain pickle runs the shell command."""
    marker = tmp_path / "marker"
    pickle.loads(crafted(marker)["numpy.lib._datasource -> os.system"])
    assert marker.exists()


def test_every_allowed_pair_is_a_plain_attribute_of_its_module():
    named = pickles.ALLOWED - set(pickles.OLD_COLUMNS)
    for module, name in named | set(pickles.RENAMED.values()):
        assert "." not in name
        __import__(module)
        assert hasattr(sys.modules[module], name), (module, name)
    assert set(pickles.RENAMED.values()) <= pickles.ALLOWED


def test_a_renamed_name_loads_from_an_old_file(monkeypatch, tmp_path):
    """A model file naming a class where it used to live gets it where it lives now."""
    old = pickle.dumps(baselines.ConstantPricer().fit(kettles()), 4)
    old = old.replace(b"\x8c\tbaselines", b"\x8c\told_place")  # the module's name, as written
    path = tmp_path / "old.pkl"
    path.write_bytes(old)
    with pytest.raises(pickle.UnpicklingError, match="old_place.ConstantPricer"):
        Pricer.load(path)
    monkeypatch.setitem(pickles.RENAMED, ("old_place", "ConstantPricer"),
                        ("baselines", "ConstantPricer"))
    assert type(Pricer.load(path)) is baselines.ConstantPricer


def kettles() -> list[Item]:
    return [Item.from_text(f"Kettle {i}\nBoils water.", 10.0 + i) for i in range(4)]


def test_a_saved_model_names_only_listed_pairs(tmp_path):
    """What the project's models write, its loader reads (each model in test_contract too)."""
    train = [Item.from_text(f"Kettle {i}\nBoils water.", 10.0 + i) for i in range(20)]
    model = baselines.TfidfRidgePricer().fit(train)
    again = Pricer.load(model.save(tmp_path / "model.pkl"))
    assert np.array_equal(again.predict_many(train), model.predict_many(train))


def test_the_embedding_cache_reads_no_pickles(tmp_path):
    """The embedding cache is plain arrays: an object array in the single file of earlier
    versions is refused, and so is a shard that is not one."""
    cache = sentences.EmbeddingCache(tmp_path / "embeddings")
    np.savez(cache.legacy(), keys=np.array(["k"], dtype=object), vectors=np.zeros((1, 2)),
             seconds=np.zeros(1))
    with pytest.raises(ValueError, match="allow_pickle"):
        cache.stored("float64")
    (tmp_path / "embeddings" / "bf16").mkdir(parents=True)
    np.save(tmp_path / "embeddings" / "bf16" / "1-2-3.npy", np.array([{"k": 1}]))
    with pytest.raises(ValueError, match="Python objects"):
        cache.stored("bf16")
    np.save(tmp_path / "embeddings" / "bf16" / "1-2-3.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not an embedding cache shard"):
        sentences.EmbeddingCache(tmp_path / "embeddings").stored("bf16")


def test_an_empty_embedding_cache_saves_and_loads(tmp_path):
    """A fresh data folder: forgetting everything in an empty cache is no error."""
    cache = sentences.EmbeddingCache(tmp_path / "embeddings")
    cache.forget(None)
    cache.forget(["a text never embedded"])
    assert sentences.EmbeddingCache(tmp_path / "embeddings").stored("float64") == 0

