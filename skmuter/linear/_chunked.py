"""Linear objectives over a Dask array: every pass a chunked reduction.

:class:`ChunkedLinearObjective` is a :class:`~skmuter.linear.LinearObjective`
whose rows live in a ``dask.array.Array`` (chunked by rows) that it only
refers to. Its sums over many rows (the solver's value and gradient, the
Hessian on the support, the minimal subgradient of the verification, the
forgetting memory) run as one task per chunk on the active Dask scheduler:
each task builds an in-memory :class:`~skmuter.linear.LinearObjective` of its
chunk, evaluates the same closed forms there, and returns sums of at most
``d x d`` numbers, added up by the caller. The scheduler is whatever Dask
uses at that moment: its threads by default, a ``dask.distributed`` cluster
while a ``Client`` is active. Sums over a few rows (the rows of a forget
request) fetch just those rows and evaluate them in memory.

The rows a pass covers are given as indices, as everywhere; forgotten rows
are simply not in them, so the collection itself is never changed (the
user deletes from their storage). Fetched rows are cached for the current
request only and dropped when it is committed. A pickle holds no rows: the
estimator drops the collection and the objective's views of it.

``n_passes`` counts the chunked passes (one per reduction over the chunks).
"""

from __future__ import annotations

import copy
import sys

import numpy as np

from ._kinks import Ties
from ._objective import LinearObjective
from ._pass import RowPass

#: a set of rows is fetched and evaluated in memory when it is less than half
#: the rows and at most this many entries
_FETCH_ENTRIES = 4_000_000


def is_dask_collection(X):
    """Whether ``X`` is a Dask collection (array, DataFrame or Series), without
    importing Dask when it is not loaded."""
    if "dask" not in sys.modules:
        return False
    try:
        from dask import is_dask_collection as check
    except ImportError:  # pragma: no cover - a broken installation
        return False
    return bool(check(X))


def as_dask_array(X, name, ndim):
    """A Dask array of ``X`` (a Dask DataFrame or Series with known lengths),
    with its column names when it has them."""
    import dask.array as da

    names = None
    dd = sys.modules.get("dask.dataframe")  # loaded when X is one of its collections
    if dd is not None and isinstance(X, (dd.DataFrame, dd.Series)):
        if isinstance(X, dd.DataFrame):
            names = list(X.columns)
        X = X.to_dask_array(lengths=True)
    if not isinstance(X, da.Array):
        raise TypeError(f"{name} must be a Dask array, DataFrame or Series (or an in-memory "
                        f"array), got {type(X).__name__}.")
    if X.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got a Dask array of shape {X.shape}.")
    if any(np.isnan(c) for c in X.shape):
        raise ValueError(f"{name} has unknown chunk sizes: call "
                         f"{name}.compute_chunk_sizes() first.")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {X.dtype}.")
    return X, names


def align_rows(v, X, name):
    """``v`` (numpy or Dask, 1-D) as a Dask array chunked like the rows of ``X``."""
    import dask.array as da

    if v is None:
        return None
    if is_dask_collection(v):
        v, _ = as_dask_array(v, name, 1)
    else:
        v = np.asarray(v)
        if v.ndim == 0 and name == "sample_weight":
            v = np.full(X.shape[0], float(v))
        if v.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {v.shape}.")
        v = da.from_array(v, chunks=(X.chunks[0],))
    if v.shape[0] != X.shape[0]:
        raise ValueError(f"{name} has {v.shape[0]} rows, X has {X.shape[0]}.")
    if v.chunks[0] != X.chunks[0]:
        v = v.rechunk((X.chunks[0],))
    return v


# ---- the tasks (one per chunk; module level, so that workers can run them) ------------
def _local_rows(sel, n):
    if sel is None:
        return np.arange(n)
    kind, idx = sel
    if kind == "in":
        return idx
    keep = np.ones(n, dtype=bool)
    keep[idx] = False
    return np.flatnonzero(keep)


