"""Linear algebra of the forgetters: factorised memory, CG, MINRES."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg
from scipy.sparse.linalg import LinearOperator, aslinearoperator, cg, minres


class ForgetWarning(UserWarning):
    """A forget request was solved with a fallback (damping or least squares)."""


def solve_dense(A, b):
    """Solve ``A x = b`` for a symmetric ``A``; returns ``(x, factor)``.

    Uses a Cholesky factorisation (the factor is returned for reuse). When
    ``A`` is not positive definite (singular memory, saturated rows with zero
    curvature, an unregularised model), the smallest damping ``rho * I`` that
    makes it so is added, from ``1e-12`` up to ``1e-2`` times the largest
    diagonal entry, and a :class:`ForgetWarning` says how much; past that the
    system is solved by least squares, with a warning too.
    """
    if A.shape[0] == 0:
        return np.zeros(0), None
    try:
        factor = linalg.cho_factor(A, check_finite=False)
        return linalg.cho_solve(factor, b, check_finite=False), factor
    except linalg.LinAlgError:
        pass
    scale = max(float(np.max(np.abs(np.diag(A)))), np.finfo(float).tiny)
    for rel in 10.0 ** np.arange(-12, -1):
        rho = rel * scale
        try:
            factor = linalg.cho_factor(A + rho * np.eye(A.shape[0]), check_finite=False)
        except linalg.LinAlgError:
            continue
        warnings.warn(
            f"the forgetting matrix is not positive definite; added damping {rho:.3g} "
            f"({rel:.0e} of its largest diagonal entry) to solve it. The step is less "
            "reliable: check it with skmuter.metrics.gradient_residual.",
            ForgetWarning,
            stacklevel=3,
        )
        return linalg.cho_solve(factor, b, check_finite=False), factor
    warnings.warn(
        "the forgetting matrix is far from positive definite; solved it by least "
        "squares. The step is unreliable: prefer refitting.",
        ForgetWarning,
        stacklevel=3,
    )
    return np.linalg.lstsq(A, b, rcond=None)[0], None


def fixed_cg(A, b, n_iter):
    """``n_iter`` plain conjugate-gradient iterations from zero (no early stop).

    This is how the MUter paper's code solves its system; on an indefinite
    matrix it is not a convergent method, which is the point of replicating it.
    """
    A = aslinearoperator(A) if not isinstance(A, LinearOperator) else A
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rr = float(r @ r)
    for _ in range(n_iter):
        if rr == 0:
            break
        Ap = A.matvec(p)
        pAp = float(p @ Ap)
        if pAp == 0:
            break
        a = rr / pAp
        x += a * p
        r -= a * Ap
        rr_new = float(r @ r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def solve_operator(A, b, method="cg", rtol=1e-10, maxiter=None):
    """Matrix-free solve of ``A x = b`` by CG (positive definite) or MINRES."""
    solver = cg if method == "cg" else minres
    x, info = solver(A, b, rtol=rtol, maxiter=maxiter)
    if info != 0:
        warnings.warn(
            f"{method} did not reach rtol={rtol} in {maxiter} iterations (info={info}).",
            ForgetWarning,
            stacklevel=3,
        )
    return x
