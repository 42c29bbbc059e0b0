"""What the classical models read from items: prices, TF-IDF, product facts, the prices of
the nearest products, the two regressors they share (ridge and LightGBM) and their folds.

>>> rows = np.eye(3)
>>> nearest(rows[:2], rows, 1)[1].tolist()          # each row is its own nearest
[[0], [1]]
>>> pounds("2.5 pounds"), pounds("8 ounces"), pounds("heavy")
(2.5, 0.5, None)

Everything here is deterministic and float64: in float32 the last digits of a guess depend
on the CPU, and the notebooks' outputs are compared across machines.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

import numpy as np

import settings
from items import Item, texts


def prices(items: Sequence[Item]) -> np.ndarray:
    return np.array([item.price for item in items], dtype=float)


def tfidf(max_features: int | None = None):
    """Word uni- and bigrams, sublinear counts, seen in at least two training items; rows of
    unit length, so that a dot product is a cosine similarity."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                           max_features=max_features, dtype=np.float64)


def ridge(alpha: float):
    """Ridge regression for sparse TF-IDF rows, solved to 8 digits rather than sklearn's 4, so
    that guesses agree to the cent on any CPU."""
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha, solver="sparse_cg", tol=1e-8)


def trees(rounds: int, learning_rate: float, leaves: int, seed: int, items: int | None = None):
    """LightGBM on a few dense columns of `items` rows: row and column subsampling,
    deterministic for a seed and a thread count (settings.threads(items))."""
    from lightgbm import LGBMRegressor

    return LGBMRegressor(n_estimators=rounds, learning_rate=learning_rate, num_leaves=leaves,
                         min_child_samples=20, subsample=0.8, subsample_freq=1,
                         colsample_bytree=0.8, random_state=seed, n_jobs=settings.threads(items),
                         deterministic=True, verbose=-1)


def fit_tfidf(train: Sequence[Item]):
    """(vectorizer, rows, logs): `tfidf()` fitted on the training texts, their TF-IDF rows,
    and their log1p prices."""
    vectorizer = tfidf()
    return vectorizer, vectorizer.fit_transform(texts(train)), np.log1p(prices(train))


def kfold(n: int, folds: int, seed: int, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, held-out rows) of each of `folds` seeded folds over `n` training items, for
    features out of fold; ValueError, naming the model `name`, when `n` is too few.

    >>> [len(held) for _, held in kfold(10, 5, 42, "Model")]
    [2, 2, 2, 2, 2]
    """
    from sklearn.model_selection import KFold

    if n < 2 * folds:
        raise ValueError(f"{name} needs at least {2 * folds} training items")
    return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros((n, 1))))


# --- the nearest products ----------------------------------------------------------------

# Base rows up to which `nearest` compares every query with every row; past it, the cost of
# that (queries x rows: quadratic for out-of-fold features) calls for an inverted file.
EXACT_BASE = 20_000


def nearest(queries, base, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, rows) of each query row's `k` most similar base rows, most similar
    first, by dot product: cosine similarity for unit-length rows (TF-IDF, MiniLM), dense or
    sparse. Exact for a base of up to EXACT_BASE rows, queries 1,000 at a time so that memory
    stays small; for a larger one, approximate (neighbours.approximate: the similarities are
    exact, a neighbour may be missed)."""
    if base.shape[0] > EXACT_BASE:
        from neighbours import approximate

        return approximate(queries, base, k)
    k = min(k, base.shape[0])
    found_sims, found_rows = [], []
    for start in range(0, queries.shape[0], 1000):
        sims = queries[start:start + 1000] @ base.T
        sims = sims.toarray() if hasattr(sims, "toarray") else np.asarray(sims)
        rows = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        picked = np.take_along_axis(sims, rows, axis=1)
        order = np.argsort(-picked, axis=1, kind="stable")
        found_rows.append(np.take_along_axis(rows, order, axis=1))
        found_sims.append(np.take_along_axis(picked, order, axis=1))
    return np.vstack(found_sims), np.vstack(found_rows)


def weighted_log_price(sims: np.ndarray, logs: np.ndarray, k: int) -> np.ndarray:
    """The similarity-weighted mean of the first `k` log prices of each row.

    >>> weighted_log_price(np.array([[3.0, 1.0]]), np.array([[2.0, 6.0]]), 2)
    array([3.])
    """
    weights = np.maximum(sims[:, :k], 1e-6)
    return (weights * logs[:, :k]).sum(axis=1) / weights.sum(axis=1)


def retrieval_features(queries, base, logs: np.ndarray, k: int = 10) -> np.ndarray:
    """Six columns about the `k` nearest base items (`logs`: their log1p prices): the
    similarity-weighted mean log price of the nearest 5, the nearest log price, the top
    similarity, the mean similarity and log-price spread of the nearest 5, and the mean log
    price of all `k`."""
    sims, rows = nearest(queries, base, k)
    near = logs[rows]
    return np.column_stack([weighted_log_price(sims, near, 5), near[:, 0], sims[:, 0],
                            sims[:, :5].mean(1), near[:, :5].std(1), near.mean(1)])


# --- product facts ----------------------------------------------------------------------

# A number starts where no digit or dot comes before it: searched from every digit of a long
# run instead, the pattern would read the run to its end from each (quadratic time).
WEIGHT = re.compile(r"(?<![\d.])([\d.]+)\s*(pounds?|lbs?|ounces?|oz|kilograms?|kg|grams?|g)\b",
                    re.I)
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
    """A weight in pounds from text such as '2.5 pounds' or '12 Ounces'; None for none, or
    for a number too large for a float.

    >>> pounds("12 Ounces"), pounds("1.2.3 lb"), pounds("9" * 400 + " lb")
    (0.75, None, None)
    """
    match = WEIGHT.search(text or "")
    if not match:
        return None
    try:
        value = float(match.group(1))
    except ValueError:
        return None
    return value * POUNDS[match.group(2).lower()[0]] if math.isfinite(value) else None


def product_facts(item: Item) -> dict:
    """Weight (lb), average best-seller rank, text length and brand; None when unknown.

    Details come from the item's raw JSON when it has them, else from its text.
    """
    details = item_details(item)
    known = getattr(item, "weight", None)  # the 2025 edition's, in pounds (0: unknown)
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
    return {"weight": known or pounds(weight), "rank": sum(ranks) / len(ranks) if ranks else None,
            "length": len(item.text), "brand": brand.strip().lower() if brand else None}


def facts_matrix(items: Sequence[Item]) -> np.ndarray:
    """Weight, rank and length of each item as columns, NaN where unknown."""
    facts = [product_facts(item) for item in items]
    return np.array([[np.nan if f[k] is None else f[k] for k in ("weight", "rank", "length")]
                     for f in facts], dtype=float)
