"""Membership-inference audits of a forget.

Two audits live here.

:func:`membership_audit`, the quick one: the classic loss threshold test (Yeom et al., CSF 2018): a row
whose loss under the model is low is guessed to be a training member. Its
strength over all thresholds is the area under the ROC curve of the score
``-loss`` separating the forgotten rows (positives) from held-out rows never
seen in training (negatives). After a perfect forget the forgotten rows are
indistinguishable from held-out rows and the AUC is 0.5 up to sampling noise.
A model that barely memorises sits near 0.5 even before any forget, so this
audit cannot tell a good forget from doing nothing.

The population audit (:func:`audit_populations`, :func:`unlearning_epsilon`,
:func:`unlearning_audit`), in the spirit of the evaluation of the NeurIPS 2023
machine-unlearning challenge: for every forgotten example, a population of
unlearned models is compared with a population of retrained models through a
per-example statistic (the model's loss on the example); the best threshold
attack's false-positive and false-negative rates turn the distinguishability
of the two populations into an epsilon, as in differential privacy. Doing
nothing keeps the forgotten examples' loss low in every member and comes out
high; a faithful forget comes out within the spread of two independent
retrain populations.
"""

from __future__ import annotations

import copy
import numbers

import numpy as np
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .linear._base import BaseAdversarialLinear
from .linear._objective import LinearObjective

__all__ = [
    "audit_populations",
    "membership_audit",
    "unlearning_audit",
    "unlearning_epsilon",
]


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


# ---- the population audit ---------------------------------------------------------------
#: keys of :func:`audit_populations` that are not forget methods
_RESERVED = ("original", "retrained", "retrained_ref")


