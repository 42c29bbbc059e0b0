"""forked_map: the same results here and in forked workers, each on one thread."""

import os

import pytest

import parallel


def offset_and_threads(task: int) -> tuple[int, str | None, bool]:
    """The task plus what SHARED holds, the thread count its models get, and whether it
    runs in a worker."""
    return task + parallel.SHARED[0], os.environ.get("PRICER_THREADS"), os.getpid() != PARENT


def nested(task: int) -> list[int]:
    """A task that maps tasks of its own: they run inline in the worker."""
    inner = parallel.forked_map(len, ["a" * task, "b"], workers=2, shared=("inner",))
    assert parallel.SHARED == ("outer",)  # the outer tasks' data is back after the inner map
    return inner


PARENT = os.getpid()


@pytest.mark.skipif(not parallel.can_fork(), reason="forks only on Linux")
def test_workers_return_in_order_on_one_thread_each():
    found = parallel.forked_map(offset_and_threads, list(range(5)), workers=2, shared=(10,))
    assert [value for value, _, _ in found] == [10, 11, 12, 13, 14]
    assert all(threads == "1" and forked for _, threads, forked in found)
    assert parallel.SHARED == () and "PRICER_FORKED_WORKER" not in os.environ


def test_one_worker_runs_here():
    found = parallel.forked_map(offset_and_threads, [1, 2], workers=1, shared=(5,))
    assert [(value, forked) for value, _, forked in found] == [(6, False), (7, False)]


def test_tasks_of_tasks_run_in_their_worker():
    assert parallel.forked_map(nested, [3, 4], workers=2, shared=("outer",)) == [[3, 1], [4, 1]]
    assert parallel.SHARED == ()


def test_a_failing_task_raises_here_and_restores_shared():
    with pytest.raises(ZeroDivisionError):
        parallel.forked_map(lambda task: 1 / task, [0], workers=1, shared=(1,))
    assert parallel.SHARED == ()
