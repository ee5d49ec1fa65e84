"""Transactions, per-estimator locks and the fitted settings of a skmuter model.

State never ends up half-changed. Every ``forget`` / ``partial_forget`` call
and every ``fit`` wrapped in :func:`atomic_fit` runs as a transaction: a deep
snapshot of the estimator's ``__dict__`` is taken first and put back on any
exception (in the forgetter, the certificate check, the commit or a purge), so
the estimator is exactly as before the call. Calls on one estimator are
serialised by a per-estimator re-entrant lock, created lazily and never
pickled, deep-copied or cloned.

Parameters take effect at the next ``fit`` (scikit-learn's rule):
``reset_forgetting`` records the settings that define the fitted objective
(:func:`fitted_settings`), and forgetting refuses when one of them has been
changed since.

Imports no estimator (the estimators import this module).
"""

from __future__ import annotations

import copy
import functools
import numbers
import threading
import weakref

import numpy as np

from ._parallel import blas_share

#: parameters that may change between ``fit`` and ``forget``: the forgetter
#: (switched before the first request), the verbosity, and how a network's
#: curvature is stored (dense or matrix-free: the same objective)
FREE_PARAMS = frozenset({"forgetter", "verbose", "max_dense_params", "forget_tol"})

# One lock per estimator, outside its ``__dict__``: never pickled, copied or cloned
# (a loaded or copied estimator gets its own on first use).
_LOCKS = weakref.WeakKeyDictionary()
_LOCK_GUARD = threading.Lock()


# ---- the lock and the transaction -------------------------------------------------
def estimator_lock(est):
    """The estimator's re-entrant lock, created on first use (never pickled)."""
    with _LOCK_GUARD:
        lock = _LOCKS.get(est)
        if lock is None:
            lock = _LOCKS[est] = threading.RLock()
    return lock


def _is_atomic(value):
    return value is None or isinstance(value, (str, bytes, numbers.Number, type))


class _Snapshot:
    """A deep copy of an estimator's ``__dict__``, to put back on failure.

    Constructor parameters are kept by reference (they are the user's
    objects); a parameter with a ``state_dict`` (a torch module given as an
    instance, which training changes in place) has its state saved too.
    Attributes named in ``share`` are kept by reference: the caller promises
    not to change them in place.
    """

    def __init__(self, est, share=()):
        memo = {}
        hook = getattr(est, "_transaction_shared", None)
        shared = list(hook()) if callable(hook) else []
        # the training index: its forgotten labels are cleared undoably; the
        # request log: replaced by a longer list at each commit, its records
        # never changed in place (so a call costs nothing that grows with the
        # history)
        shared += [est.__dict__.get("_train_index"), est.__dict__.get("forget_log_")]
        for obj in shared:
            # large arrays changed only through undoable purges (record_undo)
            if obj is not None:
                memo[id(obj)] = obj
        self._modules = []
        try:
            params = est.get_params(deep=False)
        except Exception:  # noqa: BLE001 - a broken parameter: nothing to keep by reference
            params = {}
        for value in params.values():
            if _is_atomic(value):
                continue
            memo[id(value)] = value
            if callable(getattr(value, "state_dict", None)) and \
                    callable(getattr(value, "load_state_dict", None)):
                self._modules.append((value, copy.deepcopy(value.state_dict())))
        state = dict(est.__dict__)
        for name in share:
            if name in state and not _is_atomic(state[name]):
                memo[id(state[name])] = state[name]
        self._state = copy.deepcopy(state, memo)

    def restore(self, est):
        est.__dict__.clear()
        est.__dict__.update(self._state)
        for module, state in self._modules:
            module.load_state_dict(state)


def _read_only_error(exc):
    return isinstance(exc, ValueError) and "read-only" in str(exc)


def _transaction(est, call, share=()):
    """Run ``call()`` under the estimator's lock; on any exception restore its state.

    Meanwhile BLAS keeps to its share of the cores (:func:`skmuter._parallel.blas_share`)."""
    with estimator_lock(est), blas_share():
        snapshot = _Snapshot(est, share)
        undo = []
        stack = _undo_stack()
        stack.append(undo)
        try:
            out = call()
        except BaseException as exc:
            stack.pop()
            for fn in reversed(undo):
                fn()
            snapshot.restore(est)
            if _read_only_error(exc):
                raise ValueError(
                    f"{type(est).__name__} keeps read-only arrays (loaded with "
                    "joblib.load(..., mmap_mode='r')?) and cannot purge the forgotten rows "
                    "from them; nothing was changed. Load it without mmap_mode to forget."
                ) from exc
            raise
        stack.pop()
        if stack:  # an enclosing transaction may still have to undo this one
            stack[-1].extend(undo)
        return out


_UNDO = threading.local()


def _undo_stack():
    if not hasattr(_UNDO, "stack"):
        _UNDO.stack = []
    return _UNDO.stack


