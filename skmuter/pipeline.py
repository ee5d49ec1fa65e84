"""Forgetting through pipelines: a pipeline with ``forget`` and transformers that forget.

A fitted transformer keeps statistics of the rows it saw, so forgetting rows
in a pipeline means forgetting them in every step. :class:`ForgetPipeline`
accepts the pipelines users build with scikit-learn's own transformers: at
``fit`` it replaces each of them by its forgetting version, with the same
parameters (so that ``get_params``, ``set_params``, ``clone`` and grid
searches keep working on the same names), and refuses, naming the step, any
transformer it cannot forget through:

* **pass-through**: ``'passthrough'``, ``None``, and transformers whose fitted
  state does not depend on the training rows (scikit-learn's
  ``requires_fit=False`` tag, e.g. ``FunctionTransformer``, ``Normalizer``,
  ``Binarizer``; and ``PolynomialFeatures``);
* **forgetting transformers**: a ``forget`` method and
  ``remaining_training_data()``. ``StandardScaler``, ``MinMaxScaler`` and
  ``SimpleImputer`` become :class:`ForgettingStandardScaler` (exact downdate
  of mean and variance), :class:`ForgettingMinMaxScaler` (extremes recomputed
  from the kept rows) and :class:`ForgettingSimpleImputer` (column means
  downdated; medians and modes recomputed); a ``ColumnTransformer`` of these
  (or of ``Pipeline`` s of these) becomes a
  :class:`ForgettingColumnTransformer`;
* the **final estimator**, which must have ``forget``.

When a step's statistics change, every remaining row's features change for
the final estimator. Through the estimator's ``reexpress`` hook the pipeline
then re-expresses its stored training rows in the new feature space and
re-solves its objective there. When the change is a per-feature affine map
(the scalers), the parameters are first mapped so that predictions are
unchanged, then re-linearised: Newton steps with the exact total Hessian of
the new objective over the kept rows (``on_rescale='newton'``) or an exact
warm-started refit (``on_rescale='refit'``). When it is not (an imputer's fill
value moved, polynomial features of scaled columns), the exact solver re-fits
the parameters on the new features, warm-started from the current ones.
Either way the result is the model obtained by retraining the whole pipeline
on the kept rows. The forgetting memory is then rebuilt at the new
parameters, so later requests start from the new linearisation point.
"""

from __future__ import annotations

import copy
import time
from typing import ClassVar

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._forgetting import validate_indices
from ._scalers import ForgettingMinMaxScaler, ForgettingSimpleImputer, ForgettingStandardScaler
from ._steps import (
    _SUPPORTED,
    ForgettingColumnTransformer,
    _adapt,
    _is_passthrough,
    _named,
    _step_kind,
    _take_rows,
)

__all__ = [
    "ForgetPipeline",
    "ForgettingColumnTransformer",
    "ForgettingMinMaxScaler",
    "ForgettingSimpleImputer",
    "ForgettingStandardScaler",
    "make_forget_pipeline",
]


