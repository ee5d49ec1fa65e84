"""The steps of a forgetting pipeline: adapting scikit-learn transformers to
forgetting versions.

Which transformers a :class:`~skmuter.pipeline.ForgetPipeline` can forget
through (pass-through, forgetting, or neither), their forgetting versions
(:func:`_adapt`), forgetting in the parts of a composite step, and
:class:`ForgettingColumnTransformer`. Public names are re-exported from
:mod:`skmuter.pipeline`.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, PolynomialFeatures, StandardScaler
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import check_is_fitted

from ._forgetting import rows_and_kept
from ._scalers import ForgettingMinMaxScaler, ForgettingSimpleImputer, ForgettingStandardScaler

# Transformers whose fitted state depends on the number (and names) of the
# features only, never on the values of the training rows.
_ROW_INDEPENDENT = (PolynomialFeatures,)

# scikit-learn transformers and their forgetting versions (same parameters).
_FORGETTING_VERSION = {
    StandardScaler: ForgettingStandardScaler,
    MinMaxScaler: ForgettingMinMaxScaler,
    SimpleImputer: ForgettingSimpleImputer,
}

_SUPPORTED = (
    "supported are StandardScaler, MinMaxScaler, SimpleImputer, transformers whose fitted "
    "state does not depend on the rows (FunctionTransformer, PolynomialFeatures, ...), a "
    "ColumnTransformer of these, and any transformer with forget() and "
    "remaining_training_data()"
)


def _is_passthrough(step):
    return step is None or (isinstance(step, str) and step in ("passthrough", "drop"))


def _can_forget(step):
    return callable(getattr(step, "forget", None)) and callable(
        getattr(step, "remaining_training_data", None)
    )


def _is_stateless(step):
    if isinstance(step, _ROW_INDEPENDENT):
        return True
    try:
        return not step.__sklearn_tags__().requires_fit
    except AttributeError:
        return False


def _step_kind(step):
    """``'passthrough'``, ``'forget'`` or None (cannot forget) for a fitted transformer."""
    if _is_passthrough(step):
        return "passthrough"
    if _can_forget(step):
        return "forget"
    if _is_stateless(step):
        return "passthrough"
    return None


def _adapt(step, path, nested=False):
    """The forgetting version of a transformer (a new, unfitted object), the
    step itself when it needs none, or raise ``TypeError`` naming ``path``.

    ``nested``: inside a column transformer, where a ``Pipeline`` of
    supported steps is accepted too.
    """
    if _is_passthrough(step) or _can_forget(step) or isinstance(step, _ForgettingSubPipeline):
        return step
    kind = type(step)
    if kind in _FORGETTING_VERSION:
        return _FORGETTING_VERSION[kind](**step.get_params(deep=False))
    if kind is ColumnTransformer:
        params = step.get_params(deep=False)
        params["transformers"] = [
            (name, _adapt(trans, f"{path} > {name!r}", nested=True), cols)
            for name, trans, cols in params["transformers"]
        ]
        params["remainder"] = _adapt(params["remainder"], f"{path} > remainder", nested=True)
        return ForgettingColumnTransformer(**params)
    if kind is Pipeline and nested:
        params = step.get_params(deep=False)
        params["steps"] = [(name, _adapt(sub, f"{path} > {name!r}", nested=True))
                           for name, sub in params["steps"]]
        return _ForgettingSubPipeline(**params)
    if _is_stateless(step):
        return step
    raise TypeError(
        f"step {path} ({kind.__name__}) keeps statistics of the training rows and cannot "
        f"forget them; {_SUPPORTED}."
    )


def _sub_forgetters(step):
    """The fitted parts of a composite step that forget (with ``forget``)."""
    if isinstance(step, ColumnTransformer):
        parts = [trans for _, trans, _ in step.transformers_]
    elif isinstance(step, Pipeline):
        parts = [sub for _, sub in step.steps]
    else:
        return []
    return [p for p in parts if not _is_passthrough(p) and callable(getattr(p, "forget", None))]


@contextlib.contextmanager
def _all_or_none(parts):
    """Restore every part's state if the block raises."""
    saved = copy.deepcopy([p.__dict__ for p in parts])
    try:
        yield
    except BaseException:
        for p, state in zip(parts, saved):
            p.__dict__.clear()
            p.__dict__.update(state)
        raise


def _forget_all(parts, rows):
    """``forget(rows)`` in every part; all of them or none (restored on error)."""
    with _all_or_none(parts):
        for p in parts:
            p.forget(rows)


def _copy_rows(X):
    """A private copy of training input: a DataFrame stays one (columns may be
    selected by name), anything else becomes an ndarray."""
    if hasattr(X, "iloc") and hasattr(X, "columns"):
        return X.copy(deep=True)
    return np.array(X, copy=True)


def _purge_rows(X, rows):
    """Erase rows of a copy made by :func:`_copy_rows` (0, or None for objects)."""
    if hasattr(X, "iloc"):
        for col in X.columns:
            values = X[col].to_numpy(copy=True)
            values[rows] = 0 if values.dtype.kind in "biufc" else None
            X[col] = values
        return X
    X[rows] = 0 if X.dtype.kind in "biufc" else None
    return X


def _take_rows(X, mask):
    return X.iloc[np.flatnonzero(mask)] if hasattr(X, "iloc") else X[mask]


