"""Bad inputs to every public method: a clear error, and the estimator unchanged."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from skmuter import AdversarialLogisticRegression, AdversarialRidge, AdversarialRidgeClassifier
from skmuter.attacks import FGSM, PGD
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


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_robust_score_refuses_X_outside_clip_like_fit(name):
    cls, y = ESTIMATORS[name]
    est = cls(attack=PGD(0.1, clip=(0, 1)), alpha=1e-2).fit(X, y)
    before = pickle.dumps(est)
    with pytest.raises(ValueError, match="outside clip") as at_fit:
        clone(est).fit(X + 1, y)
    for call in (lambda: est.robust_score(X + 1, y), lambda: robust_accuracy(est, 2 * X, y),
                 lambda: est.robust_score(X - 1, y, attack=PGD(0.1, clip=(0, 1)))):
        with pytest.raises(ValueError, match="outside clip") as at_score:
            call()
        assert str(at_score.value) == str(at_fit.value)
    assert pickle.dumps(est) == before
    # an explicit attack without a box evaluates any X; a name means that attack
    assert np.isfinite(est.robust_score(X + 1, y, attack=PGD(0.1)))
    assert est.robust_score(X, y, attack="fgsm") == est.robust_score(X, y, attack=FGSM())


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_grid_search_over_a_named_attack(name):
    cls, y = ESTIMATORS[name]
    est = cls(alpha=1e-2)  # attack='pgd', forgetter='muter': given by name
    deep = est.get_params(deep=True)
    assert deep["attack__epsilon"] == 0.1 and deep["forgetter__damping"] == 0.0
    assert est.get_params(deep=False)["attack"] == "pgd"
    grid = GridSearchCV(est, {"attack__epsilon": [0.0, 0.3], "forgetter__damping": [1e-3]},
                        cv=2).fit(X, y)
    best = grid.best_params_["attack__epsilon"]
    assert grid.best_estimator_.attack.epsilon == best
    assert grid.best_estimator_.attack_.epsilon == best
    assert grid.best_estimator_.forgetter.damping == 1e-3
    assert est.attack == "pgd"  # the base estimator is untouched
    # the name and its parameters together, in either order
    for params in ({"attack": "fgsm", "attack__epsilon": 0.2},
                   {"attack__epsilon": 0.2, "attack": "fgsm"}):
        twin = clone(est).set_params(**params)
        assert type(twin.attack).__name__ == "FGSM" and twin.attack.epsilon == 0.2
    with pytest.raises(ValueError, match="attack"):
        clone(est).set_params(attack="cw", attack__epsilon=0.2)


def _collinear(seed=0, n=200):
    rng = np.random.default_rng(seed)
    Xi = rng.integers(0, 5, size=(n, 3)).astype(float)  # exact: X^T X exactly singular
    y = Xi @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=n)
    return np.c_[Xi, Xi[:, 0]], y


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_unpenalised_fit_on_collinear_features_warns_once(scale):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from skmuter.forgetters import ForgetWarning

    Xc, y = _collinear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = AdversarialRidge(alpha=0).fit(Xc * scale, y)
    # nothing is being forgotten: no forgetting warning, one that says what to change
    assert not [w for w in caught if issubclass(w.category, ForgetWarning)]
    assert len(caught) == 1 and issubclass(caught[0].category, ConvergenceWarning)
    assert "alpha > 0" in str(caught[0].message) and "not unique" in str(caught[0].message)
    assert est.optimality_residual_ < 1e-8 * scale
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AdversarialRidge(alpha=1e-3).fit(Xc * scale, y)  # well posed: silent


def test_fit_that_stops_short_of_tol_says_so():
    import warnings

    from sklearn.datasets import make_regression
    from sklearn.exceptions import ConvergenceWarning

    Xr, y = make_regression(200, 5, random_state=0)
    Xc = np.c_[Xr, np.ones(200)]  # a constant feature: collinear with the intercept
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = AdversarialRidge(alpha=0).fit(Xc, y)
    if est.optimality_residual_ > 1e-7:
        assert len(caught) == 1 and issubclass(caught[0].category, ConvergenceWarning)
        assert "stopped at the optimality residual" in str(caught[0].message)
    else:
        assert len(caught) <= 1
