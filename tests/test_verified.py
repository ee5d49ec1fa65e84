"""Verified forgetting of the linear models: every request measures how close it
landed, corrects itself to ``forget_tol``, and keeps nothing of the forgotten rows."""

import copy
import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skmuter import (
    AdversarialLogisticRegression,
    AdversarialRidge,
    AdversarialRidgeClassifier,
    metrics,
)
from skmuter.attacks import PGD
from skmuter.forgetters import MUter, Newton


@pytest.fixture(scope="module")
def digits01():
    X, y = load_digits(n_class=2, return_X_y=True)
    return X / 16.0, y


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(150, 6))
    y = X @ rng.normal(size=6) + 0.1 * rng.normal(size=150)
    return X, y


def _models():
    return {
        "logistic-linf": AdversarialLogisticRegression(
            attack=PGD(epsilon=0.25, clip=(0, 1)), alpha=1e-3),
        "logistic-l2": AdversarialLogisticRegression(
            attack=PGD(epsilon=0.5, norm=2), alpha=1e-3),
        "ridge-classifier": AdversarialRidgeClassifier(
            attack=PGD(epsilon=0.1, clip=(0, 1)), alpha=1e-2),
    }


def _fitted(name, data):
    return _models()[name].fit(*data)


@pytest.mark.parametrize("name", sorted(_models()))
def test_logged_residual_is_the_published_models(digits01, name):
    est = _fitted(name, digits01)
    est.forget([3, 40])
    est.partial_forget([7, 11])
    for rec in est.forget_log_:
        assert rec["checked"] is True
        assert rec["forget_tol"] == est.forget_tol
        assert rec["total_time"] >= rec["solve_time"] + rec["check_time"]
    last = est.forget_log_[-1]
    assert_allclose(last["optimality_residual"], metrics.gradient_residual(est), rtol=1e-6,
                    atol=1e-14)
    assert last["optimality_residual"] <= est.forget_tol
    assert est.optimality_residual_ == last["optimality_residual"]
    assert 0 <= last["retrain_distance_bound"] < np.inf


@pytest.mark.parametrize("name", sorted(_models()))
def test_the_bound_holds_against_the_retrain(digits01, name):
    est = _fitted(name, digits01)
    rows = np.random.default_rng(0).choice(len(digits01[0]), 5, replace=False)
    u = copy.deepcopy(est).set_params(forget_tol=1e-4).forget(rows)
    ref = metrics.retrain(u)
    dist = metrics.parameter_distance(u, ref)
    assert dist <= u.forget_log_[-1]["retrain_distance_bound"] * (1 + 1e-6) + 1e-10


def test_forget_tol_none_skips_the_check(digits01):
    est = _fitted("logistic-linf", digits01).set_params(forget_tol=None)
    est.forget([5])
    rec = est.forget_log_[-1]
    assert rec["checked"] is False
    assert rec["optimality_residual"] is None and rec["retrain_distance_bound"] is None
    assert rec["refine_steps"] == 0 and rec["check_time"] == 0.0


def test_forget_tol_is_validated(digits01):
    est = _fitted("logistic-linf", digits01).set_params(forget_tol=-1.0)
    with pytest.raises(ValueError, match="forget_tol"):
        est.fit(*digits01)


def test_unreachable_target_warns_and_says_what_was_reached(digits01):
    est = _fitted("logistic-linf", digits01).set_params(forget_tol=1e-300)
    with pytest.warns(ConvergenceWarning, match=r"reached the optimality residual .* > "
                      r"forget_tol=1e-300"):
        est.forget([2])
    assert est.forget_log_[-1]["optimality_residual"] > 1e-300


def test_the_check_corrects_a_poor_forgetter(digits01):
    # The clean-input Newton step ignores the attack: far off on its own, put right
    # by the check.
    est = _fitted("logistic-linf", digits01).set_params(forgetter=Newton())
    raw = copy.deepcopy(est).set_params(forget_tol=None).forget([1, 2, 3])
    checked = copy.deepcopy(est).forget([1, 2, 3])
    ref = metrics.retrain(checked)
    assert metrics.residual_fraction(raw, est, ref) > 1e-2
    assert metrics.residual_fraction(checked, est, ref) < 1e-4


def test_forgetter_may_switch_after_forgetting(digits01):
    est = _fitted("logistic-linf", digits01)
    est.forget([1])
    est.set_params(forgetter="newton-delta").forget([2])
    assert est.forget_log_[-1]["forgetter"] == "newton-delta"
    with pytest.raises(ValueError, match="linearised at the fitted model"):
        est.set_params(forgetter=MUter(linearization="fitted")).forget([3])


