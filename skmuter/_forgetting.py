"""Forgetting plumbing shared by every skmuter model.

:class:`ForgetMixin` gives an estimator ``forget`` and ``partial_forget``:
request validation (positions, boolean masks, or pandas index labels with
``by='label'``), the transactional call into the forgetter, purging the
forgotten rows, and the request log. A model provides a few hooks:

``_forget_objectives()``
    One objective per fitted problem (see :mod:`skmuter.forgetters`).
``_get_thetas()`` / ``_set_thetas(thetas)``
    The parameters that forgetting updates, one vector per problem.
``_purge(rows)``
    Erase the rows from every array the model keeps.
``_check_request_classes(kept)``
    Raise if the kept rows would miss a class (classifiers).

and the fitted attributes ``n_train_``, ``forgotten_``, ``forget_log_``,
``forgetter_`` set by :func:`reset_forgetting` at the end of ``fit``. A model
fitted with certified removal also sets ``certificate_`` (a dict, see
:mod:`skmuter.certified`) and ``_certified`` (its
:class:`~skmuter.certified.CertifiedRemoval` settings); :meth:`ForgetMixin._certify`
then checks every call against the budget before it is committed.

State never ends up half-changed. Every ``forget`` / ``partial_forget`` call
and every ``fit`` wrapped in :func:`atomic_fit` runs as a transaction: a deep
snapshot of the estimator's ``__dict__`` is taken first and put back on any
exception (in the forgetter, the certificate check, the commit or a purge), so
the estimator is exactly as before the call. Calls on one estimator are
serialised by a per-estimator re-entrant lock, created lazily and never
pickled, deep-copied or cloned.

Parameters take effect at the next ``fit`` (scikit-learn's rule):
``reset_forgetting`` records the settings that define the fitted objective,
and forgetting refuses when one of them has been changed since.
"""

from __future__ import annotations

import copy
import functools
import numbers
import threading
import time
import weakref

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from ._warnings import warn
from .forgetters import ForgetWarning, resolve_forgetter

#: past this fraction of forgotten training rows, forgetting warns that a refit
#: would be wiser
RETRAIN_ADVICE_FRACTION = 0.2

#: parameters that may change between ``fit`` and ``forget``: the forgetter
#: (switched before the first request), the verbosity, and how a network's
#: curvature is stored (dense or matrix-free: the same objective)
FREE_PARAMS = frozenset({"forgetter", "verbose", "max_dense_params"})

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
    """Run ``call()`` under the estimator's lock; on any exception restore its state."""
    with estimator_lock(est):
        snapshot = _Snapshot(est, share)
        try:
            return call()
        except BaseException as exc:
            snapshot.restore(est)
            if _read_only_error(exc):
                raise ValueError(
                    f"{type(est).__name__} keeps read-only arrays (loaded with "
                    "joblib.load(..., mmap_mode='r')?) and cannot purge the forgotten rows "
                    "from them; nothing was changed. Load it without mmap_mode to forget."
                ) from exc
            raise


def _training_index(X):
    """The pandas index of a DataFrame or Series, as an object array (else None)."""
    if not (hasattr(X, "index") and hasattr(X, "iloc")):
        return None
    index = X.index
    return np.array(list(index), dtype=object) if len(index) else None


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


def reset_forgetting(est, n_train):
    """Start a fresh forgetting history (called at the end of ``fit``).

    Also records the fitted settings (:func:`fitted_settings`), and for a
    class with ``_keep_fit_params = True`` a copy of every parameter, which
    its ``retrain`` uses.
    """
    est.n_train_ = int(n_train)
    est.forgotten_ = np.zeros(0, dtype=np.int64)
    est.forget_log_ = []
    est.forgetter_ = None
    est._forgetter_states = None
    est._train_index = None
    est._fitted_settings = fitted_settings(est)
    if getattr(est, "_keep_fit_params", False):
        est._fit_params = {k: clone(v, safe=False)
                           for k, v in est.get_params(deep=False).items()}


# ---- requests ------------------------------------------------------------------------
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


