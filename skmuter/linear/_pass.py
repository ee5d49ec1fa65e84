"""One pass over the training rows: value and gradient of the robust objective.

Solvers and the verification of forgetting evaluate the robust objective
over many rows, many times, at different parameters. :class:`RowPass`
prepares the inputs once (a CSR copy of mostly-zero inputs, the l_inf box
rooms stored as per-column constants minus sparse matrices) and then
evaluates the mean objective and its gradient over the rows selected by a
weight vector: weight 0 leaves a row out (a forgotten row), so the kept rows
never have to be copied out of the training array.

A :class:`RowPass` holds data derived from the training rows; the estimator
erases forgotten rows from it with :meth:`RowPass.purge` and never pickles it.
"""

from __future__ import annotations

import copy

import numpy as np
from scipy import sparse

from .._transaction import undoable_zero_rows
from ._logistic import LogisticWorstCase
from ._worst_case import _LAZY_NNZ, _rproducts, bind

#: at most this many non-zero weights: scores from cached support columns
_SUPPORT_COLUMNS = 256

#: inputs with more entries than this get the compressed l_inf box rooms
_COMPRESS_SIZE = 1_000_000

#: inputs with fewer non-zero entries than this share are kept compressed
_MOSTLY_ZERO = 0.3

#: dense column blocks of all rows (the support of an l_inf model) are cached
#: up to this many entries; larger supports of many rows are swept a block
#: of rows at a time (memory: a block, not a copy of the inputs)
_CACHE_ENTRIES = 1 << 24

#: entries of one block of rows in such a sweep
_SWEEP_ENTRIES = 1 << 20

#: entries of one block of rows of a sweep over cached columns (the
#: temporaries of a block stay in the processor's cache)
_LOCAL_ENTRIES = 1 << 18


def _row_slice(bound, rows):
    """The bound threat of a slice of its rows (views of its rooms)."""
    out = copy.copy(bound)
    out.X = bound.X[rows]
    out.n = out.X.shape[0]
    if np.ndim(bound.P) == 2:
        out.P, out.Q = bound.P[rows], bound.Q[rows]
    return out


def cacheable(n_rows, n_cols):
    """Whether a dense block of ``n_rows`` x ``n_cols`` is cached for all rows."""
    return n_rows * n_cols <= _CACHE_ENTRIES


def _maybe_sparse(X):
    """A CSR copy of large, mostly-zero inputs (images), else ``X`` itself
    (sparse inputs stay as they are)."""
    if sparse.issparse(X):
        return X
    if X.size > _COMPRESS_SIZE and np.count_nonzero(X) < _MOSTLY_ZERO * X.size:
        return sparse.csr_matrix(X)
    return X


#: dense inputs from this many entries on are stored compressed by the
#: estimator when mostly zero (one-hot columns, image background)
_STORE_COMPRESSED = 1 << 25


def compress_rows(X, block=1 << 16):
    """A CSR copy of a large, mostly-zero dense ``X``, built a block of rows at
    a time (the transient memory is one block's); None for other inputs."""
    n, d = X.shape
    if X.size < _STORE_COMPRESSED:
        return None
    counts = np.empty(n, dtype=np.int64)
    for a in range(0, n, block):
        counts[a : a + block] = np.count_nonzero(X[a : a + block], axis=1)
    nnz = int(counts.sum())
    if nnz >= _MOSTLY_ZERO * X.size:
        return None
    index = np.int32 if max(nnz, d) < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(n + 1, dtype=index)
    np.cumsum(counts, out=indptr[1:])
    data = np.empty(nnz)
    indices = np.empty(nnz, dtype=index)
    for a in range(0, n, block):
        B = X[a : a + block]
        r, c = np.nonzero(B)  # row-major: sorted by row, then column
        p, q = int(indptr[a]), int(indptr[min(a + block, n)])
        data[p:q] = B[r, c]
        indices[p:q] = c
    return sparse.csr_matrix((data, indices, indptr), shape=(n, d))


def _zero_csr_rows(M, rows):
    """Zero the stored values of ``rows`` of a CSR matrix in place, and their
    column positions (they would tell where the row was non-zero): the
    entries move to the first columns, in order (the format stays canonical).
    Undoable inside a forget transaction, as the estimator's own purge."""
    undoable_zero_rows(M, rows, positions=True)


