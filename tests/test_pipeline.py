"""Forgetting through pipelines: the scalers, the step checks, and retraining the whole pipeline."""

import pickle

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
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
    ForgettingColumnTransformer,
    ForgettingMinMaxScaler,
    ForgettingSimpleImputer,
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
            if key == "pass_cache":  # prepared from the inputs, compared through them
                continue
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
    # Refused at fit, naming the step (also inside a column transformer).
    pipe = ForgetPipeline([("reduce", PCA(2)),
                           ("clf", AdversarialLogisticRegression(attack="fgsm"))])
    with pytest.raises(TypeError, match="step 'reduce' \\(PCA\\)"):
        pipe.fit(X, y)
    ct = ColumnTransformer([("ok", StandardScaler(), [0, 1]), ("bad", PCA(1), [2, 3])])
    with pytest.raises(TypeError, match="'ct' > 'bad' \\(PCA\\)"):
        ForgetPipeline([("ct", ct), ("clf", AdversarialLogisticRegression())]).fit(X, y)
    # A step swapped in after fit is refused at forget, before anything changes.
    pipe = ForgetPipeline([("scale", StandardScaler()),
                           ("clf", AdversarialLogisticRegression(attack="fgsm"))]).fit(X, y)
    pipe.steps[0] = ("scale", StandardScaler().fit(X))
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


# ---- scikit-learn's own transformers, adapted at fit -------------------------------
def _nan_data(seed=0, frac=0.1):
    X, y = _data(seed=seed)
    rng = np.random.default_rng(seed)
    holes = rng.random(X.shape) < frac
    holes[:, 3:] = False
    X[holes] = np.nan
    return X, y


def _user_steps(kind):
    """Pipelines as users build them with scikit-learn's own transformers."""
    if kind == "standard":
        return [StandardScaler()]
    if kind == "minmax":
        return [MinMaxScaler(feature_range=(-1, 1))]
    if kind == "impute-mean":
        return [SimpleImputer(), StandardScaler()]
    if kind == "impute-median":
        return [SimpleImputer(strategy="median"), MinMaxScaler()]
    if kind == "poly":
        return [StandardScaler(), PolynomialFeatures(degree=2, include_bias=False)]
    if kind == "function":
        return [FunctionTransformer(np.arcsinh), StandardScaler()]
    return [ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), [0, 1, 2]),
        ("range", MinMaxScaler(), [3, 4]),
        ("asinh", FunctionTransformer(np.arcsinh), [5]),
    ])]


@pytest.mark.parametrize("kind", ["standard", "minmax", "impute-mean", "impute-median",
                                  "poly", "function", "column"])
def test_user_pipeline_forget_equals_retraining_the_whole_pipeline(kind):
    make_data = _nan_data if kind.startswith("impute") or kind == "column" else _data
    X, y = make_data()
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.05), alpha=1e-2)
    pipe = make_forget_pipeline(*_user_steps(kind), clone(est)).fit(X, y)
    # The reference: scikit-learn's own pipeline retrained on the kept rows.
    sk = make_pipeline(*_user_steps(kind), clone(est))
    assert_array_equal(pipe[:-1].transform(X), clone(sk).fit(X, y)[:-1].transform(X))
    original = _params(pipe)
    holes = np.flatnonzero(np.isnan(X).any(axis=1))[:2].tolist()
    first = sorted({int(X[:, 3].argmax()), int(X[:, 4].argmin()), 10, 20, *holes})
    # Extremes of other features: each request of the second call changes the
    # min-max scaler too (a request that changes no statistic is the final
    # estimator's own forget, first-order accurate only).
    extremes = [int(np.nanargmax(X[:, j])) for j in range(3)] + [
        int(np.nanargmin(X[:, j])) for j in range(3)]
    second = [r for r in dict.fromkeys(extremes) if r not in first][:2]
    pipe.forget(first)
    assert pipe.forget_log_[-1]["rescaled"]
    expected = "affine" if kind in ("standard", "minmax", "function") else "refit"
    assert pipe.forget_log_[-1]["rescale"] == expected
    for removed in (first, first + second):
        if removed is not first:
            pipe.partial_forget(second)
            assert all(r["rescaled"] for r in pipe.forget_log_)
        kept = np.setdiff1d(np.arange(N), removed)
        ref = clone(sk).fit(X[kept], y[kept])
        assert_allclose(pipe[-1].coef_, ref[-1].coef_, rtol=0, atol=1e-6)
        assert_allclose(pipe[-1].intercept_, ref[-1].intercept_, rtol=0, atol=1e-6)
        assert _residual_fraction(_params(pipe), original, _params(ref)) < 1e-5
        assert gradient_residual(pipe) < 1e-7
    X_test, _ = make_data(seed=1)
    assert_allclose(pipe.decision_function(X_test), ref.decision_function(X_test),
                    rtol=1e-5, atol=1e-5)