def record_undo(fn):
    """Register ``fn()`` to put back an in-place change if the running
    transaction fails (a purge of arrays kept by reference, see
    ``_transaction_shared``). Outside a transaction it is dropped."""
    stack = _undo_stack()
    if stack:
        stack[-1].append(fn)


def undoable_set(array, rows, value):
    """``array[rows] = value`` in place, undoably (:func:`record_undo`)."""
    rows = np.asarray(rows)
    old = array[rows].copy()
    array[rows] = value
    record_undo(lambda: array.__setitem__(rows, old))


def undoable_zero_rows(M, rows, positions=False):
    """Zero ``rows`` of a dense array or the stored values of a CSR matrix in
    place, undoably (:func:`record_undo`). With ``positions``, a CSR row's
    entries also move to its first columns, in order (the format stays
    canonical; the columns would tell where the row was non-zero)."""
    rows = np.asarray(rows)
    if isinstance(M, np.ndarray):
        old = M[rows].copy()
        M[rows] = 0
        record_undo(lambda: M.__setitem__(rows, old))
        return
    at, within = row_entries(M.indptr, rows.ravel())
    values, cols = M.data[at], M.indices[at]  # copies (fancy indexing)
    M.data[at] = 0.0
    if positions:
        M.indices[at] = within

    def put_back():
        M.data[at] = values
        M.indices[at] = cols

    record_undo(put_back)


def row_entries(indptr, rows):
    """``(at, within)``: the positions of the stored entries of ``rows`` of a
    CSR matrix (its ``indptr``), and each one's rank within its row."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.asarray(indptr[rows], dtype=np.int64)
    lengths = np.asarray(indptr[rows + 1], dtype=np.int64) - starts
    total = int(lengths.sum())
    if not total:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)  # each row's start in ``at``
    within = np.arange(total, dtype=np.int64) - first
    return np.repeat(starts, lengths) + within, within


def _training_index(X):
    """The pandas index of a DataFrame or Series, as an object array (else None)."""
    if not (hasattr(X, "index") and hasattr(X, "iloc")):
        return None
    index = X.index
    # one object per row (a MultiIndex's tuples stay whole, not a 2-D array)
    return np.fromiter(index, dtype=object, count=len(index)) if len(index) else None


def atomic_fit(fit):
    """Decorate a ``fit`` method: all-or-nothing, serialised, index of a DataFrame kept.

    On any exception the estimator is put back exactly as it was before the
    call (an unfitted one stays unfitted, a fitted one keeps its previous
    fit). On success the pandas index of ``X`` (a DataFrame or Series) is
    stored for ``forget(labels, by='label')``.
    """

    @functools.wraps(fit)
    def wrapper(self, X, *args, **kwargs):
        def call():
            out = fit(self, X, *args, **kwargs)
            index = _training_index(X)
            if index is not None and len(index) == getattr(self, "n_train_", -1):
                self._train_index = index
            return out

        return _transaction(self, call)

    return wrapper


# ---- fitted settings --------------------------------------------------------------
class CachedParamNames:
    """Mixin of a scikit-learn estimator: its constructor's parameter names
    are read from the signature once per class, not at every ``get_params``
    (a forget request reads the parameters of the estimator and of its
    forgetter several times)."""

    @classmethod
    def _get_param_names(cls):
        names = cls.__dict__.get("_param_names_of_class")
        if names is None:
            names = super()._get_param_names()
            cls._param_names_of_class = tuple(names)
        return list(names)


def _fingerprint(value):
    """A comparable, picklable summary of a parameter value."""
    if isinstance(value, bool | np.bool_):
        return ("bool", bool(value))
    if isinstance(value, numbers.Integral):
        return ("num", int(value))
    if isinstance(value, numbers.Real):
        return ("num", float(value))
    if isinstance(value, str | bytes) or value is None:
        return value
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, list | tuple):
        return (type(value).__name__, *map(_fingerprint, value))
    if isinstance(value, dict):
        return ("dict", *sorted((repr(k), _fingerprint(v)) for k, v in value.items()))
    if not isinstance(value, type) and callable(getattr(value, "get_params", None)):
        params = value.get_params(deep=False)
        return (type(value).__qualname__,
                *sorted((k, _fingerprint(v)) for k, v in params.items()))
    return repr(value)


def fitted_settings(est):
    """Fingerprints of the parameters that define the fitted objective.

    Those named by the class attribute ``_objective_params`` when set, else
    every validated parameter (``_parameter_constraints``) and ``module`` /
    ``forget_params`` where they exist; never :data:`FREE_PARAMS`.
    """
    from .attacks import resolve_attack

    params = est.get_params(deep=False)
    names = getattr(est, "_objective_params", None)
    if names is None:
        names = set(getattr(est, "_parameter_constraints", {})) | {"module", "forget_params"}
    out = {}
    for name in sorted(set(names) - FREE_PARAMS):
        if name not in params:
            continue
        value = params[name]
        if name == "attack":
            try:
                value = resolve_attack(value)
            except (TypeError, ValueError):
                pass
        out[name] = _fingerprint(value)
    return out
