"""Bad inputs to every public method: a clear error, and the estimator unchanged."""

import pickle

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from skmuter import AdversarialLogisticRegression, AdversarialRidge, AdversarialRidgeClassifier
from skmuter.metrics import gradient_residual, parameter_distance, retrain, robust_accuracy

RNG = np.random.default_rng(0)
X = RNG.random((40, 3))
Y_CLS = np.r_[np.zeros(20, int), np.ones(20, int)]
Y_REG = X @ [1.0, -1.0, 0.5]
ESTIMATORS = {
    "logistic": (AdversarialLogisticRegression, Y_CLS),
    "ridge_classifier": (AdversarialRidgeClassifier, Y_CLS),
    "ridge": (AdversarialRidge, Y_REG),
}


@pytest.fixture(scope="module", params=list(ESTIMATORS))
def fitted(request):
    cls, y = ESTIMATORS[request.param]
    est = cls(alpha=1e-2).fit(X, y)
    est.forget([0])
    return est, y


def _nan():
    Z = X.copy()
    Z[1, 1] = np.nan
    return Z


def _inf():
    Z = X.copy()
    Z[2, 0] = np.inf
    return Z


BAD_X = {
    "nan": (_nan, ValueError, "NaN"),
    "inf": (_inf, ValueError, "infinity"),
    "empty": (lambda: X[:0], ValueError, "0 sample"),
    "1d": (lambda: X[:, 0], ValueError, "2D array"),
    "3d": (lambda: X[:, :, None], ValueError, "dim 3"),
    "object": (lambda: np.array([["a"] * 3] * 40, dtype=object), ValueError, "convert"),
    "complex": (lambda: X + 1j, ValueError, "[Cc]omplex"),
    "features": (lambda: X[:, :2], ValueError, "features"),
}

BAD_INDICES = {
    "float": ([1.0, 2.0], TypeError, "integers or a boolean mask"),
    "negative": ([-1], IndexError, "out of range"),
    "too_large": ([40], IndexError, "out of range"),
    "mask_length": (np.ones(39, bool), ValueError, "one entry per training row"),
    "empty": ([], ValueError, "empty"),
    "2d": ([[1, 2]], ValueError, "1-D"),
    "duplicates": ([3, 3], ValueError, "duplicate"),
    "already_forgotten": ([0], ValueError, "already forgotten"),
    "all_rows": (np.arange(1, 40), ValueError, "every remaining"),
    "string": (["a"], TypeError, "integers or a boolean mask"),
}


def _unchanged(est, call):
    before = pickle.dumps(est)
    call()
    assert pickle.dumps(est) == before


@pytest.mark.parametrize("case", list(BAD_X))
@pytest.mark.parametrize("method", ["predict", "decision_function", "robust_score", "score"])
def test_bad_X_at_prediction(fitted, method, case):
    est, y = fitted
    if not hasattr(est, method):
        pytest.skip(f"{type(est).__name__} has no {method}")
    make, exc, match = BAD_X[case]
    Z = make()
    args = (Z, y[: len(Z)] if Z.ndim else y) if method in ("robust_score", "score") else (Z,)
    before = pickle.dumps(est)
    with pytest.raises(exc, match=match):
        getattr(est, method)(*args)
    assert pickle.dumps(est) == before


@pytest.mark.parametrize("case", [c for c in BAD_X if c != "features"])
def test_bad_X_at_fit(fitted, case):
    est, y = fitted
    make, exc, match = BAD_X[case]
    Z = make()
    before = pickle.dumps(est)
    with pytest.raises(exc, match=match):
        est.fit(Z, y[: len(Z)] if Z.ndim else y)
    assert pickle.dumps(est) == before


@pytest.mark.parametrize("case", ["nan", "inf", "wrong_length", "2d"])
def test_bad_y(fitted, case):
    est, y = fitted
    yy = {
        "nan": np.r_[np.nan, y[1:].astype(float)],
        "inf": np.r_[np.inf, y[1:].astype(float)],
        "wrong_length": y[:-1],
        "2d": np.c_[y, y],
    }[case]
    match = {"nan": "NaN|[Uu]nknown label", "inf": "infinity|[Uu]nknown label",
             "wrong_length": "inconsistent|one entry per row", "2d": "1d|1-D|column"}[case]
    before = pickle.dumps(est)
    with pytest.raises(ValueError, match=match):
        est.fit(X, yy)
    assert pickle.dumps(est) == before
    if case in ("wrong_length", "2d"):
        with pytest.raises(ValueError, match=match):
            est.robust_score(X, yy)
        assert pickle.dumps(est) == before


@pytest.mark.parametrize("case", list(BAD_INDICES))
@pytest.mark.parametrize("method", ["forget", "partial_forget"])
def test_bad_indices(fitted, method, case):
    est, _ = fitted
    idx, exc, match = BAD_INDICES[case]
    before = pickle.dumps(est)
    with pytest.raises(exc, match=match):
        getattr(est, method)(idx)
    assert pickle.dumps(est) == before


@pytest.mark.parametrize("method", ["forget", "partial_forget"])
def test_forget_a_whole_class(method):
    for cls in (AdversarialLogisticRegression, AdversarialRidgeClassifier):
        est = cls(alpha=1e-2).fit(X, Y_CLS)
        before = pickle.dumps(est)
        with pytest.raises(ValueError, match="every remaining row of a class"):
            getattr(est, method)(np.arange(20))
        assert pickle.dumps(est) == before


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_unfitted(name):
    cls, y = ESTIMATORS[name]
    est = cls()
    calls = [lambda: est.predict(X), lambda: est.robust_score(X, y),
             lambda: est.forget([0]), lambda: est.partial_forget([0]),
             lambda: est.remaining_training_data(), lambda: retrain(est),
             lambda: gradient_residual(est), lambda: parameter_distance(est, est),
             lambda: robust_accuracy(est, X, y)]
    for call in calls:
        before = pickle.dumps(est)
        with pytest.raises(NotFittedError, match="not fitted"):
            call()
        assert pickle.dumps(est) == before


def test_metrics_mismatched_shapes():
    a = AdversarialRidge().fit(X, Y_REG)
    b = AdversarialRidge().fit(X[:, :2], Y_REG)
    with pytest.raises(ValueError, match="different parameter shapes"):
        parameter_distance(a, b)


def test_robust_accuracy_bad_X(fitted):
    est, y = fitted
    before = pickle.dumps(est)
    with pytest.raises(ValueError, match="features"):
        robust_accuracy(est, X[:, :2], y)
    with pytest.raises(ValueError, match="NaN"):
        robust_accuracy(est, _nan(), y)
    assert pickle.dumps(est) == before
