"""The indirect term of the total Hessian on a general network, row by row.

The worst case ``delta_i(theta)`` of a row moves with ``theta`` along its
free coordinates (off the l_inf bound and the input box, tangent to an
active l_2 sphere) where the inner maximisation is a strict local maximum.
By the implicit function theorem that motion adds ``B_i^T N_i^+ B_i`` to the
row's Hessian, with ``B_i = d_delta d_theta l_i`` and ``N_i`` minus the
Hessian of the inner Lagrangian on those coordinates. :func:`row_factor`
returns a factor ``C_i`` with ``C_i C_i^T`` that term; :func:`output_curvature`
tells, with one Hessian-vector product per row, whether it can be non-zero
at all (a piecewise-linear network has none under an l_inf threat).

Every function takes the :class:`~skmuter.nn.NetObjective` it works for.
"""

from __future__ import annotations

import torch
from torch.func import grad, jvp, vmap

__all__ = ["output_curvature", "row_factor"]


def output_curvature(obj, theta_t, xa, y, free):
    """Whether the network's output has curvature in the input (per row)."""
    gen = torch.Generator().manual_seed(obj.seed + 17)
    t = torch.randn(xa.shape, generator=gen, dtype=obj.dtype).to(obj.device)
    t = t * free.reshape(xa.shape)
    with torch.no_grad():
        n_out = obj.logits(theta_t, xa[:1]).shape[1]
    w = torch.randn((xa.shape[0], n_out), generator=gen, dtype=obj.dtype).to(obj.device)

    def contract(x):
        return (obj.logits(theta_t, x) * w).sum()
    hv = jvp(grad(contract), (xa,), (t,))[1]
    return (hv.flatten(1).abs().amax(dim=1) > 0).cpu().numpy()


def row_factor(obj, theta_t, xa, y, delta, free):
    """``C`` with ``C C^T = B^T N^+ B`` for one row, or None."""
    idx = torch.nonzero(free).flatten()
    k = len(idx)
    if k == 0:
        return None
    m = delta.numel()
    xa1, y1 = xa[None], y[None]
    E = torch.zeros((k, m), dtype=obj.dtype, device=obj.device)
    E[torch.arange(k), idx] = 1.0

    def dgrad(x):
        return obj._delta_grad(theta_t, x, y1).flatten()

    hv = vmap(lambda e: jvp(dgrad, (xa1,), (e.reshape(xa1.shape),))[1])(E)
    G = hv[:, idx]
    G = 0.5 * (G + G.T)
    Q = torch.eye(k, dtype=obj.dtype, device=obj.device)
    mu = obj.threat.gamma if obj.threat.penalized else 0.0
    dF = delta[idx]
    sphere = obj.threat.norm == 2 and not obj.threat.penalized
    if sphere and float(delta.norm()) >= obj.threat.epsilon * (1 - 1e-7) \
            and float(dF.norm()) > 0:
        # Active sphere: tangent directions only, Lagrange multiplier mu.
        g = dgrad(xa1)[idx]
        mu = float(g @ dF) / float(dF @ dF)
        u = dF / dF.norm()
        P = Q - torch.outer(u, u)
        evals, evecs = torch.linalg.eigh(P)
        Q = evecs[:, evals > 0.5]
        if Q.shape[1] == 0:
            return None
    N = -(Q.T @ (G - mu * torch.eye(k, dtype=obj.dtype, device=obj.device)) @ Q)
    lam, U = torch.linalg.eigh(0.5 * (N + N.T))
    scale = float(lam.abs().max()) if len(lam) else 0.0
    keep = lam > max(1e-8 * scale, 1e-12)
    if not bool(keep.any()):
        return None
    dirs = torch.zeros((int(keep.sum()), m), dtype=obj.dtype, device=obj.device)
    dirs[:, idx] = (Q @ U[:, keep]).T

    def theta_grad(x):
        return grad(lambda t: obj._loss_sum(t, x, y1, False))(theta_t)

    B = vmap(lambda d: jvp(theta_grad, (xa1,), (d.reshape(xa1.shape),))[1])(dirs)
    return (B / lam[keep].sqrt()[:, None]).T
