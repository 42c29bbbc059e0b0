"""The strongest CPU pricer: LightGBM over what other models and similar products say.

For every item the stack gathers, out of fold on the training items:
- the log-price guesses of TF-IDF ridge regression and of the sparse MLP ensemble (mlp.py);
- retrieval: the prices of its nearest training products by TF-IDF and by MiniLM sentence
  embedding, with how alike they are (the course's RAG signal, without an LLM);
- weight, best-seller rank and text length;
and gradient-boosted trees learn how far to trust each. Out of fold means a training item's
features come from models fitted without it, so they are as good, or as bad, as they will be
on a new item.

>>> model = StackPricer().fit(train)                              # doctest: +SKIP
>>> low, high = model.predict_interval(test, level=0.8)          # doctest: +SKIP

Its price ranges are calibrated for free: the trees are also fitted out of fold over the
same features, and their errors on the items each fold held out become the conformal
residuals (see Pricer.predict_interval); no training item is set aside.

The folds are independent, and so are the trees: with `settings.threads(n)` above one (by
default on more than 20,000 items) they run side by side in forked processes, each on one
thread (parallel.py), so the model is the same for any thread count (on one CPU: the MLP trains in
float32). Past `features.EXACT_BASE` training items the nearest products are found by an
inverted file (neighbours.py), linear where comparing every pair is quadratic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np

import parallel
import settings
from features import facts_matrix, fit_tfidf, kfold, retrieval_features, ridge, trees
from items import Item, texts
from mlp import SparseMLPPricer
from pricer import SEED, Pricer
from sentences import embed, encoding_seconds


class StackPricer(Pricer):
    """LightGBM on log price over out-of-fold model guesses and retrieval features."""

    calibrated_by_fit = True
    embedding_mode = "exact"  # set by fit; what a model file saved before the modes had

    def __init__(self, folds: int = 5, members: int = 2, embeddings: bool = True,
                 rounds: int = 500, learning_rate: float = 0.03, leaves: int = 15,
                 alpha: float = 0.3, seed: int = SEED):
        self.folds, self.members, self.embeddings = folds, members, embeddings
        self.rounds, self.learning_rate, self.leaves = rounds, learning_rate, leaves
        self.alpha, self.seed = alpha, seed
        self.name = "Stack" + (" + MiniLM retrieval" if embeddings else "")

    def fit(self, train: Sequence[Item]) -> Self:
        """Fit (on embeddings in `settings.embeddings()`'s mode, kept for predicting); the
        training time counts encoding the training texts even when cached."""
        self.embedding_mode = settings.embeddings()
        cached = encoding_seconds(train, mode=self.embedding_mode) if self.embeddings else 0.0
        super().fit(train)
        self.fit_seconds += cached
        return self

    def _trees(self):
        # One thread: LightGBM's sums would otherwise follow the thread count.
        return trees(self.rounds, self.learning_rate, self.leaves, self.seed).set_params(n_jobs=1)

    def _parts(self, items: list[Item], words, logs) -> dict:
        """The models the features come from, fitted on `items`."""
        return {"ridge": ridge(self.alpha).fit(words, logs),
                "mlp": SparseMLPPricer(members=self.members, seed=self.seed).fit(items)}

    def _features(self, parts: dict, items: list[Item], words, vectors) -> np.ndarray:
        columns = [parts["ridge"].predict(words), parts["mlp"].predict_logs(items),
                   retrieval_features(words, parts["words"], parts["logs"])]
        if self.embeddings:
            columns.append(retrieval_features(vectors, parts["vectors"], parts["logs"]))
        return np.column_stack([*columns, facts_matrix(items)])

    def _fit(self, train: list[Item]) -> None:
        folds = kfold(len(train), self.folds, self.seed, self.name)
        self.vectorizer, words, logs = fit_tfidf(train)
        vectors = embed(train, mode=self.embedding_mode) if self.embeddings else None
        everything = (np.arange(len(train)), None)
        # The folds' features and the final parts, then the trees: each a task that runs on
        # one thread, so the model is the same whether they run here or side by side.
        workers = settings.threads(len(train))
        done = parallel.forked_map(_fold_task, [*folds, everything], workers,
                                   shared=(self, train, words, vectors, logs))
        stacked = np.zeros((len(train), done[0].shape[1]))
        for (_, held), features in zip(folds, done, strict=False):
            stacked[held] = features
        self.parts = {**done[-1], "words": words, "vectors": vectors, "logs": logs}
        fitted = parallel.forked_map(_trees_task, [everything, *folds], workers,
                                     shared=(self, stacked, logs))
        self.regressor = fitted[0]
        # The trees' own out-of-fold errors calibrate the price ranges.
        errors = np.zeros(len(train))
        for (_, held), trees_ in zip(folds, fitted[1:], strict=True):
            errors[held] = np.abs(logs[held] - trees_.predict(stacked[held]))
        self.residuals = np.sort(errors)

    def _predict(self, items: list[Item]) -> np.ndarray:
        words = self.vectorizer.transform(texts(items))
        vectors = embed(items, mode=self.embedding_mode) if self.embeddings else None
        return np.expm1(self.regressor.predict(self._features(self.parts, items, words,
                                                              vectors)))


def _fold_task(task: tuple[np.ndarray, np.ndarray | None]):
    """Fit the parts on a fold's rows: the held-out rows' features, or for no held-out rows
    the parts themselves."""
    model, train, words, vectors, logs = parallel.SHARED
    fold, held = task
    parts = model._parts([train[i] for i in fold], words[fold], logs[fold])
    if held is None:
        return parts
    parts.update(words=words[fold], logs=logs[fold],
                 vectors=vectors[fold] if vectors is not None else None)
    return model._features(parts, [train[i] for i in held], words[held],
                           vectors[held] if vectors is not None else None)


def _trees_task(task: tuple[np.ndarray, np.ndarray | None]):
    model, stacked, logs = parallel.SHARED
    fold, _ = task
    return model._trees().fit(stacked[fold], logs[fold])
