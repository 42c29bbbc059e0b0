"""A model file's data is checked before anything reads it: damaged sparse matrices, trees
with cycles, out-of-range indices, NaN and infinity, sizes far beyond the file's, settings
that reach native code. Each damaged file is refused with an error that says what is wrong,
never a signal or a hang: every load runs in a child process with a time limit (loads.py).
And a pickle can change nothing outside what it builds: state given to a class is refused
before it reaches the class."""

from __future__ import annotations

import copy
import copyreg
import gzip
import io
import pickle
import random
import re
from pathlib import Path

import lightgbm
import numpy as np
import pytest
from loads import load_all
from sklearn.neighbors import KNeighborsRegressor
from sklearn.svm import SVR

import baselines
import curation
import mlp
import pickles
from items import Item
from mlp import SparseMLPPricer

TEXTS = ["Kettle\nA steel kettle that boils water fast.", "Toaster\nTwo slots, six settings."]


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    """One small fitted model of each kind that holds data a model file could damage."""
    train = curation.lite()[0][:300]
    rng = np.random.default_rng(0)
    vectors, logs = rng.normal(size=(60, 384)), rng.normal(3, 1, 60)
    embedded = {}
    for kind, regressor in (("svr", SVR()), ("neighbours", KNeighborsRegressor(5))):
        model = baselines.EmbeddingPricer(kind)
        model.regressor, model.fit_seconds = regressor.fit(vectors, logs), 0.1
        embedded[kind] = model
    return {"neighbours": baselines.NeighboursPricer().fit(train),
            "tfidf": baselines.TfidfRidgePricer().fit(train),
            "lightgbm": baselines.LightGBMPricer(rounds=30).fit(train),
            "forest": baselines.Word2VecPricer("forest", vector_size=20, trees=8).fit(train),
            "mlp": SparseMLPPricer(members=1, epochs=1).fit(train),
            "svr": embedded["svr"], "knn": embedded["neighbours"]}


class Pickler(pickle.Pickler):
    """Pickles a model with its LightGBM text, or a tree's state, changed on the way."""

    def __init__(self, file, text=None, tree=None):
        super().__init__(file, protocol=4)
        self.text, self.tree = text, tree

    def reducer_override(self, obj):
        if self.text is not None and isinstance(obj, lightgbm.Booster):
            state = obj.__getstate__()
            state["_handle"] = self.text(state["_handle"])
            return copyreg.__newobj__, (type(obj),), state
        if self.tree is not None and type(obj).__name__ == "Tree":
            make, args, state = obj.__reduce__()
            args, state = self.tree(list(args), dict(state))
            return make, tuple(args), state
        return NotImplemented


def damaged(model, change=None, text=None, tree=None) -> bytes:
    """The model file of a copy of `model` after `change(copy)`, its LightGBM `text` or its
    trees' (constructor arguments, state) changed by `tree`."""
    model = copy.deepcopy(model)
    if change is not None:
        change(model)
    buffer = io.BytesIO()
    Pickler(buffer, text, tree).dump(model)
    return buffer.getvalue()


def first_tree(text: str, key: str, edit) -> str:
    """LightGBM's model text with the first tree's `key` values changed by `edit(values)`."""
    start = text.index(f"\n{key}=") + len(key) + 2
    end = text.index("\n", start)
    return text[:start] + " ".join(edit(text[start:end].split(" "))) + text[end:]


def first_value(key: str, index: int, value: str):
    """A change of LightGBM's text: the first tree's `key` values with one set to `value`."""
    def edit(values: list[str]) -> list[str]:
        values[index] = value
        return values
    return lambda text: first_tree(text, key, edit)


def renumber(words: dict, number: int) -> None:
    words[next(iter(words))] = number


def wider(svr) -> np.ndarray:
    """Support vectors of 999 features, for an SVR of 384."""
    return np.zeros((len(svr.support_), 999))


def loop_back(model) -> None:
    """A link from an inner node of the first tree back to the root: a cycle."""
    tree = forest_tree(model)
    tree.children_left[inner_node(tree)] = 0


def forest_tree(model):
    return model.regressor.estimators_[0].tree_


def inner_node(tree) -> int:
    """An inner node that is not the root."""
    return int(np.flatnonzero(tree.children_left != -1)[1])


def raw(*ops: bytes) -> bytes:
    """A protocol-4 pickle of these opcodes."""
    return b"\x80\x04" + b"".join(ops) + b"."


