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
the final estimator. Through the estimator's ``reexpress`` hook the pipeline
then re-expresses its stored training rows in the new feature space, maps its
parameters so that its predictions are unchanged, and re-linearises: one Newton step with the exact
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
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._forgetting import validate_indices
from ._scalers import ForgettingMinMaxScaler, ForgettingStandardScaler

__all__ = [
    "ForgetPipeline",
    "ForgettingMinMaxScaler",
    "ForgettingStandardScaler",
    "make_forget_pipeline",
]


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


def _can_reexpress(est):
    """Whether ``est`` has the ``reexpress(X_new, scale, offset, polish)`` hook
    (the skmuter linear estimators)."""
    return callable(getattr(est, "reexpress", None))


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
    rebuilt at the new parameters. This goes through the final estimator's
    ``reexpress(X_new, scale, offset, polish)`` hook (the skmuter linear
    estimators have it); for any other final estimator a change of
    statistics makes ``forget`` refuse. When no
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
        (at most 10 steps, each building the total Hessian once; the
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
        check = getattr(final, "check_forget_request", None)
        if callable(check):  # the final step's own checks (classes), before any step forgets
            check(rows)
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
        if not _can_reexpress(final):
            raise TypeError(
                f"forgetting changed the features of the remaining rows, and the final step "
                f"{name!r} ({type(final).__name__}) cannot re-express its training rows; use "
                "pass-through preprocessing or scalers fitted on other data."
            )
        t0 = time.perf_counter()
        self._reexpress(final, new, kept)
        final.forget_log_[-1].update(rescaled=True, rescale_time=time.perf_counter() - t0)

    def _reexpress(self, final, new, kept):
        """Move the final estimator to the new features of its kept rows.

        The map from the old features to the new is fitted here (exact for
        per-feature affine scalers); the estimator's ``reexpress`` hook maps
        its parameters, re-linearises and rebuilds its forgetting memory.
        """
        old, _ = final.remaining_training_data()
        scale, offset = _affine_map(old, new)
        final.reexpress(new, scale, offset, polish=self.on_rescale)


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
