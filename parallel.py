"""Independent tasks side by side in forked processes, each on one thread.

>>> forked_map(len, ["a", "bb", "ccc"], workers=2, shared=())
[1, 2, 3]

Models that train in parts that do not depend on each other (the stack's folds, the sparse MLP
ensemble's members) run each part on one thread and, with several cores, the parts in
processes of their own. A part's result is then the same whether it ran here or beside
another, so the model does not depend on the thread count (threads of one process would sum
their shares in an order that does). The processes are forked: they read the training data
from memory that they share with this one, nothing is pickled to them but the task, and
what they return comes back pickled. Where a platform cannot fork (Windows; macOS forks
unsafely), the tasks run here, one after another.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

SHARED: tuple = ()  # what the tasks read: set before the workers fork, so never pickled


def forked_map(function: Callable, tasks: list, workers: int, shared: tuple) -> list:
    """[function(task) for task in tasks], with `shared` in SHARED meanwhile: in up to
    `workers` forked processes, each on one thread, else here one after another."""
    global SHARED
    outer, SHARED = SHARED, shared  # a task may map tasks of its own
    try:
        if workers <= 1 or len(tasks) <= 1 or not can_fork() or os.environ.get(_WORKER):
            return [function(task) for task in tasks]
        with ProcessPoolExecutor(min(workers, len(tasks)), initializer=_one_thread,
                                 mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(function, tasks))
    finally:
        SHARED = outer


_WORKER = "PRICER_FORKED_WORKER"  # set in a worker: its own tasks run in it, not further out


def can_fork() -> bool:
    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


def _one_thread() -> None:
    """A worker's models, and its BLAS, use one thread: the workers share the cores."""
    from threadpoolctl import threadpool_limits

    os.environ["PRICER_THREADS"] = "1"
    os.environ[_WORKER] = "1"
    threadpool_limits(1)
