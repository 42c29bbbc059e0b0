"""Reading pickles safely: the course's split pickles of Items and the project's model files.

>>> model = load("tfidf.pkl", "model file")       # what Pricer.load does   # doctest: +SKIP

A pickle is a program that `pickle.load` runs, and it can run any code. `load` runs none:
- a pickle gets only what ALLOWED names (after RENAMED), each name looked up as one attribute
  of its module, never walked through dots into another module;
- a class of Python code reaches it as a stand-in that makes an empty instance of the class
  without running its code (one that checks its state first, for a class in STATE_CHECKS):
  a pickle that gives state to the class object itself changes nothing;
- a function or constructor a pickle calls is one that checks the arguments first (CALLS),
  and takes no state: no array, bytes or tree of a size the file does not hold; no other
  function, and nothing that runs code later, can be named at all;
- once loaded, everything the pickle built is checked by its type (`check`): arrays are of
  numbers or text and finite, sparse matrices' indices and trees' links point inside them, a
  tree is a tree, settings that reach native code are within bounds. LightGBM's model text
  is checked before LightGBM reads it.
Whatever goes wrong, the error is one `pickle.UnpicklingError` naming the file and why.
"""

from __future__ import annotations

import ctypes
import importlib
import pickle
import sys
import types
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from functools import cache
from itertools import repeat
from pathlib import Path

import numpy as np

# --- what a pickle may name ----------------------------------------------------------------

# Classes a pickle may build: the project's models and Items, and the library classes they
# are made of. The loader sits below the models, so it names them rather than imports them.
CLASSES = frozenset({
    ("items", "Item"), ("items2025", "Item2025"),
    ("baselines", "BagOfWordsPricer"), ("baselines", "ConstantPricer"),
    ("baselines", "EmbeddingPricer"), ("baselines", "FeaturePricer"),
    ("baselines", "FixedEnsemble"), ("baselines", "HumanPricer"),
    ("baselines", "LightGBMPricer"), ("baselines", "NeighboursPricer"),
    ("baselines", "RandomPricer"), ("baselines", "TfidfRidgePricer"),
    ("baselines", "Word2VecPricer"), ("ensemble", "FittedEnsemble"),
    ("mlp", "SparseMLP"), ("mlp", "SparseMLPPricer"), ("mlp", "SparseText"),
    ("deep_network", "DeepNetworkPricer"),
    ("stacking", "StackPricer"),
    ("sklearn.ensemble._forest", "RandomForestRegressor"),
    ("sklearn.feature_extraction.text", "CountVectorizer"),
    ("sklearn.feature_extraction.text", "TfidfTransformer"),
    ("sklearn.feature_extraction.text", "TfidfVectorizer"),
    ("sklearn.linear_model._base", "LinearRegression"),
    ("sklearn.linear_model._ridge", "Ridge"),
    ("sklearn.neighbors._regression", "KNeighborsRegressor"),
    ("sklearn.neighbors._unsupervised", "NearestNeighbors"),
    ("sklearn.svm._classes", "LinearSVR"), ("sklearn.svm._classes", "SVR"),
    ("sklearn.tree._classes", "DecisionTreeRegressor"),
    ("lightgbm.basic", "Booster"), ("lightgbm.sklearn", "LGBMRegressor"),
    ("gensim.models.keyedvectors", "KeyedVectors"),
    ("scipy.sparse._csr", "csr_matrix"),
    ("numpy", "float32"), ("numpy", "float64"),
    ("numpy", "int32"), ("numpy", "int64"), ("numpy", "bool_"),
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("builtins", "object"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "slice"), ("builtins", "complex"),
})

# Older names: (module, name) in a file -> (module, name) now.
RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("baselines", "EnsemblePricer"): ("baselines", "FixedEnsemble"),
    # NumPy 1.x's module names, and protocol 2's names of Python 2.
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("__builtin__", "bytes"): ("builtins", "bytes"),
    ("__builtin__", "object"): ("builtins", "object"),
    ("copy_reg", "_reconstructor"): ("copyreg", "_reconstructor"),
}

