"""Shared base of the adversarially trained linear estimators.

Validation, the one-vs-rest layout of multiclass problems, the exact worst
case for evaluation, and the hooks through which :class:`ForgetMixin`
forgets (the parameters, the stored rows, their purge), metrics retrain and
pipelines re-express the model on new features.
"""

from __future__ import annotations

import copy
import functools
import numbers

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, _fit_context, clone
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .._forgetting import (
    FREE_PARAMS,
    ForgetMixin,
    atomic_fit,
    prepare_states,
    reset_forgetting,
)
from .._transaction import CachedParamNames, record_undo, undoable_zero_rows
from ..attacks import Penalized, _Attack, resolve_attack
from ..forgetters import Forgetter, resolve_forgetter
from ._chunked import is_dask_collection
from ._objective import LinearObjective
from ._pass import compress_rows
from ._solvers import newton_on_support, refine_exact, refit_exact, solve_exact, solve_sgd
from ._worst_case import bind, check_inside

# Newton steps of ``reexpress(polish="newton")`` (the convergence is quadratic).
_MAX_NEWTON_STEPS = 10
# Above this multiple of ``tol`` after the Newton steps, finish with the exact solver.
_REFIT_FACTOR = 100.0


def _check_sample_weight(sample_weight, n_samples):
    """Validated sample weights: None, or a float64 copy of ``n_samples``
    finite, non-negative weights of positive sum (a scalar is broadcast)."""
    if sample_weight is None:
        return None
    sw = np.asarray(sample_weight)
    if sw.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must be numbers, got dtype {sw.dtype}.")
    sw = np.array(np.broadcast_to(sw.astype(np.float64), (n_samples,)) if sw.ndim == 0 else sw,
                  dtype=np.float64)
    if sw.ndim != 1 or sw.shape[0] != n_samples:
        raise ValueError(f"sample_weight must have shape ({n_samples},) (one weight per row "
                         f"of X), got shape {sw.shape}.")
    if not np.all(np.isfinite(sw)):
        raise ValueError("sample_weight must be finite (it contains NaN or infinity).")
    if np.any(sw < 0):
        raise ValueError("Negative values in data passed to sample_weight: weights must "
                         "be >= 0.")
    if not sw.sum() > 0:
        raise ValueError("sample_weight sums to zero: at least one row needs a positive "
                         "weight.")
    return sw


def _share_passes(objectives):
    """One cache of prepared passes for all the objectives of an estimator
    (they share the inputs)."""
    cache = {}
    for obj in objectives:
        obj.pass_cache = cache


#: default target optimality residual of a forget request (``forget_tol``)
DEFAULT_FORGET_TOL = 1e-9