def name(module: str, attribute: str) -> bytes:
    """SHORT_BINUNICODE module, attribute, STACK_GLOBAL."""
    return b"".join(b"\x8c" + bytes([len(s)]) + s.encode() for s in (module, attribute)) + b"\x93"


def arguments(*args) -> bytes:
    """The pickle of a tuple of `args`, opcodes only (for REDUCE)."""
    body = pickle.dumps(tuple(args), 4)[2:-1]
    return body[9:] if body[:1] == b"\x95" else body  # without its FRAME


# name: (model, what is damaged, what the refusal says)
CASES = {
    "sparse index past the shape": (
        "neighbours",
        dict(change=lambda m: m.vectors.indices.__setitem__(0, m.vectors.shape[1] + 10**6)),
        "column indices fall outside"),
    "sparse index negative": (
        "neighbours", dict(change=lambda m: m.vectors.indices.__setitem__(0, -3)),
        "column indices fall outside"),
    "sparse row pointers falling": (
        "neighbours",
        dict(change=lambda m: m.vectors.indptr.__setitem__(2, m.vectors.indptr[1] - 1)),
        "row pointers"),
    "sparse row pointers past the entries": (
        "neighbours",
        dict(change=lambda m: m.vectors.indptr.__setitem__(-1, m.vectors.indptr[-1] + 9)),
        "row pointers"),
    "sparse shape negative": (
        "neighbours", dict(change=lambda m: setattr(m.vectors, "_shape", (-1, 5))),
        "shape"),
    "sparse data NaN": (
        "neighbours", dict(change=lambda m: m.vectors.data.__setitem__(0, np.nan)),
        "NaN or infinite"),
    "fewer prices than rows": (
        "neighbours", dict(change=lambda m: setattr(m, "logs", m.logs[:-1])),
        "training rows and"),
    "ridge weight infinite": (
        "tfidf", dict(change=lambda m: m.regressor.coef_.__setitem__(0, np.inf)),
        "NaN or infinite"),
    "array of objects": (
        "tfidf", dict(change=lambda m: setattr(m, "extra", np.array([1, "a"], dtype=object))),
        "array of object"),
    "array of 10**12 empty elements": (
        "tfidf", dict(change=lambda m: setattr(m, "extra", np.empty(10**12, dtype="V0"))),
        "array of"),
    "vocabulary index past the words": (
        "tfidf", dict(change=lambda m: renumber(m.vectorizer.vocabulary_, 10**9)),
        "vocabulary numbers"),
    "vocabulary index negative": (
        "tfidf", dict(change=lambda m: renumber(m.vectorizer.vocabulary_, -1)),
        "vocabulary numbers"),
    "vectorizer reading files": (
        "tfidf", dict(change=lambda m: setattr(m.vectorizer, "input", "filename")),
        "unknown way"),
    "vectorizer with a backtracking pattern": (
        "tfidf", dict(change=lambda m: setattr(m.vectorizer, "token_pattern", r"(a+)+$")),
        "unknown way"),
    "idf shorter than the vocabulary": (
        "tfidf",
        dict(change=lambda m: setattr(m.vectorizer._tfidf, "idf_", m.vectorizer._tfidf.idf_[:-1])),
        "vector of"),
    "tree with a cycle": ("forest", dict(change=loop_back), "child links"),
    "tree node its own child": (
        "forest", dict(change=lambda m: forest_tree(m).children_right.__setitem__(0, 0)),
        "child links"),
    "tree child past the nodes": (
        "forest", dict(change=lambda m: forest_tree(m).children_right.__setitem__(0, 10**6)),
        "child links"),
    "tree feature past the features": (
        "forest", dict(change=lambda m: forest_tree(m).feature.__setitem__(0, 10**6)),
        "features outside"),
    "tree threshold NaN": (
        "forest", dict(change=lambda m: forest_tree(m).threshold.__setitem__(0, np.nan)),
        "NaN or infinite"),
    "tree of minus one node": (
        "forest", dict(tree=lambda args, state: (args, {**state, "node_count": -1})),
        "or none"),
    "tree of 10**9 outputs": (
        "forest", dict(tree=lambda args, state: ([args[0], args[1], 10**9], state)),
        "sizes are out of range"),
    "word index past the vectors": (
        "forest", dict(change=lambda m: renumber(m.vectors.key_to_index, 10**6)),
        "outside their table"),
    "word vectors NaN": (
        "forest", dict(change=lambda m: m.vectors.vectors.__setitem__((0, 0), np.nan)),
        "NaN or infinite"),
    "forest asking for 10**6 threads": (
        "forest", dict(change=lambda m: setattr(m.regressor, "n_jobs", 10**6)),
        "threads"),
    "LightGBM tree with a cycle": (
        "lightgbm", dict(text=first_value("left_child", 1, "0")),
        "child links"),
    "LightGBM child past the nodes": (
        "lightgbm", dict(text=first_value("right_child", 0, "999999")),
        "child links"),
    "LightGBM leaf past the leaves": (
        "lightgbm", dict(text=first_value("left_child", -1, "-99999")),
        "child links"),
    "LightGBM feature past the features": (
        "lightgbm",
        dict(text=lambda t: first_tree(t, "split_feature", lambda v: ["99999"] * len(v))),
        "features outside"),
    "LightGBM leaf value NaN": (
        "lightgbm", dict(text=first_value("leaf_value", 0, "nan")),
        "NaN or infinite"),
    "LightGBM leaf value past a float": (
        "lightgbm", dict(text=first_value("leaf_value", 0, "1e999")),
        "NaN or infinite"),
    "LightGBM categorical tree": (
        "lightgbm", dict(text=lambda t: t.replace("num_cat=0", "num_cat=1", 1)),
        "categorical"),
    "LightGBM array too short": (
        "lightgbm", dict(text=lambda t: first_tree(t, "left_child", lambda v: v[:-1])),
        "wrong number"),
    "LightGBM garbled number": ("lightgbm", dict(text=first_value("split_gain", 0, "abc")), "abc"),
    "LightGBM trees out of order": (
        "lightgbm", dict(text=lambda t: t.replace("\nis_linear=0", "", 1)),
        "laid out"),
    "LightGBM classifier": (
        "lightgbm", dict(text=lambda t: t.replace("num_class=1", "num_class=3", 1)),
        "regression"),
    "LightGBM asking for 10**6 threads": (
        "lightgbm", dict(change=lambda m: setattr(m.regressor, "n_jobs", 10**6)),
        "threads"),
    "SVR vectors wider than its features": (
        "svr", dict(change=lambda m: setattr(m.regressor, "support_vectors_", wider(m.regressor))),
        "support vectors"),
    "SVR coefficients of other vectors": (
        "svr",
        dict(change=lambda m: setattr(m.regressor, "_dual_coef_", m.regressor._dual_coef_[:, :-1])),
        "coefficients"),
    "SVR counting other support vectors": (
        "svr", dict(change=lambda m: m.regressor._n_support.__setitem__(0, 5)), "counts other"),
    "SVR precomputed kernel": (
        "svr", dict(change=lambda m: setattr(m.regressor, "kernel", "precomputed")),
        "kernel settings"),
    "SVR gamma NaN": (
        "svr", dict(change=lambda m: setattr(m.regressor, "_gamma", np.float64("nan"))),
        "kernel settings"),
    "neighbours searched by a tree": (
        "knn", dict(change=lambda m: setattr(m.regressor, "_fit_method", "kd_tree")),
        "search does not fit"),
    "neighbours: none asked for": (
        "knn", dict(change=lambda m: setattr(m.regressor, "n_neighbors", 0)),
        "search does not fit"),
    "MLP weights that do not chain": (
        "mlp", dict(change=lambda m: m.nets[0].weights.__setitem__(2, m.nets[0].weights[2][:7])),
        "do not chain"),
    "MLP weights of other features": (
        "mlp", dict(change=lambda m: m.nets[0].weights.__setitem__(0, m.nets[0].weights[0][:9])),
        "do not read its features"),
    "MLP reading an unknown column": (
        "mlp",
        dict(change=lambda m: m.features.parts.__setitem__(0, ("evil", m.features.parts[0][1]))),
        "columns other than"),
}

