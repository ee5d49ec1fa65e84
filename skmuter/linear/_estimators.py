"""The public adversarially trained linear estimators."""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from sklearn.base import ClassifierMixin, RegressorMixin, clone
from sklearn.metrics import r2_score

from ..attacks import resolve_attack
from ..certified import CertifiedRemoval
from ._base import BaseAdversarialLinear
from ._chunked import is_dask_collection

_PARAMS_DOC = """
    Parameters
    ----------
    attack : {'pgd', 'fgsm'} or attack object, default='pgd'
        Threat model and recipe of adversarial training, e.g.
        ``skmuter.attacks.PGD(epsilon=0.25, clip=(0, 1))``. The strings mean
        ``PGD()`` / ``FGSM()`` with ``epsilon=0.1`` and no input box.
    alpha : float, default=1e-4
        L2 penalty: the objective is the mean worst-case loss plus
        ``alpha/2 ||coef_||^2`` (the intercept is not penalised).
    fit_intercept : bool, default=True
        Fit an intercept (never perturbed, never penalised).
    solver : {'exact', 'sgd'}, default='exact'
        ``'exact'``: the worst case in closed form and the convex outer problem
        solved to ``tol`` (L-BFGS-B, then Newton steps on the support).
        ``'sgd'``: the MUter paper's recipe, minibatch SGD on examples made by
        ``attack`` against the current model at every step.
    max_iter : int, default=None
        Iteration cap: L-BFGS-B iterations for ``'exact'`` (default 10000),
        epochs for ``'sgd'`` (default 100).
    tol : float, default=1e-10
        Target optimality residual (norm of the minimal subgradient of the mean
        objective) of the exact solver.
    learning_rate : float, default=0.01
        Step size of ``'sgd'``.
    batch_size : int, default=128
        Minibatch size of ``'sgd'``.
    forgetter : str or forgetter object, default='muter'
        Unlearning method used by :meth:`forget` (see :mod:`skmuter.forgetters`).
    forget_tol : float or None, default=1e-9
        Target optimality residual of every forget request (the norm of the
        minimal subgradient of the mean robust objective over the kept rows,
        :func:`skmuter.metrics.gradient_residual`). After the forgetter's
        step, one pass over the kept rows measures it; above ``forget_tol``,
        warm-started Newton steps on the robust objective (which may move
        weights into or out of the support) continue until it is met, else a
        ``ConvergenceWarning`` says what was reached. Each record of
        ``forget_log_`` holds the residual and a bound on the distance to the
        exact retrain. ``None`` skips the check (raw speed: the step alone,
        which keeps the sign pattern of an l_inf model); the log says so.
        The forgetter's state then follows the step along its own quadratic
        model, so that an unchecked request reads no row but the removed ones.
    keep_data : bool, default=True
        Keep the training rows (a copy of an in-memory ``X``; a reference to
        a Dask collection). ``False`` keeps no per-row data: the forgetting
        memory is built at ``fit``, the pickle holds only parameters and
        ``d x d`` aggregates (independent of the number of rows), and a
        forget takes the rows' content, ``forget(indices, X=X_rows,
        y=y_rows)``. Checks that read the kept rows are then skipped (the log
        says so) and :func:`skmuter.metrics.retrain` and
        :func:`~skmuter.metrics.gradient_residual` take the kept rows
        explicitly. Not available for the squared loss under an attack (its
        kinks need the rows), certified removal, or ``forgetter='retrain'``.
    random_state : int, RandomState instance or None, default=None
        Seed of ``'sgd'`` (shuffling and random starts) and of the noise of
        certified removal, where offered.
    verbose : int, default=0
        Show a progress bar for ``'sgd'``.
"""

_ATTRS_DOC = """
    Attributes
    ----------
    coef_ : ndarray
        Weights.
    intercept_ : float or ndarray
        Intercept(s).
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of str
        Feature names, when ``X`` had them.
    n_iter_ : ndarray of int
        Iterations of the solver per fitted problem.
    optimality_residual_ : float
        Norm of the minimal subgradient of the mean robust objective at the
        fitted parameters (largest over the problems): how converged the fit is.
    attack_ : attack object
        The resolved attack (threat model) used for training and evaluation.
    n_train_ : int
        Number of training rows given to ``fit``.
    forgotten_ : ndarray of int
        Sorted positions of the forgotten training rows.
    forget_log_ : list of dict
        One record per forget request: ``request``, ``n_removed``, ``forgetter``,
        ``precompute_time`` (memory built before the first request),
        ``solve_time``, ``update_time`` and ``total_time`` in seconds.
    forgetter_ : forgetter object
        The forgetter in use since the first request (None before).
"""


