"""Independent parts of one pass on a second core.

A checked forget request reads its prepared matrices a few times over; the
reads are bound by memory traffic, and one core does not saturate it. The
parts that do not depend on one another (for example the two one-sided
derivatives of the zeros, or the dense and sparse shares of a Gram matrix)
then run on a helper thread while the calling thread does the rest: numpy,
BLAS and scipy's sparse products release the interpreter lock while they
work. Every part computes exactly what it computes alone, in the same order,
so results do not depend on the number of threads.

The number of threads is ``SKMUTER_THREADS`` when that environment variable
is set (``1`` turns the helper off), else 2 where the process may use at
least two cores, else 1.

While these threads hold the cores (a fit, a forget or a retrain of an
estimator called from the main thread, with two threads or more), BLAS
keeps to its share of the cores
(:func:`blas_share`: the cores divided by the threads, at least one), the
rule scikit-learn follows where it runs threads of its own: BLAS threads on
top of them contend for the same cores. On a two-core machine that is one
BLAS thread, and the exact fit of the paper's MNIST-b model took 2.8 s
instead of 6.9 s with BLAS's two threads (most of its products are small,
and the threads' hand-offs cost more than they save). ``SKMUTER_THREADS=1``
leaves BLAS as configured.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

__all__ = ["blas_share", "in_parallel", "n_threads"]

_POOL = None
_POOL_PID = None
_POOL_LOCK = threading.Lock()
_INSIDE = threading.local()
_BLAS_LOCK = threading.Lock()
_BLAS = {"controller": None, "depth": 0, "limiter": None}


def n_threads():
    """Threads a pass may use (see the module's docstring)."""
    value = os.environ.get("SKMUTER_THREADS")
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(
                f"SKMUTER_THREADS must be a positive integer, got {value!r}") from None
    return 2 if _cores() >= 2 else 1


def _cores():
    """Cores the process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _pool(workers):
    """The helper threads, started on first use (again after a fork: a child
    process has none of its parent's threads)."""
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid() or _POOL._max_workers != workers:
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="skmuter")
            _POOL_PID = os.getpid()
        return _POOL


def _marked(task):
    def run():
        _INSIDE.active = True
        try:
            return task()
        finally:
            _INSIDE.active = False
    return run


def in_parallel(*tasks):
    """The results of the callables ``tasks``, in order: all but the last on
    the helper threads, the last on the calling thread. One at a time where
    only one thread is allowed, for a single task, or inside a helper (a
    helper never waits for another)."""
    workers = n_threads() - 1
    if workers < 1 or len(tasks) < 2 or getattr(_INSIDE, "active", False):
        return [task() for task in tasks]
    pool = _pool(workers)
    futures = [pool.submit(_marked(task)) for task in tasks[:-1]]
    try:
        last = tasks[-1]()
    finally:
        # every helper has finished before this returns or raises: none may
        # still touch the arrays after a failure here
        wait(futures)
    return [f.result() for f in futures] + [last]  # (a helper's error raises here)


@contextlib.contextmanager
def blas_share():
    """Within the block, BLAS uses at most ``cores // n_threads()`` threads
    (at least one) when :func:`n_threads` is 2 or more; with one thread it
    is left as configured.

    The limit is process-wide (BLAS has no other kind), so it is set and put
    back by the main thread only: from the first of its nested blocks to the
    end of the last. A block in another thread leaves BLAS as it is (this
    OpenBLAS does not reliably take a limit set from a thread other than the
    main one), and so does a BLAS that threadpoolctl (a dependency of
    scikit-learn) cannot see.
    """
    workers = n_threads()
    if workers < 2 or threading.current_thread() is not threading.main_thread():
        yield
        return
    with _BLAS_LOCK:
        if _BLAS["depth"] == 0:
            if _BLAS["controller"] is None:
                from threadpoolctl import ThreadpoolController

                _BLAS["controller"] = ThreadpoolController()
            share = max(1, _cores() // workers)
            _BLAS["limiter"] = _BLAS["controller"].limit(limits=share, user_api="blas")
        _BLAS["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS["depth"] -= 1
            if _BLAS["depth"] == 0:
                limiter, _BLAS["limiter"] = _BLAS["limiter"], None
                limiter.restore_original_limits()
