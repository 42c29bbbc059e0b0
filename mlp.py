"""A sparse MLP ensemble: the model that won the Mercari Price Suggestion Challenge, small.

TF-IDF of the title's words, of the text's words and word pairs (optionally of its character
n-grams: on real products they doubled the cost and did not help), and the category, feed
small MLPs (features -> 256 -> 64 -> 1, ReLU) trained with Adam on the standardized log
price for a few epochs, the batch doubling each epoch. Members differ in seed and in input
(TF-IDF weights, or the same columns as 0/1); their log-price guesses are averaged.

>>> model = SparseMLPPricer().fit(train)          # doctest: +SKIP
>>> model.predict_many(test[:3])                  # doctest: +SKIP

The first layer reads only the columns a batch uses (an embedding bag summing weight rows
scaled by the values) and lazy Adam updates only those rows (torch's SparseAdam took seconds
a step here), so a step costs what the batch holds, not what the vocabulary holds: a member
trains in about 8 seconds on 12,000 items. A member trains on one torch thread, and with
`settings.threads(n)` above one the members train side by side in processes of their own
(parallel.py), so the model is the same for any thread count. Training leaves torch's thread
count and random state as they were, and is deterministic for a given seed (and CPU).
Predicting needs numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

import parallel
import settings
from features import prices
from items import Item, texts
from pricer import SEED, Pricer


def titles(items: Sequence[Item]) -> list[str]:
    return [item.title or item.text.split("\n", 1)[0] for item in items]


def categories(items: Sequence[Item]) -> list[str]:
    return [item.category or "unknown" for item in items]


COLUMNS = {"title": titles, "text": texts, "category": categories}
WHOLE = r"(?s).+"  # a token pattern that takes the whole text as one token: a category


class SparseText:
    """Items -> one sparse matrix: TF-IDF of title words, of text words and word pairs, of
    text character 2-4-grams within words when `characters`, and a one-hot category; rows
    have unit length within each TF-IDF part. `parts` pairs a column's name (COLUMNS) with
    the vectorizer that reads it."""

    def __init__(self, max_features: int = 100_000, characters: bool = True):
        self.max_features, self.characters = max_features, characters

    def fit_transform(self, items: Sequence[Item]) -> sp.csr_matrix:
        from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

        def words(ngrams):
            return TfidfVectorizer(ngram_range=ngrams, min_df=2, sublinear_tf=True,
                                   max_features=self.max_features, dtype=np.float32)

        self.parts = [("title", words((1, 1))), ("text", words((1, 2))),
                      ("category", CountVectorizer(token_pattern=WHOLE, lowercase=False,
                                                   dtype=np.float32))]
        if self.characters:
            self.parts.append(("text", TfidfVectorizer(
                analyzer="char_wb", ngram_range=(2, 4), min_df=3, sublinear_tf=True,
                max_features=self.max_features, dtype=np.float32)))
        return sp.hstack([v.fit_transform(COLUMNS[name](items)) for name, v in self.parts],
                         format="csr")

    def transform(self, items: Sequence[Item]) -> sp.csr_matrix:
        return sp.hstack([v.transform(COLUMNS[name](items)) for name, v in self.parts],
                         format="csr")

    def width(self) -> int:
        """The number of columns of the matrix: the words of every part's vocabulary."""
        return sum(len(vectorizer.vocabulary_) for _, vectorizer in self.parts)

    def __setstate__(self, state: dict) -> None:
        """Older files held the column functions, which a model file reads as the columns'
        names (pickles.OLD_COLUMNS), and a category vectorizer calling `_whole`."""
        for _, vectorizer in state.get("parts", []):
            if getattr(vectorizer, "analyzer", None) == "_whole":
                vectorizer.set_params(analyzer="word", token_pattern=WHOLE, lowercase=False)
        self.__dict__.update(state)

    def check_state(self) -> None:
        if not all(isinstance(part, tuple) and len(part) == 2 and part[0] in COLUMNS
                   for part in self.parts):
            raise ValueError(f"a SparseText reads columns other than {sorted(COLUMNS)}")


