"""joblib round trips at any point of a forgetting sequence, and what a saved model weighs."""

import pickle

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression

from skmuter import AdversarialLogisticRegression, AdversarialRidge, AdversarialRidgeClassifier
from skmuter.attacks import PGD
from skmuter.pipeline import ForgettingMinMaxScaler, ForgettingStandardScaler, make_forget_pipeline

N, D = 150, 5
# One request per call: (method, rows). Rows refer to the original training set.
SEQUENCE = [("forget", [3, 40]), ("partial_forget", [7, 120, 11]), ("forget", [90])]


def _classification(n_classes=2):
    X, y = make_classification(N, D, n_informative=4, n_redundant=0, n_classes=n_classes,
                               n_clusters_per_class=1, random_state=0)
    return X, y


def _regression():
    X, y = make_regression(N, D, noise=0.5, random_state=0)
    return X, y / y.std()


CASES = {
    "logistic-binary": (lambda: AdversarialLogisticRegression(attack=PGD(epsilon=0.05),
                                                              alpha=1e-3), _classification),
    "logistic-ovr": (lambda: AdversarialLogisticRegression(attack=PGD(epsilon=0.05, norm=2),
                                                           alpha=1e-3),
                     lambda: _classification(3)),
    "ridge-classifier": (lambda: AdversarialRidgeClassifier(attack=PGD(epsilon=0.05),
                                                            alpha=1e-2), _classification),
    "ridge": (lambda: AdversarialRidge(attack=PGD(epsilon=0.05, norm=2), alpha=1e-2),
              _regression),
    "pipeline-minmax": (lambda: make_forget_pipeline(
        ForgettingMinMaxScaler(),
        AdversarialLogisticRegression(attack=PGD(epsilon=0.05, clip=(0, 1)), alpha=1e-3)),
        _classification),
    "pipeline-standard": (lambda: make_forget_pipeline(
        ForgettingStandardScaler(),
        AdversarialRidgeClassifier(attack=PGD(epsilon=0.05, norm=2), alpha=1e-2)),
        _classification),
}


def _coefs(model):
    est = model[-1] if hasattr(model, "steps") else model
    return np.concatenate([np.ravel(est.coef_), np.ravel(est.intercept_)])


def _run(model, sequence):
    for method, rows in sequence:
        getattr(model, method)(rows)
    return model


def _round_trip(model, path):
    joblib.dump(model, path)
    return joblib.load(path)


ROUND_TRIPS = (
    # Every forgetter on one estimator, the default forgetter on every estimator.
    [("logistic-binary", f) for f in ("muter", "muter-paper", "newton-delta", "fisher",
                                      "influence", "retrain")]
    + [(case, "muter") for case in ("logistic-ovr", "ridge-classifier", "ridge")]
    + [("logistic-ovr", "retrain")]
)


@pytest.mark.parametrize("case,forgetter", ROUND_TRIPS)
def test_round_trip_anywhere_gives_the_same_later_forgets(case, forgetter, tmp_path):
    make, data = CASES[case]
    X, y = data()
    fitted = make().set_params(forgetter=forgetter).fit(X, y)
    reference = _run(pickle.loads(pickle.dumps(fitted)), SEQUENCE)
    for k in range(len(SEQUENCE) + 1):
        model = _run(pickle.loads(pickle.dumps(fitted)), SEQUENCE[:k])
        model = _round_trip(model, tmp_path / f"model{k}.joblib")
        _run(model, SEQUENCE[k:])
        assert_allclose(_coefs(model), _coefs(reference), rtol=1e-12, atol=1e-14)
        assert_array_equal(model.forgotten_, reference.forgotten_)
        assert len(model.forget_log_) == len(reference.forget_log_)


@pytest.mark.parametrize("case", ["pipeline-minmax", "pipeline-standard"])
def test_pipeline_round_trip_anywhere_gives_the_same_later_forgets(case, tmp_path):
    make, data = CASES[case]
    X, y = data()
    fitted = make().fit(X, y)
    reference = _run(pickle.loads(pickle.dumps(fitted)), SEQUENCE)
    for k in range(len(SEQUENCE) + 1):
        model = _run(pickle.loads(pickle.dumps(fitted)), SEQUENCE[:k])
        model = _round_trip(model, tmp_path / f"pipe{k}.joblib")
        _run(model, SEQUENCE[k:])
        assert_allclose(_coefs(model), _coefs(reference), rtol=1e-12, atol=1e-14)
        assert_array_equal(model.forgotten_, reference.forgotten_)
        assert_array_equal(model[0].forgotten_, reference[0].forgotten_)
        assert_allclose(model.predict(X), reference.predict(X), rtol=1e-12, atol=1e-12)


def test_loaded_model_predicts_and_refits_like_the_original(tmp_path):
    X, y = _classification(3)
    est = CASES["logistic-ovr"][0]().fit(X, y).forget([1, 2])
    loaded = _round_trip(est, tmp_path / "m.joblib")
    assert_array_equal(loaded.predict(X), est.predict(X))
    assert repr(loaded.get_params()) == repr(est.get_params())
    assert_array_equal(clone(loaded).fit(X, y).coef_, clone(est).fit(X, y).coef_)


def _expected_size(est, n_stored):
    """Bytes of what a linear estimator keeps, as documented in the user guide.

    One float64 copy of the training rows, one target vector per fitted
    problem, and, once it has forgotten, one p x p forgetting memory per problem.
    """
    n, d = est._X.shape
    problems = len(est._objectives)
    p = d + int(est.fit_intercept)
    memory = problems * p * p if est._forgetter_states else 0
    return 8 * (n_stored * n * d + problems * n + memory)


@pytest.mark.parametrize("case", ["logistic-binary", "logistic-ovr"])
def test_pickled_size_is_one_copy_of_the_rows(case):
    make, data = CASES[case]
    X, y = data()
    est = make().fit(X, y).forget([0])
    size = len(pickle.dumps(est))
    expected = _expected_size(est, n_stored=1)
    assert expected <= size <= expected + 20_000


@pytest.mark.parametrize("case", ["logistic-binary", "logistic-ovr"])
def test_joblib_keeps_one_copy_and_purges_after_loading(case, tmp_path):
    make, data = CASES[case]
    X, y = data()
    planted = 987.654321
    X[5, 0] = planted
    est = make().fit(X, y)
    path = tmp_path / "m.joblib"
    loaded = _round_trip(est, path)
    assert path.stat().st_size <= _expected_size(est, n_stored=1) + 20_000
    loaded.forget([5])
    assert np.float64(planted).tobytes() not in pickle.dumps(loaded)
    for obj in loaded._objectives:
        assert obj.X is loaded._X


def test_pipeline_size_is_one_copy_per_step_that_keeps_rows():
    make, data = CASES["pipeline-minmax"]
    X, y = data()
    pipe = make().fit(X, y).forget([0])
    size = len(pickle.dumps(pipe))
    # The scaler keeps its input rows, the estimator its transformed rows.
    expected = 8 * N * D + _expected_size(pipe[-1], n_stored=1)
    assert expected <= size <= expected + 30_000