class _RobustScoreMixin:
    def robust_score(self, X, y, attack=None):
        """Score under attack.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        attack : {'pgd', 'fgsm'} or attack object, default=None
            ``None`` evaluates the exact worst case of the training threat model
            (closed form for linear models); an attack runs that attack (the
            strings mean ``PGD()`` / ``FGSM()``, as for ``attack`` in ``__init__``).

        Returns
        -------
        score : float
            Accuracy (classifiers) or R^2 (regressor) on the attacked inputs.

        Raises
        ------
        ValueError
            When ``X`` lies outside the input box (``clip``) of the attack, as
            ``fit`` does: the worst case over a box that does not contain the
            clean inputs is not defined.
        """
        if is_dask_collection(X):
            return self._chunked_robust_score(X, y, attack)
        X, y = self._check_eval_inputs(X, y)
        if attack is None:
            self.attack_.threat(X.shape[1]).check_inside(X)
            return self._exact_robust_score(X, y)
        attack = clone(resolve_attack(attack))
        if hasattr(X, "toarray"):  # sparse: an attack moves every coordinate
            X = X.toarray()
        X_adv = attack.perturb(X, y, lambda Xa, ya: self._input_grad(Xa, ya))
        return self.score(X_adv, y)


    def _chunked_robust_score(self, X, y, attack):
        """``robust_score`` of rows in a Dask collection: one task per chunk
        (accuracies summed; R^2 from the chunks' worst-case predictions)."""
        import dask

        X, y = _dask_rows(self, X, y)
        regression = not self._is_classifier

        def part(Xb, yb):
            if regression:
                Xb, yb = self._check_eval_inputs(Xb, yb)
                if attack is None:
                    self.attack_.threat(Xb.shape[1]).check_inside(Xb)
                    return self._worst_scores(Xb, np.asarray(yb, dtype=np.float64)), yb
                fitted = clone(resolve_attack(attack))
                Xa = fitted.perturb(Xb, yb, lambda Xc, yc: self._input_grad(Xc, yc))
                return self.predict(Xa), yb
            return self.robust_score(Xb, yb, attack) * len(yb), len(yb)

        parts = dask.compute(*[dask.delayed(part)(xb, yb) for xb, yb in
                               zip(X.to_delayed().ravel(), y.to_delayed().ravel())])
        if regression:
            z = np.concatenate([p[0] for p in parts])
            return float(r2_score(np.concatenate([p[1] for p in parts]), z))
        return float(sum(p[0] for p in parts) / sum(p[1] for p in parts))


def _dask_rows(est, X, y=None):
    """``X`` (and ``y``) of an evaluation as Dask arrays chunked by whole rows."""
    from ._chunked import align_rows, as_dask_array

    X, _ = as_dask_array(X, "X", 2)
    if X.shape[1] != est.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(est).__name__} is "
                         f"expecting {est.n_features_in_} features as input.")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    return X, (None if y is None else align_rows(y, X, "y"))


def _lazy_rows(est, method, X):
    """``method`` applied lazily to each chunk of rows of a Dask collection."""
    X, _ = _dask_rows(est, X)
    probe = np.asarray(method(np.zeros((1, X.shape[1]))))
    if probe.ndim == 1:
        return X.map_blocks(method, drop_axis=1, dtype=probe.dtype)
    return X.map_blocks(method, chunks=(X.chunks[0], (probe.shape[1],)), dtype=probe.dtype)


class _ClassifierMixin(_RobustScoreMixin, ClassifierMixin):
    def decision_function(self, X):
        """Linear scores ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        if is_dask_collection(X):
            return _lazy_rows(self, self._decision, X)
        return self._decision(X)

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        if is_dask_collection(X):
            return _lazy_rows(self, self.predict, X)
        z = self.decision_function(X)
        if z.ndim == 1:
            return self.classes_[(z > 0).astype(int)]
        return self.classes_[np.argmax(z, axis=1)]

    def _codes(self, y):
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        if np.any(self.classes_[idx] != y):
            raise ValueError("y contains labels not seen in fit.")
        return idx

    def _exact_robust_score(self, X, y):
        codes = self._codes(y)
        if len(self.classes_) == 2:
            sign = np.where(codes == 1, 1.0, -1.0)
            z = self._worst_scores(X, sign)
            return float(np.mean(sign * z > 0))
        return float(np.mean(self._worst_scores(X, codes) > 0))

    def _input_grad(self, X, y):
        # Gradient of the margin loss -(z_y - max_{k != y} z_k) with respect to x.
        codes = self._codes(y)
        W = np.atleast_2d(self.coef_)
        if W.shape[0] == 1:
            sign = np.where(codes == 1, 1.0, -1.0)
            return -sign[:, None] * W[0]
        z = self._scores(X)
        z[np.arange(len(codes)), codes] = -np.inf
        rival = np.argmax(z, axis=1)
        return W[rival] - W[codes]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags


class AdversarialLogisticRegression(_ClassifierMixin, BaseAdversarialLinear):
    __doc__ = (
        """Logistic regression trained against adversarial inputs, that can forget.

    Minimises ``mean_i max_{delta in B(x_i)} log(1 + exp(-y_i (w . (x_i + delta) + b)))
    + alpha/2 ||w||^2``. Binary problems are solved natively; ``K > 2`` classes are
    fitted one-vs-rest (one robust binary problem per class, each forgetting the
    same rows), and robust accuracy then asks that no perturbation in the ball
    changes the arg-max.
    """
        + _PARAMS_DOC
        + """    certified : CertifiedRemoval, default=None
        Certified removal (Guo et al., 2020): perturb the objective with random
        noise drawn from ``random_state`` at fit, and check the gradient
        residual of every forget against the budget (see
        :mod:`skmuter.certified`). Needs ``alpha > 0``.