def _task(Xc, tc, swc, sel, spec, op, args):
    loss, threat, alpha, fit_intercept = spec
    Xc = np.ascontiguousarray(Xc, dtype=np.float64)
    tc = np.asarray(tc, dtype=np.float64)
    swc = None if swc is None else np.asarray(swc, dtype=np.float64)
    local = LinearObjective(Xc, tc, loss, threat, alpha, fit_intercept, sample_weight=swc)
    rows = _local_rows(sel, Xc.shape[0])
    return _OPS[op](local, rows, *args)


def _weights(local, rows):
    """The pass weights of ``rows`` over the chunk (0 elsewhere)."""
    w = np.zeros(local.X.shape[0])
    w[rows] = 1.0 if local.sample_weight is None else local.sample_weight[rows]
    return w


def _op_call(local, rows, name, theta, kwargs):
    return getattr(LinearObjective, name)(local, theta, rows, **kwargs)


def _op_linf_split(local, rows, v, m):
    rp = RowPass(local.X, local.threat)
    return rp.linf_split(local, local.y, _weights(local, rows), m)(v)


def _op_smooth(local, rows, theta, m):
    rp = RowPass(local.X, local.threat)
    return rp.smooth(local, local.y, _weights(local, rows), m)(theta)


def _op_support_sweep(local, rows, theta, m, cols, hessian):
    rp = RowPass(local.X, local.threat)
    return rp.support_sweep(local, theta, local.y, _weights(local, rows), m, cols, hessian)


def _op_weight_sum(local, rows):
    return float(local.weight_sum(rows))


def _op_kink_rows(local, rows, theta, cols):
    """The branch gap of each row and the norm of its gradient (see
    ``skmuter.linear._kinks.KinkModel``)."""
    gaps, slopes = [], []
    for r in _blocks(rows, local.n_features):
        q_up, g_up = local.branch_terms(theta, r, cols, 1.0)
        q_down, g_down = local.branch_terms(theta, r, cols, -1.0)
        gaps.append(q_up - q_down)
        slopes.append(np.linalg.norm(g_up - g_down, axis=1))
    if not gaps:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(gaps), np.concatenate(slopes)


