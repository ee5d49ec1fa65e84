"""Forgetting through pipelines: the scalers, the step checks, and retraining the whole pipeline."""

import pickle

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    PolynomialFeatures,
    StandardScaler,
)

from skmuter import AdversarialLogisticRegression, AdversarialRidge, AdversarialRidgeClassifier
from skmuter.attacks import PGD
from skmuter.metrics import gradient_residual
from skmuter.pipeline import (
    ForgetPipeline,
    ForgettingMinMaxScaler,
    ForgettingStandardScaler,
    make_forget_pipeline,
)

N = 240


def _data(n=N, d=6, n_classes=2, seed=0):
    X, y = make_classification(n, d, n_informative=4, n_redundant=0, n_classes=n_classes,
                               n_clusters_per_class=1, random_state=seed)
    # Features on different scales and offsets, so that scalers matter.
    X = X * np.arange(1.0, d + 1) + np.linspace(-5.0, 5.0, d)
    return X, y


def _params(pipe):
    est = pipe[-1]
    return np.concatenate([np.ravel(est.coef_), np.ravel(est.intercept_)])


def _retrained(pipe, X, y, removed):
    kept = np.setdiff1d(np.arange(len(X)), removed)
    return clone(pipe).fit(X[kept], y[kept])


def _residual_fraction(unlearned, original, retrained):
    return np.linalg.norm(unlearned - retrained) / np.linalg.norm(original - retrained)


def _state(pipe):
    """Everything that forgetting may change, as comparable arrays."""
    out = []

    def walk(prefix, obj):
        for key, value in sorted(vars(obj).items()):
            if isinstance(value, np.ndarray):
                out.append((prefix + key, value.copy()))
            elif isinstance(value, (int, float, str, dict)):
                out.append((prefix + key, repr(value)))
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if hasattr(item, "__dict__"):
                        walk(f"{prefix}{key}[{i}].", item)
                    else:
                        out.append((f"{prefix}{key}[{i}]", repr(item)))

    for name, step in pipe.steps:
        walk(name + ".", step)
    return out


def _assert_same_state(a, b):
    assert [k for k, _ in a] == [k for k, _ in b]
    for (_, u), (_, v) in zip(a, b):
        if isinstance(u, np.ndarray):
            assert_array_equal(u, v)
        else:
            assert u == v


# ---- the scalers -------------------------------------------------------------
@pytest.mark.parametrize("with_mean,with_std", [(True, True), (False, True), (True, False),
                                                (False, False)])
def test_standard_scaler_downdate_equals_refit(with_mean, with_std):
    X, _ = _data()
    X[:, 2] = 3.0  # a constant feature keeps scale 1
    scaler = ForgettingStandardScaler(with_mean=with_mean, with_std=with_std).fit(X)
    removed = []
    for request in ([5], [0, 17, 200], np.arange(30, 90)):
        scaler.forget(request)
        removed.extend(np.atleast_1d(request))
        kept = np.setdiff1d(np.arange(N), removed)
        ref = StandardScaler(with_mean=with_mean, with_std=with_std).fit(X[kept])
        for attr in ("mean_", "var_", "scale_"):
            if getattr(ref, attr) is None:
                assert getattr(scaler, attr) is None
            else:
                assert_allclose(getattr(scaler, attr), getattr(ref, attr), rtol=1e-10,
                                atol=1e-12)
        assert scaler.n_samples_seen_ == len(kept)
        assert_allclose(scaler.transform(X), ref.transform(X), rtol=1e-9, atol=1e-12)
    assert_array_equal(scaler.forgotten_, np.sort(removed))
    assert not scaler._X[removed].any()
    assert_array_equal(scaler.remaining_training_data(), X[kept])


@pytest.mark.parametrize("feature_range", [(0, 1), (-1, 2)])
def test_min_max_scaler_forget_equals_refit(feature_range):
    X, _ = _data()
    scaler = ForgettingMinMaxScaler(feature_range=feature_range).fit(X)
    extremes = np.unique(np.concatenate([X.argmin(axis=0), X.argmax(axis=0)]))
    removed = list(extremes[:3]) + [7]
    scaler.forget(removed)
    kept = np.setdiff1d(np.arange(N), removed)
    ref = MinMaxScaler(feature_range=feature_range).fit(X[kept])
    for attr in ("data_min_", "data_max_", "data_range_", "scale_", "min_"):
        assert_array_equal(getattr(scaler, attr), getattr(ref, attr))
    assert scaler.n_samples_seen_ == len(kept)
    assert not scaler._X[removed].any()


