"""Validation of forget requests: positions, boolean masks and index labels.

Shared by the estimators (:class:`skmuter._forgetting.ForgetMixin`), the
forgetting transformers and pipelines. Imports no estimator.
"""

from __future__ import annotations

import numbers

import numpy as np


def _shown(values, n=5):
    values = list(values)
    text = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values[:n])
    return f"[{text}{', ...' if len(values) > n else ''}]"


_BAD_TYPE = "indices must be integers or a boolean mask"


def _as_positions(indices, n_train):
    """The request as an array of Python-int-safe positions (object or int64), or raise."""
    if indices is None:
        raise TypeError(f"{_BAD_TYPE}, got None.")
    if isinstance(indices, str | bytes):
        raise TypeError(f"{_BAD_TYPE}, got the string {indices!r}; to forget rows by their "
                        "pandas index label pass by='label'.")
    if isinstance(indices, bool | np.bool_):
        raise TypeError(f"{_BAD_TYPE}, got the single boolean {bool(indices)}; a boolean mask "
                        f"has one entry per training row ({n_train}).")
    if isinstance(indices, numbers.Integral):
        return np.array([int(indices)], dtype=object)
    if isinstance(indices, numbers.Real):
        raise TypeError(f"{_BAD_TYPE}, got the float {indices!r}; positions are integers.")
    if isinstance(indices, set | frozenset | dict):
        raise TypeError(f"{_BAD_TYPE}, got a {type(indices).__name__} (unordered); pass a "
                        "list or an array.")
    try:
        arr = np.asarray(indices)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise ValueError(f"indices must be 1-D, got an irregular nested sequence ({exc}).") \
            from None
    if isinstance(indices, list | tuple) and arr.ndim == 1:
        # NumPy turns [1, 'a'] into strings and [True, 2] into integers: keep the items
        flags = [isinstance(v, bool | np.bool_) for v in indices]
        if (arr.dtype.kind in "US" and not all(isinstance(v, str | bytes) for v in indices)) \
                or (any(flags) and not all(flags)):
            arr = np.empty(len(indices), dtype=object)
            arr[:] = list(indices)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {arr.shape}.")
    kind = arr.dtype.kind
    if kind == "b":
        if arr.shape[0] != n_train:
            raise ValueError(
                f"a boolean mask must have one entry per training row ({n_train}), "
                f"got shape {arr.shape}."
            )
        return np.flatnonzero(arr).astype(object)
    if kind in "iu":
        return arr.astype(object)  # Python ints: no wrap-around of uint64 or overflow
    if arr.size == 0:
        return arr.astype(object)
    if kind == "f":
        bad = [v for v in arr.tolist() if not (np.isfinite(v) and float(v).is_integer())]
        what = f"non-integer values {_shown(bad)}" if bad else f"floats {_shown(arr.tolist())}"
        raise TypeError(f"{_BAD_TYPE}, got {what} (dtype {arr.dtype}); positions are integers "
                        "(convert with np.asarray(indices, dtype=int) if they are whole).")
    if kind in "US":
        raise TypeError(f"{_BAD_TYPE}, got strings {_shown(arr.tolist())}; to forget rows by "
                        "their pandas index label pass by='label'.")
    if kind == "O":
        items = arr.tolist()
        kinds = {"bool" if isinstance(v, bool | np.bool_) else
                 "int" if isinstance(v, numbers.Integral) else type(v).__name__ for v in items}
        if kinds == {"int"}:
            return np.array([int(v) for v in items], dtype=object)
        if kinds == {"bool"}:
            return _as_positions(np.array(items, dtype=bool), n_train)
        if "bool" in kinds and "int" in kinds and len(kinds) == 2:
            raise TypeError(f"{_BAD_TYPE}, got a list that mixes booleans and integers; pass "
                            "either positions or a boolean mask.")
        odd = [v for v in items if isinstance(v, bool | np.bool_)
               or not isinstance(v, numbers.Integral)]
        raise TypeError(f"{_BAD_TYPE}, got {_shown(odd)} of type "
                        f"{sorted(kinds - {'int'})}; positions are integers"
                        + (" (to forget by pandas index label pass by='label')."
                           if any(isinstance(v, str) for v in odd) else "."))
    raise TypeError(f"{_BAD_TYPE}, got dtype {arr.dtype}.")