def _blocks(rows, width):
    size = max(256, 4_000_000 // max(width, 1))
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


_OPS = {
    "call": _op_call,
    "linf_split": _op_linf_split,
    "smooth": _op_smooth,
    "support_sweep": _op_support_sweep,
    "weight_sum": _op_weight_sum,
    "kink_rows": _op_kink_rows,
}


def _add(a, b):
    """Elementwise sum of nested results (tuples of arrays and numbers; None
    stays None)."""
    if a is None:
        return b
    if isinstance(a, tuple):
        return tuple(_add(x, y) for x, y in zip(a, b))
    return a + b


# ---- views of the rows, read through the objective's fetch ----------------------------
class _RowView:
    """``X``, the targets or the weights of a chunked objective, as far as the
    in-memory code reads them: ``shape`` and indexing by a few rows (fetched)."""

    def __init__(self, owner, part, shape):
        self._owner = owner
        self._part = part
        self.shape = shape
        self.ndim = len(shape)

    def __getitem__(self, key):
        cols = None
        if isinstance(key, tuple):
            key, cols = key
            if isinstance(key, np.ndarray) and key.ndim == 2:  # np.ix_
                key, cols = key.ravel(), np.asarray(cols).ravel()
        rows = _as_rows(key, self.shape[0])
        out = self._owner._fetch(rows)[self._part]
        if cols is not None:
            out = out[:, cols]
        return out

    def __len__(self):
        return self.shape[0]


def _as_rows(key, n):
    if isinstance(key, slice):
        return np.arange(*key.indices(n))
    key = np.asarray(key)
    if key.dtype == bool:
        return np.flatnonzero(key)
    return key.astype(np.int64, copy=False).reshape(-1)


class ChunkedLinearObjective(LinearObjective):
    """A :class:`~skmuter.linear.LinearObjective` over the rows of a Dask array.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Chunked by rows (one chunk spans every column); referred to, never
        copied.
    y : dask.array.Array of shape (n_samples,)
        The targets of this problem (+-1, or real numbers), chunked like ``X``.
    sample_weight : dask.array.Array of shape (n_samples,) or None
    weight_total : float
        The sum of the sample weights (the number of rows without weights).
    Other parameters
        As :class:`~skmuter.linear.LinearObjective`.
    """

    chunked = True

    def __init__(self, X, y, loss, threat, alpha, fit_intercept, refitter=None,
                 linear_term=None, sample_weight=None, refiner=None, weight_total=None):
        n, d = X.shape
        self.data = (X, y, sample_weight)
        super().__init__(_RowView(self, 0, (n, d)), np.zeros(0), loss, threat, alpha,
                         fit_intercept, refitter=refitter, linear_term=linear_term,
                         sample_weight=None, refiner=refiner)
        self.y = _RowView(self, 1, (n,))
        if sample_weight is not None:
            self.sample_weight = _RowView(self, 2, (n,))
        self.weight_total = float(n if weight_total is None else weight_total)
        self.n_passes = 0
        self._bounds = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)

    # ---- pickling: no rows ------------------------------------------------------
    def __getstate__(self):
        state = dict(self.__dict__)
        state["data"] = None  # the collection (its graph may embed the rows)
        state["pass_cache"] = {}
        state["_provided"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        # fresh views of this object (a copy's views must not read the original)
        for part, name in enumerate(("X", "y", "sample_weight")):
            view = state.get(name)
            if isinstance(view, _RowView):
                setattr(self, name, _RowView(self, part, view.shape))

    def __deepcopy__(self, memo):
        # a copy refers to the same collection (Dask collections are immutable)
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = value if key == "data" else copy.deepcopy(value, memo)
        return new

    @classmethod
    def rowless(cls, obj, n, weight_total):
        """An objective of the same problem as ``obj`` that keeps none of its
        ``n`` rows (``keep_data=False``): the rows of a request are handed to
        it with :meth:`provide`."""
        new = cls.__new__(cls)
        skip = ("X", "y", "sample_weight", "pass_cache")
        new.__dict__.update({k: v for k, v in obj.__dict__.items() if k not in skip})
        new.data = None
        new.pass_cache = {}
        new.X = _RowView(new, 0, (n, obj.n_features))
        new.y = _RowView(new, 1, (n,))
        new.sample_weight = None if obj.sample_weight is None else _RowView(new, 2, (n,))
        new.weight_total = float(weight_total)
        new.n_passes = 0
        new._bounds = np.array([0, n], dtype=np.int64)
        return new

    def provide(self, rows, X, y, sample_weight=None):
        """Hand the content of training ``rows`` to the objective for the current
        request (a model without its rows); dropped with the fetched rows."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        self._provided = (
            rows[order], np.asarray(X, dtype=np.float64)[order],
            np.asarray(y, dtype=np.float64)[order],
            None if sample_weight is None else np.asarray(sample_weight, np.float64)[order])

    def has_rows(self):
        return self.data is not None and self.data[0] is not None

    def _require_rows(self):
        if not self.has_rows():
            raise ValueError(
                "this model keeps no training rows (keep_data=False, or fitted on a Dask "
                "collection and loaded from a pickle): pass the rows of a forget request, "
                "forget(indices, X=X_rows, y=y_rows); checks that need the kept rows are "
                "skipped, and metrics take the kept rows explicitly."
            )

    # ---- fetching a few rows ----------------------------------------------------
    def _fetch(self, rows):
        """``(X_rows, targets, weights)`` of ``rows`` (in that order), computed
        from the collection once per request (cached in ``pass_cache``), or
        from the rows handed over with :meth:`provide`."""
        rows = np.asarray(rows, dtype=np.int64)
        provided = self.__dict__.get("_provided")
        if provided is not None and not self.has_rows():
            known, Xp, yp, swp = provided
            pos = np.minimum(np.searchsorted(known, rows), max(len(known) - 1, 0))
            if len(known) and np.all(known[pos] == rows):
                return Xp[pos], yp[pos], (None if swp is None else swp[pos])
        self._require_rows()
        import dask

        cache = self.pass_cache.setdefault("fetched", {})
        key = (id(self), rows.tobytes())
        hit = cache.get(key)
        if hit is not None:
            return hit
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        uniq, inverse = np.unique(srt, return_inverse=True)
        X, y, sw = self.data
        parts = [X[uniq], y[uniq]] + ([sw[uniq]] if sw is not None else [])
        if len(uniq):
            parts = dask.compute(*parts)
        else:
            parts = [np.zeros((0, X.shape[1])), np.zeros(0)] + ([np.zeros(0)] if sw is not None
                                                                  else [])
        back = np.empty(len(rows), dtype=np.int64)
        back[order] = inverse
        out = tuple(np.asarray(p, dtype=np.float64)[back] for p in parts)
        if sw is None:
            out = (*out, None)
        if len(cache) > 8:
            cache.clear()
        cache[key] = out
        return out

    def forget_fetched(self):
        """Drop the fetched or provided rows (the end of a request)."""
        self.pass_cache.pop("fetched", None)
        self._provided = None

    def _block(self, rows, cols=None):
        rows = _as_rows(rows, self.X.shape[0])
        Xr = self._fetch(rows)[0]
        return Xr if cols is None else Xr[:, np.asarray(cols)]

    def _columns(self, cols):  # pragma: no cover - never over all rows
        raise RuntimeError("a chunked objective has no cached columns")

    def row_pass(self):  # pragma: no cover - never over all rows
        raise RuntimeError("a chunked objective has no prepared in-memory pass")

    def purge_rows(self, rows):
        self.forget_fetched()

    # ---- which rows go where ------------------------------------------------------
    def _small(self, rows):
        n = self.X.shape[0]
        return 2 * len(rows) < n and len(rows) * max(self.n_features, 1) <= _FETCH_ENTRIES

    def _reduce(self, op, rows, args=(), per_chunk=None, alpha=None, combine=None):
        """Run ``op`` on every chunk holding some of ``rows``; returns the list
        of results (``combine`` given) or their sum."""
        self._require_rows()
        import dask

        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) > 1 and not (rows[1:] > rows[:-1]).all():
            rows = np.unique(rows)  # kept rows come sorted: this is the exception
        X, y, sw = self.data
        blocks_X = X.to_delayed().ravel()
        blocks_y = y.to_delayed().ravel()
        blocks_w = sw.to_delayed().ravel() if sw is not None else [None] * len(blocks_X)
        spec = (self.loss.name, self.threat, self.alpha if alpha is None else alpha,
                self.fit_intercept)
        cuts = np.searchsorted(rows, self._bounds)
        tasks = []
        task = dask.delayed(_task, pure=False)
        for c in range(len(blocks_X)):
            lo, hi = cuts[c], cuts[c + 1]
            if hi == lo:
                continue
            start, size = self._bounds[c], self._bounds[c + 1] - self._bounds[c]
            local = rows[lo:hi] - start
            if hi - lo == size:
                sel = None
            elif 2 * (hi - lo) > size:
                keep = np.ones(size, dtype=bool)
                keep[local] = False
                sel = ("out", np.flatnonzero(keep))
            else:
                sel = ("in", local)
            chunk_args = args if per_chunk is None else per_chunk(start, start + size, args)
            tasks.append(task(blocks_X[c], blocks_y[c], blocks_w[c], sel, spec, op, chunk_args))
        self.n_passes += 1
        results = list(dask.compute(*tasks)) if tasks else []
        if combine is not None:
            return combine(results)
        total = None
        for r in results:
            total = _add(total, r)
        return total

    @staticmethod
    def _local_ties(ties):
        """A per-chunk function giving the chunk's share of ``ties`` (local rows)."""
        def per_chunk(start, stop, args):
            out = []
            for a in args:
                if isinstance(a, dict) and isinstance(a.get("ties"), Ties):
                    t = a["ties"]
                    sel = (t.rows >= start) & (t.rows < stop)
                    a = dict(a, ties=Ties(t.rows[sel] - start, t.lam[sel]))
                elif isinstance(a, Ties):
                    sel = (a.rows >= start) & (a.rows < stop)
                    a = Ties(a.rows[sel] - start, a.lam[sel])
                out.append(a)
            return tuple(out)
        return per_chunk if ties is not None else None

    def _call(self, name, theta, rows, **kwargs):
        ties = kwargs.get("ties")
        return self._reduce("call", rows, (name, np.asarray(theta, dtype=np.float64), kwargs),
                            per_chunk=self._local_ties(ties))

    # ---- passes -----------------------------------------------------------------
    def chunked_pass(self, rows):
        """``(pass, None, None, m)`` for :func:`skmuter.linear._pass.pass_data`:
        a pass whose value-and-gradient functions are chunked reductions (a few
        rows: an in-memory pass of the fetched rows)."""
        rows = np.asarray(rows)
        m = self.weight_sum(rows)
        if self._small(rows):
            Xr, yr, swr = self._fetch(rows)
            return RowPass(Xr, self.threat), yr, swr, m
        return _ChunkedPass(self, rows), None, None, m

    def weight_sum(self, rows):
        rows = np.asarray(rows)
        if self.sample_weight is None:
            return len(rows)
        if self._small(rows):
            return float(self._fetch(rows)[2].sum())
        n = self.X.shape[0]
        keep = np.ones(n, dtype=bool)
        keep[rows] = False
        out = np.flatnonzero(keep)
        if self._small(out):
            return self.weight_total - float(self._fetch(out)[2].sum())
        return float(self._reduce("weight_sum", rows))

    def _loss_sum(self, theta, rows):
        if self._small(np.asarray(rows)):
            return super()._loss_sum(theta, rows)
        return self._call("_loss_sum", theta, rows)

    def _zero_direction(self, theta, rows):
        if self._small(np.asarray(rows)):
            return super()._zero_direction(theta, rows)
        return self._call("_zero_direction", theta, rows)

    def _linf_pieces(self, theta, rows, ties):
        if self._small(np.asarray(rows)):
            return super()._linf_pieces(theta, rows, ties)
        return self._call("_linf_pieces", theta, rows, ties=ties)

    def grad_sum(self, theta, rows, points="adversarial", cols=None, ties=None):
        if self._small(np.asarray(rows)):
            return super().grad_sum(theta, rows, points=points, cols=cols, ties=ties)
        return self._call("grad_sum", theta, rows, points=points, cols=cols, ties=ties)

    def grad_hessian_sum(self, theta, rows, kind="total", points="adversarial", cols=None,
                         ties=None):
        if self._small(np.asarray(rows)):
            return super().grad_hessian_sum(theta, rows, kind=kind, points=points, cols=cols,
                                            ties=ties)
        return self._call("grad_hessian_sum", theta, rows, kind=kind, points=points,
                          cols=cols, ties=ties)

    def hessian_sum(self, theta, rows, kind="total", points="adversarial", cols=None,
                    neumann_order=3, ties=None):
        if self._small(np.asarray(rows)):
            return super().hessian_sum(theta, rows, kind=kind, points=points, cols=cols,
                                       neumann_order=neumann_order, ties=ties)
        return self._call("hessian_sum", theta, rows, kind=kind, points=points, cols=cols,
                          neumann_order=neumann_order, ties=ties)

    def tie_gaps(self, theta, rows):
        rows = np.asarray(rows)
        if self._small(rows):
            return super().tie_gaps(theta, rows)
        order = np.argsort(rows, kind="stable")

        def combine(results):
            if not results:
                return np.zeros(0), np.zeros(0)
            gap = np.concatenate([r[0] for r in results])
            val = np.concatenate([r[1] for r in results])
            back = np.empty_like(order)
            back[order] = np.arange(len(order))
            return gap[back], val[back]

        return self._reduce("call", rows, ("tie_gaps", np.asarray(theta, dtype=np.float64),
                                           {}), combine=combine)

    def zero_kkt_terms(self, theta, rows, scols, ties=None):
        rows = np.asarray(rows)
        if self._small(rows):
            return super().zero_kkt_terms(theta, rows, scols, ties=ties)
        w, _ = self.split(theta)
        zcols = np.flatnonzero(w == 0)
        k = len(scols)
        empty = (zcols, np.zeros(len(zcols)), np.zeros(len(zcols)),
                 np.zeros((len(zcols), k)), np.zeros((len(zcols), k)))
        if len(zcols) == 0 or len(rows) == 0:
            return empty

        def combine(results):
            total = None
            for r in results:
                total = _add(total, r[1:])
            return (zcols, *total) if total is not None else empty

        return self._reduce("call", rows, ("zero_kkt_terms", np.asarray(theta, np.float64),
                                           {"scols": np.asarray(scols), "ties": ties}),
                            per_chunk=self._local_ties(ties), combine=combine)

    def kink_model(self, theta, rows, cols=None):
        model = super().kink_model(theta, rows, cols)
        if model is not None:
            self.forget_fetched()  # built from blocks of fetched rows
        return model


class _ChunkedPass:
    """The value-and-gradient functions of :class:`~skmuter.linear._pass.RowPass`
    as chunked reductions over ``rows`` of a :class:`ChunkedLinearObjective`
    (the solver's ``y``, ``weights`` arguments are ignored: the rows say it)."""

    def __init__(self, obj, rows):
        self.obj = obj
        self.rows = np.sort(np.asarray(rows))

    def linf_split(self, obj, y, weights, m):
        d = obj.n_features

        def fun(v):
            v = np.asarray(v, dtype=np.float64)
            f, grad = self.obj._reduce("linf_split", self.rows, (v, m), alpha=0.0)
            w = v[:d] - v[d : 2 * d]
            f += 0.5 * obj.alpha * float(w @ w)
            grad = grad.copy()
            grad[:d] += obj.alpha * w
            grad[d : 2 * d] -= obj.alpha * w
            if obj.linear_term is not None:
                theta = np.concatenate([w, v[2 * d :]])
                f += float(obj.linear_term @ theta) / m
                grad[:d] += obj.linear_term[:d] / m
                grad[d : 2 * d] -= obj.linear_term[:d] / m
                grad[2 * d :] += obj.linear_term[d:] / m
            return f, grad

        return fun

    def smooth(self, obj, y, weights, m):
        d = obj.n_features

        def fun(theta):
            theta = np.asarray(theta, dtype=np.float64)
            f, grad = self.obj._reduce("smooth", self.rows, (theta, m), alpha=0.0)
            w = theta[:d]
            f += 0.5 * obj.alpha * float(w @ w)
            grad = grad.copy()
            grad[:d] += obj.alpha * w
            if obj.linear_term is not None:
                f += float(obj.linear_term @ theta) / m
                grad += obj.linear_term / m
            return f, grad

        return fun

    def support_sweep(self, obj, theta, y, weights, m, cols, hessian=True, with_value=True):
        theta = np.asarray(theta, dtype=np.float64)
        value, g, H = self.obj._reduce("support_sweep", self.rows,
                                       (theta, m, np.asarray(cols), hessian), alpha=0.0)
        w = theta[: obj.n_features]
        value += 0.5 * obj.alpha * float(w @ w)
        if obj.linear_term is not None:
            value += float(obj.linear_term @ theta) / m
        if not hessian:
            return value, None, None
        g = g + obj.regulariser_grad(theta, m, cols)
        H = H.copy()
        idx = np.arange(H.shape[0])
        H[idx, idx] += obj.regulariser_diag(m, cols)
        return value, g, H
