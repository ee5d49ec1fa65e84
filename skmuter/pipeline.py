"""Forgetting through pipelines: a pipeline with ``forget`` and scalers that forget.

A fitted transformer keeps statistics of the rows it saw, so forgetting rows
in a pipeline means forgetting them in every step. :class:`ForgetPipeline`
sorts its steps into three kinds and refuses, before changing anything, when
a step is of none of them:

* **pass-through**: ``'passthrough'``, ``None``, and transformers whose fitted
  state does not depend on the training rows (scikit-learn's
  ``requires_fit=False`` tag, e.g. ``FunctionTransformer``, ``Normalizer``,
  ``Binarizer``; and ``PolynomialFeatures``);
* **forgetting transformers**: a ``forget`` method and
  ``remaining_training_data()`` (:class:`ForgettingStandardScaler`, exact
  downdate of mean and variance; :class:`ForgettingMinMaxScaler`, extremes
  recomputed from the kept rows);
* the **final estimator**, which must have ``forget``.

When a scaler's statistics change, every remaining row's features change for
the final estimator. The pipeline then re-expresses the estimator's stored
training rows in the new feature space, maps its parameters so that its
predictions are unchanged, and re-linearises: one Newton step with the exact
total Hessian of the new objective over the kept rows (``on_rescale='newton'``,
MUter's step in the new coordinates, repeated to convergence) or an exact
warm-started refit (``on_rescale='refit'``). The forgetting memory is then rebuilt at the new
parameters, so later requests start from the new linearisation point.
"""

from __future__ import annotations

import copy
import time
from typing import ClassVar

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, PolynomialFeatures, StandardScaler
from sklearn.preprocessing._data import _handle_zeros_in_scale
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from ._forgetting import rows_and_kept, validate_indices

__all__ = [
    "ForgetPipeline",
    "ForgettingMinMaxScaler",
    "ForgettingStandardScaler",
    "make_forget_pipeline",
]


# ---------------------------------------------------------------------------
# Forgetting transformers
# ---------------------------------------------------------------------------
class _ForgettingTransformerMixin:
    """Keep the training rows, forget some of them, recompute the statistics.

    Subclasses implement ``_fit_stats(X)`` and ``_forget_stats(removed, kept)``
    (``removed`` holds the rows being forgotten, ``kept`` the mask after the
    request).
    """

    def fit(self, X, y=None, sample_weight=None):
        """Compute the statistics and keep a float64 copy of ``X`` for forgetting.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (dense, finite).
        y : None
            Ignored.
        sample_weight : None
            Not supported (forgetting a weighted row is not defined here).

        Returns
        -------
        self : object
            The fitted transformer. Any earlier forgetting state is discarded.
        """
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__} does not support sample_weight.")
        self._validate_params()
        X = validate_data(self, X, dtype=np.float64, copy=True, order="C", reset=True)
        self._X = X
        self._fit_stats(X)
        self.n_train_ = X.shape[0]
        self.forgotten_ = np.zeros(0, dtype=np.int64)
        return self

    def partial_fit(self, X, y=None, sample_weight=None):
        """Not supported: a forgetting scaler is fitted in one call to :meth:`fit`.

        Raises
        ------
        NotImplementedError
            Always; the rows seen by ``partial_fit`` could not be forgotten by
            their position in one training set.
        """
        raise NotImplementedError(
            f"{type(self).__name__} is fitted in one call to fit(); incremental fitting "
            "would leave rows it cannot forget by position."
        )

    def _kept_mask(self):
        kept = np.ones(self.n_train_, dtype=bool)
        kept[self.forgotten_] = False
        return kept

    def forget(self, indices):
        """Forget training rows: update the statistics and purge the rows.

        Parameters
        ----------
        indices : array-like of int or bool
            Positions in the training set given to :meth:`fit`, or a boolean
            mask of its length. Cumulative, as for the skmuter estimators.

        Returns
        -------
        self : object
            The transformer with the statistics of the kept rows and the
            forgotten rows zeroed in its stored copy. On error nothing changes.
        """
        check_is_fitted(self)
        rows, kept = rows_and_kept(indices, self.n_train_, self.forgotten_)
        stats = self._forget_stats(self._X[rows], kept)
        # Commit: nothing above touched the transformer.
        for name, value in stats.items():
            setattr(self, name, value)
        self._X[rows] = 0.0
        self.forgotten_ = np.sort(np.concatenate([self.forgotten_, rows]))
        return self

    def partial_forget(self, indices):
        """Forget rows one after another; the statistics end the same as :meth:`forget`.

        Parameters
        ----------
        indices : array-like of int or bool
            Positions in the training set, or a boolean mask.

        Returns
        -------
        self : object
        """
        return self.forget(indices)

    def remaining_training_data(self):
        """Return the training rows not forgotten (the input of this step).

        Returns
        -------
        X : ndarray of shape (n_remaining, n_features)
        """
        check_is_fitted(self)
        return self._X[self._kept_mask()]


