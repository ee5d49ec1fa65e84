import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, cross_val_score

from skmuter import AdversarialLogisticRegression, AdversarialRidge, AdversarialRidgeClassifier
from skmuter.attacks import FGSM, PGD


def _binary(seed=0, n=200, d=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X @ np.linspace(1, -1, d) + 0.5 * rng.normal(size=n) > 0).astype(int)
    return X, y


@pytest.fixture(scope="module")
def digits17():
    X, y = load_digits(return_X_y=True)
    keep = (y == 1) | (y == 7)
    return X[keep] / 16.0, y[keep]


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_epsilon_zero_equals_sklearn_logistic(fit_intercept):
    X, y = _binary()
    alpha = 1e-2
    ours = AdversarialLogisticRegression(attack=PGD(0.0), alpha=alpha,
                                         fit_intercept=fit_intercept).fit(X, y)
    ref = LogisticRegression(C=1 / (alpha * len(y)), tol=1e-12, max_iter=10_000,
                             fit_intercept=fit_intercept).fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-6)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-6, atol=1e-12)
    assert ours.optimality_residual_ < 1e-8


def test_epsilon_zero_equals_sklearn_ridge():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 4))
    y = X @ [1.0, -2.0, 0.5, 0.0] + 0.3 * rng.normal(size=150)
    alpha = 1e-2
    ours = AdversarialRidge(attack=PGD(0.0), alpha=alpha).fit(X, y)
    ref = Ridge(alpha=alpha * len(y)).fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-6)
    assert ours.intercept_ == pytest.approx(ref.intercept_, rel=1e-6)


@pytest.mark.parametrize("Est", [AdversarialLogisticRegression, AdversarialRidgeClassifier])
@pytest.mark.parametrize("norm", ["inf", 2])
def test_exact_fit_converges_and_is_robust(Est, norm, digits17):
    X, y = digits17
    eps = 0.1 if norm == "inf" else 0.5
    clip = (0, 1) if norm == "inf" or Est is AdversarialLogisticRegression else None
    est = Est(attack=PGD(eps, norm=norm, clip=clip), alpha=1e-3).fit(X, y)
    # logistic fits reach machine precision; the squared robust loss is
    # non-smooth at ties and its active-set polish is not always exact
    assert est.optimality_residual_ < (1e-8 if Est is AdversarialLogisticRegression else 1e-2)
    clean, robust = est.score(X, y), est.robust_score(X, y)
    assert 0.5 < robust <= clean
    # any attack is weaker than the exact worst case
    assert est.robust_score(X, y, attack=PGD(eps, norm=norm, clip=clip, random_state=0)) >= robust
    # the robust fit minimises the worst-case objective: a clean fit scores worse on it
    plain = Est(attack=PGD(0.0), alpha=1e-3).fit(X, y)
    obj = est.training_objective()[0]
    rows = np.arange(len(y))
    assert obj.value(est._get_thetas()[0], rows) < obj.value(plain._get_thetas()[0], rows)


def test_linf_robust_model_is_sparse(digits17):
    X, y = digits17
    est = AdversarialLogisticRegression(attack=PGD(0.25, clip=(0, 1)), alpha=1e-4).fit(X, y)
    assert 0 < np.count_nonzero(est.coef_) < X.shape[1] // 2


def test_sgd_solver_approaches_exact_optimum(digits17):
    X, y = digits17
    attack = FGSM(0.1, clip=(0, 1))
    exact = AdversarialLogisticRegression(attack=attack, alpha=1e-2).fit(X, y)
    sgd = AdversarialLogisticRegression(attack=attack, alpha=1e-2, solver="sgd", max_iter=60,
                                        learning_rate=0.5, random_state=0).fit(X, y)
    assert sgd.optimality_residual_ > exact.optimality_residual_
    assert np.linalg.norm(sgd.coef_ - exact.coef_) < 0.35 * np.linalg.norm(exact.coef_)
    again = AdversarialLogisticRegression(attack=attack, alpha=1e-2, solver="sgd", max_iter=60,
                                          learning_rate=0.5, random_state=0).fit(X, y)
    np.testing.assert_array_equal(sgd.coef_, again.coef_)


def test_multiclass_one_vs_rest():
    X, y = load_digits(n_class=4, return_X_y=True)
    X = X / 16
    est = AdversarialLogisticRegression(attack=PGD(0.05, clip=(0, 1)), alpha=1e-3).fit(X, y)
    assert est.coef_.shape == (4, 64)
    assert est.score(X, y) > 0.9
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert 0.5 < est.robust_score(X, y) <= est.score(X, y)
    est.forget([0, 1, 2])
    assert est.coef_.shape == (4, 64)


def test_pandas_input_keeps_feature_names():
    X, y = _binary()
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = AdversarialLogisticRegression().fit(df, y)
    assert list(est.feature_names_in_) == list(df.columns)
    assert est.predict(df).shape == (len(y),)


def test_grid_search_reaches_attack_parameters():
    X, y = _binary()
    candidates = [0.0, 0.2]
    grid = GridSearchCV(AdversarialLogisticRegression(attack=PGD(0.1)),
                        {"attack__epsilon": candidates}, cv=3).fit(X, y)
    # Each candidate cross-validated on its own: the grid must see the same scores
    # (which differ, so that a grid stuck at the base attack would be caught).
    scores = [cross_val_score(AdversarialLogisticRegression(attack=PGD(eps)), X, y, cv=3).mean()
              for eps in candidates]
    assert abs(scores[0] - scores[1]) > 1e-3
    np.testing.assert_allclose(grid.cv_results_["mean_test_score"], scores, rtol=1e-12)
    best = candidates[int(np.argmax(scores))]
    assert grid.best_params_["attack__epsilon"] == best
    assert grid.best_estimator_.attack.epsilon == best


@pytest.mark.parametrize(
    "X, y, err, match",
    [
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), [0, 1], ValueError, "NaN"),
        (np.array([[np.inf, 1.0], [0.0, 1.0]]), [0, 1], ValueError, "infinity"),
        (np.ones((4, 2)), [0, 0, 0, 0], ValueError, "class"),
        (np.ones((4, 2)), [0, 1, 0], ValueError, "inconsistent"),
        (np.ones(4), [0, 1, 0, 1], ValueError, "2D"),
    ],
)
def test_bad_training_data(X, y, err, match):
    with pytest.raises(err, match=match):
        AdversarialLogisticRegression().fit(X, y)


@pytest.mark.parametrize(
    "attack, match",
    [
        (PGD(-0.1), "epsilon"),
        (PGD(0.1, step_size=0.5), "step_size"),
        (PGD(0.1, clip=(1, 0)), "inverted"),
        (PGD(0.1, clip=([0, 0, 0], [1, 1, 1])), "n_features"),
        (PGD(0.1, clip=(0, 0.5)), "outside clip"),
        ("cw", "attack"),
    ],
)
def test_bad_attack_parameters(attack, match):
    X = np.random.default_rng(0).uniform(size=(10, 2))
    y = np.arange(10) % 2
    with pytest.raises((ValueError, TypeError), match=match):
        AdversarialLogisticRegression(attack=attack).fit(X, y)


def test_predict_checks_feature_count():
    X, y = _binary()
    est = AdversarialRidge().fit(X, y.astype(float))
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :3])
