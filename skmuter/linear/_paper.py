"""The MUter paper's total Hessian of a linear model (replication only).

The paper writes the total Hessian of the robust loss as
``d_ww l - d_wdelta l (d_deltadelta l)^-1 d_deltaw l`` and expands the inverse
as a Neumann series of order ``k``. On a linear model ``d_deltadelta l`` is
rank one and the series diverges as soon as ``loss'' ||w||^2 > 2``, so this form
is kept to reproduce the paper, not to forget with;
:meth:`LinearObjective.hessian_sum <skmuter.linear.LinearObjective.hessian_sum>`'s
``'total'`` kind is the exact total Hessian.
"""

from __future__ import annotations

import numpy as np


def paper_hessian(objective, theta, rows, cols, ties=None, neumann_order=3):
    """Sum over ``rows`` of the paper's per-row total Hessian on ``cols``, each row
    weighted by its sample weight, regulariser aside (at the worst case;
    ``ties`` as in :meth:`~skmuter.linear.LinearObjective.hessian_sum`)."""
    wcols, intercept = objective._cols(cols)
    w, _ = objective.split(theta)
    pw = objective.n_features if wcols is None else len(wcols)
    p = pw + int(intercept)
    H = np.zeros((p, p))
    wpad = objective._wpad(theta, wcols, intercept)
    ww = float(w @ w)
    paper_b = np.zeros(p)
    paper_scalars = [0.0, 0.0]
    loss, k = objective.loss, neumann_order
    for r, z, x, _, _, weight in objective._terms(theta, rows, "adversarial", wcols, ties,
                                                  sample_weighted=False):
        yr = objective.y[r]
        xt = objective._augment(x, intercept)
        g1 = loss.d1(z, yr)
        c = loss.d2(z, yr)
        if weight is not None:
            c = c * weight
        sigma = np.zeros_like(c)
        term = np.ones_like(c)
        for _ in range(k + 1):
            sigma += term
            term = term * (1.0 - c * ww)
        a = c * (1.0 - c * sigma * ww)
        sw = objective._sw(r)
        if sw is not None:  # a row of weight s counts s times
            H += xt.T @ ((a * sw)[:, None] * xt)
            paper_b += xt.T @ (c * g1 * sigma * sw)
            paper_scalars[0] += float((g1**2 * sw).sum()) * (k + 1)
            paper_scalars[1] += float((g1**2 * (sigma - k - 1) * sw).sum())
            continue
        H += xt.T @ (a[:, None] * xt)
        paper_b += xt.T @ (c * g1 * sigma)
        paper_scalars[0] += float((g1**2).sum()) * (k + 1)
        paper_scalars[1] += float((g1**2 * (sigma - k - 1)).sum())
    H -= np.outer(paper_b, wpad) + np.outer(wpad, paper_b)
    idx = np.arange(pw)
    H[idx, idx] -= paper_scalars[0]
    if ww > 0:
        H -= paper_scalars[1] * np.outer(wpad, wpad) / ww
    return H