class ForgettingStandardScaler(_ForgettingTransformerMixin, StandardScaler):
    """``StandardScaler`` that can forget training rows (exact downdate).

    Same parameters and transform as :class:`sklearn.preprocessing.StandardScaler`.
    It keeps a float64 copy of its training rows, because forgetting by
    position needs the values of the rows being forgotten; ``forget`` removes
    their contribution from the mean and variance in ``O(k d)`` (the pairwise
    update of Chan, Golub and LeVeque run backwards) and zeroes them in the copy.
    The result equals a ``StandardScaler`` fitted on the kept rows up to
    rounding. Inputs must be dense and finite; ``sample_weight`` and
    ``partial_fit`` are not supported.

    Parameters
    ----------
    copy : bool, default=True
        Copy ``X`` in ``transform`` (the training copy is always kept).
    with_mean : bool, default=True
        Centre the data.
    with_std : bool, default=True
        Scale to unit variance.

    Attributes
    ----------
    mean_, var_, scale_ : ndarray of shape (n_features,) or None
        As in ``StandardScaler``, for the rows not forgotten.
    n_samples_seen_ : int
        Number of rows not forgotten.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of str
        Feature names, when ``X`` had them.
    n_train_ : int
        Number of rows given to ``fit``.
    forgotten_ : ndarray of int
        Sorted positions of the forgotten rows.

    See Also
    --------
    ForgettingMinMaxScaler : min-max scaling recomputed from the kept rows.
    ForgetPipeline : forgets through every step of a pipeline.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skmuter.pipeline import ForgettingStandardScaler
    >>> X = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0], [6.0, 0.0]])
    >>> scaler = ForgettingStandardScaler().fit(X)
    >>> scaler.forget([2]).mean_
    array([2.66666667, 1.33333333])
    >>> bool(np.allclose(scaler.scale_, StandardScaler().fit(X[[0, 1, 3]]).scale_))
    True
    """

    def _fit_stats(self, X):
        n = X.shape[0]
        mean = X.mean(axis=0)
        m2 = ((X - mean) ** 2).sum(axis=0)
        self._set_stats(n, mean, m2)

    def _set_stats(self, n, mean, m2):
        self._mean, self._m2 = mean, m2
        self.__dict__.update(self._public_stats(n, mean, m2))

    def _public_stats(self, n, mean, m2):
        var = m2 / n
        out = {"n_samples_seen_": int(n), "_mean": mean, "_m2": m2}
        if not self.with_mean and not self.with_std:
            out.update(mean_=None, var_=None, scale_=None)
            return out
        out["mean_"] = mean.copy()
        if self.with_std:
            # As scikit-learn: near-constant features (within the rounding of
            # the variance computation) get scale 1.
            eps = np.finfo(np.float64).eps
            constant = var <= n * eps * var + (n * mean * eps) ** 2
            out["var_"] = var
            out["scale_"] = _handle_zeros_in_scale(np.sqrt(var), copy=True,
                                                   constant_mask=constant)
        else:
            out.update(var_=None, scale_=None)
        return out

    def _forget_stats(self, removed, kept):
        n = self.n_samples_seen_
        k = removed.shape[0]
        n_kept = n - k
        mean_u = removed.mean(axis=0)
        m2_u = ((removed - mean_u) ** 2).sum(axis=0)
        mean = (n * self._mean - k * mean_u) / n_kept
        # Combining (kept, removed) gives M2 = M2_kept + M2_u + n_kept k / n (mean - mean_u)^2.
        m2 = self._m2 - m2_u - (n_kept * k / n) * (mean - mean_u) ** 2
        return self._public_stats(n_kept, mean, np.maximum(m2, 0.0))


