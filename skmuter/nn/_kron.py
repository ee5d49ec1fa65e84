"""Matrix-free curvature of a large linear head, and its preconditioned solve.

For the head ``z = W phi + b`` on a frozen body, with ``u_i = (phi_i, 1)`` and
``p_i = softmax(z_i)``, the Hessian of the summed cross-entropy in ``(W, b)``
is ``sum_i (diag(p_i) - p_i p_i^T) kron (u_i u_i^T)``. Its product with a
direction ``V`` (``K x width``, the head's natural layout) needs no
``(K width) x (K width)`` matrix and no loop over rows::

    Z = U V^T                         (n x K: z_i = V u_i)
    S = P o Z - P o rowsum(P o Z)     (s_i = (diag(p_i) - p_i p_i^T) z_i)
    H V = S^T U  (+ lambda V)

two batched matrix products over the rows' features ``U`` (n x width) and
probabilities ``P`` (n x K), the *factors* that :class:`HeadCurvature` keeps
(taken in blocks of rows, so that the n x K temporaries stay small). A 2,048 x
1,000 head (two million parameters, a dense Hessian of 34 TB) thus costs
``4 n K width`` operations per product and keeps ``n (K + width)`` numbers.

Under the penalised attack MUter's total Hessian adds, per row, the indirect
term ``M_i R_i M_i^T`` with ``R_i = L_i L_i^T`` in feature space
(:func:`skmuter.nn._head.head_factors`); it is applied in the same batched
form (``M_i^T v = W^T s_i + V_W^T g_i`` and ``M_i w = (diag(p_i) - p_i p_i^T)
W w u_i^T + g_i w^T``). Factors of the general indirect term (``C_i``, p x r,
from :func:`skmuter.nn._indirect.row_factor`) are applied as ``C_i C_i^T v``.

Solves run by conjugate gradients, preconditioned by the Kronecker-factored
approximation ``(sum_i (diag(p_i) - p_i p_i^T)) kron (sum_i u_i u_i^T) / n +
lambda I``, whose inverse is applied exactly from the eigendecompositions of
its two factors (K x K and width x width, computed once per solve). The
memory of a forgetter is built once and downdated per request by dropping
the removed rows' factors (and subtracting their terms from the two sums of
the preconditioner); nothing of them stays.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator

from ._head import HeadFactor, onehot
from ._points import row_chunks, theta_key

__all__ = ["CG_MAXITER", "CG_RTOL", "HeadCurvature", "head_curvature"]

#: relative residual ``||A x - b|| / ||b||`` at which the conjugate gradients stop
CG_RTOL = 1e-10

#: most conjugate-gradient iterations of one solve
CG_MAXITER = 1000

#: entries of the n x K temporaries of one block of rows in a product
_BLOCK = 1 << 21


def _weighted(P, Z):
    """Rows ``(diag(p_i) - p_i p_i^T) z_i`` of the rows ``p_i`` of ``P`` and ``z_i`` of ``Z``."""
    PZ = P * Z
    return PZ - P * PZ.sum(1, keepdim=True)


class HeadCurvature(LinearOperator):
    """Summed curvature of a linear head over rows, kept as factors.

    A ``scipy.sparse.linalg.LinearOperator`` over the coordinates ``cols`` of
    ``theta`` (so any matrix-free solver can use it), with a preconditioned
    :meth:`solve`, an exact downdate :meth:`without` and a diagonal shift
    :meth:`shifted`. Immutable: both return new operators sharing what they
    do not change (a deep copy is the operator itself).

    Built by :func:`head_curvature`; the parameters are its factors.

    Parameters
    ----------
    rows : ndarray of shape (n,)
        Training positions of the rows, in the order of ``U`` and ``P``.
    U : tensor of shape (n, width)
        Features of the rows at the curvature's points, with a column of ones
        when the head has a bias.
    P : tensor of shape (n, K)
        Softmax of the head's output on them.
    alpha : float
        Ridge share of one row.
    pos : tensor of shape (len(cols),)
        Positions of ``cols`` in the natural layout ``(k, [phi, 1])``.
    full_pos : tensor of shape (n_params,)
        Natural positions of every coordinate of ``theta`` (for ``C_i``).
    head : dict, optional
        The penalised head's indirect term: ``idx`` (positions in ``rows``),
        ``L`` (m, F, r) zero-padded feature factors, ``G`` (m, K) logit
        gradients ``p_i - e_{y_i}``, ``W`` (K, F) the head's weight.
    extra : list of (int, tensor), optional
        ``(row, C_i)`` with ``C_i`` (n_params, r) in the order of ``theta``.
    shift : float
        Added to the diagonal (a forgetter's damping).
    sums : tuple of tensors, optional
        ``(sum_i diag(p_i) - p_i p_i^T, sum_i u_i u_i^T)``, the preconditioner's
        factors (computed when None).
    """

    def __init__(self, rows, U, P, alpha, pos, full_pos, head=None, extra=(), shift=0.0,
                 sums=None):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.U, self.P = U, P
        self.alpha = float(alpha)
        self.pos, self.full_pos = pos, full_pos
        self.head = head
        self.extra = list(extra)
        self.shift = float(shift)
        self.K, self.width = P.shape[1], U.shape[1]
        if sums is None:
            sums = (torch.diag(P.sum(0)) - P.T @ P, U.T @ U)
        self.sums = sums
        super().__init__(np.float64, (len(pos), len(pos)))

    def __deepcopy__(self, memo):
        return self  # immutable: every change makes a new operator

    @property
    def n_rows(self):
        """Rows whose terms the operator sums."""
        return len(self.rows)

    @property
    def lam(self):
        """The diagonal: the rows' ridge shares plus the shift."""
        return self.alpha * self.n_rows + self.shift

    # ---- products -------------------------------------------------------------------
    def apply(self, V):
        """The curvature times ``V`` (K x width, natural layout), over every coordinate."""
        out = self.lam * V
        # blocks of rows: the n x K temporaries stay small
        step = max(256, _BLOCK // max(self.K, 1))
        for start in range(0, self.n_rows, step):
            U, P = self.U[start:start + step], self.P[start:start + step]
            out += _weighted(P, U @ V.T).T @ U
        if self.head is not None:
            out += self._indirect(V)
        if self.extra:
            v = V.reshape(-1)[self.full_pos]
            flat = out.reshape(-1)
            for _, C in self.extra:
                flat[self.full_pos] += C @ (C.T @ v)
        return out

    def _indirect(self, V):
        h = self.head
        idx, L, G, W = h["idx"], h["L"], h["G"], h["W"]
        F_ = W.shape[1]
        Pf, Uf = self.P[idx], self.U[idx]
        T = _weighted(Pf, Uf @ V.T) @ W + G @ V[:, :F_]       # M_i^T v     (m, F)
        w = torch.einsum("mfr,mr->mf", L, torch.einsum("mfr,mf->mr", L, T))  # R_i t_i
        out = _weighted(Pf, w @ W.T).T @ Uf                     # (diag p - pp^T) W w u^T
        out[:, :F_] += G.T @ w
        return out

    def _embed(self, v):
        V = torch.zeros(self.K * self.width, dtype=self.U.dtype, device=self.U.device)
        V[self.pos] = torch.as_tensor(np.ravel(v), dtype=V.dtype, device=V.device)
        return V.reshape(self.K, self.width)

    def _matvec(self, v):
        return self.apply(self._embed(v)).reshape(-1)[self.pos].cpu().numpy()

    def _rmatvec(self, v):
        return self._matvec(v)

    # ---- changes --------------------------------------------------------------------
    def without(self, rows):
        """The curvature without the terms of ``rows`` (positions in the training set)."""
        drop = np.isin(self.rows, np.asarray(rows, dtype=np.int64))
        if not drop.any():
            return self
        keep_t = torch.as_tensor(~drop, device=self.U.device)
        gone_t = torch.as_tensor(np.flatnonzero(drop), device=self.U.device)
        Ug, Pg = self.U[gone_t], self.P[gone_t]
        sums = (self.sums[0] - (torch.diag(Pg.sum(0)) - Pg.T @ Pg), self.sums[1] - Ug.T @ Ug)
        head = None
        if self.head is not None:
            new_pos = np.cumsum(~drop) - 1
            idx = self.head["idx"].cpu().numpy()
            sel = ~drop[idx]
            if sel.any():
                sel_t = torch.as_tensor(sel, device=self.U.device)
                head = dict(self.head, idx=torch.as_tensor(new_pos[idx[sel]],
                                                           device=self.U.device),
                            L=self.head["L"][sel_t], G=self.head["G"][sel_t])
        gone = set(self.rows[drop].tolist())
        extra = [(r, C) for r, C in self.extra if r not in gone]
        return HeadCurvature(self.rows[~drop], self.U[keep_t], self.P[keep_t], self.alpha,
                             self.pos, self.full_pos, head=head, extra=extra,
                             shift=self.shift, sums=sums)

    def shifted(self, lam):
        """The curvature plus ``lam`` on the diagonal."""
        if lam == 0:
            return self
        return HeadCurvature(self.rows, self.U, self.P, self.alpha, self.pos, self.full_pos,
                             head=self.head, extra=self.extra, shift=self.shift + lam,
                             sums=self.sums)

    # ---- solves ---------------------------------------------------------------------
    def preconditioner(self):
        """``x -> M^-1 x`` of the Kronecker-factored ``M = A_K kron A_U / n + lam I``."""
        A_K, A_U = self.sums
        dk, Qk = torch.linalg.eigh(0.5 * (A_K + A_K.T))
        du, Qu = torch.linalg.eigh(0.5 * (A_U + A_U.T))
        n = max(self.n_rows, 1)
        denom = (dk.clamp_min(0)[:, None] * du.clamp_min(0)[None, :]) / n + self.lam
        if not bool((denom > 0).all()):
            denom = denom.clamp_min(float(denom.max()) * 1e-12 + 1e-300)

        def apply(R):
            return Qk @ ((Qk.T @ R @ Qu) / denom) @ Qu.T
        return apply

    def solve(self, rhs, precondition=True, rtol=CG_RTOL, maxiter=CG_MAXITER):
        """``x`` with ``A x = rhs`` by (preconditioned) conjugate gradients.

        Runs on the operator's device in the natural layout. Stops when the
        recursive residual ``||rhs - A x||`` is at most ``rtol ||rhs||`` or
        after ``maxiter`` iterations.

        Returns
        -------
        x : ndarray of shape (len(cols),)
        info : dict
            ``method`` (``'cg'``), ``preconditioner`` (``'kronecker'`` or
            None), ``rtol``, ``maxiter``, ``iterations``, ``residual`` (the
            final relative residual of the recursion) and ``converged``.
        """
        restricted = len(self.pos) < self.K * self.width
        if restricted:  # the coordinates off ``cols`` stay at zero
            mask = torch.zeros(self.K * self.width, dtype=self.U.dtype, device=self.U.device)
            mask[self.pos] = 1.0
            mask = mask.reshape(self.K, self.width)
        b = self._embed(rhs)
        M = self.preconditioner() if precondition else None

        def A(V):
            out = self.apply(V)
            return out * mask if restricted else out

        def Minv(R):
            if M is None:
                return R
            return M(R) * mask if restricted else M(R)

        bnorm = float(b.norm())
        x = torch.zeros_like(b)
        it, rel = 0, 0.0
        if bnorm > 0:
            r = b.clone()
            z = Minv(r)
            d = z.clone()
            rz = float((r * z).sum())
            rel = 1.0
            while it < maxiter:
                Ad = A(d)
                curv = float((d * Ad).sum())
                if not curv > 0:
                    break
                step = rz / curv
                x += step * d
                r -= step * Ad
                it += 1
                rel = float(r.norm()) / bnorm
                if rel <= rtol:
                    break
                z = Minv(r)
                rz_new = float((r * z).sum())
                d = z + (rz_new / rz) * d
                rz = rz_new
        info = {"method": "cg", "preconditioner": "kronecker" if precondition else None,
                "rtol": float(rtol), "maxiter": int(maxiter), "iterations": it,
                "residual": rel, "converged": bool(rel <= rtol)}
        return x.reshape(-1)[self.pos].cpu().numpy(), info


def head_curvature(obj, theta, rows, kind, points, cols):
    """:class:`HeadCurvature` of ``obj``'s head over ``rows`` (kinds ``'hessian'``,
    ``'total'``), on the coordinates ``cols``.

    The features and probabilities are computed chunk by chunk into
    preallocated factors; under an attack at the worst cases (``'total'``
    always). ``'total'`` adds the indirect terms the objective has for these
    rows (through its cache of factors).
    """
    rows = np.asarray(rows, dtype=np.int64)
    head = obj.head
    theta_t = obj._t(theta)
    w_pos, b_pos = head.layout
    K, F_ = w_pos.shape
    width = F_ + (b_pos is not None)
    n = len(rows)
    U = torch.empty((n, width), dtype=obj.dtype, device=obj.device)
    P = torch.empty((n, K), dtype=obj.dtype, device=obj.device)
    start = 0
    for chunk, inp, _, on_head in obj._batches(theta, rows, points):
        with torch.no_grad():
            stop = start + len(chunk)
            U[start:stop, :F_] = inp
            P[start:stop] = torch.softmax(head.logits(theta_t, inp), dim=1)
        start = stop
    if b_pos is not None:
        U[:, F_] = 1.0
    full_pos = head.natural_index(torch.arange(obj.n_params, device=obj.device))
    pos = full_pos[torch.as_tensor(np.asarray(cols), device=obj.device)]
    head_term, extra = None, []
    if kind == "total" and obj.threat.epsilon != 0:
        for _ in obj._factors(theta, rows, expand_head=False):
            pass  # fills the objective's cache of factors for these rows
        store = obj._factor_cache[theta_key(theta)]
        at = [i for i, r in enumerate(rows) if isinstance(store[int(r)], HeadFactor)]
        extra = [(int(r), store[int(r)]) for r in rows
                 if store[int(r)] is not None and not isinstance(store[int(r)], HeadFactor)]
        if at:
            Ls = [store[int(rows[i])].L for i in at]
            r_max = max(L.shape[1] for L in Ls)
            L = torch.zeros((len(at), F_, r_max), dtype=obj.dtype, device=obj.device)
            for j, Li in enumerate(Ls):
                L[j, :, :Li.shape[1]] = Li
            idx = torch.as_tensor(at, device=obj.device)
            G = torch.empty((len(at), K), dtype=obj.dtype, device=obj.device)
            for sub in row_chunks(np.arange(len(at)), obj.batch_size):
                G[sub] = P[idx[sub]] - onehot(obj._y(rows[np.asarray(at)[sub]]), K, obj.dtype)
            W = obj.params.unflatten(theta_t)[head.prefix + "weight"]
            head_term = {"idx": idx, "L": L, "G": G, "W": W}
    return HeadCurvature(rows, U, P, obj.alpha, pos, full_pos, head=head_term, extra=extra)