"""
        + _ATTRS_DOC
        + """    certificate_ : dict or None
        With ``certified``: ``budget`` (largest allowed gradient residual of
        the summed objective, per problem), ``residual`` (the current one, per
        problem), ``spent`` (largest residual over budget; at most 1 while
        certified) and ``n_retrains`` (exact re-solves forced by the budget).

    See Also
    --------
    AdversarialRidgeClassifier : squared loss on +-1 targets.
    skmuter.forgetters.MUter : the default forgetter.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmuter import AdversarialLogisticRegression
    >>> from skmuter.attacks import PGD
    >>> X, y = load_digits(n_class=2, return_X_y=True)
    >>> est = AdversarialLogisticRegression(attack=PGD(epsilon=0.1, clip=(0, 1)))
    >>> est = est.fit(X / 16, y)
    >>> est.score(X / 16, y) >= est.robust_score(X / 16, y)
    True
    >>> est.forget([3, 9]).forgotten_
    array([3, 9])
    """
    )

    _loss = "logistic"

    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention)
        **BaseAdversarialLinear._parameter_constraints,
        "certified": [CertifiedRemoval, None],
    }

    def __init__(
        self,
        attack="pgd",
        alpha=1e-4,
        fit_intercept=True,
        solver="exact",
        max_iter=None,
        tol=1e-10,
        learning_rate=0.01,
        batch_size=128,
        forgetter="muter",
        forget_tol=1e-9,
        keep_data=True,
        random_state=None,
        verbose=0,
        certified=None,
    ):
        super().__init__(
            attack=attack, alpha=alpha, fit_intercept=fit_intercept, solver=solver,
            max_iter=max_iter, tol=tol, learning_rate=learning_rate, batch_size=batch_size,
            forgetter=forgetter, forget_tol=forget_tol, keep_data=keep_data,
            random_state=random_state, verbose=verbose,
        )
        self.certified = certified

    def predict_proba(self, X):
        """Class probabilities (one-vs-rest scores normalised for multiclass).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        if is_dask_collection(X):
            return _lazy_rows(self, self.predict_proba, X)
        z = self.decision_function(X)
        if z.ndim == 1:
            p = expit(z)
            return np.column_stack([1 - p, p])
        p = expit(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        return np.log(self.predict_proba(X))


class AdversarialRidgeClassifier(_ClassifierMixin, BaseAdversarialLinear):
    __doc__ = (
        """Ridge classifier (squared loss on +-1 targets) trained against adversarial inputs.

    The MUter paper's "RR" model. The worst case pushes each score away from its
    target; one-vs-rest for more than two classes.
    """
        + _PARAMS_DOC
        + _ATTRS_DOC
        + """
    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmuter import AdversarialRidgeClassifier
    >>> X, y = load_digits(n_class=2, return_X_y=True)
    >>> est = AdversarialRidgeClassifier(attack="fgsm").fit(X / 16, y)
    >>> est.score(X / 16, y) > 0.95
    True
    """
    )

    _loss = "squared"


class AdversarialRidge(_RobustScoreMixin, RegressorMixin, BaseAdversarialLinear):
    __doc__ = (
        """Ridge regression trained against adversarial inputs, that can forget.

    Minimises ``mean_i max_{delta in B(x_i)} (w . (x_i + delta) + b - y_i)^2 / 2
    + alpha/2 ||w||^2``.
    """
        + _PARAMS_DOC
        + _ATTRS_DOC
        + """
    Examples
    --------
    >>> import numpy as np
    >>> from skmuter import AdversarialRidge
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=200)
    >>> est = AdversarialRidge(attack="pgd").fit(X, y)
    >>> est.robust_score(X, y) < est.score(X, y)
    True
    """
    )

    _loss = "squared"
    _is_classifier = False

    def predict(self, X):
        """Predict targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            A lazy Dask array for a Dask collection.
        """
        if is_dask_collection(X):
            return _lazy_rows(self, self._decision, X)
        return self._decision(X)

    def _exact_robust_score(self, X, y):
        z = self._worst_scores(X, np.asarray(y, dtype=np.float64))
        return float(r2_score(y, z))

    def _input_grad(self, X, y):
        return (X @ self.coef_ + self.intercept_ - y)[:, None] * self.coef_


__all__ = ["AdversarialLogisticRegression", "AdversarialRidge", "AdversarialRidgeClassifier"]