# Functions that older files of mlp.SparseMLPPricer held as its columns: read as the names of
# the columns, which SparseText keeps now (a model file holds no function).
OLD_COLUMNS = {("mlp", "titles"): "title", ("mlp", "categories"): "category",
               ("baselines", "texts"): "text", ("features", "texts"): "text",
               ("mlp", "_whole"): "_whole"}


class Checked:
    """A function that a pickle may call: `check` checks its arguments and makes the object.
    A pickle cannot give it state, and it is never part of what a pickle builds."""

    __slots__ = ("name", "check")

    def __init__(self, name: str, check: Callable):
        self.name, self.check = name, check

    def __call__(self, *args):
        return self.check(*args)

    def __setstate__(self, state: object) -> None:
        raise pickle.UnpicklingError(f"a pickle may not change {self.name}")

    def __repr__(self) -> str:
        return f"<checked {self.name}>"


def _not_called(*args: object) -> None:
    raise pickle.UnpicklingError("a pickle may name numpy.ndarray only to start an array")


def _empty_array(kind: object, shape: object, dtype: object) -> np.ndarray:
    """numpy's first step of an array in a pickle: an empty array, which its state fills."""
    if kind is not _resolve("numpy", "ndarray") or shape != (0,) or dtype != b"b":
        raise pickle.UnpicklingError("an array's pickle starts from an empty array")
    return np.ndarray((0,), np.int8)


def _from_buffer(buffer: object, dtype: np.dtype, shape: tuple, order: str) -> np.ndarray:
    """numpy's array of a protocol-5 buffer (its own function, which checks the sizes)."""
    from numpy._core.numeric import _frombuffer

    return _frombuffer(buffer, dtype, shape, order)


def _reconstructor(kind: object, base: object, state: object) -> object:
    """copyreg._reconstructor, as protocols 0 and 1 start an instance: an empty one."""
    if base is not object or state is not None or kind not in _STAND_INS:
        raise pickle.UnpicklingError("a pickle may only reconstruct an allowed class")
    return kind()


def _latin1(text: object, encoding: object) -> bytes:
    """_codecs.encode, as protocol 2 writes bytes: their latin-1 text."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("a pickle may encode text as latin-1 only")
    return text.encode("latin-1")


def _of_content(make: type) -> Callable:
    def made(*args: object):
        """bytes or a bytearray of given content (text or bytes), never of a size."""
        if args and not isinstance(args[0], (str, bytes, bytearray)):
            raise pickle.UnpicklingError(f"a pickle may not make {make.__name__} of a size")
        return make(*args)
    return made


def _tree(n_features: object, n_classes: object, n_outputs: object):
    """scikit-learn's Tree, whose constructor reads `n_classes` unchecked."""
    from sklearn.tree._tree import Tree

    if not (_integer(n_features, 1, 2**31) and _integer(n_outputs, 1, 1024)
            and isinstance(n_classes, np.ndarray) and n_classes.shape == (n_outputs,)
            and n_classes.dtype.kind in "iu"
            and all(1 <= n <= 2**20 for n in n_classes.tolist())):
        raise pickle.UnpicklingError("a tree's sizes are out of range")
    return Tree(int(n_features), n_classes, int(n_outputs))


