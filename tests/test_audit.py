"""The loss-based membership audit: exact AUC, and forgetting removes the signal."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from skmuter import AdversarialLogisticRegression, AdversarialRidge
from skmuter._audit import _loss_auc, membership_audit
from skmuter._losses import LogisticLoss, SquaredLoss
from skmuter.attacks import PGD
from skmuter.metrics import audit_populations, retrain, unlearning_audit, unlearning_epsilon


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, (3, 5, 8, 9))
    X, y = X[keep] / 16, y[keep]
    idx = np.random.default_rng(0).permutation(len(X))
    return X, y, idx[:160], idx[160:]


@pytest.fixture(scope="module")
def forgotten_pair(digits):
    """A barely regularised model (alpha=1e-4: a unique optimum, so that the two
    forgets can agree) that forgot 60 of its 160 rows, by MUter and by retraining."""
    X, y, tr, ho = digits
    out = {}
    for name in ("muter", "retrain"):
        est = AdversarialLogisticRegression(
            alpha=1e-4, attack=PGD(epsilon=0.02, clip=(0, 1)), forgetter=name
        ).fit(X[tr], y[tr])
        before = membership_audit(est, X[tr], y[tr], X[ho], y[ho])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.forget(np.arange(60))
        out[name] = (est, before)
    return out


def test_auc_matches_roc_auc_score_with_ties():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, 40).astype(float)
    b = rng.integers(0, 5, 70).astype(float)
    labels = np.r_[np.ones(40), np.zeros(70)]
    assert _loss_auc(a, b) == pytest.approx(roc_auc_score(labels, -np.r_[a, b]), abs=1e-12)
    assert _loss_auc(np.zeros(3), np.ones(4)) == 1.0
    assert _loss_auc(np.ones(3), np.zeros(4)) == 0.0
    assert _loss_auc(np.ones(3), np.ones(4)) == 0.5


def test_robust_loss_is_the_exact_worst_case_loss(digits):
    X, y, _, _ = digits
    binary = np.isin(y, (3, 8))
    Xb, yb = X[binary], y[binary]
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.1, clip=(0, 1))).fit(Xb, yb)
    sign = np.where(yb == est.classes_[1], 1.0, -1.0)
    robust = LogisticLoss.value(est._worst_scores(Xb, sign), sign)
    clean = LogisticLoss.value(est.decision_function(Xb), sign)
    a = membership_audit(est, Xb[:30], yb[:30], Xb[30:], yb[30:])
    c = membership_audit(est, Xb[:30], yb[:30], Xb[30:], yb[30:], loss="clean")
    assert a["mean_loss_forgotten"] == pytest.approx(robust[:30].mean(), rel=1e-12)
    assert a["mean_loss_heldout"] == pytest.approx(robust[30:].mean(), rel=1e-12)
    assert c["mean_loss_forgotten"] == pytest.approx(clean[:30].mean(), rel=1e-12)
    assert a["mean_loss_forgotten"] > c["mean_loss_forgotten"]
    assert (a["n_forgotten"], a["n_heldout"], a["loss"]) == (30, len(yb) - 30, "robust")
    assert a["auc"] == pytest.approx(roc_auc_score(np.r_[np.ones(30), np.zeros(len(yb) - 30)],
                                                   -robust), abs=1e-12)


def test_regressor_robust_loss():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, -1.0, 0.5] + 0.3 * rng.normal(size=60)
    est = AdversarialRidge(attack=PGD(epsilon=0.1, norm=2)).fit(X[:40], y[:40])
    worst = est._worst_scores(X, y)
    audit = membership_audit(est, X[:40], y[:40], X[40:], y[40:])
    assert audit["mean_loss_forgotten"] == pytest.approx(
        SquaredLoss.value(worst[:40], y[:40]).mean(), rel=1e-12)


def test_fitted_rows_look_like_members(digits, forgotten_pair):
    # Before any forget, the barely regularised model's training rows have lower loss.
    for _, before in forgotten_pair.values():
        assert before["auc"] > 0.55
        assert before["mean_loss_forgotten"] < before["mean_loss_heldout"]


def test_retrain_forgotten_rows_look_unseen(digits, forgotten_pair):
    X, y, tr, ho = digits
    ref, _ = forgotten_pair["retrain"]
    gone = membership_audit(ref, X[tr[:60]], y[tr[:60]], X[ho], y[ho])
    kept = membership_audit(ref, X[tr[60:]], y[tr[60:]], X[ho], y[ho])
    assert abs(gone["auc"] - 0.5) < 0.06
    # the audit still sees the rows the model kept: the test can tell them apart
    assert kept["auc"] > gone["auc"] + 0.08


def test_muter_auc_close_to_retrain(digits, forgotten_pair):
    X, y, tr, ho = digits
    ref, _ = forgotten_pair["retrain"]
    est, _ = forgotten_pair["muter"]
    a_mu = membership_audit(est, X[tr[:60]], y[tr[:60]], X[ho], y[ho])["auc"]
    a_re = membership_audit(ref, X[tr[:60]], y[tr[:60]], X[ho], y[ho])["auc"]
    assert abs(a_mu - a_re) < 0.02
    # and the exact retrain reference agrees with metrics.retrain
    again = retrain(est)
    a_again = membership_audit(again, X[tr[:60]], y[tr[:60]], X[ho], y[ho])["auc"]
    assert a_again == pytest.approx(a_re, abs=0.01)


def test_estimator_without_linear_internals_uses_log_loss(digits):
    X, y, tr, ho = digits
    est = LogisticRegression(max_iter=2000).fit(X[tr], y[tr])
    audit = membership_audit(est, X[tr], y[tr], X[ho], y[ho], loss="clean")
    proba = est.predict_proba(X[tr])
    expected = -np.log(proba[np.arange(len(tr)), np.searchsorted(est.classes_, y[tr])])
    assert audit["mean_loss_forgotten"] == pytest.approx(expected.mean(), rel=1e-10)
    with pytest.raises(ValueError, match="loss='robust' needs the exact worst case"):
        membership_audit(est, X[tr], y[tr], X[ho], y[ho])


def test_bad_audit_inputs(digits):
    X, y, tr, ho = digits
    est = AdversarialLogisticRegression().fit(X[tr], y[tr])
    with pytest.raises(ValueError, match="loss must be 'robust' or 'clean'"):
        membership_audit(est, X[tr], y[tr], X[ho], y[ho], loss="hinge")
    with pytest.raises(ValueError, match="X_forgotten is empty"):
        membership_audit(est, X[:0], y[:0], X[ho], y[ho])
    with pytest.raises(ValueError, match="labels not seen in fit"):
        membership_audit(est, X[tr], np.full(len(tr), 7), X[ho], y[ho])
    with pytest.raises(ValueError, match="one entry per row"):
        membership_audit(est, X[tr], y[tr][:-1], X[ho], y[ho])
    with pytest.raises(ValueError, match="features"):
        membership_audit(est, X[tr][:, :5], y[tr], X[ho], y[ho])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        membership_audit(AdversarialLogisticRegression(), X[tr], y[tr], X[ho], y[ho])


# ---- the population audit (epsilon of unlearned vs retrained populations) -----------------

def _reference_epsilon(a, b, delta):
    """The definition, written out test by test (one example, plain loops)."""
    best = 0.0
    for t in sorted(set(a) | set(b)):
        for a_side_low in (True, False):
            fnr = sum((s > t) if a_side_low else (s <= t) for s in a) / len(a)
            fpr = sum((s <= t) if a_side_low else (s > t) for s in b) / len(b)
            for num, den in ((1 - delta - fpr, max(fnr, 1 / len(a))),
                             (1 - delta - fnr, max(fpr, 1 / len(b)))):
                if num > 0:
                    best = max(best, np.log(num / den))
    return best


def test_epsilon_matches_the_definition_with_ties():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 6, size=(9, 7)).astype(float)
    b = rng.integers(1, 8, size=(13, 7)).astype(float)
    got = unlearning_epsilon(a, b, delta=0.02)
    want = [_reference_epsilon(a[:, i], b[:, i], 0.02) for i in range(7)]
    np.testing.assert_allclose(got["epsilon"], want, rtol=1e-12, atol=1e-12)
    assert got["mean"] == pytest.approx(np.mean(want))
    assert got["median"] == pytest.approx(np.median(want))
    # symmetric in the two populations
    np.testing.assert_allclose(unlearning_epsilon(b, a, delta=0.02)["epsilon"], want, atol=1e-12)


def test_epsilon_is_zero_for_identical_populations():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(20, 30))
    out = unlearning_epsilon(a, a[rng.permutation(20)])
    assert out["mean"] == 0.0 and out["score"] == 1.0
    assert out["n_models"] == (20, 20) and out["delta"] == 0.01


def test_epsilon_of_separated_populations_is_the_cap():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(16, 4)), rng.normal(size=(24, 4)) + 100.0
    out = unlearning_epsilon(a, b, delta=0.01)
    # no test errs: both rates are credited with one error, the larger population decides
    np.testing.assert_allclose(out["epsilon"], np.log(0.99 * 24))
    assert out["max_epsilon"] == pytest.approx(np.log(0.99 * 24))
    assert out["score"] == 2.0 ** -6  # log(23.76) = 3.17 is in the seventh bin of 0.5


@pytest.mark.parametrize("delta", [0.01, 0.05])
def test_epsilon_of_the_laplace_mechanism(delta):
    # Laplace noise of scale 1 on a query of sensitivity 1: pure (1, 0)-DP. For the
    # threshold tests the best bound with delta is eps = 1 + 2 log(1 - delta), at
    # t = log(1 / (1 - delta)) (the rates there are ~0.2, well estimated from 20,000 draws).
    rng = np.random.default_rng(6)
    a = rng.laplace(1.0, 1.0, size=(20000, 4))
    b = rng.laplace(0.0, 1.0, size=(20000, 4))
    out = unlearning_epsilon(a, b, delta=delta)
    exact = 1.0 + 2.0 * np.log(1.0 - delta)
    assert out["mean"] == pytest.approx(exact, abs=0.05)
    np.testing.assert_allclose(out["epsilon"], exact, atol=0.1)


def test_bad_epsilon_inputs():
    a = np.zeros((5, 3))
    with pytest.raises(ValueError, match="same number of examples"):
        unlearning_epsilon(a, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="at least 2 models"):
        unlearning_epsilon(a[:1], a)
    with pytest.raises(ValueError, match="not finite"):
        unlearning_epsilon(np.full((5, 3), np.nan), a)
    with pytest.raises(ValueError, match="shape"):
        unlearning_epsilon(np.zeros((5, 3, 2)), a)
    with pytest.raises(ValueError, match="delta"):
        unlearning_epsilon(a, a, delta=1.0)
    with pytest.raises(ValueError, match="bin_width"):
        unlearning_epsilon(a, a, bin_width=0)
    with pytest.raises(ValueError, match="no 'retrained' entry"):
        unlearning_audit({"original": a})
    with pytest.raises(ValueError, match="must be different"):
        unlearning_audit({"retrained": a}, null="retrained")
    with pytest.raises(TypeError, match="dict"):
        unlearning_audit([a, a])


@pytest.fixture(scope="module")
def populations():
    """Populations of a barely regularised model on 3 vs 8 digits forgetting 20 of 150 rows."""
    X, y = load_digits(return_X_y=True)
    keep = np.flatnonzero(np.isin(y, (3, 8)))[:150]
    X, y = X[keep] / 16, y[keep]
    est = AdversarialLogisticRegression(alpha=1e-3, attack=PGD(epsilon=0.05, clip=(0, 1)))
    forget = np.random.default_rng(0).choice(len(y), size=20, replace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pops = audit_populations(est, X, y, forget, n_models=10, drop_fraction=0.02,
                                 random_state=0)
    return X, y, forget, pops


def test_populations_hold_the_losses_of_what_they_say(populations):
    pops = populations[3]
    assert sorted(pops) == ["original", "retrained", "retrained_ref", "unlearned"]
    assert all(v.shape == (10, 20) for v in pops.values())
    # doing nothing: the forgotten rows were trained on, their loss is lower
    assert pops["original"].mean() < pops["retrained"].mean()
    # the members differ (the randomness of the audit), by more than solver precision
    assert pops["retrained"].std(axis=0).min() > 1e-6


def test_do_nothing_is_above_retrain_and_muter_sits_with_it(populations):
    audit = unlearning_audit(populations[3])
    low, high = audit["retrained_ref"]["spread"]
    assert low <= audit["retrained_ref"]["mean"] <= high
    assert audit["original"]["mean"] > high + 0.3
    assert not audit["original"]["within_spread"]
    assert audit["unlearned"]["within_spread"]
    assert abs(audit["unlearned"]["mean"] - audit["retrained_ref"]["mean"]) < 0.3


def test_bad_population_inputs(populations):
    X, y, forget, _ = populations
    est = AdversarialLogisticRegression()
    with pytest.raises(ValueError, match="n_models"):
        audit_populations(est, X, y, forget, n_models=1)
    with pytest.raises(ValueError, match="drop_fraction"):
        audit_populations(est, X, y, forget, drop_fraction=1.0)
    with pytest.raises(ValueError, match="reserved"):
        audit_populations(est, X, y, forget, methods={"original": {}})
    with pytest.raises(ValueError, match="repeated"):
        audit_populations(est, X, y, [1, 1])
    with pytest.raises(ValueError, match="outside"):
        audit_populations(est, X, y, [len(y)])
    with pytest.raises(ValueError, match="every row"):
        audit_populations(est, X, y, np.arange(len(y)))
    with pytest.raises(ValueError, match="loss must be"):
        audit_populations(est, X, y, forget, loss="hinge")
    with pytest.raises(TypeError, match="no forget method"):
        audit_populations(LogisticRegression(), X, y, forget)


def test_populations_of_network_heads_on_a_frozen_body():
    torch = pytest.importorskip("torch")
    pytest.importorskip("skorch")
    from skmuter import AdversarialNet
    from skmuter.attacks import FGSM

    X, y = load_digits(return_X_y=True)
    X, y = (X[:120] / 16).astype(np.float32), y[:120]
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
    head = AdversarialNet(body, attack=FGSM(epsilon=0.05, clip=(0, 1)), train_params="forget",
                          alpha=1e-2, max_epochs=2, lr=0.05, polish=False, forget_tol=None,
                          verbose=0)  # no polish: a fast smoke test of the populations
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pops = audit_populations(head, X, y, [0, 5, 9], n_models=2, drop_fraction=0.05,
                                 random_state=0)
    assert all(v.shape == (2, 3) for v in pops.values())
    # the statistic is the clean log-loss; the members differ by their subsets and seeds
    assert np.all(pops["retrained"] > 0)
    assert not np.allclose(pops["retrained"][0], pops["retrained"][1])
    # the template is cloned, never fitted
    assert not hasattr(head, "n_train_")
