"""The MUter paper's form of the total Hessian and of its solve (replication only).

The paper's code replaces ``(d_deltadelta l)^-1`` in the total Hessian by a
Neumann series of order ``k``, takes the step over every coordinate, and
solves the system by a fixed number of conjugate-gradient iterations from
zero. On linear models ``d_deltadelta l`` is rank one, the series diverges and
the matrix is far from positive definite, so the solve is not a convergent
method; ``MUter(total_hessian='paper')`` keeps it to reproduce the paper.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, aslinearoperator


class PaperForm:
    """The paper's curvature kind, its options and its solve.

    Parameters
    ----------
    neumann_order : int
        Order of the Neumann series.
    cg_iter : int
        Conjugate-gradient iterations of the solve.
    """

    #: curvature kind of the objective's ``hessian_sum``
    kind = "paper"

    def __init__(self, neumann_order, cg_iter):
        self.neumann_order = neumann_order
        self.cg_iter = cg_iter

    def curvature_options(self) -> dict:
        """Keyword arguments of ``hessian_sum`` for this kind."""
        return {"neumann_order": self.neumann_order}

    def solve(self, A, rhs):
        """The paper's solve of ``A x = rhs``."""
        return fixed_cg(A, rhs, self.cg_iter)


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
