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
from skmuter.metrics import retrain


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