def validate_indices(indices, n_train, forgotten):
    """Turn a forget request into an array of row positions, or raise.

    Accepts integers of any type and size (Python, NumPy signed or unsigned),
    1-D integer array-likes and boolean masks of length ``n_train``. Rejects
    empty requests, non-integer values (floats, strings, ``None``, mixed lists;
    each named in the message), negative and out-of-range positions,
    duplicates, and rows already forgotten. The order is kept.
    """
    pos = _as_positions(indices, n_train)
    if pos.size == 0:
        raise ValueError("the forget request is empty.")
    negative = [v for v in pos.tolist() if v < 0]
    if negative:
        raise IndexError(
            f"indices out of range for {n_train} training rows: negative positions "
            f"{_shown(negative)} (positions count from 0; counting from the end is not "
            "accepted)."
        )
    large = [v for v in pos.tolist() if v >= n_train]
    if large:
        raise IndexError(f"indices out of range for {n_train} training rows (0 to "
                         f"{n_train - 1}): {_shown(large)}.")
    rows = pos.astype(np.int64)
    uniq, counts = np.unique(rows, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"duplicate indices in the request: {uniq[counts > 1][:5].tolist()}.")
    again = np.intersect1d(uniq, forgotten)
    if again.size:
        raise ValueError(f"rows already forgotten: {again[:5].tolist()}.")
    return rows


def check_leaves_rows(rows, n_train, forgotten):
    """Raise when the validated ``rows`` (distinct, none forgotten yet) are every
    remaining row; the cost does not grow with ``n_train``."""
    if len(forgotten) + len(rows) >= n_train:
        raise ValueError("the request would forget every remaining training row.")


def rows_and_kept(indices, n_train, forgotten):
    """Validate a request; returns ``(rows, kept)``, the mask of rows kept after it.

    Raises when the request would forget every remaining row.
    """
    rows = validate_indices(indices, n_train, forgotten)
    check_leaves_rows(rows, n_train, forgotten)
    kept = np.ones(n_train, dtype=bool)
    kept[forgotten] = False
    kept[rows] = False
    return rows, kept


def label_positions(indices, by, fitted_index):
    """Positions of a request given by position (returned unchanged) or by index label.

    ``fitted_index`` is called only for ``by='label'`` (so an estimator can
    check it is fitted first) and returns ``(index, kept)``: the training
    index as an object array (or None when fitted without one) and the mask
    of training rows not yet forgotten. Labels must name exactly one
    remaining row each; the order of the request is kept.
    """
    if isinstance(by, str) and by == "position":
        return indices
    if not (isinstance(by, str) and by == "label"):
        raise ValueError(f"by must be 'position' or 'label', got {by!r}.")
    index, kept = fitted_index()
    if index is None:
        raise ValueError(
            "forget(..., by='label') needs the estimator to be fitted on a pandas "
            "DataFrame or Series, whose index gives the labels; this one was fitted "
            "without an index: pass positions (by='position')."
        )
    if isinstance(indices, str | bytes) or not np.iterable(indices):
        indices = [indices]
    labels = list(indices)
    if not labels:
        raise ValueError("the forget request is empty.")
    for label in labels:
        try:
            hash(label)
        except TypeError:
            raise TypeError(f"labels must be hashable, got {label!r}.") from None
    # the kept rows whose label is asked for, found by pandas' hash table (one
    # vectorised pass, not a Python loop over every row)
    import pandas as pd

    positions = np.flatnonzero(kept)
    hit = pd.Series(index[positions], dtype=object).isin(
        list(dict.fromkeys(labels))).to_numpy()
    where = {}
    for pos in positions[hit]:
        where.setdefault(index[pos], []).append(int(pos))
    rows, unknown, ambiguous, seen = [], [], [], set()
    for label in labels:
        try:
            hits = where.get(label)
        except TypeError:
            raise TypeError(f"labels must be hashable, got {label!r}.") from None
        if label in seen:
            raise ValueError(f"duplicate labels in the request: [{label!r}].")
        seen.add(label)
        if hits is None:
            unknown.append(label)
        elif len(hits) > 1:
            ambiguous.append(label)
        else:
            rows.append(hits[0])
    if unknown:
        raise KeyError(
            f"labels not among the remaining training rows (unknown or already "
            f"forgotten): {[*unknown[:5]]}{' ...' if len(unknown) > 5 else ''}."
        )
    if ambiguous:
        raise ValueError(f"labels name several training rows (the index is not unique): "
                         f"{[*ambiguous[:5]]}; forget by position instead.")
    return np.asarray(rows, dtype=np.int64)
