"""Shared base of the adversarially trained linear estimators.

Validation, the one-vs-rest layout of multiclass problems, the exact worst
case for evaluation, and the forgetting plumbing (request validation, the
transactional call into the forgetter, purging forgotten rows, the log).
"""

from __future__ import annotations

import copy
import numbers
import time

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .._forgetting import ForgetMixin, reset_forgetting
from ..attacks import Penalized, _Attack, resolve_attack
from ..certified import check_budget, summed_residual
from ..forgetters import Forgetter
from ._objective import LinearObjective
from ._solvers import solve_exact, solve_sgd


class BaseAdversarialLinear(ForgetMixin, BaseEstimator):
    """Base class; see the public estimators for the parameters."""

    _loss = "logistic"
    _is_classifier = True

    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention)
        "attack": [StrOptions({"pgd", "fgsm"}), _Attack],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "fit_intercept": ["boolean"],
        "solver": [StrOptions({"exact", "sgd"})],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "forgetter": [str, Forgetter],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
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
        random_state=None,
        verbose=0,
    ):
        self.attack = attack
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.forgetter = forgetter
        self.random_state = random_state
        self.verbose = verbose

    # ---- targets -----------------------------------------------------------
    def _encode_targets(self, y):
        """Return the list of per-problem targets (and set ``classes_``)."""
        if not self._is_classifier:
            return [np.asarray(y, dtype=np.float64)]
        from sklearn.utils.multiclass import check_classification_targets

        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                "the training data needs samples of at least 2 classes; got 1 class "
                f"({self.classes_[0]!r})."
            )
        if len(self.classes_) == 2:
            return [np.where(encoded == 1, 1.0, -1.0)]
        return [np.where(encoded == k, 1.0, -1.0) for k in range(len(self.classes_))]

    # ---- fitting -------------------------------------------------------------
    def fit(self, X, y):
        """Fit the model by adversarial training.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs; inside ``clip`` when the attack sets one.
        y : array-like of shape (n_samples,)
            Targets.

        Returns
        -------
        self : object
            The fitted estimator. Any earlier forgetting state is discarded.
        """
        self._validate_params()
        X, y = validate_data(
            self, X, y, dtype=np.float64, copy=True, y_numeric=not self._is_classifier,
            order="C",
        )
        attack = clone(resolve_attack(self.attack))
        if isinstance(attack, Penalized):  # a valid attack, not for this model
            raise ValueError(  # noqa: TRY004
                "attack=Penalized(...) is for networks (skmuter.AdversarialNet); a linear "
                "model's worst case over a ball is exact already: use PGD or FGSM."
            )
        threat, _ = attack._check(X.shape[1])
        threat.check_inside(X)
        targets = self._encode_targets(y)
        certified = getattr(self, "certified", None)
        noises = [None] * len(targets)
        if certified is not None:
            certified._validate_params()
            if self.alpha <= 0:
                raise ValueError("certified removal needs a strongly convex objective: "
                                 "alpha must be > 0.")
            rng = check_random_state(self.random_state)
            n_params = X.shape[1] + int(self.fit_intercept)
            noises = [rng.normal(0.0, certified.noise, n_params) for _ in targets]
        self.attack_ = attack
        objectives = [
            LinearObjective(X, t, self._loss, threat, self.alpha, self.fit_intercept,
                            tol=self.tol, max_iter=self.max_iter, noise=noise)
            for t, noise in zip(targets, noises)
        ]
        thetas, iters, residuals = [], [], []
        for k, obj in enumerate(objectives):
            if self.solver == "exact":
                theta, it, res = solve_exact(obj, tol=self.tol, max_iter=self.max_iter)
            else:
                theta, it, res = solve_sgd(
                    obj, attack, max_iter=self.max_iter, learning_rate=self.learning_rate,
                    batch_size=self.batch_size, random_state=self.random_state,
                    verbose=self.verbose, desc=f"{type(self).__name__}[{k}]",
                )
            thetas.append(theta)
            iters.append(it)
            residuals.append(res)
        self._objectives = objectives
        self._X = X
        self._set_thetas(thetas)
        self.n_iter_ = np.asarray(iters, dtype=np.int64)
        self.optimality_residual_ = float(max(residuals))
        reset_forgetting(self, X.shape[0])
        self.certificate_ = None
        if certified is not None:
            budget = certified.budget(len(objectives))
            # the solvers' residuals are those of the mean perturbed objective
            res = [X.shape[0] * r for r in residuals]
            if max(res) > budget:
                raise ValueError(
                    f"the fit is not converged enough to certify removal: its gradient "
                    f"residual {max(res):.3g} exceeds the budget {budget:.3g}. Use "
                    "solver='exact', a smaller tol, or more noise."
                )
            self._certified = clone(certified)
            self.certificate_ = {"budget": budget, "residual": res,
                                 "spent": max(res) / budget, "n_retrains": 0}
        return self

    def _set_thetas(self, thetas):
        d = self._X.shape[1]
        W = np.array([t[:d] for t in thetas])
        b = np.array([t[d] if self.fit_intercept else 0.0 for t in thetas])
        if self._is_classifier:
            self.coef_, self.intercept_ = W, b
        else:
            self.coef_, self.intercept_ = W[0], float(b[0])

    def _get_thetas(self):
        W = np.atleast_2d(self.coef_)
        b = np.atleast_1d(self.intercept_)
        if self.fit_intercept:
            return [np.concatenate([W[k], [b[k]]]) for k in range(W.shape[0])]
        return [W[k].copy() for k in range(W.shape[0])]

    # ---- prediction ----------------------------------------------------------
    def _scores(self, X):
        W = np.atleast_2d(self.coef_)
        return X @ W.T + np.atleast_1d(self.intercept_)

    def _decision(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        z = self._scores(X)
        return z[:, 0] if z.shape[1] == 1 else z

    def _worst_scores(self, X, y):
        """Exact worst-case scores under the training threat model.

        Binary and regression: the score each row's adversary reaches. Multiclass:
        the worst pairwise margin ``z_y - z_k`` (robustly correct iff > 0).
        """
        threat = self.attack_.threat(X.shape[1])
        bound = threat.bind(X)
        thetas = self._get_thetas()
        if len(thetas) == 1:
            obj = self._objectives[0]
            w, b = obj.split(thetas[0])
            z = X @ w + b
            up, down = bound.shifts(w)
            s = obj.loss.direction(z, y, up, down)
            return z + s * np.where(s > 0, up, down)
        W = np.atleast_2d(self.coef_)
        b = np.atleast_1d(self.intercept_)
        worst = np.full(X.shape[0], np.inf)
        for c in range(W.shape[0]):
            rows = np.flatnonzero(y == c)
            if len(rows) == 0:
                continue
            sub = threat.bind(X[rows])
            for k in range(W.shape[0]):
                if k == c:
                    continue
                dw = W[c] - W[k]
                margin = X[rows] @ dw + b[c] - b[k]
                _, down = sub.shifts(dw)
                worst[rows] = np.minimum(worst[rows], margin - down)
        return worst

    def _check_eval_inputs(self, X, y):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"y must be 1-D with one entry per row of X ({X.shape[0]}), got shape {y.shape}."
            )
        return X, y

    # ---- certified removal ------------------------------------------------------
    def _certify(self, thetas, states, remaining, records, template):
        """Check the forget's gradient residual against the certified budget."""
        if getattr(self, "certificate_", None) is None:
            return thetas, states, None
        cert = dict(self.certificate_)
        objectives = self._objectives
        res = [summed_residual(o, t, remaining) for o, t in zip(objectives, thetas)]
        proposed = max(res)
        spent, over = check_budget(self._certified, res, cert["budget"])
        t0 = time.perf_counter()
        if over:
            thetas = [o.refit(remaining, theta0=t) for o, t in zip(objectives, thetas)]
            states = [clone(template).prepare(o, t, remaining)
                      for o, t in zip(objectives, thetas)]
            res = [summed_residual(o, t, remaining) for o, t in zip(objectives, thetas)]
            spent = max(res) / cert["budget"]
            cert["n_retrains"] += 1
        cert.update(residual=res, spent=spent)
        records[-1].update(proposed_residual=proposed, certified_residual=max(res),
                           budget_spent=spent,
                           certified_retrain=bool(over),
                           certified_retrain_time=time.perf_counter() - t0 if over else 0.0)
        return thetas, states, cert

    def _update_certificate(self, remaining):
        """Re-measure the certificate after the parameters moved outside a forgetter
        (a pipeline re-expressing them on new features)."""
        res = [summed_residual(o, t, remaining)
               for o, t in zip(self._objectives, self._get_thetas())]
        spent = max(res) / self.certificate_["budget"]
        if spent > 1:
            raise RuntimeError(f"re-expressed parameters spend {spent:.2f} times the "
                               "certified-removal budget")  # the pipeline restores all
        self.certificate_ = dict(self.certificate_, residual=res, spent=spent)
        self.forget_log_[-1].update(certified_residual=max(res), budget_spent=spent)

    def _retrain_exact(self):
        """A copy re-solved exactly on the remaining rows, same objective (noise included)."""
        new = copy.deepcopy(self)
        rows = np.flatnonzero(new._kept_mask())
        new._set_thetas([obj.refit(rows) for obj in new._objectives])
        return new

    # ---- hooks of ForgetMixin ---------------------------------------------------
    def _forget_objectives(self):
        return self._objectives

    def _check_request_classes(self, kept):
        if not self._is_classifier:
            return
        for k, obj in enumerate(self._objectives):
            if len(self._objectives) == 1:
                labels = obj.y[kept]
                if np.all(labels > 0) or np.all(labels < 0):
                    raise ValueError("the request would forget every remaining row of a class.")
            elif not np.any(obj.y[kept] > 0):
                raise ValueError(
                    f"the request would forget every remaining row of class "
                    f"{self.classes_[k]!r}."
                )

    def _purge(self, rows):
        """Erase forgotten rows from every array the estimator keeps."""
        self._X[rows] = 0.0
        for obj in self._objectives:
            obj.y[rows] = 0.0

    def remaining_training_data(self):
        """Return ``(X, y)`` of the training rows not forgotten.

        Returns
        -------
        X : ndarray of shape (n_remaining, n_features)
        y : ndarray of shape (n_remaining,)
            In the original label space.
        """
        check_is_fitted(self)
        kept = self._kept_mask()
        X = self._X[kept]
        if not self._is_classifier:
            return X, self._objectives[0].y[kept].copy()
        if len(self._objectives) == 1:
            return X, self.classes_[(self._objectives[0].y[kept] > 0).astype(int)]
        codes = np.argmax(np.array([o.y[kept] for o in self._objectives]), axis=0)
        return X, self.classes_[codes]

    def training_objective(self):
        """Objectives of the fitted problems (one per class for one-vs-rest)."""
        check_is_fitted(self)
        return list(self._objectives)

    def __getstate__(self):
        # The objectives share the estimator's training array; write it once so
        # that a pickle or joblib round trip keeps one array (and a later forget
        # purges the only copy).
        state = super().__getstate__()
        if "_objectives" in state:
            objectives = []
            for obj in state["_objectives"]:
                light = copy.copy(obj)
                light.X = None
                objectives.append(light)
            state = dict(state, _objectives=objectives)
        return state

    def __setstate__(self, state):
        if "certified" in self._get_param_names():
            state.setdefault("certified", None)  # pickled before the parameter existed
        super().__setstate__(state)
        for obj in self.__dict__.get("_objectives", ()):
            obj.X = self._X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags

