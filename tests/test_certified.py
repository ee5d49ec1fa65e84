"""Certified removal: objective perturbation, the residual budget, and what happens when it is spent."""

import copy
import pickle
import warnings

import numpy as np
import pytest
from scipy import optimize
from sklearn.datasets import load_digits

from skmuter import AdversarialLogisticRegression, AdversarialRidgeClassifier
from skmuter.attacks import PGD
from skmuter.certified import CertificationError, CertificationWarning, CertifiedRemoval
from skmuter.forgetters import ForgetWarning
from skmuter.metrics import parameter_distance, residual_fraction, retrain


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(n_class=2, return_X_y=True)
    return X / 16, y


def make(attack=None, noise=1.0, on_spent="retrain", **kw):
    params = {"attack": PGD(norm=2, epsilon=0.5) if attack is None else attack,
              "alpha": 1e-2, "random_state": 0,
              "certified": CertifiedRemoval(epsilon=1.0, delta=1e-4, noise=noise,
                                            on_spent=on_spent)}
    params.update(kw)
    return AdversarialLogisticRegression(**params)


def state(est):
    return (est.coef_.copy(), est.intercept_.copy(), est.forgotten_.copy(),
            len(est.forget_log_), copy.deepcopy(est.certificate_))


def test_budget_follows_the_theorem():
    cr = CertifiedRemoval(epsilon=0.5, delta=1e-3, noise=2.0)
    c = np.sqrt(2 * np.log(1.5 / 1e-3))
    assert cr.budget() == pytest.approx(2.0 * 0.5 / c)
    # K problems share (epsilon, delta): each gets (epsilon/K, delta/K)
    c3 = np.sqrt(2 * np.log(1.5 * 3 / 1e-3))
    assert cr.budget(3) == pytest.approx(2.0 * 0.5 / 3 / c3)


def test_fit_is_the_exact_optimum_of_the_perturbed_objective(data):
    X, y = data
    est = make(attack=PGD(epsilon=0.0)).fit(X, y)
    noise = est.training_objective()[0].linear_term
    assert noise.shape == (X.shape[1] + 1,)
    t = np.where(y == est.classes_[1], 1.0, -1.0)
    m, alpha = len(y), 1e-2

    def fun(theta):  # written out independently: summed form / m
        w, b = theta[:-1], theta[-1]
        z = t * (X @ w + b)
        f = np.logaddexp(0, -z).sum() / m + alpha / 2 * w @ w + noise @ theta / m
        g1 = -t * np.exp(-np.logaddexp(0, z)) / m
        return f, np.concatenate([X.T @ g1 + alpha * w, [g1.sum()]]) + noise / m

    ref = optimize.minimize(fun, np.zeros(X.shape[1] + 1), jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-12, "ftol": 0, "maxiter": 10000}).x
    theta = np.concatenate([est.coef_[0], est.intercept_])
    np.testing.assert_allclose(theta, ref, atol=1e-6)
    plain = AdversarialLogisticRegression(attack=PGD(epsilon=0.0), alpha=1e-2).fit(X, y)
    assert parameter_distance(est, plain) > 1e-3  # the noise moved the optimum
    assert est.certificate_["spent"] < 1e-6


def test_same_seed_same_noise_other_seed_differs(data):
    X, y = data
    a, b = make().fit(X, y), make().fit(X, y)
    c = make(random_state=1).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert parameter_distance(a, c) > 1e-4


@pytest.mark.parametrize("attack", [PGD(norm=2, epsilon=0.5), PGD(epsilon=0.05, clip=(0, 1)),
                                    PGD(epsilon=0.0)], ids=["l2", "linf", "clean"])
def test_forget_logs_the_exact_residual_and_stays_near_the_perturbed_retrain(data, attack):
    X, y = data
    est = make(attack=attack).fit(X, y)
    before = copy.deepcopy(est)
    est.forget([0, 5, 7])
    rec = est.forget_log_[-1]
    kept = np.setdiff1d(np.arange(len(y)), [0, 5, 7])
    obj = est.training_objective()[0]
    theta = np.concatenate([est.coef_[0], est.intercept_])
    expected = len(kept) * np.linalg.norm(obj.minimal_subgradient(theta, kept))
    assert rec["certified_residual"] == pytest.approx(expected)
    assert rec["budget_spent"] == pytest.approx(expected / est.certificate_["budget"])
    assert 0 < rec["budget_spent"] < 1 and not rec["certified_retrain"]
    ref = retrain(est)  # same noise, exact solve on the kept rows
    assert len(kept) * ref.training_objective()[0].gradient_residual(
        np.concatenate([ref.coef_[0], ref.intercept_]), kept) < 1e-6
    assert residual_fraction(est, before, ref) < 0.05


def test_spent_budget_retrains_exactly_and_forgetting_goes_on(data):
    X, y = data
    # the raw step (forget_tol=None): the check would correct it to the exact
    # perturbed retrain, which never spends the budget
    est = make(noise=0.01, forget_tol=None).fit(X, y)
    est.forget(np.arange(20))
    assert est.certificate_["n_retrains"] == 1 and est.forget_log_[-1]["certified_retrain"]
    assert est.forget_log_[-1]["proposed_residual"] > est.certificate_["budget"]
    assert est.certificate_["spent"] < 1e-3
    assert parameter_distance(est, retrain(est)) < 1e-7
    est.forget(np.arange(20, 23))  # the forgetter was re-linearised at the new optimum
    assert est.certificate_["spent"] <= 1
    assert parameter_distance(est, retrain(est)) < 1e-3
    # checked forgets land on the perturbed retrain and spend (almost) nothing
    est.set_params(forget_tol=1e-9).forget(np.arange(23, 40))
    assert est.certificate_["spent"] < 1e-3 and not est.forget_log_[-1]["certified_retrain"]
    assert parameter_distance(est, retrain(est)) < 1e-6


def test_spent_budget_raises_and_changes_nothing(data):
    X, y = data
    est = make(noise=0.01, on_spent="raise", forget_tol=None).fit(X, y)
    est.forget([1])
    before = state(est)
    pickled = pickle.dumps(est)
    with pytest.raises(CertificationError, match="budget"):
        est.forget(np.arange(2, 40))
    after = state(est)
    for a, b in zip(before[:3], after[:3]):
        np.testing.assert_array_equal(a, b)
    assert before[3:] == after[3:]
    assert pickle.dumps(est) == pickled


def test_spent_budget_warns_and_keeps_the_result(data):
    X, y = data
    est = make(noise=0.01, on_spent="warn", forget_tol=None).fit(X, y)
    with pytest.warns(CertificationWarning, match="no longer certified"):
        est.forget(np.arange(30))
    assert est.certificate_["spent"] > 1 and est.certificate_["n_retrains"] == 0
    assert est.forgotten_.size == 30


def test_multiclass_splits_the_budget_and_checks_every_problem():
    X, y = load_digits(n_class=3, return_X_y=True)
    est = make(attack=PGD(epsilon=0.0)).fit(X / 16, y)
    assert est.certificate_["budget"] == pytest.approx(est.certified.budget(3))
    noises = [o.linear_term for o in est.training_objective()]
    assert not np.allclose(noises[0], noises[1])
    est.forget([0, 1, 2])
    assert len(est.certificate_["residual"]) == 3


def test_pickle_round_trip_keeps_the_noise_and_the_certificate(data):
    X, y = data
    est = make().fit(X, y).forget([3])
    clone_ = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(clone_.training_objective()[0].linear_term,
                                  est.training_objective()[0].linear_term)
    est.forget([4, 8])
    clone_.forget([4, 8])
    np.testing.assert_allclose(clone_.coef_, est.coef_, atol=1e-12)
    assert clone_.certificate_["spent"] == pytest.approx(est.certificate_["spent"])


@pytest.mark.parametrize(("params", "match"), [
    ({"alpha": 0.0}, "alpha must be > 0"),
    ({"solver": "sgd", "max_iter": 1, "certified": CertifiedRemoval(noise=1e-6)}, "budget"),
    ({"certified": CertifiedRemoval(epsilon=0.0)}, "epsilon"),
    ({"certified": CertifiedRemoval(delta=1.0)}, "delta"),
    ({"certified": CertifiedRemoval(on_spent="ignore")}, "on_spent"),
    ({"certified": "yes"}, "certified"),
])
def test_bad_certified_settings_raise(data, params, match):
    X, y = data
    with pytest.raises(ValueError, match=match):
        make(**params).fit(X, y)


def test_only_the_logistic_model_takes_the_option(data):
    assert "certified" in AdversarialLogisticRegression().get_params()
    assert "certified" not in AdversarialRidgeClassifier().get_params()
    est = make().set_params(certified__noise=3.0)
    assert est.certified.noise == 3.0


def test_uncertified_model_has_no_certificate(data):
    X, y = data
    est = AdversarialLogisticRegression(alpha=1e-2).fit(X, y)
    assert est.certificate_ is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", CertificationWarning)
        warnings.simplefilter("ignore", ForgetWarning)
        est.forget([1, 2])
    assert "budget_spent" not in est.forget_log_[-1]


def test_pipeline_with_a_forgetting_scaler_keeps_the_certificate_true():
    from skmuter.pipeline import ForgettingStandardScaler, make_forget_pipeline

    X, y = load_digits(n_class=2, return_X_y=True)
    pipe = make_forget_pipeline(ForgettingStandardScaler(), make()).fit(X, y)
    pipe.forget([1, 2, 3])
    est = pipe[-1]
    assert est.forget_log_[-1]["rescaled"]
    kept = np.setdiff1d(np.arange(len(y)), [1, 2, 3])
    obj = est.training_objective()[0]
    theta = np.concatenate([est.coef_[0], est.intercept_])
    measured = len(kept) * np.linalg.norm(obj.minimal_subgradient(theta, kept))
    # re-expressed on the new features and re-solved with the noise term kept
    assert est.certificate_["residual"][0] == pytest.approx(measured)
    assert est.certificate_["spent"] < 1e-3