CALLS: dict[tuple[str, str], Callable] = {
    ("numpy._core.multiarray", "_reconstruct"): _empty_array,
    ("numpy", "ndarray"): _not_called,  # its own call could make an array of any size
    ("numpy._core.multiarray", "scalar"): None,  # numpy's own (C) scalar: nothing to check
    ("numpy._core.numeric", "_frombuffer"): _from_buffer,
    ("numpy", "dtype"): None,  # numpy's own: state given to one of its shared dtypes is ignored
    ("copyreg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _latin1,
    ("builtins", "bytes"): _of_content(bytes),
    ("builtins", "bytearray"): _of_content(bytearray),
    ("sklearn.tree._tree", "Tree"): _tree,
}

# The allow-list, whole: every (module, name) a pickle may name.
ALLOWED = CLASSES | set(CALLS) | set(OLD_COLUMNS)


# --- loading ---------------------------------------------------------------------------------

def load(path: str | Path, what: str) -> object:
    """What the pickle at `path` holds, built safely and checked; `what` names the kind of
    file in the error raised for anything wrong with it (a pickle.UnpicklingError)."""
    try:
        with open(path, "rb") as f:
            loaded = _Unpickler(f).load()
        check(loaded)
    except Exception as error:  # whatever a damaged or hostile file does, one kind of error
        raise pickle.UnpicklingError(f"{path} is not a readable {what}: "
                                     f"{type(error).__name__}: {error}") from error
    return loaded


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        return _resolve(*RENAMED.get((module, name), (module, name)))


@cache
def _resolve(module: str, name: str) -> object:
    """What a pickle gets for `module.name`: refused before anything is imported unless
    allowed; a stand-in for a class of Python code; a Checked call."""
    if (module, name) not in ALLOWED:
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a pickle may only name what pickles.ALLOWED "
            f"lists")
    if (module, name) in OLD_COLUMNS:
        return OLD_COLUMNS[(module, name)]
    if CALLS.get((module, name)) is not None:
        return Checked(f"{module}.{name}", CALLS[(module, name)])
    found = getattr(importlib.import_module(module), name)
    if not _immutable(found):
        found = _stand_in(found, STATE_CHECKS.get((module, name)))
    return found


def _immutable(obj: object) -> bool:
    """Whether nothing can set an attribute of `obj`: a type written in C, or a C function."""
    if isinstance(obj, type):
        return bool(obj.__flags__ & (1 << 8))  # Py_TPFLAGS_IMMUTABLETYPE
    return isinstance(obj, types.BuiltinFunctionType)


_STAND_INS: dict[type, type] = {}  # stand-in -> the class it stands for


def _stand_in(cls: type, check_state: Callable | None) -> type:
    """What a pickle gets for a class of Python code: a class of its own, not `cls` (which a
    pickle could then change) nor a subclass. Called, it makes an empty `cls`, running no code
    of `cls`; for a class with a `check_state`, an empty instance of its own that checks the
    state it is given, and only then becomes a `cls` and takes the state as a `cls` would.
    Its own __setstate__ needs an instance: a pickle that gives state to the stand-in itself
    fails there, and changes nothing."""
    if cls.__new__ is not object.__new__:
        raise TypeError(f"{cls.__qualname__} makes its own instances: list a checked call")
    own = getattr(cls, "__setstate__", None)

    def __new__(stand_in, *args):
        if args:
            raise pickle.UnpicklingError(f"a pickle may not call {cls.__name__} with arguments")
        return object.__new__(cls if check_state is None else stand_in)

    def __setstate__(self, state: object) -> None:
        state = check_state(state)
        self.__class__ = cls
        if own is not None:
            own(self, state)
        else:
            self.__dict__.update(state)

    stand_in = type(cls.__name__, (), {
        "__new__": __new__, "__setstate__": __setstate__, "__module__": __name__,
        "__qualname__": f"stand-in for {cls.__module__}.{cls.__qualname__}"})
    _STAND_INS[stand_in] = cls
    return stand_in


# --- checking what was built -----------------------------------------------------------------

# Objects with nothing inside to check. ctypes.c_void_p is LightGBM's handle of a model it read
# (a pickle cannot make one).
ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes, bytearray, slice,
                   np.bool_, np.int32, np.int64, np.uint32, np.float32, np.float64,
                   ctypes.c_void_p})
# Classes whose __setstate__ checks every field and keeps plain values only: nothing inside
# their instances to look at again.
SELF_CHECKED = frozenset({("items", "Item"), ("items2025", "Item2025")})
# Classes a model may hold as values (scikit-learn keeps its dtype as one).
VALUE_TYPES = frozenset({np.float32, np.float64, np.int32, np.int64, np.bool_})
MAX_THREADS = 1024  # the most worker threads a model file may ask for