class ForgettingMinMaxScaler(_ForgettingTransformerMixin, MinMaxScaler):
    """``MinMaxScaler`` that can forget training rows (extremes from the kept rows).

    Same parameters and transform as :class:`sklearn.preprocessing.MinMaxScaler`.
    The extremes of a feature cannot be downdated, so the scaler keeps a
    float64 copy of its training rows; ``forget`` recomputes the minimum and
    maximum of the kept rows for the features where a forgotten row held an
    extreme (the others cannot change) and zeroes the forgotten rows. The
    result equals a ``MinMaxScaler`` fitted on the kept rows exactly. Inputs
    must be dense and finite; ``partial_fit`` is not supported.

    Parameters
    ----------
    feature_range : tuple (min, max), default=(0, 1)
        Range of the transformed training data.
    copy : bool, default=True
        Copy ``X`` in ``transform`` (the training copy is always kept).
    clip : bool, default=False
        Clip transformed values of held-out data to ``feature_range``.

    Attributes
    ----------
    data_min_, data_max_, data_range_, scale_, min_ : ndarray of shape (n_features,)
        As in ``MinMaxScaler``, for the rows not forgotten.
    n_samples_seen_ : int
        Number of rows not forgotten.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of str
        Feature names, when ``X`` had them.
    n_train_ : int
        Number of rows given to ``fit``.
    forgotten_ : ndarray of int
        Sorted positions of the forgotten rows.

    See Also
    --------
    ForgettingStandardScaler : standardisation by exact downdate.

    Examples
    --------
    >>> import numpy as np
    >>> from skmuter.pipeline import ForgettingMinMaxScaler
    >>> X = np.array([[0.0], [2.0], [10.0], [4.0]])
    >>> scaler = ForgettingMinMaxScaler().fit(X)
    >>> scaler.forget([2]).data_max_
    array([4.])
    >>> scaler.transform([[1.0]])
    array([[0.25]])
    """

    def _fit_stats(self, X):
        self.__dict__.update(self._public_stats(X.min(axis=0), X.max(axis=0), X.shape[0]))

    def _public_stats(self, data_min, data_max, n):
        lo, hi = self.feature_range
        if lo >= hi:
            raise ValueError(
                f"Minimum of desired feature range must be smaller than maximum. Got "
                f"{self.feature_range}."
            )
        data_range = data_max - data_min
        scale = (hi - lo) / _handle_zeros_in_scale(data_range, copy=True)
        return {
            "data_min_": data_min, "data_max_": data_max, "data_range_": data_range,
            "scale_": scale, "min_": lo - data_min * scale, "n_samples_seen_": int(n),
        }

    def _forget_stats(self, removed, kept):
        data_min = self.data_min_.copy()
        data_max = self.data_max_.copy()
        touched = np.flatnonzero(
            np.any(removed == data_min, axis=0) | np.any(removed == data_max, axis=0)
        )
        if touched.size:
            rest = self._X[np.ix_(kept, touched)]
            data_min[touched] = rest.min(axis=0)
            data_max[touched] = rest.max(axis=0)
        return self._public_stats(data_min, data_max, int(kept.sum()))


# ---------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------
# Transformers whose fitted state depends on the number (and names) of the
# features only, never on the values of the training rows.
_ROW_INDEPENDENT = (PolynomialFeatures,)


def _step_kind(step):
    """``'passthrough'``, ``'forget'`` or None (cannot forget) for a fitted transformer."""
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return "passthrough"
    if callable(getattr(step, "forget", None)) and callable(
        getattr(step, "remaining_training_data", None)
    ):
        return "forget"
    if isinstance(step, _ROW_INDEPENDENT):
        return "passthrough"
    try:
        if not step.__sklearn_tags__().requires_fit:
            return "passthrough"
    except AttributeError:
        pass
    return None


def _affine_map(old, new):
    """Per-column ``new ~ a * old + c`` fitted by least squares over the rows.

    Exact when the features changed by a per-feature affine map (the scalers
    above); a first-order guess otherwise. Constant columns keep ``a = 1``.
    """
    mo, mn = old.mean(axis=0), new.mean(axis=0)
    do, dn = old - mo, new - mn
    var = (do * do).sum(axis=0)
    cov = (do * dn).sum(axis=0)
    a = np.ones(old.shape[1])
    ok = var > 1e-300
    a[ok] = cov[ok] / var[ok]
    a[np.abs(a) < 1e-12] = 1.0
    return a, mn - a * mo