def test_adapted_steps_keep_parameters_and_transform_exactly():
    X, y = _nan_data()
    steps = [SimpleImputer(strategy="median"), StandardScaler(with_mean=False),
             MinMaxScaler(feature_range=(-2, 3), clip=True)]
    pipe = make_forget_pipeline(*steps, AdversarialLogisticRegression(attack="fgsm"))
    assert pipe.get_params()["standardscaler__with_mean"] is False  # before fit: the user's
    pipe.fit(X, y)
    types = [type(s).__name__ for s in pipe[:-1]]
    assert types == ["ForgettingSimpleImputer", "ForgettingStandardScaler",
                     "ForgettingMinMaxScaler"]
    for user, adapted in zip(steps, pipe[:-1]):
        assert adapted.get_params() == user.get_params()
    Z = X
    for user, adapted in zip(steps, pipe[:-1]):
        fitted = clone(user).fit(Z)
        assert_array_equal(adapted.transform(Z), fitted.transform(Z))
        Z = fitted.transform(Z)
    assert isinstance(clone(pipe)[0], SimpleImputer)
    # Grid searches set the user's parameters on either kind.
    pipe.set_params(standardscaler__with_mean=True)
    assert pipe[1].with_mean


@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent", "constant"])
def test_imputer_forget_equals_refit(strategy):
    X, _ = _nan_data()
    X = np.round(X)  # ties for most_frequent
    imputer = ForgettingSimpleImputer(strategy=strategy, fill_value=-7.0).fit(X)
    removed = sorted(set(np.flatnonzero(np.isnan(X).any(axis=1))[:5].tolist()) | {0, 1, 2})
    imputer.forget(removed)
    kept = np.setdiff1d(np.arange(N), removed)
    ref = SimpleImputer(strategy=strategy, fill_value=-7.0).fit(X[kept])
    assert_allclose(imputer.statistics_.astype(float), ref.statistics_.astype(float),
                    rtol=1e-12, atol=1e-12)
    assert_allclose(imputer.transform(X), ref.transform(X), rtol=1e-12, atol=1e-12)
    assert not np.nan_to_num(imputer._X[removed]).any()


def test_imputer_refuses_what_would_change_the_features():
    X, _ = _data(n=20)
    X[:, 1] = np.nan
    X[[3, 4], 1] = 1.0
    imputer = ForgettingSimpleImputer().fit(X)
    before = pickle.dumps(imputer)
    with pytest.raises(ValueError, match=r"feature\(s\) \[1\]"):
        imputer.forget([3, 4])
    assert pickle.dumps(imputer) == before
    kept = ForgettingSimpleImputer(keep_empty_features=True).fit(X).forget([3, 4])
    assert kept.statistics_[1] == 0
    with pytest.raises(ValueError, match="add_indicator"):
        ForgettingSimpleImputer(add_indicator=True).fit(X)
    with pytest.raises(ValueError, match="numeric"):
        ForgettingSimpleImputer(strategy="most_frequent").fit(np.array([["a"], ["b"]]))


def test_column_transformer_with_dataframe_columns_and_purge():
    X, y = _nan_data()
    planted = 987.654321
    X[5, 0] = planted
    df = pd.DataFrame(X, columns=[f"c{j}" for j in range(X.shape[1])])
    ct = ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()),
                             ["c0", "c1", "c2"]),
                            ("range", MinMaxScaler(), ["c3", "c4"])], remainder="passthrough")
    pipe = make_forget_pipeline(ct, AdversarialLogisticRegression(attack="fgsm", alpha=1e-2))
    pipe.fit(df, y)
    assert isinstance(pipe[0], ForgettingColumnTransformer)
    assert np.float64(planted).tobytes() in pickle.dumps(pipe)
    pipe.forget([5, 7])
    assert np.float64(planted).tobytes() not in pickle.dumps(pipe)
    kept = np.setdiff1d(np.arange(N), [5, 7])
    ref = clone(make_pipeline(ct, AdversarialLogisticRegression(attack="fgsm", alpha=1e-2)))
    ref.fit(df.iloc[kept], y[kept])
    assert_allclose(pipe[-1].coef_, ref[-1].coef_, rtol=0, atol=1e-6)
    assert_array_equal(pipe[0].forgotten_, [5, 7])
    inner = pipe[0].named_transformers_["num"]
    assert_array_equal(inner[0].forgotten_, [5, 7])
    assert_array_equal(inner[1].forgotten_, [5, 7])