def check(root: object) -> None:
    """Check everything `root` holds, as a pickle built it, each object by its type: CHECKS
    for library classes, and then, once what it holds is checked, `check_state` for the
    project's; ValueError at the first fault."""
    done = ATOMS | {_loaded(pair) for pair in SELF_CHECKED} - {None}
    seen, todo = set(), [root]
    while todo:
        obj = todo.pop()
        kind = type(obj)
        if kind is _Then:
            type(obj.model).check_state(obj.model)
            continue
        if kind in done or id(obj) in seen:
            continue
        seen.add(id(obj))
        if kind in (list, tuple, set, frozenset):
            todo += _unchecked(obj, done)
        elif kind in (dict, OrderedDict, defaultdict):
            if kind is defaultdict and obj.default_factory not in (None, OrderedDict):
                raise ValueError("a defaultdict may only make OrderedDicts")
            todo += _unchecked(obj.keys(), done) + _unchecked(obj.values(), done)
        elif kind is type and obj in VALUE_TYPES:
            continue
        elif (pair := _allowed(kind)) is not None:
            seen.update(map(id, CHECKS[pair](obj) if pair in CHECKS else ()))
            _threads(obj)
            if hasattr(kind, "check_state"):
                todo.append(_Then(obj))  # popped once all it holds is checked
            if hasattr(obj, "__dict__"):
                todo += _unchecked(vars(obj).values(), done)
        elif kind in _STAND_INS:
            raise ValueError(f"a {_STAND_INS[kind].__name__} that was never given its state")
        else:
            raise ValueError(f"a model file may not hold {_name(obj)}")


class _Then:
    """A model to check as a whole (`check_state`), after the parts it holds."""

    __slots__ = ("model",)

    def __init__(self, model: object):
        self.model = model


def _unchecked(values: Iterable, done: frozenset[type]) -> list:
    """The values whose type says that there is something to check."""
    values = list(values)
    if set(map(type, values)) <= done:
        return []
    return [value for value in values if type(value) not in done]


def _name(obj: object) -> str:
    kind = obj if isinstance(obj, type) else type(obj)
    noun = "the class" if isinstance(obj, type) else "a"
    return f"{noun} {_STAND_INS.get(kind, kind).__qualname__}"


def _loaded(pair: tuple[str, str]) -> type | None:
    """The class `pair` names, if its module is loaded (else no object can be one)."""
    return getattr(sys.modules.get(pair[0]), pair[1], None)


@cache
def _allowed(kind: type) -> tuple[str, str] | None:
    """The (module, name) of `kind` if a built object may be one: a class a pickle builds,
    or one that a checked call makes; plain containers and values aside."""
    pair = (kind.__module__, kind.__qualname__)
    if pair in CLASSES | CHECKS.keys() and pair[0] not in ("builtins", "collections") \
            and _loaded(pair) is kind:
        return pair
    return None


def _integer(value: object, low: int, high: int) -> bool:
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and low <= value <= high)


def _threads(obj: object) -> None:
    threads = getattr(obj, "__dict__", {}).get("n_jobs")
    if threads is not None and not _integer(threads, -MAX_THREADS, MAX_THREADS):
        raise ValueError(f"a {type(obj).__name__} asks for {threads!r} threads")


def _finite(array: np.ndarray) -> bool:
    """Whether a float array holds no NaN or infinity: one summing pass (NaN and infinity
    carry through a sum), checked element by element only when the sum overflows."""
    flat = array.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(flat)):
            return True
    return bool(np.isfinite(flat).all())


def _below(numbers: np.ndarray, end: int) -> bool:
    """Whether every one of these integers is in range(end): in one pass, as a negative one
    read as unsigned is too large.

    >>> _below(np.array([0, 4]), 5), _below(np.array([0, -1]), 5), _below(np.array([5]), 5)
    (True, False, False)
    """
    return not len(numbers) or int(numbers.view(f"u{numbers.itemsize}").max()) < end


def _array(array: np.ndarray) -> None:
    """Numbers or text, of a size its bytes hold; floats finite."""
    kind = array.dtype.kind
    if kind not in "biufUS" or (array.dtype.itemsize == 0 and array.size):
        raise ValueError(f"an array of {array.dtype} has no place in a model file")
    if kind == "f" and array.size and not _finite(array):
        raise ValueError(f"an array of shape {array.shape} holds NaN or infinite values")


