"""Loading model files in a child process, so that a crash or a hang is a test's failure and
not the end of pytest.

    outcomes = load_all(paths, texts)   # path -> Outcome: refused, loaded, crashed or hung

The child (`python tests/loads.py TEXTS PATH...`) loads each file with Pricer.load and, when it
loads, prices a few items with it; it says what happened to each file on its own line. A file
that takes longer than `limit` seconds is hung: the child is killed, and a new one goes on with
the next file. So is one that kills the child (a signal): crashed, with the signal's name.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Outcome:
    kind: str  # "refused", "loaded", "crashed" or "hung"
    detail: str = ""  # the error, the signal, or how pricing went


def load_all(paths: list[Path], texts: list[str], limit: float = 30.0) -> dict[Path, Outcome]:
    """What loading each of `paths` (then pricing `texts` with it) did, in child processes."""
    outcomes: dict[Path, Outcome] = {}
    while len(outcomes) < len(paths):
        rest = paths[len(outcomes):]
        outcomes.update(_run(rest, texts, limit))
    return outcomes


def _run(paths: list[Path], texts: list[str], limit: float) -> dict[Path, Outcome]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    child = subprocess.Popen([sys.executable, __file__, json.dumps(texts), *map(str, paths)],
                             stdout=subprocess.PIPE, text=True, env=env)
    outcomes: dict[Path, Outcome] = {}
    with selectors.DefaultSelector() as waiting:
        waiting.register(child.stdout, selectors.EVENT_READ)
        while len(outcomes) < len(paths):
            if not waiting.select(limit):
                child.kill()
                child.wait()
                outcomes[paths[len(outcomes)]] = Outcome("hung", f"over {limit:.0f} s")
                return outcomes
            line = child.stdout.readline()
            if not line:  # the child died
                code = child.wait()
                why = signal.Signals(-code).name if code < 0 else f"exit status {code}"
                outcomes[paths[len(outcomes)]] = Outcome("crashed", why)
                return outcomes
            kind, detail = json.loads(line)
            outcomes[paths[len(outcomes)]] = Outcome(kind, detail)
    child.wait()
    return outcomes


def _price(model, texts: list[str]) -> str:
    """How pricing went: "priced", or the error a model that loaded raised."""
    import numpy as np

    from baselines import EmbeddingPricer
    from items import Item

    try:
        if isinstance(model, EmbeddingPricer):  # the regressor alone: no encoder needed
            model.regressor.predict(np.random.default_rng(0).normal(size=(3, 384)))
        else:
            model.predict_many([Item.from_text(text, 1.0) for text in texts])
        return "priced"
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:300]


def _main(texts: str, *paths: str) -> None:
    import pickle

    from pricer import Pricer

    for path in paths:
        try:
            model = Pricer.load(path)
        except pickle.UnpicklingError as error:
            outcome = ["refused", str(error)]
        else:
            outcome = ["loaded", _price(model, json.loads(texts))]
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    _main(*sys.argv[1:])