class BaseAdversarialLinear(ForgetMixin, CachedParamNames, BaseEstimator):
    """Base class; see the public estimators for the parameters."""

    _loss = "logistic"
    _is_classifier = True
    _keep_fit_params = True  # retrain() refits with the fitted parameters

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
        "forget_tol": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "keep_data": ["boolean"],
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
        forget_tol=DEFAULT_FORGET_TOL,
        keep_data=True,
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
        self.forget_tol = forget_tol
        self.keep_data = keep_data
        self.random_state = random_state
        self.verbose = verbose

    # ---- parameters ------------------------------------------------------------
    #: parameters given by name or as an object; ``<name>__<param>`` reaches the
    #: object's parameters even while the name is given (grid searches, clone)
    _named_objects = {"attack": resolve_attack, "forgetter": resolve_forgetter}  # noqa: RUF012

    def get_params(self, deep=True):
        """Get the parameters of this estimator.

        With ``deep=True`` the parameters of ``attack`` and ``forgetter`` are
        included as ``attack__<name>`` / ``forgetter__<name>``, also when they
        are given by name (``attack='pgd'``: those of ``PGD()``).

        Parameters
        ----------
        deep : bool, default=True
            Include the parameters of the nested objects.

        Returns
        -------
        params : dict
        """
        params = super().get_params(deep=deep)
        if deep:
            for name, resolve in self._named_objects.items():
                value = params.get(name)
                if isinstance(value, str):
                    try:
                        nested = resolve(value).get_params()
                    except (TypeError, ValueError):  # an unknown name: refused by fit
                        continue
                    params.update((f"{name}__{k}", v) for k, v in nested.items())
        return params

    def set_params(self, **params):
        """Set the parameters of this estimator.

        ``attack__<name>`` (``forgetter__<name>``) sets a parameter of the attack
        (forgetter); given by name (``attack='pgd'``), it is first replaced by
        its object (``PGD()``), so that ``GridSearchCV(est, {'attack__epsilon':
        [...]})`` works with the defaults. Like every parameter, the values take
        effect at the next ``fit``.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : object
        """
        nested = {}
        for key in list(params):
            name, sep, sub = key.partition("__")
            if sep and name in self._named_objects:
                nested.setdefault(name, {})[sub] = params.pop(key)
        super().set_params(**params)
        for name, sub in nested.items():
            value = getattr(self, name)
            if isinstance(value, str):
                value = self._named_objects[name](value)  # a fresh object
                setattr(self, name, value)
            value.set_params(**sub)
        return self

    # ---- targets -----------------------------------------------------------
    def _encode_targets(self, y):
        """Return the list of per-problem targets (and set ``classes_``)."""
        if not self._is_classifier:
            return [np.array(y, dtype=np.float64)]  # a copy: forgetting purges it
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
    @atomic_fit  # all-or-nothing: a failed fit leaves the estimator as it was
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model by adversarial training.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training inputs; inside ``clip`` when the attack sets one. A sparse
            matrix (CSR or CSC, matrix or array) is kept sparse, as CSR.
        y : array-like of shape (n_samples,)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows: the objective is the weighted
            mean loss (divided by the sum of the weights) plus the penalty, so
            a row of weight 2 counts as that row twice and a row of weight 0
            not at all. Forgetting a row removes its weight. None: every row
            weighs 1. With certified removal the residuals are those of the
            weighted summed objective.

        Returns
        -------
        self : object
            The fitted estimator. Any earlier forgetting state is discarded.
        """
        if is_dask_collection(X):
            return self._fit_chunked(X, y, sample_weight)
        given = X
        X, y = validate_data(
            self, X, y, accept_sparse=("csr", "csc"), dtype=np.float64,
            copy=sparse.issparse(given), y_numeric=not self._is_classifier, order="C",
        )
        dense_input = not sparse.issparse(X)
        if not dense_input:
            X = sparse.csr_matrix(X)
            X.sum_duplicates()
            X.sort_indices()
        else:
            # the model's own copy: compressed when large and mostly zero
            # (built a block of rows at a time, never a second dense copy)
            compressed = compress_rows(X)
            if compressed is not None:
                X = compressed
            elif X is given or not X.flags.owndata:
                X = X.copy()
        sample_weight = _check_sample_weight(sample_weight, X.shape[0])
        attack, threat = self._fitted_attack(X.shape[1])
        check_inside(threat, X)
        targets = self._encode_targets(y)
        certified, noises = self._certified_terms(len(targets), X.shape[1])
        self.attack_ = attack
        objectives = [
            LinearObjective(X, t, self._loss, threat, self.alpha, self.fit_intercept,
                            functools.partial(refit_exact, tol=self.tol, max_iter=self.max_iter),
                            linear_term=noise, sample_weight=sample_weight,
                            refiner=refine_exact)
            for t, noise in zip(targets, noises)
        ]
        _share_passes(objectives)
        thetas, iters, residuals = [], [], []
        for k, obj in enumerate(objectives):
            if self.solver == "exact":
                theta, it, res = solve_exact(obj, tol=self.tol, max_iter=self.max_iter,
                                             keep_point=True)
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
        self._dense_input = dense_input  # remaining_training_data() is dense then
        self._sample_weight = sample_weight  # shared with the objectives
        self._set_thetas(thetas)
        self.n_iter_ = np.asarray(iters, dtype=np.int64)
        self.optimality_residual_ = float(max(residuals))
        reset_forgetting(self, X.shape[0])
        self._kept_counts = self._count_classes()
        self.certificate_ = None
        if certified is not None:
            # the solvers' residuals are those of the mean perturbed objective
            n_rows = X.shape[0] if sample_weight is None else float(sample_weight.sum())
            self.certificate_ = certified.certificate([n_rows * r for r in residuals],
                                                      len(objectives))
            self._certified = clone(certified)
        if not self.keep_data:
            self._drop_rows()
        return self

    def _fitted_attack(self, d):
        """The validated copy of ``attack`` and its threat on ``d`` features."""
        attack = clone(resolve_attack(self.attack))
        if isinstance(attack, Penalized):  # a valid attack, not for this model
            raise ValueError(  # noqa: TRY004
                "attack=Penalized(...) is for networks (skmuter.AdversarialNet); a linear "
                "model's worst case over a ball is exact already: use PGD or FGSM."
            )
        threat, _ = attack._check(d)
        return attack, threat

    def _certified_terms(self, n_problems, d):
        """``(certified, linear terms)`` of certified removal (None and Nones without)."""
        certified = getattr(self, "certified", None)
        if certified is None:
            return None, [None] * n_problems
        certified._validate_params()
        if self.alpha <= 0:
            raise ValueError("certified removal needs a strongly convex objective: "
                             "alpha must be > 0.")
        return certified, certified.linear_terms(n_problems, d + int(self.fit_intercept),
                                                 self.random_state)

    def _fit_chunked(self, X, y, sample_weight):
        """``fit`` on a Dask collection: one validation pass, then the exact
        solver's passes as chunked reductions (see ``skmuter.linear._chunked``);
        the estimator refers to the collection and copies none of it."""
        import dask
        import dask.array as da

        from ._chunked import ChunkedLinearObjective, align_rows, as_dask_array

        if self.solver != "exact":
            raise ValueError(f"solver={self.solver!r} needs in-memory data; a Dask collection "
                             "is fitted with solver='exact'.")
        X, names = as_dask_array(X, "X", 2)
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})  # a chunk spans whole rows
        if y is None:
            raise ValueError("requires y to be passed, but the target y is None.")
        y = align_rows(y, X, "y")
        sw = align_rows(sample_weight, X, "sample_weight")
        n, d = X.shape
        if n < 2 or d < 1:
            raise ValueError(f"X has shape {X.shape}: at least 2 rows and 1 feature needed.")
        stats = [X.min(axis=0), X.max(axis=0), da.isfinite(X).all()]
        if self._is_classifier:
            stats.append(da.unique(y, return_counts=True))
        else:
            stats.append(da.isfinite(y).all())
        if sw is not None:
            stats += [sw.min(), sw.sum(), da.isfinite(sw).all()]
        stats = dask.compute(*stats)
        if not stats[2]:
            raise ValueError("Input X contains NaN or infinity.")
        self.n_features_in_ = d
        if names is not None and all(isinstance(c, str) for c in names):
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        weight_total = float(n)
        if sw is not None:
            if not stats[-1]:
                raise ValueError("sample_weight must be finite (it contains NaN or infinity).")
            if stats[-3] < 0:
                raise ValueError("Negative values in data passed to sample_weight: weights "
                                 "must be >= 0.")
            if not stats[-2] > 0:
                raise ValueError("sample_weight sums to zero: at least one row needs a "
                                 "positive weight.")
            weight_total = float(stats[-2])
        attack, threat = self._fitted_attack(d)
        check_inside(threat, np.vstack([stats[0], stats[1]]))  # the columns' ranges
        if self._is_classifier:
            from sklearn.utils.multiclass import check_classification_targets

            classes, counts = (np.asarray(a) for a in stats[3])
            check_classification_targets(classes)
            if len(classes) < 2:
                raise ValueError("the training data needs samples of at least 2 classes; got "
                                 f"1 class ({classes[0]!r}).")
            self.classes_ = classes
            ks = [1] if len(classes) == 2 else range(len(classes))
            targets = [da.where(y == classes[k], 1.0, -1.0) for k in ks]
            self._kept_counts = counts.astype(np.int64)
        else:
            if not stats[3]:
                raise ValueError("Input y contains NaN or infinity.")
            targets = [y.astype(np.float64)]
            self._kept_counts = np.array([n], dtype=np.int64)
        certified, noises = self._certified_terms(len(targets), d)
        self.attack_ = attack
        objectives = [
            ChunkedLinearObjective(
                X, t, self._loss, threat, self.alpha, self.fit_intercept,
                functools.partial(refit_exact, tol=self.tol, max_iter=self.max_iter),
                linear_term=noise, sample_weight=sw, refiner=refine_exact,
                weight_total=weight_total)
            for t, noise in zip(targets, noises)
        ]
        _share_passes(objectives)
        thetas, iters, residuals = [], [], []
        for obj in objectives:
            theta, it, res = solve_exact(obj, tol=self.tol, max_iter=self.max_iter)
            obj.forget_fetched()
            thetas.append(theta)
            iters.append(it)
            residuals.append(res)
        self._objectives = objectives
        self._X = X
        self._sample_weight = sw
        self._y_chunked = y
        self._set_thetas(thetas)
        self.n_iter_ = np.asarray(iters, dtype=np.int64)
        self.n_passes_ = int(sum(o.n_passes for o in objectives)) + 1  # + validation
        self.optimality_residual_ = float(max(residuals))
        reset_forgetting(self, n)
        self.certificate_ = None
        if certified is not None:
            self.certificate_ = certified.certificate([weight_total * r for r in residuals],
                                                      len(objectives))
            self._certified = clone(certified)
        if not self.keep_data:
            self._drop_rows()
        return self

    def _drop_rows(self):
        """``keep_data=False``: build the forgetter's memory over every row now,
        then let go of every per-row array (see ``skmuter.linear._chunked``:
        the objectives keep their shape and read a request's rows from the
        call)."""
        from ._chunked import ChunkedLinearObjective

        if getattr(self, "certificate_", None) is not None:
            raise ValueError("certified removal needs keep_data=True: its check of every "
                             "request reads the kept rows.")
        if self._loss == "squared" and self.attack_.epsilon > 0:
            raise ValueError(
                "keep_data=False is not available for the squared robust loss under an "
                "attack: the rows on its kinks decide every step and only the kept rows "
                "tell which they are. Use keep_data=True (or the logistic loss)."
            )
        template = resolve_forgetter(self.forgetter)
        if template.label() == "retrain":
            raise ValueError("forgetter='retrain' refits on the kept rows: it needs "
                             "keep_data=True.")
        n = self.n_train_
        rows = np.arange(n)
        objectives = self._objectives
        thetas = self._get_thetas()
        states = prepare_states(template, objectives, thetas, rows)
        for state in states:
            # per-row structures that need the kept rows at every request
            for name in ("kinks_", "zeros_"):
                if getattr(state, name, None) is not None:
                    setattr(state, name, None)
        self._objectives = [ChunkedLinearObjective.rowless(o, n, o.weight_sum(rows))
                            for o in objectives]
        _share_passes(self._objectives)
        self._forgetter_states = states
        self.forgetter_ = template
        self._X = self._sample_weight = self._y_chunked = None
        self._train_index = None

    def _keeps_rows(self):
        if self.__dict__.get("_X") is None:
            return False
        return all(getattr(o, "has_rows", lambda: True)() for o in self._objectives)

    def _accept_rows(self, rows, X, y, sample_weight):
        """The content of a request's ``rows`` for a model that keeps none
        (``forget(indices, X=, y=)``): validated, encoded per problem, and
        handed to the objectives for this call."""
        if self._keeps_rows():
            if X is not None or y is not None or sample_weight is not None:
                raise ValueError("this model keeps its training rows: forget(indices) takes "
                                 "no X, y or sample_weight (they are read from the model).")
            return
        if X is None or y is None:
            raise ValueError(
                "this model keeps no training rows (keep_data=False, or a Dask-backed model "
                "loaded from a pickle): pass the content of the rows to forget, "
                "forget(indices, X=X_rows, y=y_rows), rows in the order of indices."
            )
        rows = np.asarray(rows)
        if sparse.issparse(X):
            X = X.toarray()
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        d = self.n_features_in_
        if X.ndim != 2 or X.shape != (len(rows), d):
            raise ValueError(f"X must hold the {len(rows)} requested rows of {d} features, "
                             f"got shape {X.shape}.")
        if y.shape != (len(rows),):
            raise ValueError(f"y must hold one target per requested row ({len(rows)}), got "
                             f"shape {y.shape}.")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinity.")
        self.attack_.threat(d).check_inside(X)
        weighted = self._objectives[0].sample_weight is not None
        if weighted and sample_weight is None:
            raise ValueError("the model was fitted with sample_weight: pass the rows' weights, "
                             "forget(indices, X=, y=, sample_weight=).")
        if not weighted and sample_weight is not None:
            raise ValueError("the model was fitted without sample_weight: forget takes none.")
        sw = None if sample_weight is None else _check_sample_weight(sample_weight, len(rows))
        for obj, t in zip(self._objectives, self._targets_of(y)):
            obj.provide(rows, X, t, sw)

    def _chunked(self):
        """Whether the model refers to its rows in a Dask collection."""
        objectives = self.__dict__.get("_objectives") or ()
        return bool(objectives) and getattr(objectives[0], "chunked", False)

    def _set_thetas(self, thetas):
        d = self._objectives[0].n_features
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
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        z = self._scores(X)
        return z[:, 0] if z.shape[1] == 1 else z

    def _worst_scores(self, X, y):
        """Exact worst-case scores under the training threat model.

        Binary and regression: the score each row's adversary reaches. Multiclass:
        the worst pairwise margin ``z_y - z_k`` (robustly correct iff > 0).
        """
        threat = self.attack_.threat(X.shape[1])
        bound = bind(threat, X)
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
            sub = bind(threat, X[rows])
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
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"y must be 1-D with one entry per row of X ({X.shape[0]}), got shape {y.shape}."
            )
        return X, y

    # ---- verification and pipelines ---------------------------------------------
    def retrain(self, X=None, y=None, sample_weight=None):
        """The exact reference of every forget: a model fitted exactly on the rows
        not forgotten.

        Without certified removal, a clone with ``solver='exact'`` fitted on
        :meth:`remaining_training_data`. With it, a copy whose parameters
        re-solve the same perturbed objective (its secret linear term kept) on
        the remaining rows; the copy keeps the forgetting history.

        Parameters
        ----------
        X, y, sample_weight : array-like, optional
            The kept rows, for a model that keeps none (``keep_data=False``):
            the clone is fitted on them.

        Returns
        -------
        retrained : estimator
        """
        check_is_fitted(self)
        if X is not None or y is not None:
            if X is None or y is None:
                raise ValueError("retrain(X, y) needs both the kept rows and their targets.")
            new = self._fitted_clone().set_params(solver="exact")
            return new.fit(X, y, sample_weight=sample_weight)
        if getattr(self, "certificate_", None) is None:
            self._require_rows("retrain()")
            X, y = self._remaining_rows()  # the stored form: no dense copy
            sw = self._remaining_sample_weight()
            new = self._fitted_clone().set_params(solver="exact")
            new = new.fit(X, y) if sw is None else new.fit(X, y, sample_weight=sw)
            new._dense_input = self.__dict__.get("_dense_input", False)
            return new
        new = copy.deepcopy(self)
        rows = np.flatnonzero(new._kept_mask())
        new._set_thetas([obj.refit(rows) for obj in new._objectives])
        return new

    def _fitted_clone(self):
        """An unfitted clone with the parameters of the last fit.

        Parameters take effect at the next ``fit``: the reference of a forget
        is the fitted objective, whatever ``set_params`` changed since.
        """
        new = clone(self)
        fitted = getattr(self, "_fit_params", None)  # None: pickled before they were kept
        if fitted:
            new.set_params(**{k: clone(v, safe=False) for k, v in fitted.items()
                              if k not in FREE_PARAMS})
        return new

    def gradient_residual(self, X=None, y=None, sample_weight=None):
        """Norm of the minimal subgradient of the remaining robust objective.

        The mean over the rows not forgotten, penalty (and certified removal's
        linear term) included; the largest over one-vs-rest problems. It is 0
        at the exact retrain.

        Parameters
        ----------
        X, y, sample_weight : array-like, optional
            The kept rows, for a model that keeps none (``keep_data=False``).

        Returns
        -------
        residual : float
        """
        check_is_fitted(self)
        if X is not None or y is not None:
            return self._residual_on(X, y, sample_weight)
        self._require_rows("gradient_residual()")
        rows = np.flatnonzero(self._kept_mask())
        return float(max(obj.gradient_residual(theta, rows)
                         for obj, theta in zip(self._objectives, self._get_thetas())))

    def _residual_on(self, X, y, sample_weight):
        """``gradient_residual`` over rows given explicitly (the kept rows of a
        model that keeps none)."""
        if X is None or y is None:
            raise ValueError("gradient_residual(X, y) needs both the kept rows and their "
                             "targets.")
        X, y = self._check_eval_inputs(X, y)
        if sparse.issparse(X):
            X = X.toarray()
        sw = _check_sample_weight(sample_weight, X.shape[0])
        threat = self._objectives[0].threat
        rows = np.arange(X.shape[0])
        out = []
        for obj, t, theta in zip(self._objectives, self._targets_of(y), self._get_thetas()):
            local = LinearObjective(X, t, self._loss, threat, self.alpha, self.fit_intercept,
                                    linear_term=obj.linear_term, sample_weight=sw)
            out.append(local.gradient_residual(theta, rows))
        return float(max(out))

    def _targets_of(self, y):
        """The per-problem targets of labels ``y`` (+-1 one-vs-rest, or the values)."""
        if not self._is_classifier:
            y = np.asarray(y, dtype=np.float64)
            if not np.all(np.isfinite(y)):
                raise ValueError("y contains NaN or infinity.")
            return [y]
        codes = self._codes(np.asarray(y))
        if len(self._objectives) == 1:
            return [np.where(codes == 1, 1.0, -1.0)]
        return [np.where(codes == k, 1.0, -1.0) for k in range(len(self.classes_))]

    def reexpress(self, X_new, scale, offset, polish="newton"):
        """Re-express the model for new features of its remaining rows.

        A pipeline calls this when forgetting changed a preprocessing step's
        statistics, hence the features of every row this model still holds.
        ``X_new`` replaces the stored rows; the weights are mapped through the
        per-feature map ``x_new = scale * x_old + offset`` so that predictions
        are unchanged; the parameters are re-linearised to the optimum of the
        objective on the new features; the certificate is re-measured and the
        forgetting memory rebuilt at the new parameters, so that later requests
        start from there.

        Parameters
        ----------
        X_new : ndarray of shape (n_remaining, n_features)
            The new features of the remaining rows, in their order.
        scale, offset : ndarray of shape (n_features,)
            The per-feature affine map from the old features to the new.
        polish : {'newton', 'refit'}, default='newton'
            ``'newton'``: Newton steps with the exact total Hessian on the
            support of the mapped parameters until the optimality residual
            reaches ``tol``, then the exact solver if the support must change.
            ``'refit'``: the exact solver warm-started from the mapped parameters.

        Returns
        -------
        self : object
            On error the estimator may be left half-changed: the caller keeps
            a copy of its state to restore.
        """
        check_is_fitted(self)
        if polish not in ("newton", "refit"):
            raise ValueError(f"polish must be 'newton' or 'refit', got {polish!r}.")
        compressed = sparse.issparse(self._X)
        if (compressed and not self.__dict__.get("_dense_input", False)) or self._chunked():
            raise ValueError("re-expressing a model fitted on sparse input or a Dask "
                             "collection is not supported: refit the pipeline.")
        X_new = np.asarray(X_new, dtype=np.float64)
        kept = self._kept_mask()
        rows = np.flatnonzero(kept)
        self.attack_.threat(X_new.shape[1]).check_inside(X_new)
        d = self._X.shape[1]
        thetas = []
        for theta in self._get_thetas():
            theta = theta.copy()
            w = theta[:d] / scale
            if self.fit_intercept:
                theta[d] -= float(w @ offset)
            theta[:d] = w
            thetas.append(theta)
        self._own_arrays()  # copy on write (a memory-mapped model)
        # The objectives normally share ``_X``; write every distinct array, so
        # that a copy made by unpickling cannot keep the old features.
        if compressed:  # a large dense input kept compressed: store the new features so
            full = np.zeros(self._X.shape)
            full[rows] = X_new
            stored = compress_rows(full)
            self._X = full if stored is None else stored
            for obj in self._objectives:
                obj.X = self._X
        else:
            arrays = {id(self._X): self._X}
            arrays.update((id(obj.X), obj.X) for obj in self._objectives)
            for arr in arrays.values():
                arr[rows] = X_new
                arr[~kept] = 0.0
        for obj in self._objectives:
            obj.pass_cache.clear()  # prepared from the old features
        tol = max(float(self.tol), 1e-12)
        out = []
        for theta, obj in zip(thetas, self._objectives):
            if polish == "refit":
                theta = obj.refit(rows, theta0=theta)
            else:
                theta = newton_on_support(obj, theta, rows, tol, _MAX_NEWTON_STEPS)
                if obj.gradient_residual(theta, rows) > _REFIT_FACTOR * tol:
                    # The support changed (a zero weight must move): the exact
                    # solver follows it, warm-started from the Newton point.
                    theta = obj.refit(rows, theta0=theta)
            out.append(theta)
        self._set_thetas(out)
        self._relinearise(rows)
        return self

    # ---- hooks of ForgetMixin ---------------------------------------------------
    def _forget_objectives(self):
        return self._objectives

    def _removed_codes(self, rows):
        """Class codes of training ``rows`` (fetched; a chunked model)."""
        t = [obj.y[rows] for obj in self._objectives]
        if len(t) == 1:
            return (t[0] > 0).astype(np.int64)
        return np.argmax(np.array(t), axis=0)

    def _check_request_rows(self, rows):
        """Refuse a request that would leave a class (or every row of positive
        weight) without rows, from the counts kept since fit: the cost grows
        with the request, not with the training set."""
        counts = self.__dict__.get("_kept_counts")
        if counts is None:  # pickled before the counts were kept
            return self._check_request_classes(self._kept_after(rows))
        rows = np.asarray(rows)
        positive = self._positive_rows(rows)
        if self._is_classifier:
            left = counts - np.bincount(self._removed_codes(rows)[positive],
                                        minlength=len(counts))
        else:
            left = counts - np.count_nonzero(positive)
        if left.sum() <= 0:
            raise ValueError("the request would forget every remaining row of positive "
                             "sample weight.")
        empty = np.flatnonzero(left <= 0)
        if self._is_classifier and empty.size:
            if len(self.classes_) == 2:
                raise ValueError("the request would forget every remaining row of a class.")
            raise ValueError(f"the request would forget every remaining row of class "
                             f"{self.classes_[empty[0]]!r}.")
        return None

    def _positive_rows(self, rows):
        """Which of ``rows`` weigh something (all of them without weights)."""
        sw = self._objectives[0].sample_weight
        return np.ones(len(rows), dtype=bool) if sw is None else np.asarray(sw[rows]) > 0

    def _count_classes(self):
        """Rows of positive weight per class (per model for a regressor), at fit."""
        obj = self._objectives[0]
        n = self.n_train_
        positive = (np.ones(n, dtype=bool) if obj.sample_weight is None
                    else np.asarray(obj.sample_weight) > 0)
        if not self._is_classifier:
            return np.array([np.count_nonzero(positive)], dtype=np.int64)
        if len(self._objectives) == 1:
            pos = int(np.count_nonzero((obj.y > 0) & positive))
            return np.array([np.count_nonzero(positive) - pos, pos], dtype=np.int64)
        return np.array([np.count_nonzero((o.y > 0) & positive) for o in self._objectives],
                        dtype=np.int64)

    def _check_request_classes(self, kept):
        sw = getattr(self, "_sample_weight", None)
        if sw is not None:
            kept = kept & (sw > 0)  # a row of weight 0 counts for nothing
            if not kept.any():
                raise ValueError("the request would forget every remaining row of "
                                 "positive sample weight.")
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
        counts = self.__dict__.get("_kept_counts")
        if counts is not None:
            positive = self._positive_rows(rows)
            if self._is_classifier:
                self._kept_counts = counts - np.bincount(
                    self._removed_codes(rows)[positive], minlength=len(counts))
            else:
                self._kept_counts = counts - np.count_nonzero(positive)
        if self._chunked():
            # The collection is the user's (they delete from their storage):
            # the rows leave every later pass through the kept mask, and their
            # fetched copies go.
            for obj in self._objectives:
                obj.forget_fetched()
            return
        self._own_arrays()
        # The inputs, the weights and the prepared passes are kept by reference
        # in the forget transaction (_transaction_shared): every change to
        # them here can be undone if the call fails later.
        if sparse.issparse(self._X):
            # zero the stored values of the rows and move them to the first
            # columns (their positions would tell where the rows were
            # non-zero), in place: the objectives share the matrix, and the
            # cost grows with the request only. A pickle drops the entries.
            undoable_zero_rows(self._X, rows, positions=True)
        else:
            undoable_zero_rows(self._X, rows)
        sw = getattr(self, "_sample_weight", None)
        if sw is not None:
            undoable_zero_rows(sw, rows)
        for obj in self._objectives:
            undoable_zero_rows(obj.y, rows)
        if self._objectives:
            cache = self._objectives[0].pass_cache  # shared by the objectives
            # on failure (even within the passes' purge): rebuilt from the
            # restored inputs
            record_undo(cache.clear)
            self._objectives[0].purge_rows(rows)
            for obj, theta in zip(self._objectives, self._get_thetas()):
                obj.drop_stale_zero_sums(theta, rows)

    def _transaction_shared(self):
        """Large arrays a forget transaction keeps by reference (not copied):
        the inputs, the weights and the prepared passes, changed only by
        undoable purges."""
        shared = [self.__dict__.get("_X"), self.__dict__.get("_sample_weight"),
                  self.__dict__.get("_y_chunked")]
        objectives = self.__dict__.get("_objectives") or ()
        if objectives:
            # the passes refer to the threat they were prepared for: keep it too
            shared += [objectives[0].pass_cache, *(o.threat for o in objectives)]
            if not self._chunked():  # the targets: zeroed undoably by _purge
                shared += [o.y for o in objectives]
        return [a for a in shared if a is not None]

    def _own_arrays(self):
        """Copy on write: replace read-only arrays by writeable copies.

        A model loaded with ``joblib.load(..., mmap_mode='r')`` keeps its
        training rows in read-only memory maps; purging writes a private copy
        (arrays shared between the estimator and its objectives stay shared).
        """
        from scipy.sparse import issparse

        copies = {}

        def own(value):
            if isinstance(value, np.ndarray):
                read_only = not value.flags.writeable
            elif issparse(value):
                read_only = any(not getattr(value, a).flags.writeable
                                for a in ("data", "indices", "indptr") if hasattr(value, a))
            else:
                return value
            if not read_only:
                return value
            if id(value) not in copies:
                copies[id(value)] = value.copy() if issparse(value) else np.array(value)
            return copies[id(value)]

        for holder in (self, *self._objectives):
            for name, value in list(vars(holder).items()):
                new = own(value)
                if new is not value:
                    setattr(holder, name, new)

    def remaining_training_data(self):
        """Return ``(X, y)`` of the training rows not forgotten.

        Returns
        -------
        X : ndarray or sparse CSR matrix of shape (n_remaining, n_features)
            Sparse when the model was fitted on sparse input.
        y : ndarray of shape (n_remaining,)
            In the original label space.

        Notes
        -----
        With ``sample_weight``, the weights of these rows are those the model
        keeps; :meth:`retrain` refits with them.
        """
        check_is_fitted(self)
        X, y = self._remaining_rows()
        if sparse.issparse(X) and self.__dict__.get("_dense_input", False):
            X = X.toarray()  # fitted on a dense array, kept compressed
        return X, y

    def _remaining_rows(self):
        """The kept rows as the model stores them, and their targets."""
        kept = self._kept_mask()
        if self._chunked():
            self._require_rows("remaining_training_data()")
            return self._X[kept], self._y_chunked[kept]  # lazy: Dask collections
        X = self._X[np.flatnonzero(kept)] if sparse.issparse(self._X) else self._X[kept]
        if not self._is_classifier:
            return X, self._objectives[0].y[kept].copy()
        if len(self._objectives) == 1:
            return X, self.classes_[(self._objectives[0].y[kept] > 0).astype(int)]
        codes = np.argmax(np.array([o.y[kept] for o in self._objectives]), axis=0)
        return X, self.classes_[codes]

    def _require_rows(self, what):
        """Raise a clear error when the model keeps no training rows."""
        if self.__dict__.get("_X") is None:
            raise ValueError(
                f"{what} needs the training rows, and this model keeps no training rows "
                "(fitted with keep_data=False, or fitted on a Dask collection and then "
                "pickled): pass the kept rows explicitly where the method takes them."
            )

    def _remaining_sample_weight(self):
        """Sample weights of the rows not forgotten (None when fitted without)."""
        sw = getattr(self, "_sample_weight", None)
        return None if sw is None else sw[self._kept_mask()].copy()

    def training_objective(self):
        """Objectives of the fitted problems (one per class for one-vs-rest)."""
        check_is_fitted(self)
        return list(self._objectives)

    def __getstate__(self):
        # The objectives share the estimator's training array; write it once so
        # that a pickle or joblib round trip keeps one array (and a later forget
        # purges the only copy).
        state = super().__getstate__()
        X = state.get("_X")
        if sparse.issparse(X) and getattr(self, "forgotten_", np.zeros(0)).size:
            # the forgotten rows' zeroed entries: gone from the pickle, so that
            # not even their number is written
            X = X.copy()
            X.eliminate_zeros()
            state = dict(state, _X=X)
        if self._chunked():
            # A Dask collection's graph may embed the rows (one built from an
            # in-memory array does): a pickle refers to none of it.
            state = dict(state, _X=None, _sample_weight=None, _y_chunked=None,
                         _objectives=[copy.copy(obj) for obj in state["_objectives"]])
            return state
        if "_objectives" in state:
            objectives = []
            for obj in state["_objectives"]:
                light = copy.copy(obj)
                light.X = None
                light.sample_weight = None  # restored from ``_sample_weight``
                light.pass_cache = {}  # derived from the inputs: rebuilt when needed
                objectives.append(light)
            state = dict(state, _objectives=objectives)
        return state

    def __deepcopy__(self, memo):
        # A copy keeps the prepared passes (a pickle does not: they are derived
        # from the inputs and rebuilt at the first forget after loading).
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for key in ("_X", "_sample_weight", "_y_chunked"):
            value = self.__dict__.get(key)
            if value is not None and is_dask_collection(value):
                memo[id(value)] = value  # immutable: shared, not copied
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    def __setstate__(self, state):
        if "certified" in self._get_param_names():
            state.setdefault("certified", None)  # pickled before the parameter existed
        super().__setstate__(state)
        if not self._chunked():
            for obj in self.__dict__.get("_objectives", ()):
                obj.X = self._X
                obj.sample_weight = self.__dict__.get("_sample_weight")
        _share_passes(self.__dict__.get("_objectives", ()))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

