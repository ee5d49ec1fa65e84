"""Verification of unlearning: how close a forget is to an exact retrain.

The honest yardsticks (the MUter paper's, made exact):

* :func:`retrain` refits the model exactly on the rows not forgotten;
* :func:`parameter_distance` is ``||theta_a - theta_b||_2`` over all weights
  and intercepts;
* :func:`residual_fraction` is ``||theta_u - theta_r|| / ||theta_0 - theta_r||``:
  0 is a perfect forget, 1 is no better than doing nothing, above 1 harmful;
* :func:`gradient_residual` is the norm of the minimal subgradient of the
  remaining robust objective at the current parameters (0 at the exact
  retrain, the paper's verification criterion);
* :func:`objective_gap_fraction` is ``(R(u) - R(r)) / (R(0) - R(r))`` with
  ``R`` the robust objective of the kept rows: the same scale as the
  residual fraction, in objective values (what a kinked objective, a network
  under PGD, can be judged by);
* :func:`robust_accuracy` is accuracy under the exact worst case of the
  training threat model, or under a given attack;
* :func:`forget_report` gathers all of them for one unlearned model.

The model before forgetting is needed for the do-nothing distance: keep a copy
(``copy.deepcopy(est)``) before calling ``forget``. Estimators do not keep it
themselves, since it is a function of the rows being forgotten.

Every function also takes a fitted :class:`~skmuter.pipeline.ForgetPipeline`:
its retrain is the whole pipeline refitted on the kept rows, its parameters
and gradient residual are those of its final estimator (on the kept rows as
the current steps transform them), and its robust accuracy perturbs the
features its final estimator sees (see
:meth:`~skmuter.pipeline.ForgetPipeline.robust_score`).
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ._audit import (
    audit_populations,
    membership_audit,
    unlearning_audit,
    unlearning_epsilon,
)

__all__ = [
    "audit_populations",
    "forget_report",
    "gradient_residual",
    "membership_audit",
    "objective_gap_fraction",
    "parameter_distance",
    "residual_fraction",
    "retrain",
    "robust_accuracy",
    "robust_objective",
    "unlearning_audit",
    "unlearning_epsilon",
]


def _params(est):
    check_is_fitted(est)
    if isinstance(est, Pipeline):  # a pipeline's parameters are its final estimator's
        est = est[-1]
    if hasattr(est, "forgetting_params"):
        return np.asarray(est.forgetting_params(), dtype=np.float64)
    W = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
    b = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
    return np.concatenate([W.ravel(), b.ravel()])


def retrain(est, X=None, y=None, sample_weight=None):
    """Return a new estimator fitted exactly on the rows ``est`` has not forgotten.

    Parameters
    ----------
    est : fitted skmuter estimator or ForgetPipeline
    X, y, sample_weight : array-like, optional
        The kept rows, for a linear model that keeps none (``keep_data=False``).

    Returns
    -------
    retrained : estimator
        The estimator's own ``retrain()`` when it has one (the skmuter
        models: an exact solve of the same objective, certified removal's
        linear term included; a :class:`~skmuter.pipeline.ForgetPipeline`:
        the whole pipeline refitted on the kept rows); otherwise a clone with the same parameters
        (``solver='exact'`` where offered) fitted on
        ``est.remaining_training_data()``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmuter import AdversarialLogisticRegression
    >>> from skmuter.metrics import retrain, residual_fraction
    >>> import copy
    >>> X, y = load_digits(n_class=2, return_X_y=True)
    >>> est = AdversarialLogisticRegression(alpha=1e-2).fit(X / 16, y)
    >>> before = copy.deepcopy(est)
    >>> ref = retrain(est.forget([0, 1, 2]))
    >>> residual_fraction(est, before, ref) < 0.05
    True
    """
    check_is_fitted(est)
    if X is not None or y is not None or sample_weight is not None:
        return est.retrain(X, y, sample_weight=sample_weight)
    if hasattr(est, "retrain"):
        return est.retrain()
    X, y = est.remaining_training_data()
    new = clone(est)
    if "solver" in new.get_params():
        new.set_params(solver="exact")
    return new.fit(X, y)


def parameter_distance(a, b):
    """Euclidean distance between the parameters of two fitted estimators.

    Parameters
    ----------
    a, b : fitted estimators of the same shape

    Returns
    -------
    distance : float

    Examples
    --------
    >>> import numpy as np
    >>> from skmuter import AdversarialRidge
    >>> X = np.arange(20.0).reshape(10, 2); y = X.sum(axis=1)
    >>> est = AdversarialRidge().fit(X, y)
    >>> parameter_distance(est, est)
    0.0
    """
    pa, pb = _params(a), _params(b)
    if pa.shape != pb.shape:
        raise ValueError(f"the estimators have different parameter shapes: {pa.shape} vs {pb.shape}.")
    return float(np.linalg.norm(pa - pb))


def residual_fraction(unlearned, original, retrained):
    """``||theta_u - theta_r|| / ||theta_0 - theta_r||``: 0 perfect, 1 do-nothing.

    Parameters
    ----------
    unlearned : fitted estimator after ``forget``
    original : fitted estimator before ``forget`` (a copy)
    retrained : estimator retrained exactly on the remaining rows

    Returns
    -------
    fraction : float
        ``nan`` when the original already equals the retrain.

    Examples
    --------
    >>> import numpy as np
    >>> from skmuter import AdversarialRidge
    >>> from skmuter.metrics import residual_fraction
    >>> X = np.arange(20.0).reshape(10, 2); y = X.sum(axis=1)
    >>> est = AdversarialRidge().fit(X, y)
    >>> other = AdversarialRidge(alpha=1.0).fit(X, y)
    >>> residual_fraction(est, other, est)
    0.0
    """
    nothing = parameter_distance(original, retrained)
    if nothing == 0:
        return float("nan")
    return parameter_distance(unlearned, retrained) / nothing


def _final(est):
    check_is_fitted(est)
    return est[-1] if isinstance(est, Pipeline) else est


def _problem_params(est):
    """The parameter vector of each training problem of ``est``, in the order
    of ``training_objective()``."""
    est = _final(est)
    if hasattr(est, "forgetting_params"):
        return [np.asarray(est.forgetting_params(), dtype=np.float64)]
    W = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
    b = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
    if getattr(est, "fit_intercept", True):
        return [np.concatenate([W[k], [b[k]]]) for k in range(W.shape[0])]
    return [W[k].copy() for k in range(W.shape[0])]


def robust_objective(est, params_from=None):
    """The robust training objective of the rows ``est`` has not forgotten.

    The mean over the kept rows of the worst-case loss plus the penalty, as
    ``est.training_objective()`` defines it (summed over one-vs-rest
    problems), at the parameters of ``params_from`` (default: ``est``
    itself). A network's worst case is its deterministic attack.

    Parameters
    ----------
    est : fitted skmuter estimator or ForgetPipeline
        Defines the objective and the kept rows (a pipeline: its final
        estimator on its transformed rows).
    params_from : fitted estimator of the same shape, default=None

    Returns
    -------
    value : float

    Examples
    --------
    >>> import numpy as np
    >>> from skmuter import AdversarialRidge
    >>> X = np.arange(20.0).reshape(10, 2); y = X.sum(axis=1)
    >>> est = AdversarialRidge(alpha=1.0).fit(X, y)
    >>> robust_objective(est) <= robust_objective(est, AdversarialRidge(alpha=1.0).fit(X, -y))
    True
    """
    final = _final(est)
    objectives = final.training_objective()
    thetas = _problem_params(final if params_from is None else params_from)
    if len(thetas) != len(objectives) or any(
            t.shape != (o.n_params,) for t, o in zip(thetas, objectives)):
        raise ValueError("the estimators have different parameter shapes.")
    if hasattr(final, "remaining_rows"):
        rows = np.asarray(final.remaining_rows())
    else:
        kept = np.ones(final.n_train_, dtype=bool)
        kept[final.forgotten_] = False
        rows = np.flatnonzero(kept)
    return float(sum(o.value(t, rows) for o, t in zip(objectives, thetas)))


def objective_gap_fraction(unlearned, original, retrained):
    """``(R(u) - R(r)) / (R(0) - R(r))``: 0 as good as the retrain, 1 do-nothing.

    ``R`` is the robust objective of the rows ``unlearned`` keeps
    (:func:`robust_objective`, regulariser included), at the parameters of
    the unlearned model ``u``, of the retrain ``r`` and of the model before
    forgetting ``0``. Below 0 the forget reached a lower objective than the
    retrain; above 1 it raised the kept rows' objective above doing nothing.
    It needs no parameter distance, so it also judges models whose objective
    has no unique minimiser within the solver's precision (a network under
    PGD or FGSM, whose worst case jumps with the parameters): read it
    together with that precision, since ``R(0) - R(r)`` of a small removal
    can be below it.

    Parameters
    ----------
    unlearned : fitted estimator after ``forget``
    original : fitted estimator before ``forget`` (a copy)
    retrained : estimator retrained on the remaining rows

    Returns
    -------
    fraction : float
        ``nan`` when the original's objective equals the retrain's.

    Examples
    --------
    >>> import copy
    >>> from sklearn.datasets import load_digits
    >>> from skmuter import AdversarialLogisticRegression
    >>> from skmuter.metrics import objective_gap_fraction, retrain
    >>> X, y = load_digits(n_class=2, return_X_y=True)
    >>> est = AdversarialLogisticRegression(alpha=1e-2).fit(X / 16, y)
    >>> before = copy.deepcopy(est)
    >>> ref = retrain(est.forget(list(range(20))))
    >>> abs(objective_gap_fraction(est, before, ref)) < 1e-6  # checked: the retrain's value
    True
    """
    r_u = robust_objective(unlearned)
    r_0 = robust_objective(unlearned, original)
    r_r = robust_objective(unlearned, retrained)
    if r_0 == r_r:
        return float("nan")
    return (r_u - r_r) / (r_0 - r_r)


def gradient_residual(est, X=None, y=None, sample_weight=None):
    """Norm of the minimal subgradient of the remaining robust objective at ``est``.

    The objective is the mean over the rows not forgotten of the worst-case
    loss, plus the penalty (largest value over one-vs-rest problems). It is 0
    at the exact retrain.

    Parameters
    ----------
    est : fitted skmuter estimator or ForgetPipeline
        For a pipeline, its final estimator on its transformed kept rows.
    X, y, sample_weight : array-like, optional
        The kept rows, for a linear model that keeps none (``keep_data=False``).

    Returns
    -------
    residual : float

    Examples
    --------
    >>> import numpy as np
    >>> from skmuter import AdversarialRidge
    >>> X = np.arange(20.0).reshape(10, 2); y = X.sum(axis=1)
    >>> est = AdversarialRidge().fit(X, y)
    >>> gradient_residual(est) < 1e-8
    True
    """
    check_is_fitted(est)
    if X is not None or y is not None or sample_weight is not None:
        return float(est.gradient_residual(X, y, sample_weight=sample_weight))
    return float(est.gradient_residual())


def robust_accuracy(est, X, y, attack=None):
    """Accuracy (R^2 for a regressor) under the exact worst case or under ``attack``.

    Parameters
    ----------
    est : fitted skmuter estimator or ForgetPipeline
        For a pipeline the attack perturbs the features its final estimator
        sees (the transformed ``X``), in that estimator's threat model.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    attack : attack object, default=None
        ``None``: the exact worst case of the training threat model.

    Returns
    -------
    score : float

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmuter import AdversarialLogisticRegression
    >>> X, y = load_digits(n_class=2, return_X_y=True)
    >>> est = AdversarialLogisticRegression().fit(X / 16, y)
    >>> 0.5 < robust_accuracy(est, X / 16, y) <= est.score(X / 16, y)
    True
    """
    return float(est.robust_score(X, y, attack=attack))


def forget_report(unlearned, original=None, X_test=None, y_test=None, retrained=None):
    """All verification figures of one forget, as a dict.

    Parameters
    ----------
    unlearned : fitted estimator or ForgetPipeline after ``forget``
    original : copy of the estimator before ``forget``, default=None
        Needed only for ``do_nothing_distance`` and ``residual_fraction``,
        which are left out of the report without it.
    X_test, y_test : array-like, optional
        Held-out data for clean and robust accuracy.
    retrained : estimator, optional
        Exact retrain; computed (and timed) when not given.

    Returns
    -------
    report : dict
        ``distance_to_retrain``, ``gradient_residual`` (unlearned model),
        ``retrain_time`` (when computed), ``do_nothing_distance`` and
        ``residual_fraction`` (with ``original``), and
        ``clean_accuracy``/``robust_accuracy`` (plus
        ``retrain_clean_accuracy``/``retrain_robust_accuracy``) with test data.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmuter import AdversarialLogisticRegression
    >>> import copy
    >>> X, y = load_digits(n_class=2, return_X_y=True)
    >>> est = AdversarialLogisticRegression(alpha=1e-2).fit(X / 16, y)
    >>> before = copy.deepcopy(est)
    >>> report = forget_report(est.forget([4]), before, X / 16, y)
    >>> sorted(report)[:3]
    ['clean_accuracy', 'distance_to_retrain', 'do_nothing_distance']
    >>> sorted(forget_report(est))
    ['distance_to_retrain', 'gradient_residual', 'retrain_time']
    """
    out = {}
    if retrained is None:
        t0 = time.perf_counter()
        retrained = retrain(unlearned)
        out["retrain_time"] = time.perf_counter() - t0
    out["distance_to_retrain"] = parameter_distance(unlearned, retrained)
    if original is not None:
        out["do_nothing_distance"] = parameter_distance(original, retrained)
        out["residual_fraction"] = residual_fraction(unlearned, original, retrained)
    out["gradient_residual"] = gradient_residual(unlearned)
    if X_test is not None:
        out["clean_accuracy"] = float(unlearned.score(X_test, y_test))
        out["robust_accuracy"] = robust_accuracy(unlearned, X_test, y_test)
        out["retrain_clean_accuracy"] = float(retrained.score(X_test, y_test))
        out["retrain_robust_accuracy"] = robust_accuracy(retrained, X_test, y_test)
    return out
