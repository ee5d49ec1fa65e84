"""``keep_data=False``: a model that keeps no per-row data and forgets rows it is given.

References: the same estimator with ``keep_data=True`` (its forget reads the
rows it kept), and in-memory retrains.
"""

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skmuter import AdversarialLogisticRegression, AdversarialRidge, metrics
from skmuter.attacks import PGD


def _covtype_like(n, seed=0):
    """54 features in [0, 1]: 10 continuous, 44 one-hot indicators (4 + 40 groups)."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, 54))
    X[:, :10] = rng.beta(2, 3, size=(n, 10))
    X[np.arange(n), 10 + rng.integers(0, 4, n)] = 1.0
    X[np.arange(n), 14 + rng.integers(0, 40, n)] = 1.0
    w = rng.normal(size=54)
    y = (X @ w - np.median(X @ w) + 0.5 * rng.normal(size=n) > 0).astype(int)
    return X, y


KW = {"attack": PGD(epsilon=4 / 255, clip=(0, 1)), "alpha": 1e-3}


def test_covtype_sized_pickle_is_small_and_independent_of_n():
    sizes = []
    for n in (2000, 6000):
        X, y = _covtype_like(n)
        est = AdversarialLogisticRegression(keep_data=False, **KW).fit(X, y)
        est.forget([1, 2, 3], X=X[[1, 2, 3]], y=y[[1, 2, 3]])
        sizes.append(len(pickle.dumps(est)))
        kept = AdversarialLogisticRegression(**KW).fit(X, y)
        assert len(pickle.dumps(kept)) > X.nbytes  # the default keeps the rows
    assert max(sizes) < 200_000
    assert abs(sizes[0] - sizes[1]) < 2_000  # O(d^2), not O(n)


@pytest.mark.parametrize("n_class", [2, 3])
def test_forget_with_given_rows_equals_the_kept_data_forget(n_class):
    X, y = load_digits(n_class=n_class, return_X_y=True)
    X = X / 16
    kw = dict(KW, attack=PGD(epsilon=0.1, clip=(0, 1)), forget_tol=None)
    kept = AdversarialLogisticRegression(**kw).fit(X, y)
    light = AdversarialLogisticRegression(keep_data=False, **kw).fit(X, y)
    np.testing.assert_array_equal(light.coef_, kept.coef_)
    for rows in ([3, 9, 40], [5], [77, 12]):
        kept.forget(rows)
        light.forget(rows, X=X[rows], y=y[rows])
        rel = np.linalg.norm(light.coef_ - kept.coef_) / np.linalg.norm(kept.coef_)
        assert rel <= 1e-8
    kept.partial_forget([100, 101])
    light.partial_forget([100, 101], X=X[[100, 101]], y=y[[100, 101]])
    assert np.linalg.norm(light.coef_ - kept.coef_) <= 1e-8 * np.linalg.norm(kept.coef_)
    record = light.forget_log_[-1]
    assert record["checked"] is False and "no training rows" in record["check_skipped"]
    np.testing.assert_array_equal(light.forgotten_, kept.forgotten_)


def test_checks_take_the_kept_rows_explicitly():
    X, y = load_digits(n_class=2, return_X_y=True)
    X = X / 16
    light = AdversarialLogisticRegression(keep_data=False, **KW).fit(X, y)
    light.forget([0, 1], X=X[[0, 1]], y=y[[0, 1]])
    Xk, yk = X[2:], y[2:]
    ref = AdversarialLogisticRegression(**KW).fit(Xk, yk)
    np.testing.assert_allclose(metrics.retrain(light, Xk, yk).coef_, ref.coef_, rtol=1e-9)
    full = AdversarialLogisticRegression(**dict(KW, forget_tol=None)).fit(X, y).forget([0, 1])
    assert metrics.gradient_residual(light, Xk, yk) == pytest.approx(
        full.gradient_residual(), rel=1e-9)
    for call in (light.gradient_residual, light.retrain, light.remaining_training_data):
        with pytest.raises(ValueError, match="keeps no training rows"):
            call()


def test_nothing_per_row_is_kept():
    X, y = load_digits(n_class=2, return_X_y=True)
    X = X / 16
    planted = 0.987654321012345
    X[7, 30] = planted
    est = AdversarialLogisticRegression(keep_data=False, **KW).fit(X, y)
    blob = pickle.dumps(est)
    assert np.float64(planted).tobytes() not in blob
    assert not any(X[i].tobytes() in blob for i in range(0, len(X), 37))
    est.forget([7], X=X[[7]], y=y[[7]])
    state = est._forgetter_states[0]
    # based at the published parameters, not the fitted ones
    np.testing.assert_array_equal(state.theta0_[:-1][state.cols_[:-1]],
                                  est.coef_[0][state.cols_[:-1]])
    assert np.float64(planted).tobytes() not in pickle.dumps(est)


def test_bad_requests_leave_the_model_unchanged():
    X, y = load_digits(n_class=2, return_X_y=True)
    X = X / 16
    est = AdversarialLogisticRegression(keep_data=False, **KW).fit(X, y)
    coef = est.coef_.copy()
    with pytest.raises(ValueError, match="forget\\(indices, X=X_rows, y=y_rows\\)"):
        est.forget([3])
    with pytest.raises(ValueError, match="shape"):
        est.forget([3, 4], X=X[[3]], y=y[[3, 4]])
    with pytest.raises(ValueError, match="outside clip"):
        est.forget([3], X=X[[3]] + 2, y=y[[3]])
    with pytest.raises(ValueError, match="not seen in fit"):
        est.forget([3], X=X[[3]], y=[7])
    with pytest.raises(ValueError, match="every remaining row of a class"):
        rows = np.flatnonzero(y == 1)
        est.forget(rows, X=X[rows], y=y[rows])
    est.set_params(forgetter="newton")
    with pytest.raises(ValueError, match="cannot be switched"):
        est.forget([3], X=X[[3]], y=y[[3]])
    np.testing.assert_array_equal(est.coef_, coef)
    assert est.forgotten_.size == 0
    with pytest.raises(ValueError, match="keep_data=True"):
        AdversarialLogisticRegression(keep_data=False, forgetter="retrain").fit(X, y)
    from skmuter.certified import CertifiedRemoval

    with pytest.raises(ValueError, match="keep_data=True"):
        AdversarialLogisticRegression(keep_data=False, certified=CertifiedRemoval()).fit(X, y)


def test_squared_loss_under_attack_needs_the_rows():
    X, _ = load_digits(n_class=2, return_X_y=True)
    X = X / 16
    y = X[:, 20] + X[:, 30]
    with pytest.raises(ValueError, match="keep_data=True"):
        AdversarialRidge(keep_data=False, attack=PGD(epsilon=0.05, clip=(0, 1))).fit(X, y)
    # without an attack the loss is smooth: exact as with the rows
    kw = {"attack": PGD(epsilon=0.0), "alpha": 1e-2, "forget_tol": None}
    kept = AdversarialRidge(**kw).fit(X, y).forget([3, 9])
    light = AdversarialRidge(keep_data=False, **kw).fit(X, y).forget([3, 9], X=X[[3, 9]],
                                                                    y=y[[3, 9]])
    np.testing.assert_allclose(light.coef_, kept.coef_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss", ["logistic", "squared"])
def test_newton_first_fit_of_many_rows_equals_the_lbfgs_fit(monkeypatch, loss):
    # many rows start from a subsample's optimum and finish with Newton steps
    import skmuter.linear._solvers as solvers
    from skmuter import AdversarialRidgeClassifier

    X, y = _covtype_like(1500)
    cls = AdversarialLogisticRegression if loss == "logistic" else AdversarialRidgeClassifier
    kw = dict(KW, alpha=1e-2)
    ref = cls(**kw).fit(X, y)
    monkeypatch.setattr(solvers, "_NEWTON_FIRST_ROWS", 1000)
    monkeypatch.setattr(solvers, "_SUBSAMPLE_ROWS", 200)
    fast = cls(**kw).fit(X, y)
    assert fast.n_iter_[0] < ref.n_iter_[0]
    np.testing.assert_allclose(fast.coef_, ref.coef_, rtol=1e-7, atol=1e-9)
    assert fast.optimality_residual_ <= 1e-9