def _vector(array: object, kinds: str, length: int | None = None) -> np.ndarray:
    if not (isinstance(array, np.ndarray) and array.ndim == 1 and array.dtype.kind in kinds
            and (length is None or len(array) == length)):
        count = "any number of" if length is None else length
        raise ValueError(f"expected a vector of {count} {kinds!r} values, found "
                         f"{_describe(array)}")
    return array


def _describe(obj: object) -> str:
    if isinstance(obj, np.ndarray):
        return f"an array of shape {obj.shape} and {obj.dtype}"
    return _name(obj)


def _csr(matrix) -> tuple:
    """A CSR matrix: row pointers from 0, never falling, to its number of entries; column
    indices within its shape."""
    state = vars(matrix)
    shape = state.get("_shape")
    if not (isinstance(shape, tuple) and len(shape) == 2
            and all(_integer(n, 0, 2**62) for n in shape)):
        raise ValueError(f"a sparse matrix has the shape {shape!r}")
    rows, columns = shape
    pointers = _vector(state.get("indptr"), "i", rows + 1)
    indices = _vector(state.get("indices"), "i")
    _vector(state.get("data"), "biuf", len(indices))
    if pointers[0] != 0 or pointers[-1] != len(indices) or (pointers[1:] < pointers[:-1]).any():
        raise ValueError("a sparse matrix's row pointers do not run from 0 to its entries")
    if not _below(indices, columns):
        raise ValueError(f"a sparse matrix's column indices fall outside its {columns} columns")
    return ()


def _outside(child: np.ndarray, node: np.ndarray, size: np.ndarray) -> bool:
    """Whether a child link of node `node` (of a tree of `size` nodes) points elsewhere than
    to a later node of the tree: a path that only ever goes to later nodes ends."""
    return bool(((child <= node) | (child >= size)).any())


def _trees(trees: list) -> list:
    """scikit-learn trees, all at once: a node's children are later nodes of its tree (or
    none, at a leaf); features within the tree's; thresholds and values finite."""
    counts = np.array([tree.node_count for tree in trees])
    if any(not 1 <= tree.node_count <= tree.capacity for tree in trees):
        raise ValueError("a tree has more nodes than room for them, or none")
    states = [tree.__getstate__() for tree in trees]
    fields = states[0]["nodes"].dtype.fields
    if [fields[name][1] for name in NODE_FIELDS] != [0, 8, 16, 24]:
        raise ValueError("scikit-learn's tree nodes are laid out in an unknown way")
    # The four fields read, of every tree, one row each (each node's memory read once).
    nodes = np.empty((4, counts.sum()), np.int64)
    for state, end, count in zip(states, np.cumsum(counts), counts, strict=True):
        nodes[:, end - count:end] = state["nodes"].view(np.int64).reshape(count, -1)[:, :4].T
    left, right, feature, threshold = nodes
    after = np.arange(1, nodes.shape[1] + 1) - np.repeat(np.cumsum(counts) - counts, counts)
    later = (np.repeat(counts, counts) - after).view(np.uint64)  # nodes after each, in its tree
    # Both children nodes that follow in the same tree, or none at all (-1, -1: a leaf).
    linked = np.subtract(left, after).view(np.uint64) < later
    linked &= np.subtract(right, after).view(np.uint64) < later
    leaf = left == -1
    if not (linked | (leaf & (right == -1))).all():
        raise ValueError("a tree's child links do not form a tree")
    features = np.repeat([tree.n_features for tree in trees], counts).view(np.uint64)
    if not ((feature.view(np.uint64) < features) | leaf).all():
        raise ValueError("a tree splits on features outside its own")
    with np.errstate(over="ignore", invalid="ignore"):
        sums = np.array([np.add.reduce(state["values"], axis=None) for state in states])
    if not (_finite(threshold.view(np.float64))
            and (_finite(sums) or all(_finite(state["values"]) for state in states))):
        raise ValueError("a tree holds NaN or infinite thresholds or values")
    return trees


NODE_FIELDS = ("left_child", "right_child", "feature", "threshold")


