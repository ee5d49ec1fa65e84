"""Numerical robustness: float32 input, saturated rows, forgetting half of the data."""

import copy
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skmuter import AdversarialLogisticRegression, AdversarialRidgeClassifier
from skmuter.attacks import PGD
from skmuter.forgetters import ForgetWarning
from skmuter.metrics import parameter_distance, residual_fraction, retrain


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(n_class=2, return_X_y=True)
    return X / 16, y


@pytest.mark.parametrize("Est", [AdversarialLogisticRegression, AdversarialRidgeClassifier])
def test_float32_input_gives_the_float64_model(digits, Est):
    X, y = digits
    X32 = X.astype(np.float32)
    attack = PGD(epsilon=0.05, clip=(0, 1))
    a = Est(attack=attack, alpha=1e-2).fit(X32, y)
    b = Est(attack=attack, alpha=1e-2).fit(X32.astype(np.float64), y)
    assert a.coef_.dtype == np.float64
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-9)
    np.testing.assert_array_equal(a.predict(X32), b.predict(X32))
    a.forget([0, 4])
    b.forget([0, 4])
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-9)
    assert a.robust_score(X32, y) == b.robust_score(X32, y)


def test_saturated_rows_have_no_curvature_and_forget_cleanly():
    """Rows classified with enormous margins have loss' and loss'' exactly 0 in
    float64: they add nothing but their penalty share to the memory, and
    forgetting them must not break the solve."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=120) > 0).astype(int)
    X[:10, 0] = 1e4 * np.where(y[:10] == 1, 1, -1)  # saturated, correctly classified
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.05), alpha=1e-3).fit(X, y)
    assert est.optimality_residual_ < 1e-8
    obj = est.training_objective()[0]
    theta = np.concatenate([est.coef_[0], est.intercept_])
    z, *_ = obj.points(theta, np.arange(10))
    assert np.all(obj.loss.d2(z, obj.y[:10]) == 0)
    before = copy.deepcopy(est)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no damping, no overflow warnings
        est.forget(np.arange(5))
    assert np.all(np.isfinite(est.coef_))
    # Their loss gradients are 0; what moves the optimum is their share of the
    # penalty (each row carries alpha/2 ||w||^2), which the step accounts for.
    assert residual_fraction(est, before, retrain(est)) < 0.05
    # a normal row next: the step is a real one and still right
    before = copy.deepcopy(est)
    est.forget([60])
    assert residual_fraction(est, before, retrain(est)) < 0.05


def test_forgetting_half_of_the_data_warns_and_stays_sane(digits):
    X, y = digits
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.05, clip=(0, 1)), alpha=1e-2)
    est.fit(X, y)
    before = copy.deepcopy(est)
    half = np.random.default_rng(0).permutation(len(y))[: len(y) // 2]
    with pytest.warns(ForgetWarning, match="50% of the training rows"):
        est.forget(half)
    ref = retrain(est)
    frac = residual_fraction(est, before, ref)
    assert 0 <= frac < 1  # still better than doing nothing, though not the exact answer
    assert est.score(X, y) > 0.9
    exact = copy.deepcopy(before).set_params(forgetter="retrain")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ForgetWarning)  # retraining needs no advice
        exact.forget(half)
    assert parameter_distance(exact, ref) < 1e-6