# Pickles that ask for far more than they hold, or for objects that never got their state.
RECONSTRUCT = name("numpy._core.multiarray", "_reconstruct")
A_BILLION = b"J" + (10**9).to_bytes(4, "little")  # BININT
CRAFTED = {
    "bytes of a terabyte": (raw(name("builtins", "bytes"), arguments(10**12), b"R"), "of a size"),
    "a bytearray of a terabyte": (
        raw(name("builtins", "bytearray"), arguments(10**12), b"R"), "of a size"),
    "an array of 10**9 objects": (  # _reconstruct(ndarray, (10**9,), b"O")
        raw(RECONSTRUCT, name("numpy", "ndarray"), A_BILLION + b"\x85C\x01O\x87R"),
        "empty array"),
    "numpy.ndarray called for 10**10 objects": (
        raw(name("numpy", "ndarray"), arguments((10**10,), "O"), b"R"), "only to start"),
    "a float64 array of a lazy range": (
        raw(name("numpy", "float64"), name("builtins", "range"), arguments(10**10), b"R\x85R"),
        "refusing to load builtins.range"),
    "bytes by another codec": (
        raw(name("_codecs", "encode"), arguments("x" * 9, "zlib"), b"R"), "latin-1 only"),
    "a Booster never given its state": (
        raw(name("lightgbm.basic", "Booster"), b")\x81"), "never given its state"),
    "a checked call kept as a value": (raw(RECONSTRUCT), "may not hold"),
    "a class kept as a value": (raw(name("baselines", "ConstantPricer")), "may not hold"),
    "a defaultdict making bytes": (
        raw(name("collections", "defaultdict"), name("builtins", "bytes"), b"\x85R"),
        "defaultdict"),
}