# ---- nothing of the forgotten rows stays ----------------------------------------------
def _arrays(obj, seen=None):
    """Every float array reachable from ``obj`` (attributes, lists, dicts)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f":
            yield obj
        return
    if isinstance(obj, dict):
        items = obj.values()
    elif isinstance(obj, (list, tuple)):
        items = obj
    elif hasattr(obj, "__dict__"):
        items = vars(obj).values()
    else:
        return
    for value in items:
        yield from _arrays(value, seen)


def _holds(arrays, vector, tol=1e-12):
    """Whether ``vector`` (or its sign-flip) appears as a row, a column or a whole array."""
    vector = np.ravel(vector)
    for a in arrays:
        for cand in (a.ravel(), *(a if a.ndim == 2 else ()), *(a.T if a.ndim == 2 else ())):
            cand = np.ravel(cand)
            if cand.shape == vector.shape and (
                    np.allclose(cand, vector, atol=tol, rtol=0)
                    or np.allclose(cand, -vector, atol=tol, rtol=0)):
                return True
    return False


@pytest.mark.parametrize("attack", [PGD(epsilon=0.25, clip=(0, 1)), PGD(epsilon=0.5, norm=2)],
                         ids=["linf", "l2"])
@pytest.mark.parametrize("cls", [AdversarialLogisticRegression, AdversarialRidgeClassifier])
def test_pickle_keeps_nothing_of_the_forgotten_rows(digits01, attack, cls):
    X, y = digits01
    est = cls(attack=attack, alpha=1e-2).fit(X, y)
    before = np.concatenate([est.coef_.ravel(), est.intercept_])
    rows = [4, 17]
    obj = est.training_objective()[0]
    theta = est._get_thetas()[0]
    removed_grads = obj.per_sample_grads(theta, np.array(rows))
    est.forget(rows)
    loaded = pickle.loads(pickle.dumps(est))
    arrays = list(_arrays(loaded))
    assert not _holds(arrays, before), "the pre-forget parameters are in the pickle"
    assert not _holds(arrays, before[:-1])
    for g in (*removed_grads, removed_grads.sum(axis=0)):
        assert not _holds(arrays, g, tol=1e-10), "a removed row's gradient is in the pickle"
    for r in rows:
        assert not _holds(arrays, X[r][X[r] != 0]) and not _holds(arrays, X[r])
    # the in-memory state too (a pass prepared for the check included)
    arrays = list(_arrays(est))
    assert not _holds(arrays, before)
    assert not any(_holds(arrays, X[r]) for r in rows)


@pytest.mark.parametrize("name", sorted(_models()))
def test_forgetter_state_is_a_function_of_the_kept_rows_and_the_model(digits01, name):
    est = _fitted(name, digits01)
    est.forget([3, 9]).partial_forget([20, 21])
    kept = np.flatnonzero(est._kept_mask())
    for obj, theta, state in zip(est.training_objective(), est._get_thetas(),
                                 est._forgetter_states):
        fresh = MUter().prepare(obj, theta, kept)
        assert_allclose(state.theta0_, theta, rtol=0, atol=0)
        assert_array_equal_int(state.cols_, fresh.cols_)
        assert_allclose(state.memory_, fresh.memory_, rtol=1e-12, atol=1e-12)
        assert_allclose(state.grad_, fresh.grad_, rtol=1e-9, atol=1e-12)
        assert state.n_remaining_ == fresh.n_remaining_


def assert_array_equal_int(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_first_request_builds_little(digits01):
    # The memory is built on the support at the current point: the first request
    # costs about what the later ones do (no pass over all weight pairs).
    est = _fitted("logistic-linf", digits01)
    est.forget([0])
    first = est.forget_log_[-1]
    assert first["precompute_time"] >= 0
    state = est._forgetter_states[0]
    assert state.zeros_ is None
    assert state.memory_.shape[0] == np.count_nonzero(est.coef_) + 1


# ---- ridge regression and failures ---------------------------------------------------
def test_ridge_regression_forgets_to_tolerance(regression):
    X, y = regression
    est = AdversarialRidge(attack=PGD(epsilon=0.05), alpha=1e-2).fit(X, y)
    u = copy.deepcopy(est).forget([0, 5, 9])
    ref = metrics.retrain(u)
    assert u.forget_log_[-1]["optimality_residual"] <= est.forget_tol
    assert metrics.residual_fraction(u, est, ref) < 1e-5


def test_a_failed_commit_restores_the_inputs(digits01, monkeypatch):
    est = _fitted("logistic-linf", digits01)
    est.forget([1])  # the prepared pass exists now
    X_before = est._X.copy()
    coef = est.coef_.copy()
    state_before = copy.deepcopy(est._forgetter_states[0].memory_)

    def broken(self, rows):
        raise RuntimeError("index purge failed")

    monkeypatch.setattr(type(est), "_purge_index", broken)
    with pytest.raises(RuntimeError, match="index purge failed"):
        est.forget([2, 3])
    monkeypatch.undo()
    np.testing.assert_array_equal(est._X, X_before)
    np.testing.assert_array_equal(est.coef_, coef)
    assert_allclose(est._forgetter_states[0].memory_, state_before)
    # the estimator goes on as if the failed call never happened
    est.forget([2, 3])
    ref = metrics.retrain(est)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics.parameter_distance(est, ref) < 1e-6


def test_a_fit_that_stops_short_says_so(digits01, monkeypatch):
    # The exact solver's Newton polish converges on everything small; take it away
    # (as if it stalled) and cap L-BFGS-B.
    from skmuter.linear import _solvers

    polish = _solvers._newton_polish
    monkeypatch.setattr(_solvers, "_newton_polish",
                        lambda obj, theta, rows, tol, steps, fun:
                        polish(obj, theta, rows, tol, 0, fun))
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.1, clip=(0, 1)), alpha=1e-4,
                                        max_iter=2)
    with pytest.warns(ConvergenceWarning, match=r"stopped at the optimality residual .*"
                      r"Raise max_iter \(now 2\)"):
        est.fit(*digits01)
    assert est.optimality_residual_ > 1e-8
