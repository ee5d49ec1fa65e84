"""The exact worst case of a linear score over a threat set, on fixed rows.

For ``z = w . x + b`` the adversary's best move over a norm ball (intersected
with the input box when the threat has one) has an exact answer:
in closed form for l_inf (with or without box) and l_2 without box, and by an
exact one-dimensional search over sorted break points for l_2 with a box.
Iterative attacks (PGD, FGSM) can never beat it on a linear model.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ..attacks import Threat

__all__ = ["BoundThreat", "bind", "check_inside"]

#: rows per block when a sparse input is densified a block at a time
_SPARSE_BLOCK = 4096

#: sparse inputs with at least this many stored entries get their l_inf box
#: rooms computed from the inputs at each product (a block of rows at a time)
#: instead of stored: two more matrices the size of the inputs would be held
_LAZY_NNZ = 1 << 23

#: stored entries per block of rows in those products
_LAZY_BLOCK_NNZ = 1 << 20


def check_inside(threat: Threat, X):
    """``threat.check_inside(X)`` for dense or sparse ``X`` (a sparse matrix is
    checked on its stored values and, where a column has implicit zeros, on 0)."""
    if not sparse.issparse(X):
        threat.check_inside(X)
        return
    if not threat.boxed:
        return
    X = sparse.csr_matrix(X)
    d = X.shape[1]
    low = np.broadcast_to(np.asarray(threat.low, dtype=np.float64), (d,))
    high = np.broadcast_to(np.asarray(threat.high, dtype=np.float64), (d,))
    cols = X.indices
    tol = 1e-12
    outside = np.any(X.data < low[cols] - tol) or np.any(X.data > high[cols] + tol)
    implicit = np.bincount(cols, minlength=d) < X.shape[0]
    outside = outside or np.any(implicit & ((low > tol) | (high < -tol)))
    if outside:
        raise ValueError(
            "X has values outside clip=(low, high); the attack box must contain the "
            "clean inputs (rescale X or widen clip)."
        )


def bind(threat: Threat, X, cols=None, compress=False) -> BoundThreat:
    """Return the exact worst-case oracle of a linear model on rows ``X``.

    Parameters
    ----------
    threat : skmuter.attacks.Threat
        The validated threat model.
    X : ndarray or sparse matrix of shape (n, k)
        Rows, restricted to the feature columns ``cols`` when given (the
        l_inf threat is separable over features). A sparse ``X`` stays
        sparse: the l_inf box rooms are stored compressed (the ``linf_*``
        methods and ``shifts``), the l_2 box is evaluated a block of rows at
        a time.
    cols : array of int, optional
        Original feature indices of the columns of ``X``.
    compress : bool, default=False
        Store the l_inf box rooms as per-column constants minus sparse
        matrices (fast repeated products on large data; only the
        ``linf_*`` methods are then available).
    """
    return BoundThreat(threat, X, cols=cols, compress=compress)


class _ColumnConstMinusSparse:
    """A matrix stored as ``c[None, :] - S`` with ``S`` sparse (CSR).

    The l_inf box rooms ``min(eps, x - low)`` and ``min(eps, high - x)`` equal
    0 or ``eps`` on most entries of typical data (image background, one-hot
    columns): per column the more frequent value goes into ``c``.
    """

    def __init__(self, M, eps):
        n = M.shape[0]
        at_eps = np.count_nonzero(M == eps, axis=0)
        at_zero = np.count_nonzero(M == 0, axis=0)
        self.c = np.where(at_eps > at_zero, eps, 0.0)
        S = self.c[None, :] - M
        self.S = sparse.csr_matrix(S)
        self.shape = M.shape
        self.n = n

    @classmethod
    def from_sparse(cls, X, room):
        """The rooms ``room(x, cols)`` of a sparse ``X`` (CSR), without densifying:
        an implicit zero of column ``j`` has the room ``room(0, j)``, the column
        constant ``c``; the stored entries differ from it by a sparse matrix."""
        out = cls.__new__(cls)
        n, d = X.shape
        out.c = room(np.zeros(d), np.arange(d))
        values = room(X.data, X.indices)
        out.S = sparse.csr_matrix((out.c[X.indices] - values, X.indices.copy(),
                                   X.indptr.copy()), shape=X.shape)
        out.S.eliminate_zeros()
        out.shape = X.shape
        out.n = n
        return out

    @classmethod
    def lazy(cls, X, room):
        """The same matrix, its sparse part computed from ``X`` (CSR, shared,
        not copied) a block of rows at a time at every product: no array the
        size of ``X`` is stored or formed."""
        return _LazyColumnConstMinusSparse(X, room)

    __array_ufunc__ = None  # make ``H @ self`` call ``__rmatmul__``

    def columns(self, idx):
        """The dense columns ``idx`` (all rows)."""
        idx = np.arange(self.shape[1])[idx]
        return self.c[idx][None, :] - self.S[:, idx].toarray()

    def __matmul__(self, V):
        return (self.c @ V)[None, :] - self.S @ V

    def __rmatmul__(self, H):
        # H is (k, n): returns (k, d)
        return np.outer(H.sum(axis=1), self.c) - np.asarray((self.S.T @ H.T).T)


class _LazyColumnConstMinusSparse(_ColumnConstMinusSparse):
    """``c[None, :] - S`` where ``S`` has the stored entries of ``X`` with the
    values ``c[j] - room(x, j)``, evaluated from ``X`` when a product needs them.

    ``X`` is the caller's array (a pass shares the estimator's): rows it
    erases in place are erased here too.
    """

    def __init__(self, X, room):
        n, d = X.shape
        self.X, self.room = X, room
        self.c = room(np.zeros(d), np.arange(d))
        self.shape = X.shape
        self.n = n
        self.d = d

    def _blocks(self):
        """``(start, stop, S_block)`` over successive blocks of rows."""
        X = self.X
        indptr = X.indptr
        nnz = int(indptr[-1])
        per = max(1, int(self.n * _LAZY_BLOCK_NNZ / max(nnz, 1)))
        for a in range(0, self.n, per):
            b = min(a + per, self.n)
            p, q = int(indptr[a]), int(indptr[b])
            idx = X.indices[p:q]
            values = self.c[idx] - self.room(X.data[p:q], idx)
            yield a, b, sparse.csr_matrix((values, idx, indptr[a : b + 1] - p),
                                          shape=(b - a, self.d))

    def columns(self, idx):
        idx = np.arange(self.d)[idx]
        out = np.empty((self.n, len(idx)))
        for a, b, S in self._blocks():
            out[a:b] = self.c[idx][None, :] - S[:, idx].toarray()
        return out

    def __matmul__(self, V):
        V = np.asarray(V)
        out = np.empty((self.n,) + V.shape[1:])
        for a, b, S in self._blocks():
            out[a:b] = S @ V
        return (self.c @ V)[None, ...] - out if V.ndim == 2 else self.c @ V - out

    def __rmatmul__(self, H):
        H = np.asarray(H)
        acc = np.zeros((H.shape[0], self.d))
        for a, b, S in self._blocks():
            acc += np.asarray((S.T @ H[:, a:b].T).T)
        return np.outer(H.sum(axis=1), self.c) - acc


def _products(M, V):
    """``M @ V`` for ``V`` of shape (d, k); ``M`` may be a scalar constant matrix."""
    if isinstance(M, (float, np.floating)):
        return (M * V.sum(axis=0))[None, :]
    return M @ V


def _rproducts(M, H):
    """``H @ M`` for ``H`` of shape (k, n); returns (k, d) (broadcastable)."""
    if isinstance(M, (float, np.floating)):
        return (M * H.sum(axis=1))[:, None]
    return H @ M


class _RoomBelow:
    """``min(eps, x - low_j)``, at least 0 (an object, not a closure: passes
    run in Dask tasks and must pickle)."""

    def __init__(self, eps, limit):
        self.eps, self.limit = eps, limit

    def __call__(self, x, j):
        return np.maximum(np.minimum(self.eps, x - self.limit[j]), 0.0)


class _RoomAbove(_RoomBelow):
    """``min(eps, high_j - x)``, at least 0."""

    def __call__(self, x, j):
        return np.maximum(np.minimum(self.eps, self.limit[j] - x), 0.0)


class BoundThreat:
    """Exact worst case of a linear score on fixed rows ``X``.

    For a direction ``s_i`` in {-1, +1} per row and weights ``w``, the
    adversary maximises ``s_i * w . delta_i`` over the threat set of row ``i``.
    ``shift`` is that maximum (>= 0), ``delta`` the maximiser; the worst-case
    score is ``z_i + s_i * shift_i``.

    For l_inf the room of each coordinate is ``P = min(eps, x - low)`` below
    and ``Q = min(eps, high - x)`` above (scalars ``eps`` without box): the
    maximiser takes ``Q`` where ``s w_j > 0`` and ``-P`` where ``s w_j < 0``.
    """

    def __init__(self, threat: Threat, X, cols=None, compress=False):
        self.threat = threat
        self.X = X
        self.n, self.d = X.shape
        self.cols = cols
        self._blocks = False  # sparse X under a boxed l_2 threat: per block of rows
        eps = threat.epsilon
        if threat.boxed:
            low, high = threat.low, threat.high
            if cols is not None:
                low = low[cols] if low.ndim else low
                high = high[cols] if high.ndim else high
            if sparse.issparse(X):
                if threat.norm != "inf":
                    self._blocks = True
                    return
                X = sparse.csr_matrix(X)
                lo = np.broadcast_to(np.asarray(low, dtype=np.float64), (self.d,))
                hi = np.broadcast_to(np.asarray(high, dtype=np.float64), (self.d,))
                make = (_ColumnConstMinusSparse.lazy if X.nnz >= _LAZY_NNZ
                        else _ColumnConstMinusSparse.from_sparse)
                self.P = make(X, _RoomBelow(eps, lo))
                self.Q = make(X, _RoomAbove(eps, hi))
                return
            # For l_2 the box room is capped at eps too: harmless, |delta_j| <= eps.
            # (in place: one array each, no temporaries the size of X)
            self.P = np.subtract(X, low)
            self.Q = np.subtract(high, X)
            for M in (self.P, self.Q):
                np.minimum(M, eps, out=M)
                np.maximum(M, 0.0, out=M)
            if compress and threat.norm == "inf":
                self.P = _ColumnConstMinusSparse(self.P, eps)
                self.Q = _ColumnConstMinusSparse(self.Q, eps)
        else:
            self.P = self.Q = eps

    def _block_bounds(self):
        """Dense bound threats of successive blocks of rows (sparse ``X``, l_2 box)."""
        X = sparse.csr_matrix(self.X)
        for start in range(0, self.n, _SPARSE_BLOCK):
            block = X[start : start + _SPARSE_BLOCK].toarray()
            yield BoundThreat(self.threat, block, cols=self.cols)

    # ---- l_inf pieces, linear in (w+, w-) --------------------------------
    def linf_shifts(self, wp, wm):
        """Return ``(up, down)``: the l_inf shifts for ``s=+1`` and ``s=-1``."""
        V = np.column_stack([wp, wm])
        PV = _products(self.P, V)
        QV = _products(self.Q, V)
        up = QV[:, 0] + PV[:, 1]
        down = PV[:, 0] + QV[:, 1]
        if up.shape[0] != self.n:
            up, down = np.full(self.n, up[0]), np.full(self.n, down[0])
        return up, down

    def linf_split_grads(self, g, s):
        """Return ``(A, B)``: gradients of ``sum_i g_i s_i shift_i`` in ``w+`` and ``w-``."""
        H = np.vstack([np.where(s > 0, g, 0.0), np.where(s > 0, 0.0, g)])
        PH = _rproducts(self.P, H)
        QH = _rproducts(self.Q, H)
        A = QH[0] - PH[1]
        B = PH[0] - QH[1]
        if A.shape[0] != self.d:
            A, B = np.full(self.d, A[0]), np.full(self.d, B[0])
        return A, B

    # ---- general interface ------------------------------------------------
    def shifts(self, w):
        """Return ``(up, down)`` for both directions at weights ``w``."""
        if self.threat.norm == "inf":
            return self.linf_shifts(np.maximum(w, 0.0), np.maximum(-w, 0.0))
        if not self.threat.boxed:
            t = np.full(self.n, self.threat.epsilon * np.linalg.norm(w))
            return t, t
        if self._blocks:
            parts = [b.shifts(w) for b in self._block_bounds()]
            return (np.concatenate([p[0] for p in parts]),
                    np.concatenate([p[1] for p in parts]))
        up = np.einsum("ij,j->i", self._l2_box_delta(w, np.ones(self.n))[0], w)
        down = -np.einsum("ij,j->i", self._l2_box_delta(w, -np.ones(self.n))[0], w)
        return up, down

    def delta(self, w, s, cols=None):
        """Return the maximiser ``delta`` (rows x ``cols``) for directions ``s``."""
        s = np.asarray(s, dtype=np.float64)
        if self.threat.norm == "inf":
            idx = slice(None) if cols is None else cols
            sw = s[:, None] * w[idx][None, :]
            if isinstance(self.P, _ColumnConstMinusSparse):
                P, Q = self.P.columns(idx), self.Q.columns(idx)
            else:
                P = self.P if np.ndim(self.P) == 0 else self.P[:, idx]
                Q = self.Q if np.ndim(self.Q) == 0 else self.Q[:, idx]
            return np.where(sw > 0, Q, np.where(sw < 0, -P, 0.0))
        if not self.threat.boxed:
            nw = np.linalg.norm(w)
            unit = w / nw if nw > 0 else np.zeros_like(w)
            out = self.threat.epsilon * s[:, None] * unit[None, :]
        elif self._blocks:
            out = np.vstack([b.delta(w, s[i : i + b.n]) for i, b in zip(
                range(0, self.n, _SPARSE_BLOCK), self._block_bounds())])
        else:
            out = self._l2_box_delta(w, s)[0]
        return out if cols is None else out[:, cols]

    def deltaT_dot(self, w, s, g):
        """Return ``sum_i g_i delta_i`` without forming ``delta`` where possible."""
        if self.threat.norm == "inf":
            A, B = self.linf_split_grads(g, s)
            return np.where(w > 0, A, np.where(w < 0, -B, 0.0))
        if not self.threat.boxed:
            nw = np.linalg.norm(w)
            if nw == 0:
                return np.zeros(self.d)
            return self.threat.epsilon * float(np.dot(g, s)) * w / nw
        if self._blocks:
            out = np.zeros(self.d)
            for i, b in zip(range(0, self.n, _SPARSE_BLOCK), self._block_bounds()):
                out += b.deltaT_dot(w, s[i : i + b.n], g[i : i + b.n])
            return out
        return g @ self._l2_box_delta(w, s)[0]

    def l2_curvature(self, w, s):
        """Curvature of the l_2 shift: ``shift_i`` is ``eps_F,i * ||w_{F_i}||`` plus a
        linear term, so its Hessian is ``eps_F,i / rho_i * (I_F - w_F w_F^T / rho_i^2)``.

        Returns ``(scale, F, rho)`` with ``scale = eps_F / rho`` (0 where the ball
        is inactive), ``F`` the free-coordinate mask (None: all free) and
        ``rho = ||w_F||``.
        """
        if not self.threat.boxed:
            rho = np.linalg.norm(w)
            scale = self.threat.epsilon / rho if rho > 0 else 0.0
            return np.full(self.n, scale), None, np.full(self.n, rho)
        if self._blocks:
            parts = [b.l2_curvature(w, s[i : i + b.n]) for i, b in zip(
                range(0, self.n, _SPARSE_BLOCK), self._block_bounds())]
            return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))
        _, F, eps_f = self._l2_box_delta(w, s)
        rho = np.sqrt(((F * w) ** 2).sum(axis=1))
        scale = np.divide(eps_f, rho, out=np.zeros(self.n), where=rho > 0)
        return scale, F, rho

    def _l2_box_delta(self, w, s):
        """Maximise ``u . delta`` over ``||delta||_2 <= eps`` and ``-P <= delta <= Q``.

        The maximiser is ``clip(lam * u, -P, Q)`` for the ``lam`` at which its
        norm reaches ``eps`` (or the box corner when that lies inside the ball).
        Break points ``|corner_j| / |u_j|`` are sorted per row and the segment
        holding ``eps`` found from cumulative sums: exact, no iteration.
        Returns ``(delta, free_mask, eps_free)``.
        """
        eps = self.threat.epsilon
        u = s[:, None] * w[None, :]
        P = np.broadcast_to(self.P, u.shape)
        Q = np.broadcast_to(self.Q, u.shape)
        corner = np.where(u > 0, Q, np.where(u < 0, -P, 0.0))
        au = np.abs(u)
        with np.errstate(divide="ignore", invalid="ignore"):
            brk = np.where(au > 0, np.abs(corner) / au, np.inf)
        order = np.argsort(brk, axis=1)
        b_s = np.take_along_axis(brk, order, axis=1)
        c2 = np.take_along_axis(corner**2, order, axis=1)
        u2 = np.take_along_axis(au**2, order, axis=1)
        clipped_before = np.cumsum(c2, axis=1) - c2  # sum_{m<k} c_m^2
        free_from = np.cumsum(u2[:, ::-1], axis=1)[:, ::-1]  # sum_{m>=k} u_m^2
        finite = np.isfinite(b_s)
        # Squared norm of the maximiser at each break point; past the last finite
        # break point only zero-direction coordinates remain and the norm stays put.
        norm_at = clipped_before + np.where(finite, np.where(finite, b_s, 0.0) ** 2, 0.0) * free_from
        reach = norm_at >= eps**2
        inside = ~reach.any(axis=1) | (eps == 0)
        k = np.argmax(reach, axis=1)
        rows = np.arange(u.shape[0])
        denom = free_from[rows, k]
        lam2 = np.divide(eps**2 - clipped_before[rows, k], denom, out=np.zeros(u.shape[0]),
                         where=denom > 0)
        lam = np.sqrt(np.maximum(lam2, 0.0))
        delta = np.clip(lam[:, None] * u, -P, Q)
        free = (brk > lam[:, None]) & ~inside[:, None]
        delta = np.where(inside[:, None], corner, delta)
        pinned2 = np.where(free, 0.0, delta**2).sum(axis=1)
        eps_free = np.where(inside, 0.0, np.sqrt(np.maximum(eps**2 - pinned2, 0.0)))
        return delta, free, eps_free
