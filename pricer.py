"""The one contract every price predictor keeps: classical models, MiniLM, Llama, chat, human.

>>> class Flat(Pricer):
...     name, needs_fit = "Flat", False
...     def _predict(self, items):
...         return np.full(len(items), 9.5)
>>> model = Flat()
>>> model.predict_many([None, None]), model(None)
(array([9.5, 9.5]), 9.5)

A Pricer has a `name` (the Tester's title), learns from training Items with `fit(train)`
(which returns it, and records `fit_seconds`) unless `needs_fit` is False, and then prices
items: `predict_many(items)` for a batch (an array, NaN where it has no price for an item),
`predict(item)` or `model(item)` for one, which raises `NoPrice` saying why instead of
returning NaN. A model with weights can `save(path)` and `load(path)`. A plain function from
an Item to a price is a predictor too, for the Tester.

Two errors tell the Tester what to do: `NoPrice` (this item has no price: count it as a
failure and go on) and `PricerError` (the predictor cannot work as set up, say a rejected
API key: stop the run).
"""

from __future__ import annotations

import math
import pickle
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

import numpy as np

import pickles
from files import written
from items import Item, checked_prices

SEED = 42  # every model's default seed: the same items and seed make the same model
Predictor = Callable[[Item], float]  # what the Tester and the local server accept
Trainer = Callable[[list[Item]], Predictor]  # what a local fine-tuning job runs


class NoPrice(Exception):
    """A predictor has no price for this one item (a failed call, an answer without a number)."""


class PricerError(RuntimeError):
    """A predictor cannot work as set up (a rejected key, an unknown model): stop the run."""


class Pricer:
    """The interface every predictor shares.

    Subclasses implement `_predict(items) -> array` and, when they learn, `_fit(train)`.
    Guesses are clipped at $0; NaN stays NaN (no price).
    """

    name = "Pricer"
    needs_fit = True  # False: ready to predict as made (random guesses, a chat model, a person)
    savable = True  # False: nothing of its own to save (a model behind an API)
    fit_seconds: float | None = None  # how long `fit` took; None until fitted
    residuals: np.ndarray | None = None  # sorted |log error| on items it did not train on
    calibrated_by_fit = False  # True where fit sets residuals (out of fold), at no extra cost

    def fit(self, train: Sequence[Item]) -> Self:
        """Train on `train` (Items with prices, each finite and $0 or more); returns the
        fitted model."""
        train = checked_prices(train, f"{self.name}'s training items")
        if not train:
            raise ValueError(f"{self.name}: cannot fit on no training items")
        start = time.perf_counter()
        self._fit(train)
        self.fit_seconds = time.perf_counter() - start
        return self

    def _fit(self, train: list[Item]) -> None:
        """Learn from `train`; nothing to learn by default."""

    def _predict(self, items: list[Item]) -> np.ndarray:
        raise NotImplementedError

    @property
    def fitted(self) -> bool:
        return self.fit_seconds is not None or not self.needs_fit

    def predict_many(self, items: Sequence[Item]) -> np.ndarray:
        """Prices for many items at once (faster than one by one); NaN where there is none."""
        if not self.fitted:
            raise RuntimeError(f"{self.name} is not fitted: call fit(train) first")
        guesses = np.asarray(self._predict(list(items)), dtype=float)
        if guesses.shape != (len(items),):
            raise RuntimeError(f"{self.name} gave {guesses.shape} guesses for {len(items)} items")
        return np.clip(guesses, 0, None)  # NaN stays NaN

    def predict(self, item: Item) -> float:
        """The price of one item; raises NoPrice when the model has none."""
        guess = float(self.predict_many([item])[0])
        if np.isnan(guess):
            raise NoPrice(self.why_no_price(item))
        return guess

    def why_no_price(self, item: Item) -> str:
        """Why `item` has no price (a model that can fail per item says more)."""
        return f"{self.name} has no price for it"

    def __call__(self, item: Item) -> float:
        return self.predict(item)

    # Price ranges by split conformal prediction on log price: the range around a guess is
    # as wide as the model's errors on items it did not train on, in log space, so it grows
    # with the price. Valid (on average over items) whenever new items resemble those items.

    def fit_calibrated(self, train: Sequence[Item], share: float = 0.1, seed: int = SEED) -> Self:
        """Fit on all but a seeded `share` of `train`, and calibrate ranges on that share.

        >>> model = TfidfRidgePricer().fit_calibrated(train)           # doctest: +SKIP
        >>> low, high = model.predict_interval(test, level=0.8)        # doctest: +SKIP
        """
        if not 0 < share < 1:
            raise ValueError(f"share must be between 0 and 1, not {share}")
        shuffled = list(train)
        random.Random(seed).shuffle(shuffled)
        held = round(len(shuffled) * share)
        return self.fit(shuffled[held:]).calibrate(shuffled[:held])

    def calibrate(self, items: Sequence[Item]) -> Self:
        """Remember the model's log-price errors on `items` (priced, and unseen in training)."""
        items = checked_prices(items, f"{self.name}'s calibration items")
        if not items:
            raise ValueError(f"{self.name}: cannot calibrate on no items")
        truths = np.log1p([item.price for item in items])
        errors = np.abs(truths - np.log1p(self.predict_many(items)))
        self.residuals = np.sort(errors[~np.isnan(errors)])
        return self

    @property
    def calibrated(self) -> bool:
        return self.residuals is not None

    def predict_interval(self, items: Sequence[Item],
                         level: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
        """(low, high): price ranges that hold the true price `level` of the time.

        >>> low, high = model.predict_interval(test[:1], 0.8)          # doctest: +SKIP
        >>> f"80% between ${low[0]:.0f} and ${high[0]:.0f}"            # doctest: +SKIP
        """
        if self.residuals is None:
            raise RuntimeError(f"{self.name} has no price ranges: fit_calibrated(train), or "
                               "calibrate(items it did not train on) after fit")
        if not 0 < level < 1:
            raise ValueError(f"level must be between 0 and 1, not {level}")
        rank = math.ceil((len(self.residuals) + 1) * level)
        if rank > len(self.residuals):
            raise ValueError(f"{len(self.residuals)} calibration errors are too few for a "
                             f"{level:.0%} range")
        width = self.residuals[rank - 1]
        logs = np.log1p(self.predict_many(items))
        return np.expm1(np.maximum(logs - width, 0)), np.expm1(logs + width)

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to `path` (a pickle: load only files you saved)."""
        if not self.fitted:
            raise RuntimeError(f"{self.name} is not fitted: nothing to save")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with written(path) as partial, open(partial, "wb") as f:
            pickle.dump(self, f)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a model written by `save`, safely (pickles.load): a file naming anything but
        the models and what they are made of, or whose data does not fit together, is
        refused with a pickle.UnpicklingError that says why."""
        model = pickles.load(path, "model file")
        if not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def check_state(self) -> None:
        """Raise ValueError where this model's fields, as a model file brought them, do not
        fit together (pickles.check calls it on each model it loads; models add theirs)."""
        residuals = self.residuals
        if residuals is not None and not (isinstance(residuals, np.ndarray)
                                          and residuals.ndim == 1 and residuals.dtype.kind == "f"):
            raise ValueError(f"{type(self).__name__}'s residuals are not a vector of floats")

    def __repr__(self) -> str:
        if self.fit_seconds is not None:
            return f"<{self.name}: fitted in {self.fit_seconds:.1f}s>"
        return f"<{self.name}: {'ready' if self.fitted else 'not fitted'}>"