def _decision_tree(model) -> tuple:
    tree = getattr(model, "tree_", None)
    if tree is not None and (tree.n_features != model.n_features_in_ or tree.n_outputs != 1):
        raise ValueError("a decision tree's tree does not fit its features")
    return ()


def _forest(model) -> list:
    """A random forest's trees fit its features, and are checked together (see _trees)."""
    estimators = model.estimators_
    if not all(type(tree).__name__ == "DecisionTreeRegressor"
               and tree.n_features_in_ == model.n_features_in_ for tree in estimators):
        raise ValueError("a random forest holds a tree that does not fit its features")
    return _trees([tree.tree_ for tree in estimators]) if estimators else []


WORD_PATTERNS = {r"(?u)\b\w\w+\b", r"(?s).+"}  # scikit-learn's, and mlp's whole text


def _vectorizer(vectorizer) -> tuple:
    """A text vectorizer reads text only as its own analyzers and known patterns do, and
    numbers the words of its vocabulary within it."""
    state = vars(vectorizer)
    if state.get("input") != "content" or state.get("tokenizer") is not None \
            or state.get("preprocessor") is not None \
            or state.get("analyzer") not in ("word", "char", "char_wb") \
            or (state.get("analyzer") == "word"
                and state.get("token_pattern") not in WORD_PATTERNS):
        raise ValueError("a text vectorizer reads its text in an unknown way")
    low, high = state.get("ngram_range", (1, 1))
    if not (_integer(low, 1, 16) and _integer(high, low, 16)):
        raise ValueError(f"a text vectorizer makes n-grams of {low!r} to {high!r} words")
    vocabulary = state.get("vocabulary_")
    if vocabulary is not None:
        if type(vocabulary) is not dict:
            raise ValueError("a text vectorizer's vocabulary is not a dict")
        size = len(vocabulary)
        numbers = np.fromiter(vocabulary.values(), np.int64, count=size)
        if not _below(numbers, size):
            raise ValueError(f"a vocabulary numbers its {size} words outside 0 to {size - 1}")
        idf = getattr(state.get("_tfidf"), "idf_", None)
        if idf is not None:
            _vector(idf, "f", size)
    return (vocabulary,)


def _svr(model) -> tuple:
    """What libsvm reads to predict, consistent: support vectors, their coefficients, the
    kernel and its settings."""
    vectors = model.support_vectors_
    if not (isinstance(vectors, np.ndarray) and vectors.ndim == 2
            and vectors.dtype == np.float64 and vectors.shape[1] == model.n_features_in_
            and tuple(model.shape_fit_)[1:] == (model.n_features_in_,)):
        raise ValueError("an SVR's support vectors do not fit its features")
    count = len(vectors)
    _vector(model.support_, "i", count)
    if _vector(model._n_support, "i", 2)[0] != count:
        raise ValueError("an SVR counts other support vectors than it holds")
    _vector(model._intercept_, "f", 1)
    for name in ("_probA", "_probB"):
        _vector(getattr(model, name), "f", 0)
    coefficients = model._dual_coef_
    if not (isinstance(coefficients, np.ndarray) and coefficients.shape == (1, count)
            and coefficients.dtype == np.float64):
        raise ValueError("an SVR's coefficients do not fit its support vectors")
    if model.kernel not in ("linear", "poly", "rbf", "sigmoid") or model._sparse is not False \
            or not _integer(model.degree, 0, 100) or not np.isfinite(model._gamma) \
            or not np.isfinite(model.coef0):
        raise ValueError("an SVR's kernel settings are out of range")
    return ()


def _neighbours(model) -> tuple:
    """A nearest-neighbour model searches its rows by brute force, with a known metric."""
    rows = model._fit_X
    if model._fit_method != "brute" or getattr(rows, "ndim", 0) != 2 \
            or model.n_samples_fit_ != rows.shape[0] \
            or model.effective_metric_ not in ("euclidean", "cosine", "manhattan", "minkowski") \
            or not _integer(model.n_neighbors, 1, rows.shape[0]):
        raise ValueError("a nearest-neighbour model's search does not fit its rows")
    return ()