def test_failed_forget_in_a_column_transformer_restores_every_part(monkeypatch):
    X, y = _nan_data()
    ct = ColumnTransformer([("a", StandardScaler(), [0, 1]), ("b", MinMaxScaler(), [2, 3])])
    pipe = make_forget_pipeline(ct, AdversarialLogisticRegression(attack="fgsm")).fit(
        np.nan_to_num(X), y)
    before = _state(pipe)
    inner = pickle.dumps(pipe[0])

    def broken(self, indices):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(ForgettingMinMaxScaler, "forget", broken)
    with pytest.raises(RuntimeError, match="on purpose"):
        pipe.forget([1, 2])
    _assert_same_state(before, _state(pipe))
    assert pickle.dumps(pipe[0]) == inner


# ---- from a fitted scikit-learn pipeline ------------------------------------------
def test_from_pipeline_carries_the_fitted_state_and_forgets():
    X, y = _nan_data()
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.05), alpha=1e-2)
    sk = make_pipeline(SimpleImputer(), StandardScaler(), clone(est)).fit(X, y)
    before = pickle.dumps(sk)
    pipe = ForgetPipeline.from_pipeline(sk, X)
    assert [n for n, _ in pipe.steps] == [n for n, _ in sk.steps]
    assert isinstance(pipe[1], ForgettingStandardScaler)
    assert_array_equal(pipe[-1].coef_, sk[-1].coef_)  # not refitted
    assert pipe[-1] is not sk[-1]
    assert_array_equal(pipe.decision_function(X), sk.decision_function(X))
    pipe.forget([0, 3, 50])
    kept = np.setdiff1d(np.arange(N), [0, 3, 50])
    ref = clone(sk).fit(X[kept], y[kept])
    assert_allclose(pipe[-1].coef_, ref[-1].coef_, rtol=0, atol=1e-6)
    assert pickle.dumps(sk) == before  # the original is unchanged
    with pytest.raises(ValueError, match=r"from_pipeline\(pipe, X\)"):
        ForgetPipeline.from_pipeline(sk)
    for wrong in (X[::-1], X + 1.0):  # the same statistics, or other ones
        with pytest.raises(ValueError, match="(?i)pass the rows the pipeline was fitted on"):
            ForgetPipeline.from_pipeline(sk, wrong)
    with pytest.raises(TypeError, match="'pca' \\(PCA\\)"):
        ForgetPipeline.from_pipeline(make_pipeline(PCA(2), clone(est)).fit(_data()[0], y))
    # Stateless steps only: nothing to refit, X not needed.
    plain = make_pipeline(FunctionTransformer(np.tanh), clone(est)).fit(_data()[0], y)
    pipe = ForgetPipeline.from_pipeline(plain).forget([1])
    assert_array_equal(pipe.forgotten_, [1])


# ---- forgetting by index label ----------------------------------------------------
@pytest.mark.parametrize("labels", ["reversed", "strings"])
def test_forget_by_label_removes_the_labelled_rows(labels):
    X, y = _data()
    index = np.arange(N)[::-1] if labels == "reversed" else [f"r{i}" for i in range(N)]
    df = pd.DataFrame(X, index=index)

    def make():
        return make_forget_pipeline(StandardScaler(), AdversarialLogisticRegression(
            attack=PGD(epsilon=0.05), alpha=1e-2))

    by_label = make().fit(df, y)
    by_position = make().fit(X, y)
    chosen = [df.index[4], df.index[17], df.index[200]]
    by_label.forget(chosen[:2], by="label").partial_forget(chosen[2:], by="label")
    by_position.forget([4, 17]).partial_forget([200])
    assert_array_equal(by_label.forgotten_, [4, 17, 200])
    # the same requests (a DataFrame's memory layout may change the last bit)
    np.testing.assert_allclose(by_label[-1].coef_, by_position[-1].coef_, rtol=1e-12,
                               atol=1e-15)
    # The labels of forgotten rows are purged; unknown labels raise; nothing changes.
    assert not set(chosen) & set(by_label._label_index)
    before = _state(by_label)
    for bad in ([chosen[0]], ["nope"], [df.index[5], "nope"]):
        with pytest.raises(KeyError, match="not among the remaining"):
            by_label.forget(bad, by="label")
    with pytest.raises(ValueError, match="duplicate labels"):
        by_label.forget([df.index[5], df.index[5]], by="label")
    with pytest.raises(ValueError, match="by must be"):
        by_label.forget([5], by="row")
    _assert_same_state(before, _state(by_label))
    with pytest.raises(ValueError, match="without an index"):
        by_position.forget([5], by="label")
    # A positional forget also drops the row's label.
    by_label.forget([5])
    assert df.index[5] not in set(by_label._label_index)