class _ForgettingSubPipeline(Pipeline):
    """A ``Pipeline`` inside a :class:`ForgettingColumnTransformer`: ``forget``
    forgets the same rows in each of its steps (the column transformer keeps
    the input rows)."""

    def forget(self, indices):
        _forget_all(_sub_forgetters(self), indices)
        return self

    def _forget_rows(self, rows, Z):
        """Forget ``rows`` in every step; ``Z``: this pipeline's kept input rows
        after the request. A step whose inputs changed (an earlier imputer's
        fill value moved) re-fits its statistics on the new ones."""
        for _, step in self.steps:
            if _is_passthrough(step):
                continue
            if callable(getattr(step, "forget", None)):
                step.forget(rows)
                held = getattr(step, "remaining_training_data", None)
                if callable(getattr(step, "_refit_kept", None)) and callable(held):
                    Zf = np.asarray(Z, dtype=np.float64)
                    if not np.array_equal(Zf, np.asarray(held(), dtype=np.float64)):
                        step._refit_kept(Zf)
            Z = step.transform(_named(step, Z))


class ForgettingColumnTransformer(ColumnTransformer):
    """``ColumnTransformer`` whose transformers forget training rows.

    Same parameters and transform as
    :class:`sklearn.compose.ColumnTransformer`. At ``fit`` every transformer
    (and the remainder) is replaced by its forgetting version, as in
    :class:`ForgetPipeline` (a ``Pipeline`` of supported steps is accepted
    too); an unsupported one raises ``TypeError`` naming it. It keeps a copy
    of its input rows (the remaining rows are the input of this step when
    the pipeline re-expresses its final estimator); ``forget`` forgets the
    rows in every transformer, all of them or none, and erases them from the
    copy.

    Parameters
    ----------
    transformers : list of (str, transformer, columns) tuples
        As in :class:`~sklearn.compose.ColumnTransformer`; replaced at ``fit``
        by their forgetting versions.
    **kwargs
        ``remainder``, ``sparse_threshold``, ``n_jobs``, ``transformer_weights``,
        ``verbose``, ``verbose_feature_names_out``: as in ``ColumnTransformer``.

    Attributes
    ----------
    transformers_, named_transformers_, n_features_in_, feature_names_in_
        As in ``ColumnTransformer``; the fitted transformers are the
        forgetting versions.
    n_train_ : int
        Number of rows given to ``fit``.
    forgotten_ : ndarray of int
        Sorted positions of the forgotten rows.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.impute import SimpleImputer
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skmuter.pipeline import ForgettingColumnTransformer
    >>> X = np.array([[1.0, 0.0], [np.nan, 2.0], [3.0, 4.0], [8.0, 6.0]])
    >>> ct = ForgettingColumnTransformer([("impute", SimpleImputer(), [0]),
    ...                                   ("scale", StandardScaler(), [1])]).fit(X)
    >>> ct.forget([3]).named_transformers_["impute"].statistics_
    array([2.])
    """

    def fit(self, X, y=None, **params):
        """Fit every transformer (their forgetting versions); see ``ColumnTransformer``.

        Returns
        -------
        self : object
        """
        self.fit_transform(X, y, **params)
        return self

    def fit_transform(self, X, y=None, **params):
        """Fit every transformer (their forgetting versions) and transform ``X``.

        Returns
        -------
        X_t : ndarray of shape (n_samples, n_features_out)
        """
        self.transformers = [
            (name, _adapt(trans, repr(name), nested=True), cols)
            for name, trans, cols in self.transformers
        ]
        self.remainder = _adapt(self.remainder, "remainder", nested=True)
        out = super().fit_transform(X, y, **params)
        self._X = _copy_rows(X)
        self.n_train_ = int(out.shape[0])
        self.forgotten_ = np.zeros(0, dtype=np.int64)
        return out

    def forget(self, indices):
        """Forget training rows in every transformer (all of them or none).

        Parameters
        ----------
        indices : array-like of int or bool
            Positions in the rows given to ``fit``, or a boolean mask. Cumulative.

        Returns
        -------
        self : object
        """
        check_is_fitted(self)
        rows, kept = rows_and_kept(indices, self.n_train_, self.forgotten_)
        parts = _sub_forgetters(self)
        with _all_or_none(parts):
            inputs = _take_rows(self._X, kept)
            for name, trans, _ in self.transformers_:
                if trans not in parts:
                    continue
                if isinstance(trans, _ForgettingSubPipeline):
                    cols = self._transformer_to_input_indices[name]
                    trans._forget_rows(rows, _safe_indexing(inputs, cols, axis=1))
                else:
                    trans.forget(rows)
        self._X = _purge_rows(self._X, rows)
        self.forgotten_ = np.sort(np.concatenate([self.forgotten_, rows]))
        return self

    def partial_forget(self, indices):
        """As :meth:`forget` (the statistics end the same)."""
        return self.forget(indices)

    def remaining_training_data(self):
        """Return the input rows not forgotten (a DataFrame when fitted on one)."""
        check_is_fitted(self)
        kept = np.ones(self.n_train_, dtype=bool)
        kept[self.forgotten_] = False
        return _take_rows(self._X, kept)


def _named(step, Z):
    """``Z`` as a DataFrame with the step's input feature names, when it has them."""
    names = getattr(step, "feature_names_in_", None)
    if names is not None and not hasattr(Z, "columns"):
        import pandas as pd

        Z = pd.DataFrame(Z, columns=names)
    return Z
