"""Symmetric solves shared by the solvers and the forgetters: dense Cholesky with
its fallbacks, conjugate gradients."""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.sparse.linalg import cg

from ._warnings import ForgetWarning, warn


def solve_dense(A, b, quiet=False):
    """Solve ``A x = b`` for a symmetric ``A``; returns ``(x, factor)``.

    Uses a Cholesky factorisation (the factor is returned for reuse). When
    ``A`` is not positive definite (singular memory, saturated rows with zero
    curvature, an unregularised model), the smallest damping ``rho * I`` that
    makes it so is added, from ``1e-12`` up to ``1e-2`` times the largest
    diagonal entry, and a :class:`~skmuter.forgetters.ForgetWarning` says how
    much; past that the system is solved by least squares, with a warning too.

    ``quiet=True`` (the solver's own Newton steps during ``fit``, where nothing
    is forgotten) solves a system that is not positive definite at once by
    least squares (the minimum-norm step, which moves nothing along a flat
    direction) without a warning; the caller reports an ill-posed fit once.
    """
    if A.shape[0] == 0:
        return np.zeros(0), None
    try:
        factor = linalg.cho_factor(A, check_finite=False)
        return linalg.cho_solve(factor, b, check_finite=False), factor
    except linalg.LinAlgError:
        if quiet:
            return np.linalg.lstsq(A, b, rcond=None)[0], None
    scale = max(float(np.max(np.abs(np.diag(A)))), np.finfo(float).tiny)
    for rel in 10.0 ** np.arange(-12, -1):
        rho = rel * scale
        try:
            factor = linalg.cho_factor(A + rho * np.eye(A.shape[0]), check_finite=False)
        except linalg.LinAlgError:
            continue
        warn(
            f"the forgetting matrix is not positive definite; added damping {rho:.3g} "
            f"({rel:.0e} of its largest diagonal entry) to solve it. The step is less "
            "reliable: check it with skmuter.metrics.gradient_residual.",
            ForgetWarning,
        )
        return linalg.cho_solve(factor, b, check_finite=False), factor
    warn(
        "the forgetting matrix is far from positive definite; solved it by least "
        "squares. The step is unreliable: prefer refitting.",
        ForgetWarning,
    )
    return np.linalg.lstsq(A, b, rcond=None)[0], None


def solve_operator(A, b, rtol=1e-10, maxiter=None):
    """Matrix-free solve of ``A x = b`` (``A`` positive definite) by conjugate gradients."""
    x, info = cg(A, b, rtol=rtol, maxiter=maxiter)
    if info != 0:
        warn(
            f"cg did not reach rtol={rtol} in {maxiter} iterations (info={info}).",
            ForgetWarning,
        )
    return x