@pytest.mark.parametrize("cls", [ForgettingStandardScaler, ForgettingMinMaxScaler])
def test_scaler_bad_requests_change_nothing(cls):
    X, _ = _data()
    scaler = cls().fit(X).forget([1])
    before = pickle.dumps(scaler)
    for bad, err in [([N], IndexError), ([1], ValueError), ([2, 2], ValueError),
                     ([], ValueError), (np.arange(N), ValueError), ([0.5], TypeError)]:
        with pytest.raises(err):
            scaler.forget(bad)
        assert pickle.dumps(scaler) == before
    with pytest.raises(NotImplementedError):
        scaler.partial_fit(X)
    with pytest.raises(ValueError, match="sample_weight"):
        cls().fit(X, sample_weight=np.ones(N))
    with pytest.raises(ValueError):
        cls().fit(np.where(X > 4, np.nan, X))


@pytest.mark.parametrize("cls", [ForgettingStandardScaler, ForgettingMinMaxScaler])
def test_scaler_pandas_output_and_feature_names(cls):
    X, _ = _data()
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    scaler = cls().set_output(transform="pandas").fit(df)
    assert_array_equal(scaler.feature_names_in_, df.columns)
    out = scaler.forget([3]).transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(df.columns)
    assert_array_equal(scaler.get_feature_names_out(), df.columns)


# ---- steps that pass through, and steps that refuse --------------------------------
def test_stateless_steps_forget_exactly_like_the_estimator():
    X, y = _data()
    steps = [FunctionTransformer(np.tanh), PolynomialFeatures(degree=2, include_bias=False)]
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.05), alpha=1e-3)
    pipe = make_forget_pipeline(*steps, clone(est)).fit(X, y)
    features = PolynomialFeatures(degree=2, include_bias=False).fit_transform(np.tanh(X))
    alone = clone(est).fit(features, y)
    pipe.forget([4, 9]).partial_forget([11, 2])
    alone.forget([4, 9]).partial_forget([11, 2])
    assert_array_equal(pipe[-1].coef_, alone.coef_)
    assert_array_equal(pipe.forgotten_, [2, 4, 9, 11])
    assert len(pipe.forget_log_) == 3


def test_min_max_scaler_with_kept_extremes_leaves_features_unchanged():
    X, y = _data()
    extremes = np.concatenate([X.argmin(axis=0), X.argmax(axis=0)])
    removed = np.setdiff1d(np.arange(10), extremes)[:3]
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.05), alpha=1e-3)
    pipe = make_forget_pipeline(ForgettingMinMaxScaler(), clone(est)).fit(X, y)
    alone = clone(est).fit(MinMaxScaler().fit_transform(X), y)
    pipe.forget(removed)
    alone.forget(removed)
    assert_array_equal(pipe[-1].coef_, alone.coef_)
    assert "rescaled" not in pipe.forget_log_[-1]


def test_step_that_cannot_forget_is_named_and_nothing_changes():
    X, y = _data()
    pipe = ForgetPipeline([("scale", StandardScaler()),
                           ("clf", AdversarialLogisticRegression(attack="fgsm"))]).fit(X, y)
    before = _state(pipe)
    with pytest.raises(TypeError, match="step 'scale' \\(StandardScaler\\)"):
        pipe.forget([1, 2])
    _assert_same_state(before, _state(pipe))


def test_bad_requests_leave_the_pipeline_unchanged():
    X, y = _data()
    pipe = make_forget_pipeline(ForgettingStandardScaler(),
                                AdversarialLogisticRegression(attack="fgsm")).fit(X, y)
    pipe.forget([0])
    before = _state(pipe)
    one_class = np.flatnonzero(y == 1)
    for bad, err in [([N], IndexError), ([0], ValueError), ([3, 3], ValueError),
                     ([], ValueError), (one_class, ValueError)]:
        with pytest.raises(err):
            pipe.forget(bad)
        with pytest.raises(err):
            pipe.partial_forget(bad)
        _assert_same_state(before, _state(pipe))


