"""skmuter.metrics on pipelines, and forget_report without the original."""

import copy

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_classification
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmuter import AdversarialLogisticRegression
from skmuter.attacks import PGD
from skmuter.metrics import (
    forget_report,
    gradient_residual,
    membership_audit,
    parameter_distance,
    retrain,
    robust_accuracy,
)
from skmuter.pipeline import ForgetPipeline, make_forget_pipeline


def _data(n=200, seed=0):
    X, y = make_classification(n, 5, n_informative=3, n_redundant=0, random_state=seed)
    X = X * np.arange(1.0, 6.0) + 3.0
    X[::17, 1] = np.nan
    return X, y


def _est():
    return AdversarialLogisticRegression(attack=PGD(epsilon=0.05), alpha=1e-2)


@pytest.fixture
def fitted():
    X, y = _data()
    pipe = make_forget_pipeline(SimpleImputer(), StandardScaler(), _est()).fit(X, y)
    return X, y, pipe


def test_retrain_is_the_whole_pipeline_refitted_on_the_kept_rows(fitted):
    X, y, pipe = fitted
    removed = [0, 5, 17]
    pipe.forget(removed)
    ref = retrain(pipe)
    assert isinstance(ref, ForgetPipeline)
    kept = np.setdiff1d(np.arange(len(X)), removed)
    own = make_pipeline(SimpleImputer(), StandardScaler(), _est()).fit(X[kept], y[kept])
    assert_allclose(ref[-1].coef_, own[-1].coef_, rtol=0, atol=1e-10)
    assert_array_equal(ref[0].statistics_, own[0].statistics_)
    assert ref.n_train_ == len(kept)
    assert parameter_distance(pipe, ref) < 1e-6  # this forget re-fitted exactly
    assert parameter_distance(pipe, own) == parameter_distance(pipe[-1], own[-1])
    # The retrained pipeline forgets too (positions of the kept rows).
    assert_array_equal(ref.forget([0]).forgotten_, [0])


def test_retrain_of_a_pipeline_without_statistics_uses_the_estimator():
    X, y = _data()
    X = np.nan_to_num(X)
    pipe = make_forget_pipeline("passthrough", _est()).fit(X, y).forget([3])
    ref = retrain(pipe)
    assert_allclose(ref[-1].coef_, retrain(pipe[-1]).coef_, rtol=0, atol=1e-12)


def test_gradient_residual_and_robust_accuracy_of_a_pipeline(fitted):
    X, y, pipe = fitted
    assert gradient_residual(pipe) == gradient_residual(pipe[-1])
    assert gradient_residual(pipe) < 1e-8
    # The attack perturbs the final estimator's input: the transformed X.
    Xt = pipe[:-1].transform(X)
    assert robust_accuracy(pipe, X, y) == pipe[-1].robust_score(Xt, y)
    assert robust_accuracy(pipe, X, y) == pipe.robust_score(X, y)
    assert robust_accuracy(pipe, X, y) <= pipe.score(X, y)
    assert pipe.robust_score(X, y, attack=PGD(epsilon=0.05)) >= pipe.robust_score(X, y) - 1e-12


def test_forget_report_on_a_pipeline_with_and_without_the_original(fitted):
    X, y, pipe = fitted
    before = copy.deepcopy(pipe)
    pipe.forget([1, 2, 40])
    report = forget_report(pipe, before, X, y)
    assert report["residual_fraction"] < 1e-4
    assert report["do_nothing_distance"] > 0
    assert report["robust_accuracy"] == pipe.robust_score(X, y)
    bare = forget_report(pipe)
    assert "do_nothing_distance" not in bare and "residual_fraction" not in bare
    assert sorted(bare) == ["distance_to_retrain", "gradient_residual", "retrain_time"]
    assert_allclose(bare["distance_to_retrain"], report["distance_to_retrain"], atol=1e-12)
    tested = forget_report(pipe, X_test=X, y_test=y, retrained=retrain(pipe))
    assert "retrain_time" not in tested and "clean_accuracy" in tested
    assert "residual_fraction" not in tested


def test_forget_report_without_original_on_an_estimator():
    X, y = _data()
    est = _est().fit(np.nan_to_num(X), y).forget([0])
    report = forget_report(est)
    assert set(report) == {"distance_to_retrain", "gradient_residual", "retrain_time"}


def test_membership_audit_through_a_pipeline(fitted):
    X, y, pipe = fitted
    audit = membership_audit(pipe, X[:30], y[:30], X[30:], y[30:])
    Xt = pipe[:-1].transform(X)
    same = membership_audit(pipe[-1], Xt[:30], y[:30], Xt[30:], y[30:])
    assert audit == same