# Past this many rows the batches grow with the rows, so that an epoch takes as many steps
# on 400,000 rows as on 20,000 (the Mercari winners trained on 1.4M rows in batches of 2,048
# and up): a step costs the same overhead whatever its size, so small batches on many rows
# spend their time in it.
BATCH_ROWS = 20_000


class SparseMLP:
    """One member: sparse rows -> 256 -> 64 -> 1 on a standardized target, the batch doubling
    each epoch (and larger past BATCH_ROWS rows).

    >>> net = SparseMLP(seed=1).fit(sp.random(200, 50, 0.1, "csr", random_state=0),
    ...                             np.arange(200.0))                      # doctest: +SKIP
    """

    def __init__(self, hidden: tuple[int, int] = (256, 64), epochs: int = 3, batch: int = 64,
                 learning_rate: float = 3e-3, binary: bool = False, seed: int = SEED):
        self.hidden, self.epochs, self.batch = hidden, epochs, batch
        self.learning_rate, self.binary, self.seed = learning_rate, binary, seed

    def _values(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.ones_like(rows.data) if self.binary else rows.data

    def fit(self, matrix: sp.csr_matrix, target: np.ndarray) -> SparseMLP:
        """Train on sparse rows; the weights are kept as numpy arrays (no torch to predict)."""
        import torch
        from torch import nn

        with torch.random.fork_rng(), settings.torch_threads(1):
            torch.manual_seed(self.seed)
            wide, narrow = self.hidden
            first = LazyAdamRows(matrix.shape[1], wide, self.learning_rate)
            bias = nn.Parameter(torch.zeros(wide))
            top = nn.Sequential(nn.ReLU(), nn.Linear(wide, narrow), nn.ReLU(),
                                nn.Linear(narrow, 1))
            optimizer = torch.optim.Adam([bias, *top.parameters()], lr=self.learning_rate)
            order = np.random.default_rng(self.seed)
            goal = torch.from_numpy(target.astype(np.float32))
            for epoch in range(self.epochs):
                size = self.batch * 2 ** epoch * max(1, matrix.shape[0] // BATCH_ROWS)
                shuffled = order.permutation(matrix.shape[0])
                for start in range(0, len(shuffled), size):
                    batch = shuffled[start:start + size]
                    rows = matrix[batch]
                    used, sub = first.rows(rows.indices)
                    # rows @ weight, reading only the weight rows this batch uses
                    hidden = nn.functional.embedding_bag(
                        torch.from_numpy(used), sub,
                        torch.from_numpy(rows.indptr[:-1].astype(np.int64)), mode="sum",
                        per_sample_weights=torch.from_numpy(self._values(rows))) + bias
                    loss = nn.functional.mse_loss(top(hidden).squeeze(1), goal[batch])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    first.step(sub.grad)
            self.weights = [t.detach().numpy().copy() for t in
                            (first.weight, bias, top[1].weight.T, top[1].bias,
                             top[3].weight.T, top[3].bias)]
        return self

    def check_state(self) -> None:
        """Six float arrays whose shapes chain: rows -> width -> narrow -> 1."""
        shapes = [getattr(w, "shape", None) for w in self.weights]
        if len(shapes) != 6 or not all(getattr(w, "dtype", None) in (np.float32, np.float64)
                                       for w in self.weights) \
                or [len(s) for s in shapes] != [2, 1, 2, 1, 2, 1] \
                or shapes[1][0] != shapes[0][1] or shapes[2][0] != shapes[0][1] \
                or shapes[3][0] != shapes[2][1] or shapes[4] != (shapes[2][1], 1) \
                or shapes[5] != (1,):
            raise ValueError(f"a sparse MLP's weights do not chain: {shapes}")

    def predict(self, matrix: sp.csr_matrix) -> np.ndarray:
        first, bias, second, second_bias, last, last_bias = self.weights
        rows = sp.csr_matrix((self._values(matrix), matrix.indices, matrix.indptr),
                             shape=matrix.shape)
        hidden = np.maximum(rows @ first + bias, 0)
        hidden = np.maximum(hidden @ second + second_bias, 0)
        return (hidden @ last + last_bias)[:, 0]


class LazyAdamRows:
    """A wide first layer trained with lazy Adam: each step reads and updates only the rows
    (input columns) the batch uses, so its cost follows the batch, not the vocabulary.

    Weights and both Adam moments of a row sit side by side: one gather, one scatter a step.
    """

    def __init__(self, rows: int, width: int, learning_rate: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        import torch

        self.state = torch.zeros(rows, 3 * width)
        self.state[:, :width] = torch.randn(rows, width) * 0.01
        self.width, self.learning_rate, self.betas, self.eps = width, learning_rate, betas, eps
        self.steps = 0

    @property
    def weight(self):
        return self.state[:, :self.width]

    def rows(self, columns: np.ndarray):
        """(each column's position among the used ones, the used rows as a leaf to train)."""
        import torch

        used, position = np.unique(columns, return_inverse=True)
        self.used = torch.from_numpy(used.astype(np.int64))
        self.picked = self.state.index_select(0, self.used)
        return position.astype(np.int64), self.picked[:, :self.width].clone().requires_grad_()

    def step(self, grad) -> None:
        first, second = self.betas
        self.steps += 1
        weight, mean, square = self.picked.split(self.width, dim=1)
        mean.mul_(first).add_(grad, alpha=1 - first)
        square.mul_(second).addcmul_(grad, grad, value=1 - second)
        size = self.learning_rate * (1 - second ** self.steps) ** 0.5 / (1 - first ** self.steps)
        weight.addcdiv_(mean, square.sqrt().add_(self.eps), value=-size)
        self.state.index_copy_(0, self.used, self.picked)


class SparseMLPPricer(Pricer):
    """The average log-price guess of `members` sparse MLPs; odd members see 0/1 inputs."""

    name = "Sparse MLP Ensemble"

    def __init__(self, members: int = 4, width: int = 256, epochs: int = 3, batch: int = 64,
                 learning_rate: float = 3e-3, characters: bool = False, seed: int = SEED):
        if members < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members, self.width, self.epochs, self.batch = members, width, epochs, batch
        self.learning_rate, self.characters, self.seed = learning_rate, characters, seed

    def _fit(self, train: list[Item]) -> None:
        self.features = SparseText(characters=self.characters)
        matrix = self.features.fit_transform(train)
        logs = np.log1p(prices(train))
        self.mean, self.scale = float(logs.mean()), float(logs.std() or 1.0)
        target = (logs - self.mean) / self.scale
        self.nets = parallel.forked_map(_member, list(range(self.members)),
                                        settings.threads(len(train)), (self, matrix, target))

    def net(self, member: int) -> SparseMLP:
        """Member `member`, unfitted: odd members see 0/1 inputs."""
        return SparseMLP((self.width, 64), epochs=self.epochs, batch=self.batch,
                         learning_rate=self.learning_rate, binary=bool(member % 2),
                         seed=self.seed + member)

    def predict_logs(self, items: Sequence[Item]) -> np.ndarray:
        """The ensemble's log1p-price guesses."""
        matrix = self.features.transform(items)
        guesses = np.mean([net.predict(matrix) for net in self.nets], axis=0)
        return guesses * self.scale + self.mean

    def _predict(self, items: list[Item]) -> np.ndarray:
        return np.expm1(self.predict_logs(items))

    def check_state(self) -> None:
        super().check_state()
        if self.fitted and (not self.nets or any(
                net.weights[0].shape[0] != self.features.width() for net in self.nets)):
            raise ValueError("a sparse MLP ensemble's nets do not read its features")


def _member(member: int) -> SparseMLP:
    model, matrix, target = parallel.SHARED
    return model.net(member).fit(matrix, target)
