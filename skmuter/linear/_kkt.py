"""The minimal subgradient of a robust linear objective (its optimality residual).

An l_inf robust objective is not differentiable where a weight is zero (the
worst case adds ``eps ||w||_1``), and an l_2 one where the whole weight vector
is zero (``eps ||w||_2``). Its optimality residual is the norm of the element
of least norm of the subdifferential, built here from the one-sided
derivatives the objective and the solvers compute.
"""

from __future__ import annotations

import numpy as np

__all__ = ["l2_zero_subgradient", "linf_subgradient", "min_norm_subgradient",
           "subgradient_from_split"]


def min_norm_subgradient(gp, gm, w):
    """Minimal-norm subgradient in ``w`` of an l_inf robust objective, from its
    derivatives ``gp`` in ``w+`` and ``gm`` in ``w-`` (split ``w = w+ - w-``).

    Off zero the objective is smooth; at ``w_j = 0`` its subdifferential in
    ``w_j`` is ``[-gm_j, gp_j]``, of which the element of least magnitude is kept.
    """
    res = np.where(w > 0, gp, np.where(w < 0, -gm, 0.0))
    zero = w == 0
    res[zero] = np.minimum(np.maximum(0.0, -gm[zero]), gp[zero])
    return res


def subgradient_from_split(grad, w, d):
    """Minimal subgradient in ``theta = (w, b)`` from the gradient of the split
    problem in ``v = (w+, w-, b)`` (``d`` weights)."""
    return np.concatenate([min_norm_subgradient(grad[:d], grad[d : 2 * d], w), grad[2 * d :]])


def linf_subgradient(xtg, A, B, gb, w, alpha, m, fit_intercept):
    """Minimal subgradient of the mean l_inf objective over ``m`` rows.

    ``xtg = sum_i g_i x_i`` and ``gb = sum_i g_i`` (loss derivatives ``g_i`` at
    the worst case, linear term included), ``(A, B)`` the derivatives of the
    summed shifts in ``w+`` and ``w-``; ``alpha w`` is the ridge's share.
    """
    gp = (xtg + A) / m + alpha * w  # d/dw+ (w_j > 0 side)
    gm = (-xtg + B) / m - alpha * w  # d/dw- (w_j < 0 side)
    res = min_norm_subgradient(gp, gm, w)
    if fit_intercept:
        res = np.concatenate([res, [gb / m]])
    return res


def l2_zero_subgradient(g, c, d):
    """Minimal subgradient of an l_2 robust objective at ``w = 0``, in place.

    There the shift ``eps ||w||_2`` contributes ``c u`` for any ``u`` of the
    unit ball (``c = eps * mean(s_i loss'_i)``): the weights' part ``g[:d]``
    of the gradient shrinks by ``c`` in norm, down to zero.
    """
    norm = np.linalg.norm(g[:d])
    g[:d] *= max(0.0, norm - c) / norm if norm > 0 else 0.0
    return g
