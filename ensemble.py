"""An ensemble whose weights are fitted on training items its members never saw (where
`baselines.FixedEnsemble` blends with weights you choose).

>>> model = FittedEnsemble([baselines.best(), RagPricer.over(local.pricer())])  # doctest: +SKIP
>>> offline = FittedEnsemble(cpu_members())      # no chat model: the page's    # doctest: +SKIP
>>> model.fit(train).weights()            # {'Stack': 0.61, 'pricer + RAG': 0.33, ...}
...                                       # doctest: +SKIP
>>> low, high = model.predict_interval(test, 0.8)                  # doctest: +SKIP

The course's 2024 edition blended its specialist, its frontier RAG pricer and a random forest
with their min and max by linear regression on held-out items. So does this one, with two
changes. The held-out items are training items, never test items: `fit(train)` holds back a
seeded `share` of `train`, fits every member on the rest, asks each for its guesses on the
held-back items, fits the weights on those, and then fits the members again on all of
`train`, so a member's guesses on the items that set its weight are as unseen as a test item.
And the blend is fitted on log prices to the least absolute error (least absolute deviations,
a small linear program), with non-negative weights, where the course's regression fitted
dollars to the least squared error:
- absolute error, because the Tester scores the mean absolute error, which the median price
  of items alike minimises; squares fit their mean, which skewed prices put well above the
  typical one. On real products a squared fit in dollars let a few dear held-out items set
  the weights and priced the cheap majority too high, worse than its best member;
- log prices, because the median is the same on either scale (so the fit still aims at the
  dollars' median), while a blend of logs is a weighted geometric mean: its constant is a
  factor, not a dollar amount that would swamp a cheap product, and it carries over to
  categories whose prices run higher or lower than the held-out items';
- non-negative weights, because the members' guesses, their min and their max are close to
  collinear, and a free fit on a few hundred held-out items answers that with large weights
  of opposite signs that cancel there and not on new items. A blend of weights at zero or
  above reads at a glance, and costs nothing when the members are all useful. The constant
  is free in sign.

The held-out errors of the blend also calibrate its price ranges (see
Pricer.predict_interval); an item that any member has no price for has none from the blend.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import baselines
from features import prices
from items import Item
from pricer import SEED, Pricer


def held_out(train: Sequence[Item], share: float = 0.2,
             seed: int = SEED) -> tuple[list[Item], list[Item]]:
    """(held out, rest): the seeded `share` of `train` that FittedEnsemble(share=, seed=)
    fits its weights on, and the others. A model that feeds a member from outside (one served
    behind a chat) must train on the rest only, or its guesses there are not honest.

    >>> [len(part) for part in held_out(range(10))]
    [2, 8]
    """
    shuffled = list(train)
    random.Random(seed).shuffle(shuffled)
    cut = round(len(shuffled) * share)
    return shuffled[:cut], shuffled[cut:]


def cpu_members() -> list[Pricer]:
    """Members that need no chat model, unfitted: the stack of notebook 04 and MiniLM + SVR,
    which reads the sentence embeddings that the stack leaves out.

    >>> [member.name for member in cpu_members()]
    ['Stack', 'MiniLM + SVR']
    """
    return [baselines.best(), baselines.EmbeddingPricer("svr")]


def least_absolute(columns: np.ndarray, truths: np.ndarray) -> tuple[np.ndarray, float]:
    """(weights >= 0, constant): the blend `columns @ weights + constant` with the least total
    absolute error from `truths`, as a linear program: each item's error is bounded above by
    a slack variable u >= |truth - blend|, and the program minimises the sum of the slacks.

    >>> guesses = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    >>> weights, constant = least_absolute(guesses, np.array([2.0, 4.0, 6.0, 8.0, 100.0]))
    >>> weights.round(6).tolist(), round(constant, 6)   # the one wild price moves nothing
    ([2.0], 0.0)
    """
    from scipy.optimize import linprog
    from scipy.sparse import eye, hstack, vstack

    n, k = columns.shape
    one = np.ones((n, 1))
    slack = eye(n, format="csr")
    # variables: the k weights, the constant as (plus - minus), then the n slacks
    over = hstack([columns, one, -one, -slack])  # blend - u <= truth
    under = hstack([-columns, -one, one, -slack])  # -blend - u <= -truth
    cost = np.r_[np.zeros(k + 2), np.ones(n)]
    answer = linprog(cost, A_ub=vstack([over, under]).tocsr(), b_ub=np.r_[truths, -truths],
                     bounds=(0, None), method="highs")
    if not answer.success:
        raise RuntimeError(f"the blend's weights could not be fitted: {answer.message}")
    return answer.x[:k], float(answer.x[k] - answer.x[k + 1])


class FittedEnsemble(Pricer):
    """Members' log prices, their min and max, blended by weights fitted on held-out items to
    the least absolute error."""

    calibrated_by_fit = True

    def __init__(self, members: Sequence[Pricer], share: float = 0.2, seed: int = SEED,
                 name: str = "Fitted ensemble"):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if not 0 < share < 1:
            raise ValueError(f"share must be between 0 and 1, not {share}")
        self.members, self.share, self.seed, self.name = list(members), share, seed, name
        self.held_size = 0  # training items the weights were fitted on
        self.dropped = 0  # of those, items some member had no price for

    @property
    def savable(self) -> bool:
        return all(member.savable for member in self.members)

    def columns(self, items: Sequence[Item]) -> np.ndarray:
        """One row per item: each member's log price (log1p of its guess), then their min and
        their max."""
        guesses = np.column_stack([member.predict_many(items) for member in self.members])
        logs = np.log1p(np.clip(guesses, 0, None))
        return np.column_stack([logs, logs.min(axis=1), logs.max(axis=1)])

    def _fit(self, train: list[Item]) -> None:
        held, rest = held_out(train, self.share, self.seed)
        if not held or not rest:
            raise ValueError(f"{self.name}: {len(train)} training items are too few to hold "
                             f"back {self.share:.0%}")
        for member in self.members:
            member.fit(rest)
        columns, truths = self.columns(held), np.log1p(prices(held))
        known = np.isfinite(columns).all(axis=1)
        self.held_size, self.dropped = len(held), int((~known).sum())
        if not known.any():
            raise ValueError(f"{self.name}: no held-out item has a price from every member")
        self.coefficients, self.constant = least_absolute(columns[known], truths[known])
        self.residuals = np.sort(np.abs(truths[known] - self.blend(columns[known])))
        for member in self.members:
            member.fit(train)

    def blend(self, columns: np.ndarray) -> np.ndarray:
        """The blended log prices of `columns` rows (never below a price of $0)."""
        return np.clip(columns @ self.coefficients + self.constant, 0, None)

    def _predict(self, items: list[Item]) -> np.ndarray:
        return np.expm1(self.blend(self.columns(items)))

    def weights(self) -> dict[str, float]:
        """The fitted weight of each member's log price, of their min and max, and the
        constant added to the blend's log price (a factor of e^constant on the price)."""
        names = [member.name for member in self.members] + ["min", "max"]
        return {**dict(zip(names, self.coefficients.tolist(), strict=True)),
                "constant": float(self.constant)}

    def save(self, path: str | Path) -> Path:
        if not self.savable:
            api = ", ".join(m.name for m in self.members if not m.savable)
            raise TypeError(f"{self.name}: {api} answers through an API, nothing to save; "
                            "save the other members and rebuild the ensemble")
        return super().save(path)

    def check_state(self) -> None:
        super().check_state()
        if self.fitted and np.shape(self.coefficients) != (len(self.members) + 2,):
            raise ValueError(f"{self.name} has {len(self.members)} members and "
                             f"{np.size(self.coefficients)} weights")

    def why_no_price(self, item: Item) -> str:
        silent = [m.name for m in self.members if np.isnan(m.predict_many([item])[0])]
        return f"no price from {', '.join(silent)}" if silent else super().why_no_price(item)