def _keyed_vectors(vectors) -> tuple:
    """Word vectors: every word's row within the table."""
    table = vectors.vectors
    if not (isinstance(table, np.ndarray) and table.ndim == 2 and table.dtype.kind == "f"):
        raise ValueError(f"word vectors are {_describe(table)}")
    index, words = vectors.key_to_index, vectors.index_to_key
    if type(index) is not dict or type(words) is not list or len(words) != len(table) \
            or vectors.vector_size != table.shape[1] or vectors.mapfile_path is not None:
        raise ValueError("word vectors' words do not fit their table")
    numbers = np.fromiter(index.values(), np.int64, count=len(index))
    if not _below(numbers, len(table)):
        raise ValueError("word vectors number words outside their table")
    if not set(map(type, words)) <= {str}:
        raise ValueError("word vectors' words are not text")
    return index, words


CHECKS: dict[tuple[str, str], Callable[[object], Iterable]] = {
    ("numpy", "ndarray"): lambda array: _array(array) or (),
    ("scipy.sparse._csr", "csr_matrix"): _csr,
    ("sklearn.tree._tree", "Tree"): lambda tree: _trees([tree]),
    ("sklearn.tree._classes", "DecisionTreeRegressor"): _decision_tree,
    ("sklearn.ensemble._forest", "RandomForestRegressor"): _forest,
    ("sklearn.feature_extraction.text", "CountVectorizer"): _vectorizer,
    ("sklearn.feature_extraction.text", "TfidfVectorizer"): _vectorizer,
    ("sklearn.svm._classes", "SVR"): _svr,
    ("sklearn.neighbors._regression", "KNeighborsRegressor"): _neighbours,
    ("sklearn.neighbors._unsupervised", "NearestNeighbors"): _neighbours,
    ("gensim.models.keyedvectors", "KeyedVectors"): _keyed_vectors,
}


# --- LightGBM's model text, checked before LightGBM reads it ----------------------------------

HEADER = {"version": "v4", "num_class": "1", "num_tree_per_iteration": "1", "label_index": "0"}
TREE_KEYS = ("num_leaves", "num_cat", "split_feature", "split_gain", "threshold",
             "decision_type", "left_child", "right_child", "leaf_value", "leaf_weight",
             "leaf_count", "internal_value", "internal_weight", "internal_count", "is_linear",
             "shrinkage")
LINES_PER_TREE = len(TREE_KEYS) + 3  # "Tree=i", the keys, two blank lines


def _lightgbm_state(state: object) -> dict:
    """A Booster's state with its model text checked, and without the text's `tree_sizes`:
    LightGBM then reads the trees one after another, which turns any fault it finds into an
    exception (read in parallel, a fault aborts the process) and is no slower."""
    text = state.get("_handle", state.get("handle")) if isinstance(state, dict) else None
    if not isinstance(text, str):
        raise ValueError("a LightGBM model holds no model text")
    return {**state, "_handle": _lightgbm_model(text)}


def _lightgbm_model(text: str) -> str:
    start, stop = text.find("\nTree="), text.rfind("\nend of trees\n")
    if not 0 <= start < stop:
        raise ValueError("a LightGBM model's text has no trees")
    head = text[:start]
    header = dict(line.split("=", 1) for line in head.split("\n")[1:] if line)
    features = header.get("max_feature_idx", "")
    if head.split("\n", 1)[0] != "tree" or any(header.get(k) != v for k, v in HEADER.items()) \
            or header.get("objective", "").split(" ")[0] != "regression" \
            or not features.isdigit() \
            or len(header.get("feature_names", "").split(" ")) != int(features) + 1:
        raise ValueError("a LightGBM model is not a regression on known features")
    lines = text[start + 1:stop].split("\n")
    count = len(lines) // LINES_PER_TREE
    columns = {key: lines[i + 1::LINES_PER_TREE] for i, key in enumerate(TREE_KEYS)}
    if len(lines) != count * LINES_PER_TREE or not all(
            all(map(str.startswith, column, repeat(f"{key}="))) for key, column in columns.items()):
        raise ValueError("a LightGBM model's trees are not laid out as LightGBM writes them")
    _lightgbm_trees(columns, int(features))
    start = head.find("\ntree_sizes=")
    return text if start < 0 else text[:start] + text[head.index("\n", start + 1):]