# Newton steps of on_rescale='newton' (quadratic convergence: 2 to 4 in practice).
_MAX_NEWTON_STEPS = 10
# Above this multiple of ``tol`` after the Newton steps, finish with the exact solver.
_REFIT_FACTOR = 100.0


def _has_linear_hooks(est):
    return all(hasattr(est, name) for name in ("_X", "_objectives", "_get_thetas",
                                               "_set_thetas", "forgetter_"))


class ForgetPipeline(Pipeline):
    """A :class:`sklearn.pipeline.Pipeline` that forgets training rows in every step.

    ``pipe.fit(X, y); pipe.forget([3, 9])`` forgets rows 3 and 9 of ``X`` in
    each forgetting transformer and in the final estimator. Every
    intermediate step must be pass-through (``'passthrough'``, or a
    transformer whose fitted state does not depend on the training rows, such
    as ``FunctionTransformer`` or ``PolynomialFeatures``) or a forgetting
    transformer (:class:`ForgettingStandardScaler`,
    :class:`ForgettingMinMaxScaler`, or any transformer with ``forget`` and
    ``remaining_training_data``); otherwise ``forget`` raises, naming the
    step, and nothing changes. The final estimator must have ``forget``.

    When a forgetting transformer's statistics change, the remaining rows'
    features change too. The final estimator's stored training rows are then
    re-expressed in the new feature space (recomputed from the first
    forgetting step's kept rows), its parameters mapped so that its
    predictions are unchanged (exact for per-feature affine scalers) and
    re-linearised according to ``on_rescale``; its forgetting memory is
    rebuilt at the new parameters. This needs an estimator that keeps its
    training rows (the skmuter linear estimators); for any other final
    estimator a change of statistics makes ``forget`` refuse. When no
    statistic changes (pass-through steps only, or a min-max scaler whose
    extremes are kept), ``forget`` is exactly the final estimator's own.

    Parameters
    ----------
    steps : list of (str, estimator) tuples
        As in :class:`~sklearn.pipeline.Pipeline`.
    transform_input : list of str, default=None
        As in :class:`~sklearn.pipeline.Pipeline`.
    memory : str or object with the joblib.Memory interface, default=None
        As in :class:`~sklearn.pipeline.Pipeline`.
    verbose : bool, default=False
        As in :class:`~sklearn.pipeline.Pipeline`.
    on_rescale : {'newton', 'refit'}, default='newton'
        What the final estimator does when the features of its remaining rows
        change. ``'newton'``: Newton steps with the exact total Hessian of the
        robust objective on the new features of the kept rows, from the mapped
        parameters and on their support (the non-zero weights of an l_inf
        model), until the estimator's optimality residual reaches its ``tol``
        (at most 10 steps; each costs one forgetting-memory build, and the
        convergence is quadratic); if the optimality conditions then still
        fail (the support must change), the estimator's exact solver finishes
        from there. ``'refit'``: the exact solver, warm-started from the mapped
        parameters (slower when the change is small). Either way the result is
        the model obtained by retraining the whole pipeline, to the solver's
        tolerance.

    Attributes
    ----------
    named_steps, classes_, n_features_in_, feature_names_in_
        As in :class:`~sklearn.pipeline.Pipeline`.
    n_train_ : int
        Number of training rows (of the final estimator).
    forgotten_ : ndarray of int
        Sorted positions of the forgotten rows (of the final estimator).
    forget_log_ : list of dict
        The final estimator's request log; records of requests that changed
        the features also have ``rescaled=True`` and ``rescale_time``.

    See Also
    --------
    make_forget_pipeline : build one without naming the steps.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmuter import AdversarialLogisticRegression
    >>> from skmuter.pipeline import ForgetPipeline, ForgettingMinMaxScaler
    >>> X, y = load_digits(n_class=2, return_X_y=True)
    >>> pipe = ForgetPipeline([("scale", ForgettingMinMaxScaler()),
    ...                        ("clf", AdversarialLogisticRegression(attack="fgsm"))])
    >>> pipe = pipe.fit(X, y).forget([3, 9])
    >>> pipe.forgotten_
    array([3, 9])
    >>> pipe.named_steps["scale"].forgotten_
    array([3, 9])
    """

    _parameter_constraints: ClassVar[dict] = {
        **Pipeline._parameter_constraints,
        "on_rescale": [StrOptions({"newton", "refit"})],
    }

    def __init__(self, steps, *, transform_input=None, memory=None, verbose=False,
                 on_rescale="newton"):
        super().__init__(steps, transform_input=transform_input, memory=memory,
                         verbose=verbose)
        self.on_rescale = on_rescale

    # ---- delegated fitted attributes ------------------------------------
    @property
    def n_train_(self):
        return self._final_estimator.n_train_

    @property
    def forgotten_(self):
        return self._final_estimator.forgotten_

    @property
    def forget_log_(self):
        return self._final_estimator.forget_log_

    # ---- forgetting -----------------------------------------------------
    def _final_can_forget(self):
        final = self._final_estimator
        return final != "passthrough" and callable(getattr(final, "forget", None))

    @available_if(_final_can_forget)
    def forget(self, indices):
        """Forget training rows in every step, as one batch request.

        Parameters
        ----------
        indices : array-like of int or bool
            Positions in the training set given to ``fit``, or a boolean mask
            of its length. Cumulative.

        Returns
        -------
        self : object
            On error (a step that cannot forget, a bad request) nothing changes.
        """
        return self._forget(indices, partial=False)

    @available_if(_final_can_forget)
    def partial_forget(self, indices):
        """Forget training rows in every step as successive single-row requests.

        Parameters
        ----------
        indices : array-like of int or bool
            Positions in the training set, or a boolean mask.

        Returns
        -------
        self : object
            All requests, or none of them, are applied.
        """
        return self._forget(indices, partial=True)

    def _forgetting_steps(self):
        """Check every step; return ``[(position, name, transformer)]`` that forget."""
        out = []
        for idx, (name, step) in enumerate(self.steps[:-1]):
            kind = _step_kind(step)
            if kind is None:
                raise TypeError(
                    f"step {name!r} ({type(step).__name__}) keeps statistics of the training "
                    "rows and cannot forget them; use a forgetting transformer (e.g. "
                    "skmuter.pipeline.ForgettingStandardScaler or ForgettingMinMaxScaler) "
                    "or one whose fitted state does not depend on the rows."
                )
            if kind == "forget":
                out.append((idx, name, step))
        return out

    def _forget(self, indices, partial):
        check_is_fitted(self)
        name, final = self.steps[-1]
        forgetting = self._forgetting_steps()
        rows = validate_indices(indices, final.n_train_, final.forgotten_)
        if hasattr(final, "_validate_request"):
            final._validate_request(rows)
        if not forgetting:
            (final.partial_forget if partial else final.forget)(rows)
            return self
        for _, sname, step in forgetting:
            if step.n_train_ != final.n_train_ or not np.array_equal(
                step.forgotten_, final.forgotten_
            ):
                raise ValueError(
                    f"step {sname!r} has not seen the same training rows or forgets as the "
                    f"final step {name!r}; refit the pipeline."
                )
        # All-or-nothing: every step that changes is restored on any error.
        changing = [step for _, _, step in forgetting] + [final]
        saved = copy.deepcopy([obj.__dict__ for obj in changing])
        try:
            for req in ([np.array([r]) for r in rows] if partial else [np.sort(rows)]):
                self._forget_request(req, forgetting)
        except BaseException:
            for obj, state in zip(changing, saved):
                obj.__dict__.clear()
                obj.__dict__.update(state)
            raise
        return self

    def _transform_from(self, start, Z):
        """Pass rows given to step ``start`` through the transformers from it on."""
        for idx, _, step in self._iter(with_final=False, filter_passthrough=True):
            if idx < start:
                continue
            names = getattr(step, "feature_names_in_", None)
            if names is not None and not hasattr(Z, "columns"):
                import pandas as pd

                Z = pd.DataFrame(Z, columns=names)
            Z = step.transform(Z)
        return np.asarray(Z, dtype=np.float64)

    def _forget_request(self, req, forgetting):
        name, final = self.steps[-1]
        kept = np.ones(final.n_train_, dtype=bool)
        kept[final.forgotten_] = False
        kept[req] = False
        start, first = forgetting[0][0], forgetting[0][2]
        # The first forgetting step's kept rows (before this request), less the request.
        before = np.ones(final.n_train_, dtype=bool)
        before[final.forgotten_] = False
        inputs = first.remaining_training_data()[kept[before]]
        old = self._transform_from(start, inputs)
        for _, _, step in forgetting:
            step.forget(req)
        new = self._transform_from(start, inputs)
        final.forget(req)
        if np.array_equal(old, new):
            return
        if not _has_linear_hooks(final):
            raise TypeError(
                f"forgetting changed the features of the remaining rows, and the final step "
                f"{name!r} ({type(final).__name__}) cannot re-express its training rows; use "
                "pass-through preprocessing or scalers fitted on other data."
            )
        t0 = time.perf_counter()
        self._reexpress(final, new, kept)
        final.forget_log_[-1].update(rescaled=True, rescale_time=time.perf_counter() - t0)

    def _reexpress(self, final, new, kept):
        """Move the final estimator to the new features of its kept rows and re-linearise."""
        # Imported here: the forgetter solvers are not needed to build a pipeline.
        from .forgetters._linalg import solve_dense

        kept_rows = np.flatnonzero(kept)
        if hasattr(final, "attack_"):
            final.attack_.threat(new.shape[1]).check_inside(new)
        a, c = _affine_map(final._X[kept_rows], new)
        tol = max(float(getattr(final, "tol", 0.0)), 1e-12)
        thetas = []
        for theta, obj in zip(final._get_thetas(), final._objectives):
            d = obj.n_features
            theta = theta.copy()
            w = theta[:d] / a
            if obj.fit_intercept:
                theta[d] -= float(w @ c)
            theta[:d] = w
            thetas.append(theta)
        # The objectives normally share ``_X``; write every distinct array, so
        # that a copy made by unpickling cannot keep the old features.
        arrays = {id(final._X): final._X}
        arrays.update((id(obj.X), obj.X) for obj in final._objectives)
        for arr in arrays.values():
            arr[kept_rows] = new
            arr[~kept] = 0.0
        out = []
        for theta, obj in zip(thetas, final._objectives):
            if self.on_rescale == "refit":
                theta = obj.refit(kept_rows, theta0=theta)
            else:
                theta = theta.copy()
                cols = np.flatnonzero(obj.free_mask(theta))
                for _ in range(_MAX_NEWTON_STEPS):
                    if obj.kkt_residual(theta, kept_rows) <= tol:
                        break
                    g = obj.grad_sum(theta, kept_rows, cols=cols)
                    if obj.noise is not None:  # certified removal's linear term
                        g = g + obj.noise[cols]
                    H = obj.hessian_sum(theta, kept_rows, kind="total", cols=cols)
                    theta[cols] -= solve_dense(H, g)[0]
                if obj.kkt_residual(theta, kept_rows) > _REFIT_FACTOR * tol:
                    # The support changed (a zero weight must move): the exact
                    # solver follows it, warm-started from the Newton point.
                    theta = obj.refit(kept_rows, theta0=theta)
            out.append(theta)
        final._set_thetas(out)
        if getattr(final, "certificate_", None) is not None:
            final._update_certificate(kept_rows)
        template = final.forgetter_
        final._forgetter_states = [
            clone(template).prepare(obj, theta, kept_rows)
            for obj, theta in zip(final._objectives, out)
        ]


