"""An ensemble whose weights are fitted on training items its members never saw.

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
And the weights are non-negative least squares (NNLS), not ordinary linear regression: the
members' guesses, their min and their max are close to collinear, and on a few hundred
held-out items ordinary least squares answers that with large weights of opposite signs that
cancel there and not on new items; NNLS keeps every weight at zero or above (a weighted blend,
read at a glance), which costs nothing in fit when the members are all useful. The constant
is free in sign. Guesses and weights are in dollars, as the Tester scores them.

The held-out errors of the blend also calibrate its price ranges (see
Pricer.predict_interval); an item that any member has no price for has none from the blend.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import baselines
from features import SEED, prices
from items import Item
from pricer import Pricer


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


class FittedEnsemble(Pricer):
    """Members' guesses, their min and max, blended by NNLS weights fitted on held-out items."""

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
        """One row per item: each member's guess, then their min and their max."""
        guesses = np.column_stack([member.predict_many(items) for member in self.members])
        return np.column_stack([guesses, guesses.min(axis=1), guesses.max(axis=1)])

    def _fit(self, train: list[Item]) -> None:
        from scipy.optimize import nnls

        held, rest = held_out(train, self.share, self.seed)
        if not held or not rest:
            raise ValueError(f"{self.name}: {len(train)} training items are too few to hold "
                             f"back {self.share:.0%}")
        for member in self.members:
            member.fit(rest)
        columns, truths = self.columns(held), prices(held)
        known = np.isfinite(columns).all(axis=1)
        self.held_size, self.dropped = len(held), int((~known).sum())
        if not known.any():
            raise ValueError(f"{self.name}: no held-out item has a price from every member")
        ones = np.ones((known.sum(), 1))
        solution, _ = nnls(np.hstack([columns[known], ones, -ones]), truths[known])
        self.coefficients, self.constant = solution[:-2], solution[-2] - solution[-1]
        blend = np.clip(columns[known] @ self.coefficients + self.constant, 0, None)
        self.residuals = np.sort(np.abs(np.log1p(truths[known]) - np.log1p(blend)))
        for member in self.members:
            member.fit(train)

    def _predict(self, items: list[Item]) -> np.ndarray:
        return self.columns(items) @ self.coefficients + self.constant

    def weights(self) -> dict[str, float]:
        """The fitted weight of each member, of the min and the max, and the constant ($)."""
        names = [member.name for member in self.members] + ["min", "max"]
        return {**dict(zip(names, self.coefficients.tolist(), strict=True)),
                "constant": float(self.constant)}

    def save(self, path: str | Path) -> Path:
        if not self.savable:
            api = ", ".join(m.name for m in self.members if not m.savable)
            raise TypeError(f"{self.name}: {api} answers through an API, nothing to save; "
                            "save the other members and rebuild the ensemble")
        return super().save(path)

    def why_no_price(self, item: Item) -> str:
        silent = [m.name for m in self.members if np.isnan(m.predict_many([item])[0])]
        return f"no price from {', '.join(silent)}" if silent else super().why_no_price(item)
