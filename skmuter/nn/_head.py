"""Closed-form curvature of a linear head, and the penalised attack's indirect term.

When ``theta`` is the last ``nn.Linear`` of a network on a frozen body
(:class:`~skmuter.nn._params.LinearHead`), the per-row terms depend on the
input only through the body's features ``phi``:

* the Hessian of the head's cross-entropy is a sum of Kronecker products
  (:func:`head_hessian`), with no Hessian-vector product per parameter;
* under the penalised attack the indirect term of the total Hessian,
  ``B_i^T N_i^+ B_i`` with ``N_i = gamma I - d_delta delta l_i``, factors
  through the features as ``M_i R_i M_i^T`` with a small F x F matrix ``R_i``
  per row (:func:`head_factors`: a randomised range finder and Nystrom
  recovery when the input curvature has low rank, block conjugate gradients
  otherwise), and the sum over rows is again Kronecker-structured
  (:func:`head_indirect_sum`).

Every function takes the :class:`~skmuter.nn.NetObjective` it works for.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from torch.func import grad, jacrev, jvp, vmap

from .._warnings import warn
from ._points import row_chunks, theta_key

__all__ = ["HeadFactor", "cg_head_factors", "expand_head", "feature_factor", "head_factors",
           "head_hessian", "head_indirect_sum", "jacobian_features", "sketch_factors"]


class HeadFactor:
    """Cached ``L`` (F x r) of a row's indirect term in feature space."""

    __slots__ = ("L",)

    def __init__(self, L):
        self.L = L


def feature_factor(R):
    """``HeadFactor`` of the PSD F x F matrix ``R`` (None when it is zero)."""
    lam, U = torch.linalg.eigh(0.5 * (R + R.T))
    keep = lam > 1e-12 * max(float(lam.abs().max()), 0.0)
    if not bool(keep.any()):
        return None
    return HeadFactor(U[:, keep] * lam[keep].sqrt())


def onehot(y, K, dtype):
    """One-hot rows of the class codes ``y``."""
    out = torch.zeros((len(y), K), dtype=dtype, device=y.device)
    out[torch.arange(len(y), device=y.device), y] = 1.0
    return out


def head_hessian(obj, theta_t, feats, cols_t):
    """Hessian of the summed cross-entropy of the head, in closed form.

    With ``p_i = softmax(W phi_i + b)`` and ``u_i = (phi_i, 1)``, the Hessian
    in ``(W, b)`` is ``sum_i (diag(p_i) - p_i p_i^T) kron (u_i u_i^T)``:
    ``K`` weighted Gram matrices and one product of the ``n x K(F+1)``
    matrix of the ``p_i kron u_i``, instead of one Hessian-vector product
    per parameter.
    """
    w_pos, b_pos = obj.head.layout
    K = w_pos.shape[0]
    with torch.no_grad():
        P = torch.softmax(obj.head.logits(theta_t, feats), dim=1)
        U = feats if b_pos is None else torch.cat(
            [feats, torch.ones_like(feats[:, :1])], dim=1)
        width = U.shape[1]
        H = torch.zeros((K * width, K * width), dtype=obj.dtype, device=obj.device)
        for k in range(K):
            blk = slice(k * width, (k + 1) * width)
            H[blk, blk] = (U * P[:, k:k + 1]).T @ U
        V = (P[:, :, None] * U[:, None, :]).reshape(len(U), K * width)
        H -= V.T @ V
    idx = obj.head.natural_index(cols_t)
    return H[idx][:, idx]