def _name_steps(estimators):
    names = [
        est if isinstance(est, str) else type(est).__name__.lower() for est in estimators
    ]
    counts = {n: names.count(n) for n in names}
    seen = {}
    out = []
    for n in names:
        if counts[n] > 1:
            seen[n] = seen.get(n, 0) + 1
            out.append(f"{n}-{seen[n]}")
        else:
            out.append(n)
    return list(zip(out, estimators))


def make_forget_pipeline(*steps, memory=None, transform_input=None, verbose=False,
                         on_rescale="newton") -> ForgetPipeline:
    """Build a :class:`ForgetPipeline`, naming the steps after their classes.

    Parameters
    ----------
    *steps : list of estimators
        The transformers and the final estimator.
    memory, transform_input, verbose, on_rescale
        As in :class:`ForgetPipeline`.

    Returns
    -------
    pipe : ForgetPipeline

    Examples
    --------
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> from skmuter import AdversarialRidge
    >>> from skmuter.pipeline import ForgettingStandardScaler, make_forget_pipeline
    >>> pipe = make_forget_pipeline(FunctionTransformer(), ForgettingStandardScaler(),
    ...                             AdversarialRidge())
    >>> [name for name, _ in pipe.steps]
    ['functiontransformer', 'forgettingstandardscaler', 'adversarialridge']
    """
    return ForgetPipeline(_name_steps(steps), memory=memory, transform_input=transform_input,
                          verbose=verbose, on_rescale=on_rescale)
