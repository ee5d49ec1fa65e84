"""Scalers and an imputer that forget training rows: the forgetting transformers of a pipeline.

A fitted scaler keeps statistics of the rows it saw. These keep a float64
copy of their training rows as well, so that ``forget`` can update the
statistics to those of the kept rows (an exact downdate of mean and variance,
or of the column means of an imputer; extremes, medians and modes recomputed
from the kept rows) and erase the forgotten rows. Their statistics after
``fit`` are scikit-learn's own, so they transform exactly as the scikit-learn
transformer fitted on the same rows. They are public from
:mod:`skmuter.pipeline`.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils._mask import _get_mask
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._forgetting import rows_and_kept

__all__ = ["ForgettingMinMaxScaler", "ForgettingSimpleImputer", "ForgettingStandardScaler"]


def _handle_zeros_in_scale(scale, constant_mask=None):
    """A copy of ``scale`` with 1 for (near-)constant features, as scikit-learn's
    scalers set them: a constant feature is left unscaled, never divided by ~0."""
    scale = np.array(scale)
    if constant_mask is None:
        constant_mask = scale < 10 * np.finfo(scale.dtype).eps
    scale[constant_mask] = 1.0
    return scale


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
        raw = X
        X = validate_data(self, X, dtype=np.float64, copy=True, order="C", reset=True)
        self._X = X
        self._fit_stats(X)
        self._publish_fit(raw)
        self.n_train_ = X.shape[0]
        self.forgotten_ = np.zeros(0, dtype=np.int64)
        return self

    def _publish_fit(self, raw):
        """Hook: make the published statistics of ``fit`` scikit-learn's own."""

    def _refit_kept(self, X_kept):
        """Replace the kept rows by ``X_kept`` and recompute the statistics from them.

        A pipeline calls this when a step before this one changed its output
        (an imputer's fill value moved): the rows this step holds are then
        its new inputs, and its statistics those of a fit on them.
        """
        kept = self._kept_mask()
        X_kept = np.asarray(X_kept, dtype=np.float64)
        if X_kept.shape != (int(kept.sum()), self._X.shape[1]):
            raise ValueError(f"expected the {int(kept.sum())} kept rows, got shape "
                             f"{X_kept.shape}.")
        stats = self._stats_of(X_kept)
        self._X[kept] = X_kept
        self.__dict__.update(stats)

    def _stats_of(self, X):
        """The fitted statistics of ``X`` (the kept rows), as attributes."""
        saved = dict(self.__dict__)
        try:
            self._fit_stats(X)
            return {k: v for k, v in self.__dict__.items()
                    if k not in saved or v is not saved[k]}
        finally:
            self.__dict__.clear()
            self.__dict__.update(saved)

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

    def _publish_fit(self, raw):
        # The published statistics of the fit are scikit-learn's own, bit for
        # bit (its sums depend on the memory layout of the input), so that
        # the scaler transforms exactly as a StandardScaler; the two-pass
        # moments are what later forgets downdate.
        raw = check_array(raw, dtype=np.float64)
        ref = StandardScaler(with_mean=self.with_mean, with_std=self.with_std).fit(raw)
        self.mean_, self.var_, self.scale_ = ref.mean_, ref.var_, ref.scale_

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
            out["scale_"] = _handle_zeros_in_scale(np.sqrt(var), constant_mask=constant)
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
        scale = (hi - lo) / _handle_zeros_in_scale(data_range)
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


def _is_empty(statistics):
    """Mask of the features a SimpleImputer drops (statistic NaN)."""
    return np.array([isinstance(v, float) and math.isnan(v) for v in statistics], dtype=bool)


