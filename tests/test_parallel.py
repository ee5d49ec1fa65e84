"""Independent parts of a pass on a helper thread (skmuter._parallel): the
results, their order and the errors are those of running the parts one after
another, and a forget is the same to the last bit with one thread or two.
While skmuter's threads hold the cores, BLAS keeps to its share of them."""

import threading

import numpy as np
import pytest
from scipy import sparse
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_info, threadpool_limits

from skmuter import AdversarialLogisticRegression, _parallel
from skmuter._transaction import _transaction
from skmuter.attacks import PGD


def test_results_in_order_and_the_last_part_on_the_calling_thread(monkeypatch):
    monkeypatch.setenv("SKMUTER_THREADS", "2")
    where = {}

    def part(name, value):
        def run():
            where[name] = threading.current_thread()
            return value
        return run

    out = _parallel.in_parallel(part("a", 1), part("b", [2]), part("c", None))
    assert out == [1, [2], None]
    assert where["c"] is threading.current_thread()
    assert where["a"] is not threading.current_thread()
    assert where["b"] is not threading.current_thread()


def test_one_thread_runs_every_part_here(monkeypatch):
    monkeypatch.setenv("SKMUTER_THREADS", "1")
    seen = []
    out = _parallel.in_parallel(lambda: seen.append(threading.current_thread()) or 1,
                                lambda: 2)
    assert out == [1, 2] and seen == [threading.current_thread()]


def test_a_helper_does_not_wait_for_another(monkeypatch):
    # a part that itself runs parts in parallel runs them one after another
    # (with one helper thread, waiting for a second one would never end)
    monkeypatch.setenv("SKMUTER_THREADS", "2")

    def outer():
        return _parallel.in_parallel(threading.current_thread, threading.current_thread)

    inner, _ = _parallel.in_parallel(outer, lambda: None)
    assert inner[0] is inner[1] is not threading.current_thread()


def test_errors_raise_after_every_part_finished(monkeypatch):
    monkeypatch.setenv("SKMUTER_THREADS", "2")
    done = threading.Event()

    def slow():
        done.wait(0.2)
        done.set()
        return 1

    def fails():
        raise KeyError("here")

    with pytest.raises(KeyError, match="here"):
        _parallel.in_parallel(slow, fails)
    assert done.is_set()  # the helper had finished when the error came
    with pytest.raises(KeyError, match="here"):
        _parallel.in_parallel(fails, lambda: 1)


def test_threads_from_the_environment(monkeypatch):
    monkeypatch.setenv("SKMUTER_THREADS", "3")
    assert _parallel.n_threads() == 3
    monkeypatch.setenv("SKMUTER_THREADS", "two")
    with pytest.raises(ValueError, match="SKMUTER_THREADS must be a positive integer"):
        _parallel.n_threads()
    monkeypatch.delenv("SKMUTER_THREADS")
    assert _parallel.n_threads() in (1, 2)


def test_a_new_pool_in_a_child_process(monkeypatch):
    # after a fork the parent's threads are gone: the pool is started again
    monkeypatch.setenv("SKMUTER_THREADS", "2")
    _parallel.in_parallel(lambda: 1, lambda: 2)
    first = _parallel._POOL
    monkeypatch.setattr(_parallel, "_POOL_PID", -1)
    assert _parallel.in_parallel(lambda: 1, lambda: 2) == [1, 2]
    assert _parallel._POOL is not first


def test_forgets_are_the_same_with_one_thread_or_two(monkeypatch):
    X, y = load_digits(n_class=2, return_X_y=True)
    X = sparse.csr_matrix(X / 16.0)
    fitted = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("SKMUTER_THREADS", threads)
        est = AdversarialLogisticRegression(attack=PGD(epsilon=0.1, clip=(0, 1)), alpha=1e-2)
        # skmuter's threads alone differ: BLAS at one thread in both runs
        with threadpool_limits(1, user_api="blas"):
            est.fit(X, y)
            est.forget([3])
            est.forget([10, 40, 41])
        fitted[threads] = est
    one, two = fitted["1"], fitted["2"]
    np.testing.assert_array_equal(one.coef_, two.coef_)
    np.testing.assert_array_equal(one.intercept_, two.intercept_)
    assert ([r["optimality_residual"] for r in one.forget_log_]
            == [r["optimality_residual"] for r in two.forget_log_])



def _blas_threads():
    return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})


@pytest.mark.skipif(not _blas_threads(), reason="no BLAS that threadpoolctl can see")
def test_blas_keeps_to_its_share_of_the_cores_inside_fits_and_forgets(monkeypatch):
    monkeypatch.setenv("SKMUTER_THREADS", "2")
    before = _blas_threads()
    share = max(1, _parallel._cores() // 2)
    seen = {}
    est = AdversarialLogisticRegression()

    def call():
        seen["inside"] = _blas_threads()
        with _parallel.blas_share():  # nested: the same limit, kept on exit
            pass
        seen["after nested"] = _blas_threads()
        return 1

    assert _transaction(est, call) == 1
    assert seen["inside"] == seen["after nested"] == [share]
    assert _blas_threads() == before  # put back


@pytest.mark.skipif(not _blas_threads(), reason="no BLAS that threadpoolctl can see")
def test_blas_limit_from_the_main_thread_only_and_put_back_after_errors(monkeypatch):
    monkeypatch.setenv("SKMUTER_THREADS", "2")
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        share = [max(1, _parallel._cores() // 2)]
        seen = {}

        def other():
            with _parallel.blas_share():
                seen["other thread"] = _blas_threads()

        worker = threading.Thread(target=other)
        worker.start()
        worker.join(10)
        with _parallel.blas_share():
            seen["main"] = _blas_threads()
            helper = threading.Thread(target=lambda: seen.setdefault("helper",
                                                                     _blas_threads()))
            helper.start()
            helper.join(10)
        assert seen == {"other thread": before, "main": share, "helper": share}
        assert _blas_threads() == before
        with pytest.raises(RuntimeError), _parallel.blas_share():
            raise RuntimeError("boom")
        assert _blas_threads() == before


def test_one_thread_leaves_blas_as_configured(monkeypatch):
    monkeypatch.setenv("SKMUTER_THREADS", "1")
    before = _blas_threads()
    with _parallel.blas_share():
        assert _blas_threads() == before