def rows_and_kept(indices, n_train, forgotten):
    """Validate a request; returns ``(rows, kept)``, the mask of rows kept after it.

    Raises when the request would forget every remaining row.
    """
    rows = validate_indices(indices, n_train, forgotten)
    kept = np.ones(n_train, dtype=bool)
    kept[forgotten] = False
    kept[rows] = False
    if not kept.any():
        raise ValueError("the request would forget every remaining training row.")
    return rows, kept


def prepare_states(template, objectives, thetas, rows):
    """A fresh forgetter state per problem, linearised at ``thetas`` over ``rows``."""
    return [clone(template).prepare(obj, theta, rows) for obj, theta in zip(objectives, thetas)]


def _same_params(a, b):
    if a is None or type(a) is not type(b):
        return False
    pa, pb = a.get_params(), b.get_params()
    return pa.keys() == pb.keys() and all(repr(pa[k]) == repr(pb[k]) for k in pa)


class ForgetMixin:
    """``forget`` / ``partial_forget`` for a model that provides the hooks above."""

    #: set by a class whose ``retrain`` refits with the fitted parameters
    _keep_fit_params = False

    def forget(self, indices, by="position"):
        """Forget training rows as one batch request.

        The call is all-or-nothing: on any error (a bad request, the
        forgetter, the certificate check, purging the rows) the estimator is
        exactly as before, and concurrent calls on one estimator run one
        after the other.

        Parameters take effect at the next ``fit``, as in scikit-learn:
        forgetting continues the *fitted* model, so it refuses ("parameters
        ... changed since fit; refit first") when a parameter that defines
        the fitted objective (the attack, ``alpha``, ``fit_intercept``,
        certified removal, the solver settings, ...) was changed with
        ``set_params`` after ``fit``. Only ``forgetter`` (before the first
        request) and ``verbose`` may change in between; ``retrain()`` uses the
        fitted settings too.

        Parameters
        ----------
        indices : array-like of int or bool, or labels
            With ``by='position'``: positions in the training set given to
            ``fit`` (or a boolean mask of its length). Forgetting is
            cumulative: positions keep referring to the original training set,
            and a forgotten row cannot be forgotten again. With
            ``by='label'``: labels of the index of the DataFrame (or Series)
            given to ``fit``.
        by : {'position', 'label'}, default='position'
            How ``indices`` name the rows.

        Returns
        -------
        self : object
            The estimator with updated parameters, the rows purged from its
            stored data (their index labels included), and a new record in
            ``forget_log_``. On error nothing changes.

        Examples
        --------
        >>> import pandas as pd
        >>> from sklearn.datasets import load_digits
        >>> from skmuter import AdversarialLogisticRegression
        >>> X, y = load_digits(n_class=2, return_X_y=True)
        >>> X = pd.DataFrame(X / 16, index=[f"user{i}" for i in range(len(X))])
        >>> est = AdversarialLogisticRegression(alpha=1e-2).fit(X, y)
        >>> est.forget(["user3", "user7"], by="label").forgotten_
        array([3, 7])
        """
        def call():
            rows = self._validate_request(self._positions(indices, by))
            return self._run_requests([np.sort(rows)])

        return _transaction(self, call, share=("_forgetter_states",))

    def partial_forget(self, indices, by="position"):
        """Forget training rows as successive single-row requests, in the given order.

        This is the unit of the MUter paper's Algorithm 1 (each request updates
        the memory before the next). For forgetters linearised at the fitted
        point (MUter, Newton, Fisher) the result equals :meth:`forget` of the
        same rows. All-or-nothing and refused after a change of parameters
        like :meth:`forget`.

        Parameters
        ----------
        indices : array-like of int or bool, or labels
            Positions in the original training set, or a boolean mask; labels
            of the training DataFrame's index with ``by='label'``.
        by : {'position', 'label'}, default='position'
            How ``indices`` name the rows.

        Returns
        -------
        self : object
        """
        def call():
            rows = self._validate_request(self._positions(indices, by))
            return self._run_requests([np.array([r]) for r in rows])

        return _transaction(self, call, share=("_forgetter_states",))

    def check_forget_request(self, indices, by="position"):
        """Check a forget request without applying it.

        Raises what :meth:`forget` would raise on the same request (bad,
        duplicate or already forgotten indices; unknown labels; a request that
        would leave a class without rows; parameters changed since fit). A
        pipeline checks its final step this way before any step forgets.

        Parameters
        ----------
        indices : array-like of int or bool, or labels
            Positions in the original training set, or a boolean mask; labels
            with ``by='label'``.
        by : {'position', 'label'}, default='position'

        Returns
        -------
        rows : ndarray of int
            The requested positions, in the given order.
        """
        with estimator_lock(self):
            return self._validate_request(self._positions(indices, by))

    def _kept_mask(self):
        kept = np.ones(self.n_train_, dtype=bool)
        kept[self.forgotten_] = False
        return kept

    # ---- labels ---------------------------------------------------------------------
    def _positions(self, indices, by):
        """Positions of a request given by position (unchanged) or by index label."""
        if isinstance(by, str) and by == "position":
            return indices
        if not (isinstance(by, str) and by == "label"):
            raise ValueError(f"by must be 'position' or 'label', got {by!r}.")
        check_is_fitted(self)
        index = getattr(self, "_train_index", None)
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
        where = {}
        for pos in np.flatnonzero(self._kept_mask()):
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

    def _purge_index(self, rows):
        """Drop the labels of forgotten rows from the stored training index."""
        index = getattr(self, "_train_index", None)
        if index is not None:
            index = index.copy()
            index[rows] = None
            self._train_index = index

    # ---- validation -----------------------------------------------------------------
    def _validate_request(self, indices):
        check_is_fitted(self)
        self._check_fitted_settings()
        rows, kept = rows_and_kept(indices, self.n_train_, self.forgotten_)
        self._check_request_classes(kept)
        return rows

    def _check_fitted_settings(self):
        fitted = getattr(self, "_fitted_settings", None)
        if fitted is None:  # pickled before the settings were recorded
            return
        now = fitted_settings(self)
        changed = sorted(k for k in set(fitted) | set(now) if fitted.get(k) != now.get(k))
        if changed:
            raise ValueError(
                f"parameters {changed} changed since fit; refit first. Parameters take "
                "effect at the next fit (scikit-learn's rule) and forgetting continues the "
                "fitted model; set them back to forget without refitting."
            )

    def _check_request_classes(self, kept):
        return None

    # ---- the transaction ------------------------------------------------------------
    def _run_requests(self, requests):
        """Run requests on copies of the forgetter states, then commit.

        Called inside the transaction of :meth:`forget`: any exception, in the
        commit included, puts the estimator back as it was.
        """
        template = resolve_forgetter(self.forgetter)
        kept = self._kept_mask()
        thetas = self._get_thetas()
        objectives = self._forget_objectives()
        precompute = 0.0
        if self._forgetter_states is None or not _same_params(self.forgetter_, template):
            if self.forgotten_.size:
                raise ValueError(
                    "the forgetter was changed after rows were forgotten; a forgetter is "
                    "linearised at the fitted model, so refit before switching."
                )
            t0 = time.perf_counter()
            states = prepare_states(template, objectives, thetas, np.flatnonzero(kept))
            precompute = time.perf_counter() - t0
        else:
            states = copy.deepcopy(self._forgetter_states)
        records = []
        for req in requests:
            kept[req] = False
            remaining = np.flatnonzero(kept)
            t0 = time.perf_counter()
            solve = update = 0.0
            new = []
            for obj, state in zip(objectives, states):
                theta, timing = state.forget(obj, req, remaining)
                solve += timing["solve_time"]
                update += timing["update_time"]
                new.append(theta)
            thetas = new
            records.append({
                "request": len(self.forget_log_) + len(records),
                "n_removed": len(req),
                "forgetter": template.label(),
                "precompute_time": precompute if not records else 0.0,
                "solve_time": solve,
                "update_time": update,
                "total_time": time.perf_counter() - t0,
            })
        thetas, states, certificate = self._certify(thetas, states, np.flatnonzero(kept),
                                                    records, template)
        removed = np.concatenate(requests)
        fraction = (self.forgotten_.size + removed.size) / self.n_train_
        exact_now = bool(records[-1].get("certified_retrain"))
        if (fraction > RETRAIN_ADVICE_FRACTION and template.label() != "retrain"
                and not exact_now):
            warn(
                f"{fraction:.0%} of the training rows are now forgotten; a forgetter "
                "linearised at the fitted model errs with the square of the removed "
                "fraction, so refitting on remaining_training_data() (or "
                "forgetter='retrain') would be wiser. Check with skmuter.metrics.",
                ForgetWarning,
            )
        self._commit(template, states, thetas, removed, records, certificate)
        return self

    def _commit(self, template, states, thetas, removed, records, certificate):
        """Publish a call's result (restored by the transaction if any step raises)."""
        self._forgetter_states = states
        self.forgetter_ = template
        self._set_thetas(thetas)
        self._purge(removed)
        self._purge_index(removed)
        self.forgotten_ = np.sort(np.concatenate([self.forgotten_, removed]))
        self.forget_log_ = [*self.forget_log_, *records]
        if certificate is not None:
            self.certificate_ = certificate

    def _certify(self, thetas, states, remaining, records, template):
        """Certified removal's one hook: check the result before it is committed.

        Without a certificate the result passes unchanged. With one, the
        summed gradient residual of the parameters this call would publish
        is checked against the budget (:meth:`CertifiedRemoval.check
        <skmuter.certified.CertifiedRemoval.check>`); over budget with
        ``on_spent='retrain'`` the problems are re-solved exactly on the
        ``remaining`` rows (the same perturbed objective, through each
        objective's ``refit``) and the forgetter linearised afresh there. The
        call's last record gets the certified fields.

        Returns ``(thetas, states, certificate)``; ``certificate`` (or None) is
        stored as ``certificate_``. May raise to reject the whole call.
        """
        if getattr(self, "certificate_", None) is None:
            return thetas, states, None
        settings = self._certified
        cert = dict(self.certificate_)
        objectives = self._forget_objectives()
        res = settings.residuals(objectives, thetas, remaining)
        proposed = max(res)
        spent, over = settings.check(res, cert["budget"])
        t0 = time.perf_counter()
        if over:
            thetas = [o.refit(remaining, theta0=t) for o, t in zip(objectives, thetas)]
            states = prepare_states(template, objectives, thetas, remaining)
            res = settings.residuals(objectives, thetas, remaining)
            spent = max(res) / cert["budget"]
            cert["n_retrains"] += 1
        cert.update(residual=res, spent=spent)
        records[-1].update(proposed_residual=proposed, certified_residual=max(res),
                           budget_spent=spent,
                           certified_retrain=bool(over),
                           certified_retrain_time=time.perf_counter() - t0 if over else 0.0)
        return thetas, states, cert

    def _relinearise(self, rows):
        """After the parameters moved outside a forgetter (re-expressed on new
        features): re-measure the certificate and rebuild the forgetting memory
        at the current parameters over ``rows``.

        Raises ``RuntimeError`` when the new parameters overspend the
        certificate's budget (the caller restores its state).
        """
        objectives = self._forget_objectives()
        thetas = self._get_thetas()
        if getattr(self, "certificate_", None) is not None:
            res = self._certified.residuals(objectives, thetas, rows)
            spent = max(res) / self.certificate_["budget"]
            if spent > 1:
                raise RuntimeError(f"re-expressed parameters spend {spent:.2f} times the "
                                   "certified-removal budget")
            self.certificate_ = dict(self.certificate_, residual=res, spent=spent)
            if self.forget_log_:
                self.forget_log_[-1].update(certified_residual=max(res), budget_spent=spent)
        if self.forgetter_ is not None:
            self._forgetter_states = prepare_states(self.forgetter_, objectives, thetas, rows)
