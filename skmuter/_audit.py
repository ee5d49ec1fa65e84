"""Loss-based membership-inference audit of a forget.

The attack is the classic loss threshold test (Yeom et al., CSF 2018): a row
whose loss under the model is low is guessed to be a training member. Its
strength over all thresholds is the area under the ROC curve of the score
``-loss`` separating the forgotten rows (positives) from held-out rows never
seen in training (negatives). After a perfect forget the forgotten rows are
indistinguishable from held-out rows and the AUC is 0.5 up to sampling noise.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .linear._base import BaseAdversarialLinear
from .linear._objective import LinearObjective

__all__ = ["membership_audit"]


def _loss_auc(member_losses, other_losses):
    """AUC of "lower loss means member": ``P(l_m < l_o) + P(l_m == l_o) / 2``."""
    n_m, n_o = len(member_losses), len(other_losses)
    ranks = rankdata(-np.concatenate([member_losses, other_losses]))  # average ranks on ties
    u = ranks[:n_m].sum() - n_m * (n_m + 1) / 2.0
    return float(u / (n_m * n_o))


def _linear_targets(est, y):
    """Per-problem targets of ``y`` as in ``fit``: +-1 (one-vs-rest) or real."""
    if not getattr(est, "_is_classifier", True):
        return [np.asarray(y, dtype=np.float64)]
    codes = est._codes(y)
    if len(est.classes_) == 2:
        return [np.where(codes == 1, 1.0, -1.0)]
    return [np.where(codes == k, 1.0, -1.0) for k in range(len(est.classes_))]


def _linear_losses(est, X, y, loss):
    """Per-row training loss of a skmuter linear model, summed over its problems."""
    X, y = est._check_eval_inputs(X, y)
    rows = np.arange(X.shape[0])
    points = "adversarial" if loss == "robust" else "clean"
    threat = est.attack_.threat(X.shape[1])
    total = np.zeros(X.shape[0])
    for fitted, theta, target in zip(est.training_objective(), est._get_thetas(),
                                     _linear_targets(est, y)):
        # The fitted objective's loss and threat, on the audited rows.
        obj = LinearObjective(X, target, fitted.loss.name, threat, fitted.alpha,
                              fitted.fit_intercept)
        z = obj.points(theta, rows, points=points, wcols=np.arange(0))[0]
        total += obj.loss.value(z, target)
    return total


def _proba_losses(est, X, y):
    """Per-row log-loss ``-log p(y | x)`` from ``predict_proba``."""
    proba = np.asarray(est.predict_proba(X), dtype=np.float64)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != proba.shape[0]:
        raise ValueError(
            f"y must be 1-D with one entry per row of X ({proba.shape[0]}), got shape {y.shape}."
        )
    classes = np.asarray(est.classes_)
    idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    if np.any(classes[idx] != y):
        raise ValueError("y contains labels not seen in fit.")
    p = proba[np.arange(len(y)), idx]
    return -np.log(np.clip(p, np.finfo(np.float64).tiny, 1.0))


def _row_losses(est, X, y, loss):
    if isinstance(est, Pipeline):  # the final estimator's loss on the transformed rows
        check_is_fitted(est)
        for _, _, step in est._iter(with_final=False, filter_passthrough=True):
            X = step.transform(X)
        return _row_losses(est[-1], X, y, loss)
    if isinstance(est, BaseAdversarialLinear):
        return _linear_losses(est, X, y, loss)
    if loss == "robust":
        raise ValueError(
            f"loss='robust' needs the exact worst case of a skmuter linear model; "
            f"{type(est).__name__} has none, use loss='clean' (log-loss of predict_proba)."
        )
    if not hasattr(est, "predict_proba"):
        raise TypeError(f"{type(est).__name__} has no predict_proba for loss='clean'.")
    return _proba_losses(est, X, y)


def membership_audit(est, X_forgotten, y_forgotten, X_heldout, y_heldout, loss="robust"):
    """Loss-based membership-inference audit of forgotten rows against held-out rows.

    The attack is the loss threshold test: it guesses "member of the training
    set" when a row's loss under ``est`` is below a threshold. Over all
    thresholds, its power is the ROC AUC of the score ``-loss`` with the
    forgotten rows as positives and the held-out rows as negatives, computed
    exactly from ranks (ties count one half):

        auc = P(loss(forgotten row) < loss(held-out row))
              + P(loss(forgotten row) == loss(held-out row)) / 2.

    Run it on the unlearned model and on an exact retrain
    (:func:`skmuter.metrics.retrain`) with the same rows: a good forget gives
    about the retrain's AUC.

    Parameters
    ----------
    est : fitted estimator
        A skmuter linear model, or any classifier with ``predict_proba`` and
        ``classes_`` (e.g. :class:`skmuter.nn.AdversarialNet`), or a fitted
        pipeline of one (the loss of its final estimator on the transformed
        rows).
    X_forgotten : array-like of shape (n_forgotten, n_features)
        The forgotten training rows (keep a copy before ``forget``: the model
        erases them from its stored data).
    y_forgotten : array-like of shape (n_forgotten,)
        Their targets.
    X_heldout : array-like of shape (n_heldout, n_features)
        Rows never used in training, from the same distribution.
    y_heldout : array-like of shape (n_heldout,)
        Their targets.
    loss : {'robust', 'clean'}, default='robust'
        Per-row loss of the attack. For skmuter linear models it is the
        model's training loss of the row (logistic or squared, summed over the
        one-vs-rest problems of a multiclass model; the penalty is left out):
        ``'robust'`` at the exact worst case of the training threat model (the
        quantity minimised in training), ``'clean'`` at the unperturbed row.
        For other estimators only ``'clean'`` is available and the loss is the
        log-loss ``-log predict_proba(X)[y]``.

    Returns
    -------
    audit : dict
        ``auc`` (float in [0, 1]; 0.5: the forgotten rows look like rows never
        seen, above 0.5: they still look like members, below 0.5: they have a
        higher loss than unseen rows, which is a signal too), ``n_forgotten``,
        ``n_heldout``, ``mean_loss_forgotten``, ``mean_loss_heldout`` and
        ``loss`` (the kind used).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from skmuter import AdversarialLogisticRegression
    >>> from skmuter._audit import membership_audit
    >>> X, y = load_digits(n_class=2, return_X_y=True)
    >>> X = X / 16
    >>> est = AdversarialLogisticRegression(alpha=0.0).fit(X[:60], y[:60])
    >>> audit = membership_audit(est, X[:60], y[:60], X[60:], y[60:])
    >>> sorted(audit)
    ['auc', 'loss', 'mean_loss_forgotten', 'mean_loss_heldout', 'n_forgotten', 'n_heldout']
    >>> audit["auc"] > 0.5
    True
    """
    if loss not in ("robust", "clean"):
        raise ValueError(f"loss must be 'robust' or 'clean', got {loss!r}.")
    check_is_fitted(est)
    losses = []
    for name, X, y in (("forgotten", X_forgotten, y_forgotten),
                       ("heldout", X_heldout, y_heldout)):
        if np.asarray(X, dtype=object).shape[:1] == (0,):
            raise ValueError(f"X_{name} is empty; the audit needs at least one row of each set.")
        values = np.asarray(_row_losses(est, X, y, loss), dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"the loss of some {name} rows is not finite.")
        losses.append(values)
    lf, lh = losses
    return {
        "auc": _loss_auc(lf, lh),
        "n_forgotten": int(lf.size),
        "n_heldout": int(lh.size),
        "mean_loss_forgotten": float(lf.mean()),
        "mean_loss_heldout": float(lh.mean()),
        "loss": loss,
    }