def head_factors(obj, theta_t, xa, y, free):
    """Per-row ``L_i`` with ``J_i N_i^+ J_i^T = L_i L_i^T`` (F x r), as ``HeadFactor``.

    With the head ``z = W phi(x) + b`` on a frozen body, the mixed
    derivative factors through the features: ``B_i = M_i J_i`` with
    ``J_i = d phi / d x`` (F x d) and ``M_i = d (grad_theta l) / d phi``
    (p x F). So ``B_i N_i^+ B_i^T = M_i (J_i N_i^+ J_i^T) M_i^T`` with
    ``N_i = gamma I - G_i`` and ``G_i = d_xx l_i`` on the free coordinates;
    only the F x F matrix is kept, ``M_i`` is rebuilt when it is used.

    ``G_i`` has low rank when the body starts with a narrow layer (an MLP:
    at most its width). Its range is found from ``k`` Hessian-vector
    products with random directions and checked with one more; then
    ``N_i^+ = (P - Q Q^T) / gamma + Q (gamma I - T)^+ Q^T`` with
    ``T = Q^T G_i Q`` recovered from the same products (Nyström), exactly,
    with no d x d matrix. Rows whose check fails retry with twice the
    sketch, and at ``d`` directions fall back to block conjugate gradients
    (matrix-free, :func:`cg_head_factors`).
    """
    n = len(xa)
    d = int(np.prod(obj.input_shape))
    k = min(d, int(obj.head.weight.shape[1]) + 16)
    out = [None] * n
    todo = np.arange(n)
    gen = torch.Generator().manual_seed(obj.seed + 29)
    while len(todo) and k < d:
        failed = []
        for chunk in row_chunks(todo, max(1, obj.batch_size // 4)):
            for i, L in zip(chunk, sketch_factors(obj, theta_t, xa[chunk], y[chunk],
                                                  free[chunk], k, gen)):
                if L is False:
                    failed.append(i)
                else:
                    out[i] = L
        todo = np.asarray(failed, dtype=np.int64)
        k *= 2
    if len(todo):
        for i, L in zip(todo, cg_head_factors(obj, theta_t, xa[todo], y[todo], free[todo])):
            out[i] = L
    return out


def input_hvps(obj, theta_t, x, y, V):
    """``G_i v`` for each row ``i`` and each of its directions ``V[i]`` (c, k, d)."""
    def loss1(x1, y1):
        return F.cross_entropy(obj.logits(theta_t, x1[None]), y1[None])

    def row(x1, y1, Vi):
        g = grad(loss1)
        return vmap(lambda v: jvp(lambda z: g(z, y1), (x1,), (v.reshape(x1.shape),))[1]
                    .flatten())(Vi)

    return vmap(row)(x, y, V)


def jacobian_features(obj, theta_t, x):
    J = vmap(jacrev(lambda x1: obj.head.features(x1[None], theta_t)[0]))(x)
    return J.reshape(len(x), J.shape[1], -1)


def sketch_factors(obj, theta_t, x, y, free, k, gen):
    """Low-rank path of :func:`head_factors`; ``False`` for rows that need more."""
    c = len(x)
    d = int(np.prod(obj.input_shape))
    gamma = obj.threat.gamma
    m = free.reshape(c, d).to(obj.dtype)
    # One Gaussian sketch for the chunk (independent of every G_i), masked per row.
    omega = torch.randn((k + 1, d), generator=gen, dtype=obj.dtype).to(obj.device)
    omega = omega[None] * m[:, None, :]
    Y = input_hvps(obj, theta_t, x, y, omega) * m[:, None, :]
    probe, Y = Y[:, -1], Y[:, :-1]
    # range of Y^T: Householder QR (d x k), then the SVD of the small k x k factor
    Q0, R0 = torch.linalg.qr(Y.transpose(1, 2))
    U, S, _ = torch.linalg.svd(R0)
    J = jacobian_features(obj, theta_t, x) * m[:, None, :]
    out = []
    ranks = (S > 1e-10 * S[:, :1].clamp_min(1e-300)).sum(dim=1)
    for i in range(c):
        r = int(ranks[i])
        Q = Q0[i] @ U[i, :, :r]                               # d x r, free coordinates
        if r >= k:
            out.append(False)
            continue
        miss = probe[i] - Q @ (Q.T @ probe[i])
        if float(miss.norm()) > 1e-9 * max(float(probe[i].norm()), 1e-300):
            out.append(False)
            continue
        out.append(Q)
    result = [False] * c
    eye = None
    for i in range(c):
        if out[i] is False:
            continue
        Q = out[i]
        r = Q.shape[1]
        if r == 0:  # no curvature in the input: N = gamma I
            result[i] = feature_factor(J[i] @ J[i].T / gamma)
            continue
        # G = Q T Q^T on the captured range, so Q^T Y^T = T (Q^T Omega^T): T by
        # least squares against the (well-conditioned) projected sketch.
        A = Q.T @ omega[i, :-1].T                              # r x k
        B = Q.T @ Y[i].T                                       # r x k
        T = torch.linalg.lstsq(A.T, B.T).solution.T
        if eye is None or eye.shape[0] != r:
            eye = torch.eye(r, dtype=obj.dtype, device=obj.device)
        lam, V = torch.linalg.eigh(gamma * eye - 0.5 * (T + T.T))
        scale = max(float(lam.abs().max()) if r else 0.0, gamma)
        keep = lam > 1e-8 * scale
        JQ = J[i] @ Q
        JQV = JQ @ V[:, keep]
        R = (J[i] @ J[i].T - JQ @ JQ.T) / gamma + (JQV / lam[keep]) @ JQV.T
        result[i] = feature_factor(R)
    return result


def cg_head_factors(obj, theta_t, xa, y, free, rtol=1e-12):
    """Matrix-free path of :func:`head_factors`: ``N_i Z_i = J_i^T`` by block CG.

    ``N_i v = gamma v - P G_i P v`` costs one Hessian-vector product per
    column; all rows of a chunk and the F right-hand sides run together,
    and no d x d matrix is formed. A row whose ``N_i`` shows a direction
    of non-positive curvature is no strict local maximum (``gamma`` below
    the curvature there): its indirect term is left out, with a warning.
    """
    n = len(xa)
    d = int(np.prod(obj.input_shape))
    gamma = obj.threat.gamma
    out = []
    indefinite = 0
    for chunk in row_chunks(np.arange(n), max(1, obj.batch_size // 4)):
        x, yc = xa[chunk], y[chunk]
        m = free[chunk].reshape(len(chunk), d).to(obj.dtype)[:, None, :]
        J = jacobian_features(obj, theta_t, x) * m                     # (c, F, d)

        def N(V, x=x, yc=yc, m=m):
            return gamma * V - input_hvps(obj, theta_t, x, yc, V * m) * m

        Z = torch.zeros_like(J)
        res = J.clone()
        direction = res.clone()
        rs = (res * res).sum(-1)                                        # (c, F)
        stop = (rtol ** 2) * rs
        bad = torch.zeros(len(chunk), dtype=torch.bool, device=obj.device)
        for _ in range(d):
            active = rs > stop
            if not bool(active.any()):
                break
            Nd = N(direction)
            curv = (direction * Nd).sum(-1)
            bad |= (active & (curv <= 0)).any(dim=1)
            step = torch.where(active & (curv > 0), rs / curv.clamp_min(1e-300),
                               torch.zeros_like(rs))
            Z += step[..., None] * direction
            res -= step[..., None] * Nd
            rs_new = (res * res).sum(-1)
            beta = torch.where(active, rs_new / rs.clamp_min(1e-300), torch.zeros_like(rs))
            direction = res + beta[..., None] * direction
            rs = rs_new
        for i in range(len(chunk)):
            if bool(bad[i]):
                indefinite += 1
                out.append(None)
            else:
                out.append(feature_factor(J[i] @ Z[i].T))
    if indefinite:
        warn(
            f"{indefinite} row(s) are no strict local maximum of the penalised attack "
            f"(gamma={gamma} below the curvature of the loss in the input); their "
            "indirect term is left out of the total Hessian (raise gamma).",
            ConvergenceWarning)
    return out


def head_indirect_sum(obj, theta, theta_t, rows, cols_t):
    """``sum_i M_i R_i M_i^T`` over rows with a ``HeadFactor``, restricted to ``cols_t``.

    For the head ``z = W phi + b``, with ``g = softmax(z) - e_y``,
    ``A = (diag(p) - p p^T) W`` and ``u = (phi, 1)``, the derivative of the
    head gradient in the features is ``M[(k, j), f] = A[k, f] u[j] +
    g[k] E[j, f]`` (``E`` the identity padded with a zero bias row). So
    ``M R M^T`` is four Kronecker-structured terms, summed over the rows
    with einsum at ``K^2 (F+1)^2`` per row instead of a ``p x p`` product.
    """
    store = obj._factor_cache[theta_key(theta)]
    rows = np.asarray([int(r) for r in rows if isinstance(store[int(r)], HeadFactor)],
                      dtype=np.int64)
    w_pos, b_pos = obj.head.layout
    K, F = w_pos.shape
    width = F + (b_pos is not None)
    T = torch.zeros((K, width, K, width), dtype=obj.dtype, device=obj.device)
    if len(rows):
        weights = obj.params.unflatten(theta_t)
        W = weights[obj.head.prefix + "weight"]
        for chunk in row_chunks(rows, obj.batch_size):
            with torch.no_grad():
                phi = obj.head.features(obj.adversarial(theta, chunk))
                P = torch.softmax(obj.head.logits(theta_t, phi), dim=1)
                g = P - onehot(obj._y(chunk), K, obj.dtype)
                A = P[:, :, None] * (W[None] - (P @ W)[:, None, :])      # (c, K, F)
                R = torch.stack([store[int(r)].L @ store[int(r)].L.T for r in chunk])
                u = phi if b_pos is None else torch.cat(
                    [phi, torch.ones_like(phi[:, :1])], dim=1)
                AR = A @ R
                P1 = AR @ A.transpose(1, 2)                               # (c, K, K)
                P2 = torch.zeros((len(chunk), K, width), dtype=obj.dtype,
                                 device=obj.device)
                P2[:, :, :F] = AR
                P4 = torch.zeros((len(chunk), width, width), dtype=obj.dtype,
                                 device=obj.device)
                P4[:, :F, :F] = R
                T += torch.einsum("ikl,ij,im->kjlm", P1, u, u)
                T2 = torch.einsum("ikm,ij,il->kjlm", P2, u, g)
                T += T2 + T2.permute(2, 3, 0, 1)
                T += torch.einsum("ik,il,ijm->kjlm", g, g, P4)
    H = T.reshape(K * width, K * width)
    idx = obj.head.natural_index(cols_t)
    return H[idx][:, idx]


def expand_head(obj, theta, theta_t, rows, store):
    """Yield ``C_i = M_i L_i`` (p x r) for rows whose factor is a ``HeadFactor``."""
    def head_grad(phi, yy):
        return grad(lambda t: obj._loss_sum(t, phi[None], yy[None], True))(theta_t)

    for chunk in row_chunks(rows, obj.batch_size):
        with torch.no_grad():
            phi = obj.head.features(obj.adversarial(theta, chunk))
        M = vmap(jacrev(head_grad))(phi, obj._y(chunk))
        for r, Mi in zip(chunk, M):
            yield Mi @ store[int(r)].L