def _values(key: str, column: list[str], lengths: np.ndarray) -> str:
    """The values of `key` of every tree, run together; ValueError unless each tree has as
    many as `lengths` says."""
    spaces = np.fromiter(map(str.count, column, repeat(" ")), np.int64, len(column))
    filled = np.fromiter(map(len, column), np.int64, len(column)) > len(key) + 1
    if not np.array_equal(spaces + filled, lengths):
        raise ValueError(f"a LightGBM tree's {key} has the wrong number of values")
    return " ".join(column).replace(f"{key}=", "")


def _integers(key: str, column: list[str], lengths: np.ndarray) -> np.ndarray:
    text = _values(key, column, lengths)
    with warnings.catch_warnings():  # numpy warns of text it cannot read: counted below
        warnings.simplefilter("ignore", DeprecationWarning)
        numbers = np.fromstring(text, dtype=np.int64, sep=" ")
    if len(numbers) != lengths.sum():
        raise ValueError(f"a LightGBM tree's {key} is not integers")
    return numbers


# Numerals made uniform: digits as 0, E as e. A value whose numeral has no other characters
# and no exponent of three digits is finite.
_UNIFORM = bytes.maketrans(b"123456789E", b"000000000e")


def _finite_values(key: str, column: list[str], lengths: np.ndarray) -> bool:
    """Whether every value of `key` is finite: surely so for plain numerals with exponents
    below 100, which this checks as text; other values are read."""
    text = _values(key, column, lengths).encode().translate(_UNIFORM)
    exponents = text.split(b"e")[1:]  # the text after each exponent mark: few, if any
    if not text.translate(None, b"0e+-. ") \
            and all(len(e.lstrip(b"+-").split(b" ", 1)[0]) < 3 for e in exponents):
        return True
    try:
        return bool(np.isfinite(np.array(_values(key, column, lengths).split(),
                                         dtype=np.float64)).all())
    except ValueError:
        return False


def _lightgbm_trees(columns: dict[str, list[str]], max_feature: int) -> None:
    """LightGBM's trees: node i's children are later nodes or leaves of the tree, so every
    path ends at a leaf; features within the model's; no categorical or linear trees."""
    if set(columns["num_cat"]) != {"num_cat=0"} or set(columns["is_linear"]) != {"is_linear=0"}:
        raise ValueError("a LightGBM model has categorical or linear trees")
    leaves = _integers("num_leaves", columns["num_leaves"], np.ones(len(columns["num_leaves"])))
    if (leaves < 1).any():
        raise ValueError("a LightGBM tree has no leaves")
    inner = leaves - 1
    left, right, feature, decision = (_integers(key, columns[key], inner) for key in (
        "left_child", "right_child", "split_feature", "decision_type"))
    node = np.arange(len(left)) - np.repeat(np.cumsum(inner) - inner, inner)  # i in its tree
    size, room = np.repeat(inner, inner), np.repeat(leaves, inner)
    for child in (left, right):  # a later node of the tree, or ~leaf for one of its leaves
        later, leaf = child >= 0, child < 0
        if _outside(child[later], node[later], size[later]) or (~child[leaf] >= room[leaf]).any():
            raise ValueError("a LightGBM tree's child links do not form a tree")
    if not _below(feature, max_feature + 1):
        raise ValueError("a LightGBM tree splits on features outside the model's")
    if ((decision & 1) != 0).any() or ((decision >> 2) & 3 > 2).any():
        raise ValueError("a LightGBM tree has unknown decision types")
    if not (_finite_values("threshold", columns["threshold"], inner)
            and _finite_values("leaf_value", columns["leaf_value"], leaves)):
        raise ValueError("a LightGBM tree holds NaN or infinite thresholds or values")


STATE_CHECKS: dict[tuple[str, str], Callable[[object], object]] = {
    ("lightgbm.basic", "Booster"): _lightgbm_state,
}