def _check_statistics(name, values):
    """A finite (n_models, n_examples) float array; a 1-D array is one example."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (n_models, n_examples), got {a.shape}.")
    if a.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 models (rows), got {a.shape[0]}.")
    if a.shape[1] < 1:
        raise ValueError(f"{name} has no examples (columns).")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has values that are not finite.")
    return a


def _epsilons(a, b, delta):
    """Per-column epsilon of the threshold attacks separating ``a`` from ``b``."""
    m_a, m_b = a.shape[0], b.shape[0]
    a, b = np.sort(a, axis=0), np.sort(b, axis=0)
    out = np.empty(a.shape[1])
    for i in range(a.shape[1]):
        t = np.unique(np.concatenate([a[:, i], b[:, i]]))  # every observed value
        fa = np.searchsorted(a[:, i], t, side="right") / m_a  # empirical CDFs at t
        fb = np.searchsorted(b[:, i], t, side="right") / m_b
        best = 0.0
        # test "a if s <= t": FNR = 1 - fa, FPR = fb; test "a if s > t": FNR = fa,
        # FPR = 1 - fb. A rate never observed is credited with one error of its population.
        for fnr, fpr in ((1.0 - fa, fb), (fa, 1.0 - fb)):
            for num, den in ((1.0 - delta - fpr, np.maximum(fnr, 1.0 / m_a)),
                             (1.0 - delta - fnr, np.maximum(fpr, 1.0 / m_b))):
                ok = num > 0
                if ok.any():
                    best = max(best, float(np.max(np.log(num[ok] / den[ok]))))
        out[i] = best
    return out


def unlearning_epsilon(unlearned, retrained, *, delta=0.01, bin_width=0.5):
    """Per-example epsilon of the threshold attacks telling two model populations apart.

    ``unlearned[j, i]`` and ``retrained[j, i]`` are a statistic of model
    ``j`` of each population on example ``i`` (e.g. its loss, from
    :func:`audit_populations`). For every example, every threshold ``t``
    among the observed values and both directions of the test (``s <= t``
    and ``s > t`` guess "unlearned"), the false-negative rate (unlearned
    models guessed retrained) and false-positive rate (retrained models
    guessed unlearned) are the empirical fractions, and

    .. code-block:: text

        eps_i = max(0, max over tests of log((1 - delta - FPR) / FNR),
                                         log((1 - delta - FNR) / FPR))

    (terms whose numerator is not positive are left out): an
    ``(eps, delta)``-differentially-private mechanism bounds both ratios by
    ``exp(eps)`` for every test, so ``eps_i`` is the smallest epsilon that the
    best threshold test on example ``i`` is consistent with. A rate that is
    never observed is credited with one error in its population
    (``1 / n_models``), so the largest measurable epsilon is
    ``log((1 - delta) * max(n_unlearned, n_retrained))``. The statistic
    enters only through its order within each example, so any increasing
    transform of the loss (the logit-scaled confidence
    ``log(p / (1 - p))`` of ``p = exp(-loss)``) gives the same epsilon; and
    the measure is symmetric in the two populations.

    It is an estimate from finite populations, biased upwards by the
    maximum over tests: two independent populations of the *same* models
    have a positive epsilon (the noise floor). Compare it with two retrain
    populations (:func:`unlearning_audit` does).

    Parameters
    ----------
    unlearned : array-like
        Of shape ``(n_unlearned, n_examples)``: the statistic of each
        unlearned model (rows) on each forgotten example (columns). A 1-D
        array is one example.
    retrained : array-like
        Of shape ``(n_retrained, n_examples)``: the same statistic of each
        retrained model on the same examples.
    delta : float in [0, 1), default=0.01
        The delta of the ``(eps, delta)`` bound.
    bin_width : float, default=0.5
        Width of the epsilon bins of ``score``.

    Returns
    -------
    audit : dict
        ``epsilon`` (ndarray of shape (n_examples,)), its ``mean`` and
        ``median``, ``score`` (the mean over examples of
        ``2 ** -floor(eps_i / bin_width)``: 1 when every example is below
        one bin, towards 0 as the populations separate), ``max_epsilon``
        (the measurable cap above), ``n_models`` (the two population sizes)
        and ``delta``.

    Examples
    --------
    >>> import numpy as np
    >>> from skmuter.metrics import unlearning_epsilon
    >>> rng = np.random.default_rng(0)
    >>> same = rng.normal(size=(32, 5))
    >>> unlearning_epsilon(same, same)["mean"]  # identical populations
    0.0
    >>> apart = unlearning_epsilon(same - 10.0, same)  # never confused
    >>> bool(np.isclose(apart["mean"], np.log(0.99 * 32))), apart["score"]
    (True, 0.015625)
    """
    a = _check_statistics("unlearned", unlearned)
    b = _check_statistics("retrained", retrained)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"unlearned and retrained must have the same number of examples "
                         f"(columns), got {a.shape[1]} and {b.shape[1]}.")
    if not (isinstance(delta, numbers.Real) and 0.0 <= delta < 1.0):
        raise ValueError(f"delta must be a number in [0, 1), got {delta!r}.")
    if not (isinstance(bin_width, numbers.Real) and bin_width > 0):
        raise ValueError(f"bin_width must be a positive number, got {bin_width!r}.")
    eps = _epsilons(a, b, float(delta))
    return {
        "epsilon": eps,
        "mean": float(eps.mean()),
        "median": float(np.median(eps)),
        "score": float(np.mean(2.0 ** -np.floor(eps / bin_width))),
        "max_epsilon": float(np.log((1.0 - delta) * max(a.shape[0], b.shape[0]))),
        "n_models": (a.shape[0], b.shape[0]),
        "delta": float(delta),
    }


def _final_estimator(est):
    return est[-1] if isinstance(est, Pipeline) else est


def _take(data, rows):
    if hasattr(data, "iloc"):
        return data.iloc[rows]
    return np.asarray(data)[rows] if not hasattr(data, "shape") else data[rows]


def audit_populations(estimator, X, y, forget, *, n_models=16, drop_fraction=0.05,
                      methods=None, loss="auto", random_state=0, verbose=0):
    """Populations of original, unlearned and retrained models, scored on the forgotten rows.

    Where the randomness comes from: the retrain of a strongly convex model
    solved exactly (a skmuter linear model, the last layer on a frozen
    body) is unique, so one model per method cannot be compared in
    distribution. Every member ``j`` of a population is therefore fitted
    without an independent random extra subset ``S_j`` of the kept rows
    (``drop_fraction`` of the rows not in ``forget``, never a forgotten
    row) and with its own ``random_state`` (where the estimator has one:
    a network's shuffling and attack starts). For each member:

    * ``original``: a clone fitted on all rows but ``S_j`` (the forgotten
      rows included): doing nothing;
    * one population per entry of ``methods``: a copy of that fitted
      original, with the entry's parameters set, after
      ``forget(forgotten rows)``;
    * ``retrained`` and ``retrained_ref``: clones fitted on the rows not in
      ``forget``, without independent subsets ``S'_j`` and ``S''_j`` (and
      their own seeds): two independent retrain populations.

    An exact forget is then distributed exactly as ``retrained`` (the pair
    differs only in how the forgotten rows left), and ``retrained_ref``
    shows how far two such populations lie apart by chance. The
    statistic is the loss of each model on each forgotten row (as in
    :func:`membership_audit`). The smaller ``drop_fraction``, the less the
    members vary and the stronger the audit; it only needs to be large
    enough that the members differ by more than the solver's precision.

    Parameters
    ----------
    estimator : estimator
        The model to audit, fitted or not (it is cloned, never changed): a
        skmuter linear model, an :class:`~skmuter.nn.AdversarialNet` (e.g.
        the last layer on a frozen body, ``train_params='forget'``) or a
        ForgetPipeline; anything with ``fit``, ``forget`` and a loss
        :func:`membership_audit` can compute.
    X : array-like of shape (n_samples, ...)
        The training rows (an array or a data frame).
    y : array-like of shape (n_samples,)
    forget : array-like of int
        Positions in ``X`` of the rows to forget (distinct, not all rows).
    n_models : int, default=16
        Members of each population (at least 2); fits cost ``3 * n_models``.
    drop_fraction : float in [0, 1), default=0.05
        Share of the kept rows that each member leaves out at random.
    methods : dict, default=None
        Forget methods to audit: name to parameters set (``set_params``) on
        the copy of each original before ``forget``, e.g.
        ``{"muter": {}, "muter-unchecked": {"forget_tol": None}}``. Default
        ``{"unlearned": {}}``: the estimator's own forgetter.
    loss : {'auto', 'robust', 'clean'}, default='auto'
        The statistic (see :func:`membership_audit`); ``'auto'``: the robust
        loss for skmuter linear models, the clean log-loss otherwise.
    random_state : int, default=0
        Seeds the subsets and the members' seeds.
    verbose : int, default=0
        Above 0, a line per member.

    Returns
    -------
    populations : dict of ndarray
        ``'original'``, the ``methods``, ``'retrained'``, ``'retrained_ref'``:
        arrays of shape ``(n_models, n_forgotten)``, the loss of each member
        (rows) on each forgotten row (columns, in the order of ``forget``). Pass it to :func:`unlearning_audit`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from skmuter import AdversarialLogisticRegression
    >>> from skmuter.metrics import audit_populations, unlearning_audit
    >>> X, y = load_digits(n_class=2, return_X_y=True)
    >>> est = AdversarialLogisticRegression(alpha=1e-3)
    >>> pops = audit_populations(est, X[:120] / 16, y[:120], np.arange(10), n_models=8)
    >>> sorted(pops), pops["unlearned"].shape
    (['original', 'retrained', 'retrained_ref', 'unlearned'], (8, 10))
    >>> audit = unlearning_audit(pops)  # doing nothing is easier to tell from the retrains
    >>> audit["original"]["mean"] > audit["retrained_ref"]["mean"]
    True
    """
    if not (isinstance(n_models, numbers.Integral) and n_models >= 2):
        raise ValueError(f"n_models must be an integer of at least 2, got {n_models!r}.")
    if not (isinstance(drop_fraction, numbers.Real) and 0.0 <= drop_fraction < 1.0):
        raise ValueError(f"drop_fraction must be a number in [0, 1), got {drop_fraction!r}.")
    if loss not in ("auto", "robust", "clean"):
        raise ValueError(f"loss must be 'auto', 'robust' or 'clean', got {loss!r}.")
    methods = {"unlearned": {}} if methods is None else dict(methods)
    if not methods:
        raise ValueError("methods is empty; give at least one forget method.")
    for name, params in methods.items():
        if name in _RESERVED:
            raise ValueError(f"method name {name!r} is reserved; use another.")
        if not isinstance(params, dict):
            raise TypeError(f"methods[{name!r}] must be a dict of parameters, got "
                            f"{type(params).__name__}.")
    if not hasattr(estimator, "forget"):
        raise TypeError(f"{type(estimator).__name__} has no forget method.")
    n = len(y)
    if getattr(X, "shape", (len(X),))[0] != n:
        raise ValueError(f"X and y have different numbers of rows: {len(X)} and {n}.")
    forget = np.asarray(forget)
    if forget.ndim != 1 or forget.size == 0 or not np.issubdtype(forget.dtype, np.integer):
        raise ValueError("forget must be a non-empty 1-D array of row positions.")
    if forget.min() < 0 or forget.max() >= n:
        raise ValueError(f"forget has positions outside [0, {n}).")
    if np.unique(forget).size != forget.size:
        raise ValueError("forget has repeated positions.")
    kept = np.setdiff1d(np.arange(n), forget)
    if kept.size == 0:
        raise ValueError("forget holds every row; nothing would be left to retrain on.")
    n_drop = round(drop_fraction * kept.size)
    if kept.size - n_drop < 1:
        raise ValueError("drop_fraction leaves no kept row.")
    if loss == "auto":
        final = _final_estimator(estimator)
        loss = "robust" if isinstance(final, BaseAdversarialLinear) else "clean"
    template = clone(estimator)
    seeded = "random_state" in template.get_params()
    rng = np.random.default_rng(random_state)
    X_f, y_f = _take(X, forget), _take(y, forget)

    def fit_member(rows):
        model = clone(template)
        if seeded:
            model.set_params(random_state=int(rng.integers(2**31 - 1)))
        return model.fit(_take(X, rows), _take(y, rows))

    def without_subset(base):
        drop = rng.choice(kept, size=n_drop, replace=False)
        return np.setdiff1d(base, drop)

    def stats(model):
        return np.asarray(_row_losses(model, X_f, y_f, loss), dtype=np.float64)

    out = {key: [] for key in ("original", *methods, "retrained", "retrained_ref")}
    everything = np.arange(n)
    for j in range(n_models):
        rows = without_subset(everything)
        original = fit_member(rows)
        out["original"].append(stats(original))
        positions = np.searchsorted(rows, forget)
        for name, params in methods.items():
            model = copy.deepcopy(original)
            if params:
                model.set_params(**params)
            out[name].append(stats(model.forget(positions)))
        for key in ("retrained", "retrained_ref"):
            out[key].append(stats(fit_member(without_subset(kept))))
        if verbose > 0:
            print(f"audit_populations: member {j + 1}/{n_models} done")
    return {key: np.vstack(values) for key, values in out.items()}


def unlearning_audit(populations, *, reference="retrained", null="retrained_ref", delta=0.01,
                     bin_width=0.5, n_splits=20, random_state=0):
    """Epsilon of every population against the retrains, with the retrain-to-retrain spread.

    Every population of ``populations`` other than ``reference`` is compared
    with it by :func:`unlearning_epsilon`. The ``null`` population (a second,
    independent retrain population) gives the noise floor: its epsilon
    against ``reference`` is what chance alone produces. Its *spread* is the
    range of the mean epsilon over ``n_splits`` random splits of the pooled
    retrain members into two groups of the original sizes, and over the
    observed split (every split is
    again two independent retrain populations, so the range shows how much
    the noise floor itself varies). A forget that is as good as retraining
    lands inside that range; doing nothing (``'original'``) lands above it
    when the audit can see the forgotten rows at all.

    Parameters
    ----------
    populations : dict of array-like
        Arrays of shape ``(n_models, n_examples)``, e.g. from
        :func:`audit_populations`.
    reference : str, default='retrained'
        The retrain population that every other one is compared with.
    null : str or None, default='retrained_ref'
        The second retrain population (``None``: no spread).
    delta, bin_width : float
        As in :func:`unlearning_epsilon`.
    n_splits : int, default=20
        Random splits of the pooled retrains for the spread.
    random_state : int, default=0
        Seeds the splits.

    Returns
    -------
    audit : dict
        For each population other than ``reference``, the dict of
        :func:`unlearning_epsilon` against ``reference``, with (when ``null``
        is given) ``within_spread``: whether its mean epsilon is at most the
        top of the spread. The entry of ``null`` also holds ``spread``
        (the lowest and highest mean epsilon of the splits, the observed one
        included) and ``split_means`` (those of the random splits).

    Examples
    --------
    >>> import numpy as np
    >>> from skmuter.metrics import unlearning_audit
    >>> rng = np.random.default_rng(0)
    >>> pops = {"retrained": rng.normal(size=(16, 50)),
    ...         "retrained_ref": rng.normal(size=(16, 50)),
    ...         "forget": rng.normal(size=(16, 50)),
    ...         "original": rng.normal(size=(16, 50)) - 3.0}
    >>> audit = unlearning_audit(pops)
    >>> low, high = audit["retrained_ref"]["spread"]
    >>> audit["original"]["mean"] > high, audit["original"]["within_spread"]
    (True, False)
    """
    if not isinstance(populations, dict):
        raise TypeError(f"populations must be a dict of arrays, got {type(populations).__name__}.")
    for key in (reference, null):
        if key is not None and key not in populations:
            raise ValueError(f"populations has no {key!r} entry; it has {sorted(populations)}.")
    if null == reference:
        raise ValueError("null and reference must be different populations.")
    if not (isinstance(n_splits, numbers.Integral) and n_splits >= 1):
        raise ValueError(f"n_splits must be a positive integer, got {n_splits!r}.")
    ref = _check_statistics(reference, populations[reference])
    out = {name: unlearning_epsilon(values, ref, delta=delta, bin_width=bin_width)
           for name, values in populations.items() if name != reference}
    if null is None:
        return out
    other = _check_statistics(null, populations[null])
    pooled = np.vstack([ref, other])
    rng = np.random.default_rng(random_state)
    means = np.empty(n_splits)
    for s in range(n_splits):
        order = rng.permutation(pooled.shape[0])
        means[s] = unlearning_epsilon(pooled[order[ref.shape[0]:]], pooled[order[:ref.shape[0]]],
                                      delta=delta, bin_width=bin_width)["mean"]
    # the observed split is one of them too
    low = float(min(means.min(), out[null]["mean"]))
    high = float(max(means.max(), out[null]["mean"]))
    out[null]["spread"] = (low, high)
    out[null]["split_means"] = means
    for entry in out.values():
        entry["within_spread"] = bool(entry["mean"] <= high)
    return out
