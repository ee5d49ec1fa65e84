"""The kinks of the squared robust loss: the exact local model around them.

Under attack, a row's squared loss is ``max(q+, q-)``: the larger of two
smooth branches, the worst case pushing the score up (``q+``) or down
(``q-``). Where the two tie the loss has a kink. At an exact optimum a few rows
(at most about the number of free parameters) sit on it, like the
interpolated points of least absolute deviations, and a local step must keep
them there unless the step makes one branch win.

:class:`Ties` are the rows on a kink with their branch weights; a
:class:`KinkModel` is the piecewise-quadratic model of the objective at one
point, with the per-row data it needs, its exact minimiser
(:meth:`KinkModel.solve`) and the removal of a forgotten row's data
(:meth:`KinkModel.purge`). The solver's Newton polish and the MUter forgetter
both take their steps through it.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from .._linalg import solve_dense

#: rows per block when computing the per-row kink data
_BLOCK = 8192


class Ties:
    """Rows on a tie of the squared robust loss and their branch weights ``lam``.

    A tied row's subgradient is ``lam q+' + (1 - lam) q-'``; sums over rows
    (``grad_sum``, ``hessian_sum``, ``zero_kkt_terms``) given ``ties=`` count
    such a row as both branches with these weights.
    """

    def __init__(self, rows, lam):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.lam = np.asarray(lam, dtype=np.float64)


class KinkModel:
    """Piecewise-quadratic model of a squared robust objective at ``theta``, on ``cols``.

    Built by ``LinearObjective.kink_model``. It keeps, for every training row,
    the gap ``h = q+ - q-`` between its branches and the norm of its gradient
    (to find the rows a step could make change branch), and for the rows on a
    tie their full data (gap, gap gradient, branch curvature difference), the
    rows' data merged when identical rows share it.

    Parameters
    ----------
    objective : LinearObjective
        Only read while building; the model keeps no reference to it.
    theta : ndarray of shape (n_params,)
        The point of the model.
    rows : array-like of int
        The training rows of the objective.
    cols : ndarray of int
        The coordinates a step moves.
    ties : Ties
        The rows of ``rows`` on a tie at ``theta``.
    n_samples : int
        Size of the training set (the per-row data is indexed by row).
    """

    def __init__(self, objective, theta, rows, cols, ties, n_samples):
        self.theta = theta
        self.cols = cols
        self.ties = ties
        rows = np.asarray(rows)
        self.gap = np.zeros(n_samples)
        self.gap_slope = np.zeros(n_samples)
        per_row = getattr(objective, "kink_row_terms", None)  # rows in chunks
        if per_row is not None:
            self.gap[rows], self.gap_slope[rows] = per_row(theta, rows, cols)
        for start in range(0, len(rows) if per_row is None else 0, _BLOCK):
            r = rows[start : start + _BLOCK]
            self.gap[r], self.gap_slope[r] = self._terms(objective, r)[:2]
        # The rows on a tie enter every request: keep their data (purged row by
        # row when forgotten).
        h, _, D = self._terms(objective, ties.rows)
        dH = _BranchCurvature.build(objective, theta, ties.rows, cols)
        self._tied = (h, D, dH)
        self._groups = None
        if dH.dense is None and len(h):
            # Identical tied rows (e.g. images blank on the support) act as one:
            # keep one copy of their data per group, with the group of each row.
            key = np.column_stack([h, D, dH.U, dH.cu, dH.V, dH.cv])
            _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
            self._groups = (inverse.ravel(), h[first], D[first], dH.take(first),
                            np.bincount(inverse.ravel()))
            self._tied = None  # the groups hold everything

    # ---- per-row data ----------------------------------------------------------
    def _terms(self, objective, rows, cols=None, theta=None):
        """``(h, ||D||, D)``: the branch gap ``h = q+ - q-`` of ``rows`` and its
        gradient ``D = g+ - g-`` on ``cols``."""
        cols = self.cols if cols is None else cols
        theta = self.theta if theta is None else theta
        q_up, g_up = objective.branch_terms(theta, rows, cols, 1.0)
        q_down, g_down = objective.branch_terms(theta, rows, cols, -1.0)
        h = q_up - q_down
        D = g_up - g_down
        return h, np.linalg.norm(D, axis=1), D

    def _candidate_data(self, objective, rows, cols, theta):
        """``(h, D, dH)`` of candidate rows, from the kept data for the tied rows."""
        if (cols is self.cols and theta is self.theta and len(rows)
                and self._tied is not None):
            pos = np.searchsorted(self.ties.rows, rows)
            pos = np.minimum(pos, max(len(self.ties.rows) - 1, 0))
            cached = (self.ties.rows[pos] == rows) if len(self.ties.rows) else np.zeros(
                len(rows), bool)
            if cached.all():
                h, D, dH = self._tied
                return h[pos], D[pos], dH.take(pos)
            if cached.any():
                h1, D1, dH1 = self._candidate_data(objective, rows[cached], cols, theta)
                h2, D2, dH2 = self._candidate_data(objective, rows[~cached], cols, theta)
                order = np.argsort(np.concatenate([np.flatnonzero(cached),
                                                   np.flatnonzero(~cached)]))
                return (np.concatenate([h1, h2])[order], np.concatenate([D1, D2])[order],
                        dH1.concat(dH2).take(order))
        h, _, D = self._terms(objective, rows, cols, theta)
        return h, D, _BranchCurvature.build(objective, theta, rows, cols)

    def _dual_data(self, objective, cand, tie_rows, cols, theta, lam_fit):
        """``(h, D, dH, lam_in, counts)`` of the distinct candidate rows.

        ``lam_in`` is the weight each currently has in the matrix (its fitted tie
        weight, or 1 / 0 for the branch it is on), summed over identical rows.
        """
        on_tie = np.zeros(self.gap.shape[0], dtype=bool)
        on_tie[tie_rows] = True
        is_tie = on_tie[cand]
        lam_rows = np.where(is_tie, lam_fit[cand], (self.gap[cand] > 0).astype(float))
        groups = self._groups
        if groups is None or cols is not self.cols or theta is not self.theta:
            h, D, dH = self._candidate_data(objective, cand, cols, theta)
            h, D, lam_in, counts = dH.group(h, D, lam_rows)
            return h, D, dH, lam_in, counts
        inverse, hg, Dg, dHg, _ = groups
        pos = np.searchsorted(self.ties.rows, cand[is_tie])
        counts = np.bincount(inverse[pos], minlength=len(hg)).astype(float)
        lam_g = np.bincount(inverse[pos], weights=lam_rows[is_tie], minlength=len(hg))
        live = np.flatnonzero(counts > 0)
        h, D, dH = hg[live], Dg[live], dHg.take(live)
        lam_in, counts = lam_g[live], counts[live]
        extra = cand[~is_tie]
        if extra.size:
            he, _, De = self._terms(objective, extra, cols, theta)
            dHe = _BranchCurvature.build(objective, theta, extra, cols)
            h, D, dH = np.concatenate([h, he]), np.vstack([D, De]), dH.concat(dHe)
            lam_in = np.concatenate([lam_in, lam_rows[~is_tie]])
            counts = np.concatenate([counts, np.ones(extra.size)])
        return h, D, dH, lam_in, counts

    # ---- operations ----------------------------------------------------------------
    def solve(self, objective, A, rhs, remaining, cols=None, theta=None, quiet=False):
        """Exact minimiser of the piecewise-quadratic model over the ``remaining`` rows.

        ``A x = rhs`` is the quadratic model with every row on its current
        branch and the tied rows at their fitted weights. Rows far from a tie
        keep their branch; for the candidate rows (on a tie, or whose gap the
        step could close) the model is minimised through its dual:

            max_{lam in [0,1]^m}  min_x  x^T A(lam) x / 2 - b(lam)^T x + sum lam_i h_i,

        with ``A(lam) = A_0 + sum lam_i (H+_i - H-_i)`` and ``b(lam) = b_0 - sum
        lam_i (g+_i - g-_i)``. The inner problem is one Cholesky solve; the dual
        is concave and smooth with gradient ``q+_i - q-_i`` at ``x(lam)``, and
        projected Newton ascent (a bound-constrained quasi-Newton method when it
        fails) maximises it. Candidates are added while a row outside them
        would change branch.

        ``cols`` and ``theta`` (default: the model's own) give another point
        and set of coordinates for the same rows; the kept data then is not used.
        ``quiet=True`` (the Newton steps of ``fit``) solves singular systems by
        least squares without a forgetting warning (see
        :func:`skmuter._linalg.solve_dense`).
        """
        ties = self.ties
        cols = self.cols if cols is None else cols
        theta = self.theta if theta is None else theta
        kept = np.zeros(self.gap.shape[0], dtype=bool)
        kept[remaining] = True
        tie_rows = ties.rows[kept[ties.rows]]
        cand = tie_rows
        # Rows on a tie enter A and rhs with their fitted weights; take them out.
        lam_fit = np.zeros(self.gap.shape[0])
        lam_fit[ties.rows] = ties.lam
        step = solve_dense(A, rhs, quiet)[0]
        for _ in range(8):
            # Identical rows act as one, with a weight in [0, count]: the dual
            # runs over distinct rows only.
            h, D, dH, lam_in, counts = self._dual_data(objective, cand, tie_rows, cols,
                                                       theta, lam_fit)
            A0 = A - dH.combine(lam_in)
            b0 = rhs + lam_in @ D

            def dual(lam, A0=A0, b0=b0, D=D, dH=dH, h=h):
                bl = b0 - lam @ D
                x = solve_dense(A0 + dH.combine(lam), bl, quiet)[0]
                value = -0.5 * bl @ x + lam @ h
                grad = 0.5 * dH.quad(x) + D @ x + h
                return -value, -grad

            if len(cand):
                lam = _dual_newton(A0, b0, D, dH, h, np.clip(lam_in, 0, counts), counts,
                                   quiet=quiet)
                if lam is None:  # no convergence: a quasi-Newton method instead
                    res = optimize.minimize(dual, np.clip(lam_in, 0, counts), jac=True,
                                            method="L-BFGS-B",
                                            bounds=[(0.0, float(c)) for c in counts],
                                            options={"ftol": 1e-15, "gtol": 1e-13,
                                                     "maxiter": 500})
                    lam = res.x
                step = solve_dense(A0 + dH.combine(lam), b0 - lam @ D, quiet)[0]
            else:
                step = solve_dense(A, rhs, quiet)[0]
            # rows outside the candidates whose branch the step would change
            reach = np.linalg.norm(step)
            outside = kept.copy()
            outside[cand] = False
            near = np.flatnonzero(outside & (np.abs(self.gap) <= self.gap_slope * reach))
            if near.size == 0:
                return step
            hn, _, Dn = self._terms(objective, near, cols, theta)
            flips = np.sign(hn + Dn @ step) != np.sign(hn)
            if not flips.any():
                return step
            cand = np.sort(np.concatenate([cand, near[flips]]))
        return step

    def purge(self, rows):
        """Erase the data of the forgotten ``rows``: nothing of them stays here."""
        self.gap[rows] = 0.0
        self.gap_slope[rows] = 0.0
        gone = np.flatnonzero(np.isin(self.ties.rows, rows))
        if gone.size and self._tied is not None:
            h, D, dH = self._tied
            h[gone] = 0.0
            D[gone] = 0.0
            dH.purge(gone)
        if gone.size and self._groups is not None:
            inverse, hg, Dg, dHg, members = self._groups
            np.subtract.at(members, inverse[gone], 1)
            empty = np.flatnonzero(members == 0)  # no kept row shares the data
            hg[empty] = 0.0
            Dg[empty] = 0.0
            dHg.purge(empty)


def _dual_newton(A0, b0, D, dH, h, lam, upper, max_iter=50, quiet=False):
    """Projected Newton ascent on the (concave) dual of the kink model.

    ``g(lam) = min_x x^T A(lam) x / 2 - b(lam)^T x + lam . h`` has gradient
    ``q+ - q-`` at ``x(lam)`` and Hessian ``-J^T A(lam)^-1 J`` with columns
    ``J_i = dH_i x + D_i``. Box ``0 <= lam <= upper``. Returns None when it does
    not converge (the caller then uses a quasi-Newton method).
    """
    def evaluate(lam):
        bl = b0 - lam @ D
        A = A0 + dH.combine(lam)
        x = solve_dense(A, bl, quiet)[0]
        value = -0.5 * bl @ x + lam @ h
        grad = 0.5 * dH.quad(x) + D @ x + h
        return value, grad, x, A

    value, grad, x, A = evaluate(lam)
    scale = 1.0 + np.abs(grad).max()
    for _ in range(max_iter):
        at_low = (lam <= 0) & (grad < 0)
        at_high = (lam >= upper) & (grad > 0)
        free = ~(at_low | at_high)
        if not free.any() or np.abs(grad[free]).max() <= 1e-12 * scale:
            return lam
        J = (dH.apply(x) + D)[free]  # rows: J_i
        G = J @ solve_dense(A, J.T, quiet)[0]  # minus the dual Hessian on the free set
        try:
            direction = np.linalg.solve(G + 1e-14 * np.trace(G) * np.eye(len(G)), grad[free])
        except np.linalg.LinAlgError:
            return None
        t = 1.0
        for _ in range(30):
            cand = lam.copy()
            cand[free] = np.clip(lam[free] + t * direction, 0.0, upper[free])
            v2, g2, x2, A2 = evaluate(cand)
            if v2 >= value + 1e-4 * float(grad @ (cand - lam)) - 1e-15 * abs(value):
                break
            t *= 0.5
        else:
            return None
        if np.array_equal(cand, lam):
            return lam
        lam, value, grad, x, A = cand, v2, g2, x2, A2
    return None


class _BranchCurvature:
    """``H+_i - H-_i`` for candidate rows: the curvature difference of the two
    worst-case branches, as rank-one factors when the objective provides them
    (l_inf), else as dense per-row matrices (few rows, l_2)."""

    def __init__(self, factors=None, dense=None):
        self.dense = dense
        if factors is not None:
            self.U, self.cu, self.V, self.cv = factors

    @classmethod
    def build(cls, objective, theta, rows, cols):
        factors = objective.branch_factors(theta, rows, cols)
        if factors is not None:
            return cls(factors=factors)
        return cls(dense=np.array([
            objective.hessian_sum(theta, np.array([r]), kind="total", cols=cols,
                                  ties=Ties([r], [1.0]))
            - objective.hessian_sum(theta, np.array([r]), kind="total", cols=cols,
                                    ties=Ties([r], [0.0]))
            for r in rows
        ]).reshape(len(rows), len(cols), len(cols)))

    def take(self, idx):
        if self.dense is not None:
            return _BranchCurvature(dense=self.dense[idx])
        return _BranchCurvature(factors=(self.U[idx], self.cu[idx], self.V[idx], self.cv[idx]))

    def concat(self, other):
        if self.dense is not None:
            return _BranchCurvature(dense=np.concatenate([self.dense, other.dense]))
        return _BranchCurvature(factors=tuple(
            np.concatenate([a, b]) for a, b in zip(
                (self.U, self.cu, self.V, self.cv), (other.U, other.cu, other.V, other.cv))))

    def purge(self, idx):
        """Zero the data of rows ``idx`` (forgotten)."""
        if self.dense is not None:
            self.dense[idx] = 0.0
        else:
            for a in (self.U, self.cu, self.V, self.cv):
                a[idx] = 0.0

    def group(self, h, D, lam):
        """Merge identical rows; returns ``(h, D, lam, counts)`` per distinct row
        (``lam`` summed) and keeps only the distinct factors."""
        if self.dense is not None or len(h) < 2:
            return h, D, lam, np.ones(len(h))
        key = np.column_stack([h, D, self.U, self.cu, self.V, self.cv])
        _, first, inverse, counts = np.unique(key, axis=0, return_index=True,
                                              return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        self.U, self.cu = self.U[first], self.cu[first]
        self.V, self.cv = self.V[first], self.cv[first]
        return h[first], D[first], np.bincount(inverse, weights=lam), counts.astype(float)

    def combine(self, lam):
        if self.dense is not None:
            return np.einsum("i,ijk->jk", lam, self.dense)
        return (self.U.T @ ((lam * self.cu)[:, None] * self.U)
                - self.V.T @ ((lam * self.cv)[:, None] * self.V))

    def apply(self, x):
        """Rows ``dH_i x``."""
        if self.dense is not None:
            return np.einsum("ijk,k->ij", self.dense, x)
        return ((self.cu * (self.U @ x))[:, None] * self.U
                - (self.cv * (self.V @ x))[:, None] * self.V)

    def quad(self, x):
        if self.dense is not None:
            return np.einsum("j,ijk,k->i", x, self.dense, x)
        return self.cu * (self.U @ x) ** 2 - self.cv * (self.V @ x) ** 2