def test_failure_while_rescaling_restores_every_step(monkeypatch):
    X, y = _data()
    pipe = make_forget_pipeline(ForgettingStandardScaler(),
                                AdversarialLogisticRegression(attack="fgsm")).fit(X, y)
    before = _state(pipe)

    def broken(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(ForgetPipeline, "_reexpress", broken)
    with pytest.raises(RuntimeError, match="on purpose"):
        pipe.partial_forget([5, 6])
    _assert_same_state(before, _state(pipe))
    monkeypatch.undo()
    pipe.forget([5, 6])  # still usable
    assert_array_equal(pipe.forgotten_, [5, 6])


class _ForgetOnlyClassifier(ClassifierMixin, BaseEstimator):
    """An estimator with ``forget`` that keeps no training rows."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.n_train_ = len(X)
        self.forgotten_ = np.zeros(0, dtype=np.int64)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])

    def forget(self, indices):
        self.forgotten_ = np.sort(np.concatenate([self.forgotten_, indices]))
        return self


def test_final_step_that_cannot_re_express_refuses():
    X, y = _data()
    pipe = ForgetPipeline([("scale", ForgettingStandardScaler()),
                           ("clf", _ForgetOnlyClassifier())]).fit(X, y)
    before = _state(pipe)
    with pytest.raises(TypeError, match="'clf'"):
        pipe.forget([1])
    _assert_same_state(before, _state(pipe))
    # With only pass-through steps the estimator's own forget is used.
    pipe = make_forget_pipeline(FunctionTransformer(), _ForgetOnlyClassifier()).fit(X, y)
    assert_array_equal(pipe.forget([1]).forgotten_, [1])


def test_forget_is_only_offered_when_the_final_step_forgets():
    X, _ = _data()
    assert not hasattr(ForgetPipeline([("s", StandardScaler()), ("p", "passthrough")]).fit(X),
                       "forget")
    assert hasattr(make_forget_pipeline(AdversarialRidge()), "forget")


# ---- forgetting through a changing scaler vs retraining the whole pipeline ----
@pytest.mark.parametrize("scaler", [ForgettingStandardScaler(), ForgettingMinMaxScaler()],
                         ids=["standard", "minmax"])
@pytest.mark.parametrize("attack", [PGD(epsilon=0.05), PGD(epsilon=0.1, norm=2)],
                         ids=["linf", "l2"])
@pytest.mark.parametrize("on_rescale", ["newton", "refit"])
def test_forget_matches_retraining_the_whole_pipeline(scaler, attack, on_rescale):
    X, y = _data()
    est = AdversarialLogisticRegression(attack=attack, alpha=1e-3)
    pipe = ForgetPipeline([("scale", clone(scaler)), ("clf", est)], on_rescale=on_rescale)
    pipe.fit(X, y)
    original = _params(pipe)
    # Include the extremes of two features, so that a min-max scaler changes too.
    first = [int(X[:, 0].argmax()), int(X[:, 1].argmin()), 10, 20]
    pipe.forget(first)
    ref = _retrained(pipe, X, y, first)
    assert pipe.forget_log_[-1]["rescaled"]
    assert _residual_fraction(_params(pipe), original, _params(ref)) < 1e-6
    assert gradient_residual(pipe[-1]) < 1e-8
    # Each of these requests changes the scalers (extremes of other features).
    second = [int(X[:, 2].argmin()), int(X[:, 3].argmax())]
    second = [r for r in second if r not in first]
    pipe.partial_forget(second)
    ref = _retrained(pipe, X, y, first + second)
    assert _residual_fraction(_params(pipe), original, _params(ref)) < 1e-6
    X_test, _ = _data(seed=1)
    assert_allclose(pipe.decision_function(X_test), ref.decision_function(X_test),
                    rtol=1e-5, atol=1e-6)
    # Forgotten rows are gone from both the scaler and the estimator.
    assert not pipe[0]._X[first + second].any()
    assert not pipe[-1]._X[first + second].any()


def test_multiclass_and_ridge_classifier_through_a_scaler():
    X, y = _data(n_classes=3)
    for est in (AdversarialLogisticRegression(attack=PGD(epsilon=0.05), alpha=1e-3),
                AdversarialRidgeClassifier(attack=PGD(epsilon=0.05, norm=2), alpha=1e-2)):
        pipe = make_forget_pipeline(ForgettingStandardScaler(), est).fit(X, y)
        original = _params(pipe)
        removed = [0, 1, 2, 100, 101]
        pipe.forget(removed)
        ref = _retrained(pipe, X, y, removed)
        assert _residual_fraction(_params(pipe), original, _params(ref)) < 1e-4
        assert_array_equal(pipe.predict(X), ref.predict(X))


def test_later_requests_use_the_new_linearisation_point():
    # After a rescale the memory is rebuilt at the new parameters: a later
    # request through pass-through features equals the estimator's own forget.
    X, y = _data()
    pipe = make_forget_pipeline(ForgettingMinMaxScaler(),
                                AdversarialLogisticRegression(attack=PGD(epsilon=0.05),
                                                              alpha=1e-3)).fit(X, y)
    first = int(X[:, 0].argmax())
    pipe.forget([first])  # moves the scaler's maximum: every kept row is rescaled
    kept = np.setdiff1d(np.arange(len(X)), [first])
    # The estimator fitted on its own on the rescaled kept rows is where the
    # rescale re-linearised to (Newton to convergence; observed 1.4e-9 apart)...
    own = clone(pipe[-1]).fit(pipe[0].transform(X[kept]), y[kept])
    assert_allclose(pipe[-1].coef_, own.coef_, rtol=0, atol=1e-7)
    # ...and a second request that leaves the scaler alone must then do what
    # the estimator's own forget does from there.
    extremes = set(X[kept].argmin(axis=0)) | set(X[kept].argmax(axis=0))
    pos = next(i for i in range(len(kept)) if i not in extremes)
    before = pipe[-1].coef_.copy()
    scale = pipe[0].data_max_.copy()
    pipe.forget([int(kept[pos])])
    own.forget([pos])
    assert_array_equal(pipe[0].data_max_, scale)
    assert np.abs(pipe[-1].coef_ - before).max() > 1e-3  # the request moves the model
    assert_allclose(pipe[-1].coef_, own.coef_, rtol=0, atol=1e-7)
    assert_allclose(pipe[-1].intercept_, own.intercept_, rtol=0, atol=1e-7)


# ---- scikit-learn integration ---------------------------------------------------
def test_clone_and_grid_search():
    X, y = _data()
    pipe = make_forget_pipeline(ForgettingStandardScaler(),
                                AdversarialLogisticRegression(attack="fgsm"),
                                on_rescale="refit")
    copy = clone(pipe)
    assert copy.get_params()["on_rescale"] == "refit"
    grid = GridSearchCV(pipe, {"adversariallogisticregression__alpha": [1e-3, 1e-2],
                               "forgettingstandardscaler__with_mean": [True, False]}, cv=2)
    grid.fit(X, y)
    best = grid.best_estimator_
    assert isinstance(best, ForgetPipeline)
    best.forget([0, 1])
    assert_array_equal(best.forgotten_, [0, 1])
    with pytest.raises(ValueError):
        ForgetPipeline(pipe.steps, on_rescale="nope").fit(X, y)


def test_pandas_output_and_feature_names_give_the_same_forget():
    X, y = _data()
    df = pd.DataFrame(X, columns=[f"col{j}" for j in range(X.shape[1])])

    def make():
        return make_forget_pipeline(
            FunctionTransformer(np.tanh, feature_names_out="one-to-one"),
            ForgettingStandardScaler(),
            AdversarialLogisticRegression(attack=PGD(epsilon=0.05), alpha=1e-3),
        )

    framed = make().set_output(transform="pandas").fit(df, y)
    plain = make().fit(X, y)
    assert_array_equal(framed.feature_names_in_, df.columns)
    assert_array_equal(framed[-1].feature_names_in_, df.columns)
    framed.forget([3, 8])
    plain.forget([3, 8])
    assert_allclose(framed[-1].coef_, plain[-1].coef_, rtol=1e-10, atol=1e-12)
    assert_array_equal(framed.predict(df), plain.predict(X))


def test_make_forget_pipeline_names_duplicates():
    pipe = make_forget_pipeline(FunctionTransformer(), FunctionTransformer(),
                                AdversarialRidge())
    assert [n for n, _ in pipe.steps] == ["functiontransformer-1", "functiontransformer-2",
                                          "adversarialridge"]


def test_forgotten_values_leave_the_pipeline():
    X, y = _data()
    planted = 987.654321
    X[5, 0] = planted
    pipe = make_forget_pipeline(ForgettingStandardScaler(),
                                AdversarialLogisticRegression(attack="fgsm")).fit(X, y)
    assert np.float64(planted).tobytes() in pickle.dumps(pipe)
    pipe.forget([5])
    assert np.float64(planted).tobytes() not in pickle.dumps(pipe)
    assert not pipe[-1]._X[5].any()
    for obj in pipe[-1]._objectives:
        assert not obj.X[5].any() and obj.y[5] == 0