@pytest.fixture(scope="module")
def outcomes(models, tmp_path_factory) -> dict[str, object]:
    """What loading each damaged and crafted file did, all in child processes."""
    folder = tmp_path_factory.mktemp("damaged")
    paths = {}
    for case, (kind, damage, _) in CASES.items():
        paths[case] = folder / f"{len(paths)}.pkl"
        paths[case].write_bytes(damaged(models[kind], **damage))
    for case, (data, _) in CRAFTED.items():
        paths[case] = folder / f"{len(paths)}.pkl"
        paths[case].write_bytes(data)
    paths["intact"] = [folder / f"intact-{kind}.pkl" for kind in models]
    for kind, path in zip(models, paths["intact"], strict=True):
        path.write_bytes(damaged(models[kind]))
    files = [p for case, p in paths.items() if case != "intact"] + paths["intact"]
    loaded = load_all(files, TEXTS)
    return {case: [loaded[p] for p in path] if case == "intact" else loaded[path]
            for case, path in paths.items()}


def test_intact_files_load_and_price(outcomes):
    assert [(o.kind, o.detail) for o in outcomes["intact"]] == [("loaded", "priced")] * 7


@pytest.mark.parametrize("case", sorted(CASES) + sorted(CRAFTED))
def test_a_damaged_file_is_refused_with_a_clear_error(outcomes, case):
    says = CASES[case][2] if case in CASES else CRAFTED[case][1]
    outcome = outcomes[case]
    assert outcome.kind == "refused", outcome
    assert "is not a readable model file" in outcome.detail
    assert re.search(re.escape(says), outcome.detail), outcome.detail


def test_lying_tree_sizes_no_longer_abort_the_process(models, tmp_path):
    """LightGBM reads a text with `tree_sizes` in parallel, and a wrong size aborted the
    process (SIGABRT); the loader has LightGBM read the trees in turn, which needs none."""
    path = tmp_path / "model.pkl"
    path.write_bytes(damaged(models["lightgbm"], text=lambda t: re.sub(
        r"(?m)^tree_sizes=.*$", lambda m: "tree_sizes=" + " ".join(["7"] * 30), t)))
    assert load_all([path], TEXTS)[path].kind == "loaded"