class RowPass:
    """Prepared inputs of one linear problem's rows, for repeated passes.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_samples, n_features)
        The inputs (a dense array is shared, not copied).
    threat : skmuter.attacks.Threat
    """

    def __init__(self, X, threat):
        self.threat = threat
        self.source = X  # the inputs this pass was prepared from
        self.linf = threat.norm == "inf" and threat.epsilon > 0
        self.X = _maybe_sparse(X)
        self.is_sparse = sparse.issparse(self.X)
        self._bound = None  # built on first use (see bound)
        self._own_copy = self.X is not X
        self._columns = {}
        self._rooms = {}
        self._worst = None
        self.checkpoint = None  # see LinearObjective.keep_checkpoint

    @property
    def bound(self):
        """The exact worst case of the rows (``BoundThreat``; None without an
        attack), built on first use: the l_inf rooms of a CSR copy from its
        stored entries (no dense temporaries the size of X), of other large
        inputs compressed. The logistic loss's passes do without it where
        its worst-case rows are prepared (:meth:`logistic_worst_case`)."""
        if self._bound is None and self.threat.epsilon > 0:
            if self.linf and self.is_sparse:
                self._bound = bind(self.threat, self.X)
            else:
                X = self.source
                self._bound = bind(self.threat, X,
                                   compress=self.linf and X.size > _COMPRESS_SIZE)
        return self._bound

    def _cached(self, cache, cols, build):
        """``build(cols)`` for the columns ``cols``, kept in ``cache`` (the last
        support only: a block of all rows each, bounded by ``_CACHE_ENTRIES``)."""
        cols = np.asarray(cols)
        key = cols.tobytes()
        value = cache.get(key)
        if value is None:
            cache.clear()
            value = cache[key] = build(cols)
        return value

    def columns(self, cols):
        """Dense ``X[:, cols]`` over all rows (a few columns: the support of an
        l_inf model), cached until the support changes."""
        X = self.X
        return self._cached(self._columns, cols, lambda c: X[:, c].toarray()
                            if self.is_sparse else np.ascontiguousarray(X[:, c]))

    def purge(self, rows):
        """Erase ``rows`` from every array derived from the inputs (in place:
        values and, for sparse copies, their column positions; only the
        number of stored entries of each row remains, in memory: a pass is
        never pickled)."""
        rows = np.asarray(rows)
        self.checkpoint = None
        for block in self._columns.values():
            block[rows] = 0.0
        if self._worst is not None:
            self._worst.purge(rows, _zero_csr_rows)
        for bound in self._rooms.values():
            for M in (bound.P, bound.Q):
                if isinstance(M, np.ndarray) and M.ndim == 2:
                    M[rows] = 0.0
        if self._own_copy:
            _zero_csr_rows(self.X, rows)
        # otherwise X is the estimator's own array, purged by the estimator
        bound = self._bound
        if bound is None:
            return
        for name in ("P", "Q"):
            M = getattr(bound, name, None)
            if isinstance(M, np.ndarray) and M.ndim == 2:
                M[rows] = 0.0
            elif hasattr(M, "S"):
                # the rows' entries become the column constants: their room
                # then tells nothing of them (their weight is 0 in every pass)
                _zero_csr_rows(M.S, rows)

    def logistic_worst_case(self, obj, y):
        """The logistic loss's l_inf worst cases on these rows for targets
        ``y`` (a :class:`~skmuter.linear._logistic.LogisticWorstCase`, built
        on first use), or None where they do not apply: another loss or
        threat, dense inputs, inputs whose rooms are not stored (at least
        ``_LAZY_NNZ`` entries: two more matrices that size), or targets other
        than those prepared (the one-vs-rest problems share a pass; the
        first to ask keeps it)."""
        if not (self.linf and self.is_sparse and obj.loss.name == "logistic"
                and obj.threat is self.threat) or self.X.nnz >= _LAZY_NNZ:
            return None
        if self._worst is None:
            self._worst = LogisticWorstCase(self.X, self.threat, y)
        return self._worst if self._worst.y is y else None

    def support_rooms(self, cols):
        """The l_inf worst case on the columns ``cols`` of all rows (a
        ``BoundThreat``, cached with the columns)."""
        return self._cached(self._rooms, cols,
                            lambda c: bind(self.threat, self.columns(c), cols=c))

    def support_sweep(self, obj, theta, y, weights, m, cols, hessian=True, with_value=True):
        """``(value, g, H)`` of an l_inf objective over the rows of ``weights``:
        the mean objective (regulariser and linear term included), and the
        summed gradient and Hessian on ``cols`` (regulariser shares included),
        from the cached columns of the support and ``cols`` only.

        The l_inf worst case is piecewise constant in ``w``, so on the free
        coordinates the Hessian is that of the loss at the worst-case points;
        ``cols`` must be free coordinates (no zero weight) or the intercept.
        With ``with_value=False`` (a Hessian sweep whose caller needs no value)
        the value is None and not computed.
        """
        d = obj.n_features
        w = theta[:d]
        b = float(theta[d]) if obj.fit_intercept else 0.0
        cols = np.asarray(cols)
        wcols = cols[cols < d]
        intercept = bool(obj.fit_intercept and np.any(cols == d))
        support = np.union1d(np.flatnonzero(w), wcols)
        n = self.X.shape[0]
        wc = self.logistic_worst_case(obj, y) if _direct(obj) else None
        if wc is not None and cacheable(n, len(support)):
            # the logistic loss's worst-case rows on the support, prepared
            parts = [_sweep_worst(obj, wc.block(self.X, support, np.sign(w[support])),
                                  w, b, y, weights, support, wcols, intercept, hessian,
                                  with_value)]
        elif cacheable(n, len(support)):
            # the cached columns and rooms, a block of rows at a time: the
            # temporaries stay in the processor's cache
            XS = self.columns(support)
            rooms = None if _direct(obj) else self.support_rooms(support)
            per = max(1, _LOCAL_ENTRIES // max(len(support), 1))
            parts = [_sweep_block(obj, XS[a : a + per],
                                  None if rooms is None else _row_slice(rooms, slice(a, a + per)),
                                  w, b, y[a : a + per],
                                  None if weights is None else weights[a : a + per],
                                  support, wcols, intercept, hessian, with_value)
                     for a in range(0, n, per)]
        else:
            # a block of rows at a time: no copy of the support's columns
            per = max(1, _SWEEP_ENTRIES // max(len(support), 1))
            parts = []
            for a in range(0, n, per):
                r = slice(a, min(a + per, n))
                XS = _dense(self.X[r][:, support] if self.is_sparse else self.X[r, support])
                parts.append(_sweep_block(
                    obj, XS, None if _direct(obj) else bind(self.threat, XS, cols=support),
                    w, b, y[r],
                    None if weights is None else weights[r], support, wcols, intercept,
                    hessian, with_value))
        value = None
        if with_value or not hessian:
            value = float(sum(p[0] for p in parts))
            if obj.linear_term is not None:
                value += float(obj.linear_term @ theta)
            value = value / m + 0.5 * obj.alpha * float(w @ w)
        if not hessian:
            return value, None, None
        g = sum(p[1] for p in parts) + obj.regulariser_grad(theta, m, cols)
        H = sum(p[2] for p in parts)
        idx = np.arange(H.shape[0])
        H[idx, idx] += obj.regulariser_diag(m, cols)
        return value, g, H

    def linf_column_sums(self, up_side, down_side):
        """``(X^T g, A, B)`` for per-row loss derivatives split by the
        adversary's direction (``up_side`` where it pushes the score up,
        ``down_side`` where down; ``g`` their sum): the column sums of an
        l_inf minimal subgradient, ``A`` and ``B`` the derivatives of the
        summed shifts in ``w+`` and ``w-`` (see ``BoundThreat.linf_split_grads``)."""
        g = up_side + down_side
        xtg = self.X.T @ g if self.is_sparse else g @ self.X
        H = np.vstack([up_side, down_side])
        PH = _rproducts(self.bound.P, H)
        QH = _rproducts(self.bound.Q, H)
        A, B = QH[0] - PH[1], PH[0] - QH[1]
        d = self.X.shape[1]
        if A.shape[0] != d:
            A, B = np.full(d, A[0]), np.full(d, B[0])
        return np.asarray(xtg).ravel(), A, B

    # ---- the two problems ----------------------------------------------------
    def linf_split(self, obj, y, weights, m):
        """Value and gradient of the mean l_inf objective in ``v = (w+, w-, b)``.

        ``weights`` (None: every row weighs 1) multiply each row's loss;
        ``m`` is the mean's denominator (the weights' sum).
        """
        loss, alpha, d = obj.loss, obj.alpha, obj.n_features
        linear_term = obj.linear_term
        fit_intercept = obj.fit_intercept
        wc = self.logistic_worst_case(obj, y)
        X, bound = self.X, (self.bound if wc is None else None)

        def fun(v):
            wp, wm = v[:d], v[d : 2 * d]
            b = v[2 * d] if fit_intercept else 0.0
            w = wp - wm
            support = np.flatnonzero((wp != 0) | (wm != 0))
            small = len(support) <= _SUPPORT_COLUMNS and cacheable(X.shape[0], len(support))
            if wc is not None:
                # the logistic loss's worst-case rows: the scores from the
                # support's block of them (one sign per weight) or from both
                # matrices, the derivatives from one product each
                if small and not np.any((wp > 0) & (wm > 0)):
                    z = wc.block(X, support, np.sign(w[support])).scores(w[support]) + b
                else:
                    z = wc.scores(wp, wm) + b
                f, g1 = _mean_loss(loss, z, y, weights, m, alpha, w)
                A, B = wc.sums(g1)
                grad = [A + alpha * w, -B - alpha * w]
            elif small:
                # the scores and shifts need the support's columns only
                XS = self.columns(support)
                z = XS @ w[support] + b
                # the support's rooms, cached with its columns (the same
                # support comes back at every step of a check or a polish)
                up, down = self.support_rooms(support).linf_shifts(
                    wp[support], wm[support])
            else:
                z = X @ w + b
                up, down = bound.linf_shifts(wp, wm)
            if wc is None:
                s = loss.direction(z, y, up, down)
                z = z + s * np.where(s > 0, up, down)
                f, g1 = _mean_loss(loss, z, y, weights, m, alpha, w)
                xtg = X.T @ g1
                A, B = bound.linf_split_grads(g1, s)
                grad = [xtg + A + alpha * w, -xtg + B - alpha * w]
            if fit_intercept:
                grad.append([g1.sum()])
            grad = np.concatenate(grad)
            if linear_term is not None:
                theta = np.concatenate([w, v[2 * d :]])
                f += float(linear_term @ theta) / m
                grad[:d] += linear_term[:d] / m
                grad[d : 2 * d] -= linear_term[:d] / m
                grad[2 * d :] += linear_term[d:] / m
            return f, grad

        return fun

    def smooth(self, obj, y, weights, m):
        """Value and gradient of the mean objective in ``theta`` (l_2 or ``eps = 0``)."""
        X, bound = self.X, self.bound
        loss, alpha = obj.loss, obj.alpha

        def fun(theta):
            w, b = obj.split(theta)
            z = X @ w + b
            if bound is not None:
                up, down = bound.shifts(w)
                s = loss.direction(z, y, up, down)
                z = z + s * np.where(s > 0, up, down)
            f, g1 = _mean_loss(loss, z, y, weights, m, alpha, w)
            gw = (X.T @ g1 if self.is_sparse else g1 @ X) + alpha * w
            if bound is not None:
                gw += bound.deltaT_dot(w, s, g1)
            grad = np.concatenate([gw, [g1.sum()]] if obj.fit_intercept else [gw])
            if obj.linear_term is not None:
                f += float(obj.linear_term @ theta) / m
                grad += obj.linear_term / m
            return f, grad

        return fun


def _dense(B):
    return B.toarray() if sparse.issparse(B) else np.ascontiguousarray(B)


def _direct(obj):
    """Whether a sweep builds the worst-case points directly (no rooms): the
    logistic loss, whose adversary's direction is known before the scores."""
    return obj.loss.name == "logistic"


def _sweep_worst(obj, block, w, b, y, weights, support, wcols, intercept, hessian,
                 want_value=True):
    """:func:`_sweep_block` for the logistic loss on all rows, from their
    prepared worst-case rows on the support (a ``SupportBlock``)."""
    z = block.scores(w[support])
    z += b
    values, g1, c = obj.loss.terms(z, y, weights)
    value = float(values.sum()) if want_value or not hessian else 0.0
    if not hessian:
        return value, None, None
    k = len(support)
    where = np.searchsorted(support, wcols)
    if intercept:
        where = np.append(where, k)
    g = block.rmatvec(g1)
    if intercept:
        g = np.append(g, g1.sum())
    H = block.gram(c, intercept)
    return value, g[where], H[np.ix_(where, where)]


def _sweep_direct(obj, XS, w, b, y, weights, support, wcols, intercept, hessian,
                  want_value=True):
    """:func:`_sweep_block` for the logistic loss. The adversary pushes every
    score against the label, so each coordinate moves by ``eps`` against
    ``y w_j`` and stops at the box: the worst-case point is
    ``clip(x - eps y sign(w), low, high)``, built in one array."""
    threat = obj.threat
    wS = w[support]
    s = obj.loss.direction(None, y, None, None)
    xt = np.multiply.outer(threat.epsilon * s, np.sign(wS))
    xt += XS
    if threat.boxed:
        low, high = (np.asarray(v, dtype=np.float64) for v in (threat.low, threat.high))
        np.clip(xt, low[support] if low.ndim else low,
                high[support] if high.ndim else high, out=xt)
    z = xt @ wS + b
    loss = obj.loss
    value = _value_sum(loss, z, y, weights) if want_value or not hessian else 0.0
    if not hessian:
        return value, None, None
    where = np.searchsorted(support, wcols)
    if len(where) == len(support) and not intercept:
        xa = xt  # a temporary: scaled in place
    else:
        xa = np.empty((xt.shape[0], len(where) + int(intercept)))
        xa[:, : len(where)] = xt[:, where]
        if intercept:
            xa[:, -1] = 1.0
    return (value, *_loss_sums(loss, xa, z, y, weights))


def _value_sum(loss, z, y, weights):
    """The (weighted) summed loss at the scores ``z``."""
    values = loss.value(z, y)
    return float((values if weights is None else values * weights).sum())


def _loss_sums(loss, xa, z, y, weights):
    """``(sum_i g_i xa_i, sum_i c_i xa_i xa_i^T)`` of the loss's first and
    second derivatives at the scores ``z`` (``xa`` is overwritten)."""
    g1 = loss.d1(z, y)
    c = loss.d2(z, y)
    if weights is not None:
        g1 = g1 * weights
        c = c * weights
    g = xa.T @ g1
    if np.all(c >= 0):  # the usual case: H = B^T B with B = sqrt(c) xa, in place
        xa *= np.sqrt(c)[:, None]
        return g, xa.T @ xa
    return g, xa.T @ (c[:, None] * xa)


def _sweep_block(obj, XS, bound, w, b, y, weights, support, wcols, intercept, hessian,
                 want_value=True):
    """``(summed loss, summed loss gradient, summed Hessian)`` on ``wcols`` (and
    the intercept) of the rows of ``XS`` (the support's columns of a block of
    rows) at their l_inf worst cases; the regulariser is the caller's."""
    if bound is None:
        return _sweep_direct(obj, XS, w, b, y, weights, support, wcols, intercept, hessian,
                             want_value)
    wS = w[support]
    up, down = bound.linf_shifts(np.maximum(wS, 0.0), np.maximum(-wS, 0.0))
    z = XS @ wS + b
    loss = obj.loss
    s = loss.direction(z, y, up, down)
    z = z + s * np.where(s > 0, up, down)
    value = _value_sum(loss, z, y, weights) if want_value or not hessian else 0.0
    if not hessian:
        return value, None, None
    where = np.searchsorted(support, wcols)
    full = len(where) == len(support)
    P, Q = bound.P, bound.Q
    if np.ndim(P) == 2 and not full:
        P, Q = P[:, where], Q[:, where]
    # every column here is free (w_j != 0): the adversary takes the top of
    # its room where s w_j > 0, the bottom where s w_j < 0
    up_side = (s[:, None] * np.sign(wS[where])[None, :]) > 0
    # the worst-case points on the columns, built in one array
    xa = np.empty((XS.shape[0], len(where) + int(intercept)))
    body = xa[:, : len(where)]
    np.negative(P, out=body) if np.ndim(P) == 2 else body.fill(-P)
    np.copyto(body, Q, where=up_side)
    body += XS if full else XS[:, where]
    if intercept:
        xa[:, -1] = 1.0
    return (value, *_loss_sums(loss, xa, z, y, weights))


def pass_data(obj, rows):
    """``(row_pass, y, weights, m)`` for a pass of ``obj`` over ``rows``.

    When ``rows`` are at least half the training rows: the objective's cached
    pass over all of them, with a weight vector that is 0 off ``rows`` (no
    copy of the rows); else a pass prepared on a copy of ``rows``.
    """
    chunked = getattr(obj, "chunked_pass", None)
    if chunked is not None:  # rows of a Dask array (skmuter.linear._chunked)
        return chunked(rows)
    rows = np.asarray(rows)
    n = obj.X.shape[0]
    m = obj.weight_sum(rows)
    if 2 * len(rows) >= n:
        weights = np.zeros(n)
        weights[rows] = 1.0 if obj.sample_weight is None else obj.sample_weight[rows]
        if len(rows) == n and obj.sample_weight is None:
            weights = None
        return obj.row_pass(), obj.y, weights, m
    return RowPass(obj.X[rows], obj.threat), obj.y[rows], obj._sw(rows), m


def _mean_loss(loss, z, y, sw, m, alpha, w):
    """Mean (weighted) loss plus the ridge term, and the scaled first
    derivatives (the loss's values and derivatives at once)."""
    values, d1, _ = loss.terms(z, y, sw)
    d1 /= m
    return float(values.sum()) / m + 0.5 * alpha * float(w @ w), d1