def _affine_map(old, new):
    """Per-column ``new ~ a * old + c`` fitted by least squares over the rows.

    Exact when the features changed by a per-feature affine map (the
    scalers); see :func:`_is_affine`. Constant columns keep ``a = 1``.
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


def _is_affine(old, new, scale, offset, rtol=1e-9):
    """Whether ``new == scale * old + offset`` for every row, to rounding."""
    if old.shape != new.shape:
        return False
    err = np.abs(old * scale + offset - new).max(axis=0, initial=0.0)
    size = 1.0 + np.abs(new).max(axis=0, initial=0.0) + np.abs(old * scale).max(axis=0,
                                                                                 initial=0.0)
    return bool(np.all(err <= rtol * size))


def _can_reexpress(est):
    """Whether ``est`` has the ``reexpress(X_new, scale, offset, polish)`` hook
    (the skmuter linear estimators)."""
    return callable(getattr(est, "reexpress", None))


def _final_has(name):
    def check(self):
        final = self._final_estimator
        return final != "passthrough" and callable(getattr(final, name, None))
    return check


class ForgetPipeline(Pipeline):
    """A :class:`sklearn.pipeline.Pipeline` that forgets training rows in every step.

    ``pipe.fit(X, y); pipe.forget([3, 9])`` forgets rows 3 and 9 of ``X`` in
    each step that keeps statistics of them and in the final estimator. The
    steps may be scikit-learn's own ``StandardScaler``, ``MinMaxScaler``,
    ``SimpleImputer`` and ``ColumnTransformer`` (of these, or of
    ``Pipeline`` s of these): ``fit`` replaces each by its forgetting version
    with the same parameters (:class:`ForgettingStandardScaler`,
    :class:`ForgettingMinMaxScaler`, :class:`ForgettingSimpleImputer`,
    :class:`ForgettingColumnTransformer`), which transforms exactly as the
    scikit-learn transformer fitted on the same rows; after ``fit``,
    ``named_steps`` holds the forgetting versions. Transformers whose fitted
    state does not depend on the training rows (``FunctionTransformer``,
    ``PolynomialFeatures``, ...) pass through unchanged, and so does any
    transformer with ``forget`` and ``remaining_training_data``. Any other
    step makes ``fit`` raise ``TypeError`` naming it. The final estimator
    must have ``forget``.

    When a step's statistics change, the remaining rows' features change
    too. The final estimator's stored training rows are then re-expressed in
    the new feature space (recomputed from the first forgetting step's kept
    rows) through its ``reexpress`` hook (the skmuter linear estimators have
    it): if the features moved by a per-feature affine map (the scalers),
    its parameters are mapped so that predictions are unchanged and
    re-linearised according to ``on_rescale``; otherwise (an imputer's fill
    value, polynomial features of scaled columns) they are re-fitted by the
    exact solver on the new features, warm-started from the current ones.
    Either way the model is the one obtained by retraining the whole
    pipeline on the kept rows, to the solver's tolerance, and its forgetting
    memory is rebuilt there. For a final estimator without the hook a change
    of features makes ``forget`` refuse. When no statistic changes, ``forget``
    is exactly the final estimator's own.

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
        change by a per-feature affine map. ``'newton'``: Newton steps with the
        exact total Hessian of the robust objective on the new features of the
        kept rows, from the mapped parameters and on their support (the
        non-zero weights of an l_inf model), until the estimator's optimality
        residual reaches its ``tol`` (at most 10 steps; the convergence is
        quadratic); if the optimality conditions then still fail (the support
        must change), the estimator's exact solver finishes from there.
        ``'refit'``: the exact solver, warm-started from the mapped parameters.
        Changes that are not affine per feature always use the exact solver.

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
        the features also have ``rescaled=True``, ``rescale`` (``'affine'``
        or ``'refit'``) and ``rescale_time``.

    See Also
    --------
    make_forget_pipeline : build one without naming the steps.
    ForgetPipeline.from_pipeline : from a fitted scikit-learn ``Pipeline``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import MinMaxScaler
    >>> from skmuter import AdversarialLogisticRegression
    >>> from skmuter.pipeline import ForgetPipeline
    >>> X, y = load_digits(n_class=2, return_X_y=True)
    >>> pipe = ForgetPipeline([("scale", MinMaxScaler()),
    ...                        ("clf", AdversarialLogisticRegression(attack="fgsm"))])
    >>> pipe = pipe.fit(X, y).forget([3, 9])
    >>> type(pipe.named_steps["scale"]).__name__
    'ForgettingMinMaxScaler'
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

    # ---- fitting ------------------------------------------------------------
    def _adapt_steps(self):
        """Replace scikit-learn transformers by their forgetting versions, or raise."""
        if not isinstance(self.steps, (list, tuple)) or not all(
            isinstance(s, tuple) and len(s) == 2 for s in self.steps
        ):
            return  # Pipeline's own validation says what is wrong
        steps = list(self.steps)
        for i, (name, step) in enumerate(steps[:-1]):
            steps[i] = (name, _adapt(step, repr(name)))
        self.steps = steps

    def fit(self, X, y=None, **params):
        """Fit every step (the forgetting versions of scikit-learn transformers).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Training inputs. The index labels of a DataFrame (or Series) are
            kept for ``forget(labels, by="label")``.
        y : array-like of shape (n_samples,), default=None
            Targets.
        **params : dict
            As in :meth:`sklearn.pipeline.Pipeline.fit`.

        Returns
        -------
        self : object
            Any earlier forgetting state is discarded.
        """
        self._adapt_steps()
        super().fit(X, y, **params)
        self._remember_index(X)
        return self

    def _remember_index(self, X):
        index = getattr(X, "index", None) if hasattr(X, "iloc") else None
        self._label_index = None if index is None else index.copy()
        self._label_positions = None if index is None else np.arange(len(index))

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
    def forget(self, indices, by="position"):
        """Forget training rows in every step, as one batch request.

        Parameters
        ----------
        indices : array-like of int or bool, or of index labels
            ``by='position'``: positions in the training set given to ``fit``,
            or a boolean mask of its length. ``by='label'``: labels of the
            index of the DataFrame given to ``fit``. Cumulative.
        by : {'position', 'label'}, default='position'
            How ``indices`` name the rows. Labels are mapped to positions by
            the pipeline, which keeps the index of the DataFrame given to
            ``fit`` and drops the labels of forgotten rows from it; an
            unknown (or already forgotten) label raises ``KeyError``.

        Returns
        -------
        self : object
            On error (a step that cannot forget, a bad request) nothing changes.

        Examples
        --------
        >>> import pandas as pd
        >>> from sklearn.datasets import load_digits
        >>> from sklearn.preprocessing import StandardScaler
        >>> from skmuter import AdversarialLogisticRegression
        >>> from skmuter.pipeline import make_forget_pipeline
        >>> X, y = load_digits(n_class=2, return_X_y=True)
        >>> df = pd.DataFrame(X, index=[f"row{i}" for i in range(len(X))])
        >>> pipe = make_forget_pipeline(StandardScaler(),
        ...                             AdversarialLogisticRegression(attack="fgsm"))
        >>> pipe.fit(df, y).forget(["row7", "row2"], by="label").forgotten_
        array([2, 7])
        """
        return self._forget(self._positions(indices, by), partial=False)

    @available_if(_final_can_forget)
    def partial_forget(self, indices, by="position"):
        """Forget training rows in every step as successive single-row requests.

        Parameters
        ----------
        indices : array-like of int or bool, or of index labels
            As in :meth:`forget`.
        by : {'position', 'label'}, default='position'
            As in :meth:`forget`.

        Returns
        -------
        self : object
            All requests, or none of them, are applied.
        """
        return self._forget(self._positions(indices, by), partial=True)

    def _positions(self, indices, by):
        """Positions named by ``indices`` (labels when ``by='label'``)."""
        if isinstance(by, str) and by == "position":
            return indices
        if not (isinstance(by, str) and by == "label"):
            raise ValueError(f"by must be 'position' or 'label', got {by!r}.")
        check_is_fitted(self)
        index = getattr(self, "_label_index", None)
        if index is None:
            raise ValueError(
                "by='label' needs a pipeline fitted on a pandas DataFrame or Series (whose "
                "index labels it keeps); this one was fitted on data without an index: use "
                "by='position'."
            )
        import pandas as pd

        labels = pd.Index([indices] if np.ndim(indices) == 0 else list(indices))
        if labels.has_duplicates:
            raise ValueError(
                f"duplicate labels in the request: {labels[labels.duplicated()][:5].tolist()}."
            )
        if not index.is_unique:
            raise ValueError("the training index has duplicate labels, so a label does not "
                             "name one row; use by='position'.")
        pos = index.get_indexer(labels)
        if np.any(pos < 0):
            raise KeyError(
                "labels not among the remaining training rows (unknown, or forgotten "
                f"already): {labels[pos < 0][:5].tolist()}."
            )
        return self._label_positions[pos]

    def _forgetting_steps(self):
        """Check every step; return ``[(position, name, transformer)]`` that forget."""
        out = []
        for idx, (name, step) in enumerate(self.steps[:-1]):
            kind = _step_kind(step)
            if kind is None:
                raise TypeError(
                    f"step {name!r} ({type(step).__name__}) keeps statistics of the training "
                    f"rows and cannot forget them (refit the pipeline, whose fit replaces "
                    f"scikit-learn transformers by forgetting ones); {_SUPPORTED}."
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
            self._purge_labels(rows)
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
        self._purge_labels(rows)
        return self

    def _purge_labels(self, rows):
        """Drop the labels of forgotten rows from the kept index."""
        if getattr(self, "_label_index", None) is None:
            return
        keep = ~np.isin(self._label_positions, rows)
        self._label_index = self._label_index[keep]
        self._label_positions = self._label_positions[keep]

    def _transform_from(self, start, Z, stop=None):
        """Pass rows given to step ``start`` through the transformers from it on
        (to ``stop``, excluded, when given: then the output is left as it is)."""
        for idx, _, step in self._iter(with_final=False, filter_passthrough=True):
            if idx < start or (stop is not None and idx >= stop):
                continue
            Z = step.transform(_named(step, Z))
        return Z if stop is not None else np.asarray(Z, dtype=np.float64)

    def _forget_request(self, req, forgetting):
        name, final = self.steps[-1]
        kept = np.ones(final.n_train_, dtype=bool)
        kept[final.forgotten_] = False
        kept[req] = False
        start, first = forgetting[0][0], forgetting[0][2]
        # The first forgetting step's kept rows (before this request), less the request.
        before = np.ones(final.n_train_, dtype=bool)
        before[final.forgotten_] = False
        inputs = _take_rows(first.remaining_training_data(), kept[before])
        old = self._transform_from(start, inputs)
        Z, at = inputs, start
        for k, (idx, sname, step) in enumerate(forgetting):
            if k == 0:
                step.forget(req)
                continue
            # A later forgetting step holds the outputs of the earlier steps as
            # they were; when those changed (an imputer's fill value), its rows
            # are replaced by the new outputs and its statistics recomputed.
            Z = self._transform_from(at, Z, stop=idx)
            at = idx
            held = _take_rows(step.remaining_training_data(), kept[before])
            step.forget(req)
            if not np.array_equal(np.asarray(Z, dtype=np.float64),
                                  np.asarray(held, dtype=np.float64)):
                if not callable(getattr(step, "_refit_kept", None)):
                    raise TypeError(
                        f"forgetting changed the inputs of step {sname!r} "
                        f"({type(step).__name__}), which cannot re-fit its statistics on "
                        "new inputs; put it first among the steps that keep statistics."
                    )
                step._refit_kept(np.asarray(Z, dtype=np.float64))
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
        how = self._reexpress(final, new, kept)
        # a new last record (records are never changed in place: a
        # transaction keeps the log by reference)
        final.forget_log_ = [*final.forget_log_[:-1], {
            **final.forget_log_[-1], "rescaled": True, "rescale": how,
            "rescale_time": time.perf_counter() - t0}]

    def _reexpress(self, final, new, kept):
        """Move the final estimator to the new features of its kept rows.

        The map from the old features to the new is fitted here. When it is
        affine per feature (the scalers), the estimator's ``reexpress`` hook
        maps its parameters through it and re-linearises (``on_rescale``);
        otherwise the hook re-fits the parameters on the new features from the
        current ones (``polish='refit'``, the exact solver). Returns
        ``'affine'`` or ``'refit'``.
        """
        old, _ = final.remaining_training_data()
        old = np.asarray(old, dtype=np.float64)
        scale, offset = _affine_map(old, new)
        if _is_affine(old, new, scale, offset):
            final.reexpress(new, scale, offset, polish=self.on_rescale)
            return "affine"
        d = new.shape[1]
        final.reexpress(new, np.ones(d), np.zeros(d), polish="refit")
        return "refit"

    # ---- verification -----------------------------------------------------
    @available_if(_final_can_forget)
    def retrain(self):
        """The exact reference of every forget: the whole pipeline refitted on the kept rows.

        Steps before the first forgetting transformer do not depend on the
        training rows and are kept as fitted; the others are cloned (with
        their current parameters, ``solver='exact'`` for the final estimator
        where offered) and fitted on the kept input rows of the first
        forgetting step. Without forgetting transformers the final
        estimator's own ``retrain()`` is used when it has one (certified
        removal's linear term kept).

        Returns
        -------
        retrained : ForgetPipeline
            Fitted on the rows not forgotten; its ``forget`` positions refer
            to those rows in their order.
        """
        check_is_fitted(self)
        fname, final = self.steps[-1]
        forgetting = self._forgetting_steps()
        new = clone(self)
        _, y = final.remaining_training_data()
        if not forgetting:
            if callable(getattr(final, "retrain", None)):
                refit = final.retrain()
            else:
                X, y = final.remaining_training_data()
                refit = clone(final)
                if "solver" in refit.get_params():
                    refit.set_params(solver="exact")
                refit.fit(X, y)
            new.steps = [(n, copy.deepcopy(s)) for n, s in self.steps[:-1]] + [(fname, refit)]
        else:
            start, first = forgetting[0][0], forgetting[0][2]
            rest = ForgetPipeline([(n, clone(s)) for n, s in self.steps[start:]],
                                  on_rescale=self.on_rescale)
            est = rest.steps[-1][1]
            if "solver" in est.get_params():
                est.set_params(solver="exact")
            rest.fit(_named(first, first.remaining_training_data()), y)
            new.steps = [(n, copy.deepcopy(s)) for n, s in self.steps[:start]] + rest.steps
        index = getattr(self, "_label_index", None)
        new._label_index = None if index is None else index.copy()
        new._label_positions = None if index is None else np.arange(len(index))
        return new

    @available_if(_final_has("gradient_residual"))
    def gradient_residual(self):
        """The final estimator's gradient residual on its (transformed) kept rows.

        After every forget the final estimator holds the kept rows as the
        current steps transform them, so this is the optimality residual of
        the objective that retraining the whole pipeline would minimise.

        Returns
        -------
        residual : float
        """
        check_is_fitted(self)
        return float(self._final_estimator.gradient_residual())

    @available_if(_final_has("robust_score"))
    def robust_score(self, X, y, attack=None):
        """Score of the final estimator under attack, on the transformed ``X``.

        The attack perturbs the features the final estimator sees (the output
        of the preprocessing steps), in the threat model the estimator was
        adversarially trained under (``attack=None``: its exact worst case;
        or the given attack): the robustness that training defends. It is not
        a worst case over perturbations of the pipeline's raw input, whose
        size in feature units depends on the preprocessing (a scaler
        multiplies it by ``1 / scale_``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input of the pipeline.
        y : array-like of shape (n_samples,)
        attack : {'pgd', 'fgsm'} or attack object, default=None
            As in the final estimator's ``robust_score``.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        Xt = X
        for _, _, step in self._iter(with_final=False, filter_passthrough=True):
            Xt = step.transform(Xt)
        return float(self._final_estimator.robust_score(Xt, y, attack=attack))

    # ---- from a fitted scikit-learn pipeline ------------------------------
    @classmethod
    def from_pipeline(cls, pipe, X=None, *, on_rescale="newton"):
        """A forgetting pipeline from a fitted :class:`~sklearn.pipeline.Pipeline`.

        Same step names and parameters, scikit-learn transformers replaced by
        their forgetting versions. The fitted final estimator (a skmuter
        model, which keeps its training rows) and every step whose fitted
        state does not depend on the rows are carried over as fitted copies,
        without refitting. Steps that keep statistics of the rows (scalers,
        imputers, column transformers) do not keep the rows themselves, and
        forgetting needs them: their forgetting versions are fitted on
        ``X``, the training input of ``pipe`` (the statistics are
        scikit-learn's own, so they equal the fitted ones when ``X`` is that
        input), and checked to transform ``X`` as the fitted steps do; the
        final estimator's stored rows are checked against the transformed
        ``X`` as well. ``pipe`` is not changed.

        Parameters
        ----------
        pipe : fitted Pipeline
            Its final estimator should have ``forget``.
        X : array-like or DataFrame, default=None
            The rows ``pipe`` was fitted on; needed when a step keeps
            statistics of them. The index of a DataFrame is kept for
            ``forget(labels, by="label")``.
        on_rescale : {'newton', 'refit'}, default='newton'
            As in :class:`ForgetPipeline`.

        Returns
        -------
        pipeline : ForgetPipeline

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from sklearn.pipeline import make_pipeline
        >>> from sklearn.preprocessing import StandardScaler
        >>> from skmuter import AdversarialLogisticRegression
        >>> from skmuter.pipeline import ForgetPipeline
        >>> X, y = load_digits(n_class=2, return_X_y=True)
        >>> pipe = make_pipeline(StandardScaler(),
        ...                      AdversarialLogisticRegression(attack="fgsm")).fit(X, y)
        >>> forgetting = ForgetPipeline.from_pipeline(pipe, X).forget([0, 5])
        >>> forgetting.forgotten_
        array([0, 5])
        """
        check_is_fitted(pipe)
        if not isinstance(pipe, Pipeline):
            raise TypeError(f"from_pipeline needs a fitted Pipeline, got {type(pipe).__name__}.")
        fname, final = pipe.steps[-1]
        steps, Z = [], X
        for name, step in pipe.steps[:-1]:
            adapted = _adapt(step, repr(name))
            if adapted is step:  # pass-through, stateless or forgetting already: as fitted
                new = copy.deepcopy(step)
            else:
                if X is None:
                    raise ValueError(
                        f"step {name!r} ({type(step).__name__}) keeps statistics of the "
                        "training rows but not the rows, which forgetting needs: pass the "
                        "rows the pipeline was fitted on, from_pipeline(pipe, X)."
                    )
                new = adapted.fit(Z)
                got = np.asarray(new.transform(Z), dtype=np.float64)
                want = np.asarray(step.transform(Z), dtype=np.float64)
                if got.shape != want.shape or not np.allclose(got, want, rtol=1e-9,
                                                              atol=1e-12, equal_nan=True):
                    raise ValueError(
                        f"step {name!r} ({type(step).__name__}) was not fitted on X: refitted "
                        "on X it transforms X differently. Pass the rows the pipeline was "
                        "fitted on."
                    )
            if X is not None and not _is_passthrough(new):
                Z = new.transform(Z)
            steps.append((name, new))
        final = copy.deepcopy(final)
        if X is not None and callable(getattr(final, "remaining_training_data", None)):
            stored, _ = final.remaining_training_data()
            Z = np.asarray(Z, dtype=np.float64)
            if (getattr(final, "forgotten_", np.zeros(0)).size or stored.shape != Z.shape
                    or not np.allclose(stored, Z, rtol=1e-9, atol=1e-12)):
                raise ValueError(
                    f"the final step {fname!r} was not fitted on the transformed X (or has "
                    "forgotten rows already); pass the rows the pipeline was fitted on."
                )
        out = cls(steps + [(fname, final)], transform_input=pipe.transform_input,
                  memory=pipe.memory, verbose=pipe.verbose, on_rescale=on_rescale)
        out._validate_params()
        out._remember_index(X)
        return out


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