def numeric_arrays(obj, found=None, seen=None) -> list[np.ndarray]:
    """Every array of numbers that `obj` holds, as a pickle would reach it."""
    found, seen = ([], set()) if found is None else (found, seen)
    if id(obj) in seen:
        return found
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "iuf" and obj.size and obj.flags.writeable:
            found.append(obj)
    elif type(obj).__name__ == "Tree":
        for array in (obj.children_left, obj.children_right, obj.feature, obj.threshold):
            found.append(array)
    elif isinstance(obj, dict):
        for value in obj.values():
            numeric_arrays(value, found, seen)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            numeric_arrays(value, found, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        numeric_arrays(vars(obj), found, seen)
    return found


def fuzzed(model, rng: random.Random) -> bytes:
    """The model file of a copy of `model` with one array's value, or a LightGBM number,
    changed at random: NaN, infinity, a huge or negative integer, a random number."""
    if isinstance(model, baselines.LightGBMPricer) and rng.random() < 0.5:
        def edit(text: str) -> str:
            numbers = list(re.finditer(r"(?<=[= ])-?\d+(?:\.\d+)?(?=[ \n])", text))
            spot = rng.choice(numbers[len(numbers) // 20:])  # past the header
            return text[:spot.start()] + str(rng.choice([-(10**6), -2, 0, 7, 10**9])) \
                + text[spot.end():]
        return damaged(model, text=edit)

    def change(copied) -> None:
        array = rng.choice(numeric_arrays(copied))
        spot = tuple(rng.randrange(n) for n in array.shape)
        values = [np.nan, np.inf, -np.inf, 1e308] if array.dtype.kind == "f" else []
        array[spot] = rng.choice(values + [-1, -(2**31), 2**31 - 1, rng.randrange(-50, 50)])
    return damaged(model, change)


def test_randomly_damaged_files_are_refused_or_harmless(models, tmp_path):
    """Seeded random damage: each file is refused, or loads and prices (or raises an error
    that says why); never a signal, never a hang."""
    rng = random.Random(30)
    paths = []
    for kind, model in models.items():
        for n in range(12):
            paths.append(tmp_path / f"{kind}-{n}.pkl")
            paths[-1].write_bytes(fuzzed(model, rng))
    outcomes = load_all(paths, TEXTS)
    assert {p.name: o for p, o in outcomes.items() if o.kind not in ("refused", "loaded")} == {}
    assert sum(o.kind == "refused" for o in outcomes.values()) >= len(paths) // 3


# --- nothing outside what a pickle builds changes ---------------------------------------------

def build_on(module: str, attribute: str, state: bytes) -> bytes:
    """A pickle that names module.attribute, then gives the object it gets `state` (BUILD)."""
    return raw(name(module, attribute), state, b"b")


STATES = {"a dict": b"}\x8c\x05pwned\x94K\x01s",  # {"pwned": 1}
          "slots": b"N}\x8c\x05pwned\x94K\x01s\x86"}  # (None, {"pwned": 1})


@pytest.mark.parametrize("state", sorted(STATES))
@pytest.mark.parametrize("pair", sorted(pickles.ALLOWED), ids=".".join)
def test_state_given_to_a_class_changes_nothing(pair, state, tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(build_on(*pair, STATES[state]))
    with pytest.raises(pickle.UnpicklingError, match="is not a readable model file"):
        pickles.load(path, "model file")
    module = __import__(pair[0], fromlist=["_"])
    handed = pickles._resolve(*pair)
    for changed in (getattr(module, pair[1], None), handed):
        assert not hasattr(changed, "pwned"), changed


def test_a_pickle_cannot_call_a_class_with_arguments(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(raw(name("baselines", "TfidfRidgePricer"), arguments(5.0), b"R"))
    with pytest.raises(pickle.UnpicklingError, match="may not call TfidfRidgePricer"):
        pickles.load(path, "model file")


def test_old_files_of_the_mlp_read_its_columns_by_name(tmp_path):
    """Files of the mlp saved with its column functions (which a model file may no longer
    name) load with the columns' names (test_baselines checks that they price as then)."""
    old = Path(__file__).parent / "fixtures" / "old_layout" / "mlp.pkl.gz"
    (tmp_path / "mlp.pkl").write_bytes(gzip.decompress(old.read_bytes()))
    parts = SparseMLPPricer.load(tmp_path / "mlp.pkl").features.parts
    assert [column for column, _ in parts] == ["title", "text", "category"]
    assert (parts[2][1].analyzer, parts[2][1].token_pattern) == ("word", mlp.WHOLE)


def test_a_split_of_items_loads_no_model_library(tmp_path):
    """Checking a split pickle imports nothing: scikit-learn, LightGBM or torch stay out."""
    import subprocess
    import sys

    from items import save_pickle

    save_pickle([Item.from_text("Kettle\nBoils.", 12.0)], tmp_path / "train.pkl")
    code = ("import sys; from items import load_pickle; load_pickle(sys.argv[1]); "
            "print(sorted({'sklearn', 'lightgbm', 'torch', 'gensim'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "train.pkl")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