class ForgettingSimpleImputer(_ForgettingTransformerMixin, SimpleImputer):
    """``SimpleImputer`` that can forget training rows.

    Same parameters and transform as :class:`sklearn.impute.SimpleImputer`,
    for numeric input. It keeps a float64 copy of its training rows (missing
    entries included); ``forget`` then updates the fill values to those of
    the kept rows: ``strategy='mean'`` by an exact downdate of each column's
    sum and count of observed values (``O(k d)``), ``'median'`` and
    ``'most_frequent'`` recomputed from the kept rows, ``'constant'`` needs
    nothing. The forgotten rows are zeroed in the copy. The result equals a
    ``SimpleImputer`` fitted on the kept rows (up to rounding for the mean).

    A request that would leave a feature without any observed value among
    the kept rows is refused when ``keep_empty_features=False`` (the imputer
    would drop the feature, changing the number of output features).
    ``add_indicator=True``, sparse and non-numeric input, ``sample_weight``
    and ``partial_fit`` are not supported.

    Parameters
    ----------
    missing_values, strategy, fill_value, copy, add_indicator, keep_empty_features
        As in :class:`~sklearn.impute.SimpleImputer`.

    Attributes
    ----------
    statistics_ : ndarray of shape (n_features,)
        As in ``SimpleImputer``, for the rows not forgotten.
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
    >>> from skmuter.pipeline import ForgettingSimpleImputer
    >>> X = np.array([[1.0], [np.nan], [3.0], [8.0]])
    >>> imputer = ForgettingSimpleImputer().fit(X)
    >>> imputer.statistics_
    array([4.])
    >>> imputer.forget([3]).transform([[np.nan]])
    array([[2.]])
    """

    def fit(self, X, y=None, sample_weight=None):
        """Compute the fill values and keep a float64 copy of ``X`` for forgetting.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (dense, numeric; missing entries allowed).
        y : None
            Ignored.
        sample_weight : None
            Not supported.

        Returns
        -------
        self : object
            The fitted imputer. Any earlier forgetting state is discarded.
        """
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__} does not support sample_weight.")
        self._validate_params()
        if self.add_indicator:
            raise ValueError(
                f"{type(self).__name__} does not support add_indicator=True (the indicator's "
                "columns depend on which training rows have missing values); add a separate "
                "stateless step or refit instead."
            )
        try:
            data = check_array(X, dtype=np.float64, ensure_all_finite="allow-nan", copy=True,
                               order="C")
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{type(self).__name__} needs dense numeric input it can keep as float64 to "
                f"forget rows: {exc}"
            ) from exc
        SimpleImputer.fit(self, X)  # scikit-learn's own statistics, names and dtype
        self._X = data
        self._fit_stats(data)
        self.n_train_ = data.shape[0]
        self.forgotten_ = np.zeros(0, dtype=np.int64)
        return self

    def _observed(self, X):
        return ~_get_mask(X, self.missing_values)

    def _stats_of(self, X):
        out = super()._stats_of(X)
        ref = SimpleImputer(missing_values=self.missing_values, strategy=self.strategy,
                            fill_value=self.fill_value,
                            keep_empty_features=self.keep_empty_features)
        out["statistics_"] = ref.fit(X).statistics_.astype(self.statistics_.dtype, copy=False)
        if not self.keep_empty_features and np.any(
            _is_empty(out["statistics_"]) != _is_empty(self.statistics_)
        ):
            raise ValueError("the new inputs would leave a feature without an observed value; "
                             "refit the pipeline.")
        return out

    def _fit_stats(self, X):
        if self.strategy == "mean":
            seen = self._observed(X)
            self._sum = np.where(seen, X, 0.0).sum(axis=0)
            self._count = seen.sum(axis=0)

    def _forget_stats(self, removed, kept):
        out = {}
        if self.strategy == "mean":
            seen = self._observed(removed)
            total = self._sum - np.where(seen, removed, 0.0).sum(axis=0)
            count = self._count - seen.sum(axis=0)
            stats = np.full(total.shape, 0.0 if self.keep_empty_features else np.nan)
            ok = count > 0
            stats[ok] = total[ok] / count[ok]
            out.update(statistics_=stats, _sum=total, _count=count)
        elif self.strategy == "constant":
            stats = self.statistics_.copy()
            if not self.keep_empty_features:
                stats[~self._observed(self._X[kept]).any(axis=0)] = np.nan
            out["statistics_"] = stats
        else:
            ref = SimpleImputer(missing_values=self.missing_values, strategy=self.strategy,
                                fill_value=self.fill_value,
                                keep_empty_features=self.keep_empty_features)
            out["statistics_"] = ref.fit(self._X[kept]).statistics_.astype(
                self.statistics_.dtype, copy=False)
        now = _is_empty(out["statistics_"])
        if not self.keep_empty_features and np.any(now != _is_empty(self.statistics_)):
            cols = np.flatnonzero(now != _is_empty(self.statistics_))
            raise ValueError(
                f"the request would leave feature(s) {cols[:5].tolist()} without an observed "
                "value among the kept rows, so SimpleImputer would drop them and the number "
                "of features would change; refit on the kept rows instead, or use "
                "keep_empty_features=True."
            )
        return out
