"""Newton-type forgetters: MUter and its comparators (Newton, Influence, Fisher).

All of them take one step from the fitted parameters ``theta*``:

    A dtheta = G,   theta_u = theta* + dtheta,

where ``G`` accumulates, over every request so far, the summed per-sample
gradients (regulariser share included) of the removed rows at ``theta*``, and
``A`` is a curvature matrix summed over rows. Everything stays linearised at
``theta*`` (the MUter paper's Algorithm 1), so ``forget(A + B)`` and
``forget(A)`` then ``forget(B)`` give the same parameters for every forgetter
except Influence, whose matrix depends on the request order.

Dense objectives (linear models) keep the memory ``M_r`` (curvature of the
rows still in the model) as a matrix with its Cholesky factor: a request
subtracts its rows' curvature and refactorises. Matrix-free objectives
(networks) rebuild the operator over the remaining rows and solve by CG, or
MINRES when the matrix may be indefinite.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ._base import Forgetter
from ._linalg import fixed_cg, solve_dense, solve_operator


def _validate_nonneg(name, value):
    if not np.isscalar(value) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")


class _NewtonType(Forgetter):
    """Shared machinery; subclasses fix the curvature kind and the points."""

    _kind = "hessian"
    _exclude_request = True  # False: Influence (matrix before this request)

    # ---- configuration hooks -------------------------------------------
    def _points(self):
        return "adversarial" if getattr(self, "adversarial", True) else "clean"

    def _restrict(self, objective, theta):
        support = getattr(self, "support", False)
        if support == "auto":
            return True
        return bool(support)

    def _curvature_kind(self):
        return self._kind

    def _uses_fixed_cg(self):
        return False

    # ---- life cycle -------------------------------------------------------
    def prepare(self, objective, theta, rows, zero_terms=True):
        _validate_nonneg("damping", self.damping)
        theta = np.asarray(theta, dtype=np.float64)
        self.theta0_ = theta.copy()
        if self._restrict(objective, theta):
            self.cols_ = np.flatnonzero(objective.free_mask(theta))
        else:
            self.cols_ = np.arange(objective.n_params)
        self.grad_ = np.zeros(len(self.cols_))
        self.n_remaining_ = len(rows)
        # Rows on a kink of the robust loss (squared loss: both worst cases tie)
        # stay on it under the exact total Hessian: they become constraints.
        self.ties_ = None
        if self._curvature_kind() == "total" and hasattr(objective, "tie_state"):
            self._prepare_kinks(objective, theta, rows)
        self.zeros_ = None
        if (zero_terms and self._curvature_kind() == "total"
                and hasattr(objective, "zero_kkt_terms")
                and len(self.cols_) < objective.n_params):
            self.zeros_ = objective.zero_kkt_terms(theta, rows, self.cols_, **self._ties_kw())
            noise = getattr(objective, "noise", None)
            if noise is not None:
                # the objective's linear term stays with the zeros' derivatives
                zcols, gp, gm, Cp, Cm = self.zeros_
                self.zeros_ = (zcols, gp + noise[zcols], gm - noise[zcols], Cp, Cm)
        M = self._curvature(objective, rows)
        self.dense_ = isinstance(M, np.ndarray)
        self.memory_ = M if self.dense_ else None
        return self

    def _ties_kw(self):
        return {"ties": self.ties_} if getattr(self, "ties_", None) is not None else {}

    def _curvature(self, objective, rows):
        extra = self._ties_kw()
        return objective.hessian_sum(
            self.theta0_, rows, kind=self._curvature_kind(), points=self._points(),
            cols=self.cols_, neumann_order=getattr(self, "neumann_order", 3), **extra,
        )

    def _gradient(self, objective, rows):
        extra = {"ties": self.ties_} if getattr(self, "ties_", None) is not None else {}
        return objective.grad_sum(self.theta0_, rows, points=self._points(), cols=self.cols_,
                                  **extra)

    def _damped(self, A, n_rows):
        lam = self.damping * n_rows
        if lam == 0:
            return A
        if isinstance(A, np.ndarray):
            return A + lam * np.eye(A.shape[0])
        return LinearOperator(A.shape, matvec=lambda v: A.matvec(v) + lam * v, dtype=A.dtype)

    def forget(self, objective, removed, remaining):
        t0 = time.perf_counter()
        g = self._gradient(objective, removed)
        n_after = self.n_remaining_ - len(removed)
        if self.dense_:
            H_removed = self._curvature(objective, removed)
            memory_after = self.memory_ - H_removed
            A = memory_after if self._exclude_request else self.memory_
        else:
            A = self._curvature(objective, remaining if self._exclude_request else
                                np.concatenate([remaining, removed]))
        A = self._damped(A, n_after if self._exclude_request else self.n_remaining_)
        t1 = time.perf_counter()
        rhs = self.grad_ + g
        if self._uses_fixed_cg():
            step = fixed_cg(A, rhs, self.cg_iter)
        elif getattr(self, "ties_", None) is not None and isinstance(A, np.ndarray):
            step = self._solve_on_ties(objective, A, rhs, remaining)
        elif isinstance(A, np.ndarray):
            step = solve_dense(A, rhs)[0]
        else:
            step = solve_operator(A, rhs, method=getattr(self, "operator_solver", "cg"))
        theta = self.theta0_.copy()
        zeros_after = None
        if getattr(self, "zeros_", None) is not None:
            zcols, gp, gm, Cp, Cm = self.zeros_
            _, rp, rm, rCp, rCm = objective.zero_kkt_terms(self.theta0_, removed, self.cols_,
                                                           **self._ties_kw())
            zeros_after = (zcols, gp - rp, gm - rm, Cp - rCp, Cm - rCm)
            cols, step = self._wake_zeros(objective, zeros_after, step, rhs, remaining, n_after)
        else:
            cols = self.cols_
        theta[cols] += step
        t2 = time.perf_counter()
        if self.dense_:
            self.memory_ = memory_after
        if zeros_after is not None:
            self.zeros_ = zeros_after
        if getattr(self, "ties_", None) is not None:
            self.kink_h_[removed] = 0.0  # nothing of a forgotten row stays here
            self.kink_norm_[removed] = 0.0
            gone = np.flatnonzero(np.isin(self.ties_.rows, removed))
            if gone.size and self.tie_data_ is not None:
                h, D, dH = self.tie_data_
                h[gone] = 0.0
                D[gone] = 0.0
                dH.purge(gone)
            if gone.size and getattr(self, "tie_groups_", None) is not None:
                inverse, hg, Dg, dHg, members = self.tie_groups_
                np.subtract.at(members, inverse[gone], 1)
                empty = np.flatnonzero(members == 0)  # no kept row shares the data
                hg[empty] = 0.0
                Dg[empty] = 0.0
                dHg.purge(empty)
        self.grad_ = rhs
        self.n_remaining_ = n_after
        t3 = time.perf_counter()
        return theta, {"update_time": (t1 - t0) + (t3 - t2), "solve_time": t2 - t1}


    def _wake_zeros(self, objective, zeros, step, rhs, remaining, n_after):
        """Check the pinned zeros after the step; let those that would descend move.

        The l_inf robust objective is non-differentiable at ``w_j = 0``; a zero
        stays optimal while both one-sided derivatives of the remaining objective
        are >= 0. When the step makes one negative, that weight leaves zero on
        that side: the step is solved again with it free (its curvature computed
        over the remaining rows), until the woken weights keep their sides.
        """
        zcols, gp, gm, Cp, Cm = zeros
        tol = 1e-9 * max(n_after, 1)
        up = gp + Cp @ step
        down = gm - Cm @ step
        viol = np.maximum(-up, -down)
        woken = viol > tol
        if not woken.any():
            return self.cols_, step
        orient = np.where(-up >= -down, 1.0, -1.0)
        cols, new = self.cols_, step
        for _ in range(20):
            wcols = zcols[woken]
            sides = orient[woken]
            cols = np.union1d(self.cols_, wcols)
            probe = self.theta0_.copy()
            probe[wcols] = sides * 1e-300
            A = objective.hessian_sum(probe, remaining, kind="total", cols=cols,
                                      **self._ties_kw())
            A = self._damped(A, n_after)
            b = np.zeros(len(cols))
            b[np.searchsorted(cols, self.cols_)] = rhs
            b[np.searchsorted(cols, wcols)] = np.where(sides > 0, -gp[woken], gm[woken])
            if getattr(self, "ties_", None) is not None:
                new = self._solve_on_ties(objective, A, b, remaining, cols, probe)
            else:
                new = solve_dense(A, b)[0]
            wrong = sides * new[np.searchsorted(cols, wcols)] <= 0
            if wrong.any():
                woken[np.flatnonzero(woken)[wrong]] = False
                if not woken.any():
                    return self.cols_, step
                continue
            # the woken weights moved the rest: check the other zeros again, with
            # their coupling to the enlarged set computed over the remaining rows
            _, _, _, Cp2, Cm2 = objective.zero_kkt_terms(probe, remaining, cols,
                                                         **self._ties_kw())
            rest = np.flatnonzero(~woken)
            zc2 = np.flatnonzero(probe[: objective.n_features] == 0)
            pos = np.searchsorted(zc2, zcols[rest])
            up = gp[rest] + Cp2[pos] @ new
            down = gm[rest] - Cm2[pos] @ new
            more = np.maximum(-up, -down) > tol
            if not more.any():
                return cols, new
            woken[rest[more]] = True
            orient[rest[more]] = np.where(-up[more] >= -down[more], 1.0, -1.0)
        return cols, new

    def _prepare_kinks(self, objective, theta, rows):
        """Per-row kink data of a squared robust loss: ``h = q+ - q-`` and ``||grad h||``."""
        self.ties_ = objective.tie_state(theta, rows, cols=self.cols_)
        if self.ties_ is None:
            return
        n = objective.X.shape[0]
        self.kink_h_ = np.zeros(n)
        self.kink_norm_ = np.zeros(n)
        for start in range(0, len(rows), 8192):
            r = rows[start : start + 8192]
            self.kink_h_[r], self.kink_norm_[r] = self._kink_terms(objective, r)[:2]
        # The rows on a tie enter every request: keep their kink data (purged
        # row by row when forgotten).
        h, _, D = self._kink_terms(objective, self.ties_.rows)
        dH = _BranchCurvature.build(objective, theta, self.ties_.rows, self.cols_, self.ties_)
        self.tie_data_ = (h, D, dH)
        self.tie_groups_ = None
        if dH.dense is None and len(h):
            # Identical tied rows (e.g. images blank on the support) act as one:
            # keep one copy of their data per group, with the group of each row.
            key = np.column_stack([h, D, dH.U, dH.cu, dH.V, dH.cv])
            _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
            self.tie_groups_ = (inverse.ravel(), h[first], D[first], dH.take(first),
                                np.bincount(inverse.ravel()))
            self.tie_data_ = None  # the groups hold everything

    def _dual_data(self, objective, cand, tie_rows, cols, theta, lam_fit):
        """``(h, D, dH, lam_in, counts)`` of the distinct candidate rows.

        ``lam_in`` is the weight each currently has in the memory (its fitted tie
        weight, or 1 / 0 for the branch it is on), summed over identical rows.
        """
        on_tie = np.zeros(self.kink_h_.shape[0], dtype=bool)
        on_tie[tie_rows] = True
        is_tie = on_tie[cand]
        lam_rows = np.where(is_tie, lam_fit[cand], (self.kink_h_[cand] > 0).astype(float))
        groups = getattr(self, "tie_groups_", None)
        if groups is None or cols is not self.cols_ or theta is not self.theta0_:
            h, D, dH = self._candidate_data(objective, cand, cols, theta)
            h, D, lam_in, counts = dH.group(h, D, lam_rows)
            return h, D, dH, lam_in, counts
        inverse, hg, Dg, dHg, _ = groups
        pos = np.searchsorted(self.ties_.rows, cand[is_tie])
        counts = np.bincount(inverse[pos], minlength=len(hg)).astype(float)
        lam_g = np.bincount(inverse[pos], weights=lam_rows[is_tie], minlength=len(hg))
        live = np.flatnonzero(counts > 0)
        h, D, dH = hg[live], Dg[live], dHg.take(live)
        lam_in, counts = lam_g[live], counts[live]
        extra = cand[~is_tie]
        if extra.size:
            he, _, De = self._kink_terms(objective, extra, cols, theta)
            dHe = _BranchCurvature.build(objective, theta, extra, cols, self.ties_)
            h, D, dH = np.concatenate([h, he]), np.vstack([D, De]), dH.concat(dHe)
            lam_in = np.concatenate([lam_in, lam_rows[~is_tie]])
            counts = np.concatenate([counts, np.ones(extra.size)])
        return h, D, dH, lam_in, counts

    def _candidate_data(self, objective, rows, cols, theta):
        """``(h, D, dH)`` of candidate rows, from the cache for the fitted tie rows."""
        if (cols is self.cols_ and theta is self.theta0_ and len(rows)
                and self.tie_data_ is not None):
            pos = np.searchsorted(self.ties_.rows, rows)
            pos = np.minimum(pos, max(len(self.ties_.rows) - 1, 0))
            cached = (self.ties_.rows[pos] == rows) if len(self.ties_.rows) else np.zeros(
                len(rows), bool)
            if cached.all():
                h, D, dH = self.tie_data_
                return h[pos], D[pos], dH.take(pos)
            if cached.any():
                h1, D1, dH1 = self._candidate_data(objective, rows[cached], cols, theta)
                h2, D2, dH2 = self._candidate_data(objective, rows[~cached], cols, theta)
                order = np.argsort(np.concatenate([np.flatnonzero(cached),
                                                   np.flatnonzero(~cached)]))
                return (np.concatenate([h1, h2])[order], np.concatenate([D1, D2])[order],
                        dH1.concat(dH2).take(order))
        h, _, D = self._kink_terms(objective, rows, cols, theta)
        return h, D, _BranchCurvature.build(objective, theta, rows, cols, self.ties_)

    def _kink_terms(self, objective, rows, cols=None, theta=None):
        cols = self.cols_ if cols is None else cols
        theta = self.theta0_ if theta is None else theta
        q_up, g_up = objective.branch_terms(theta, rows, cols, 1.0)
        q_down, g_down = objective.branch_terms(theta, rows, cols, -1.0)
        h = q_up - q_down
        D = g_up - g_down
        return h, np.linalg.norm(D, axis=1), D

    def _solve_on_ties(self, objective, A, rhs, remaining, cols=None, theta=None):
        """Exact minimiser of the piecewise-quadratic model of a squared robust loss.

        Each row's robust loss is ``max(q+, q-)`` (the two worst cases), i.e.
        ``max over lam in [0, 1]`` of ``lam q+ + (1 - lam) q-``. Rows far from a
        tie keep their branch; for the candidate rows (on a tie, or whose gap the
        step could close) the model is minimised through its dual:

            max_{lam in [0,1]^m}  min_x  x^T A(lam) x / 2 - b(lam)^T x + sum lam_i h_i,

        with ``A(lam) = A_0 + sum lam_i (H+_i - H-_i)`` and ``b(lam) = b_0 - sum
        lam_i (g+_i - g-_i)``. The inner problem is one Cholesky solve, the dual
        is concave and smooth with gradient ``q+_i - q-_i`` at ``x(lam)``, and a
        bound-constrained quasi-Newton method maximises it. Candidates are added
        while a row outside them would change branch.
        """
        from scipy import optimize

        ties = self.ties_
        cols = self.cols_ if cols is None else cols
        theta = self.theta0_ if theta is None else theta
        kept = np.zeros(self.kink_h_.shape[0], dtype=bool)
        kept[remaining] = True
        tie_rows = ties.rows[kept[ties.rows]]
        cand = tie_rows
        # Rows on a tie enter A and rhs with their fitted weights; take them out.
        lam_fit = np.zeros(self.kink_h_.shape[0])
        lam_fit[ties.rows] = ties.lam
        step = solve_dense(A, rhs)[0]
        for _ in range(8):
            # Identical rows act as one, with a weight in [0, count]: the dual
            # runs over distinct rows only.
            h, D, dH, lam_in, counts = self._dual_data(objective, cand, tie_rows, cols,
                                                       theta, lam_fit)
            A0 = A - dH.combine(lam_in)
            b0 = rhs + lam_in @ D

            def dual(lam, A0=A0, b0=b0, D=D, dH=dH, h=h):
                bl = b0 - lam @ D
                x = solve_dense(A0 + dH.combine(lam), bl)[0]
                value = -0.5 * bl @ x + lam @ h
                grad = 0.5 * dH.quad(x) + D @ x + h
                return -value, -grad

            if len(cand):
                lam = _dual_newton(A0, b0, D, dH, h, np.clip(lam_in, 0, counts), counts)
                if lam is None:  # no convergence: a quasi-Newton method instead
                    res = optimize.minimize(dual, np.clip(lam_in, 0, counts), jac=True,
                                            method="L-BFGS-B",
                                            bounds=[(0.0, float(c)) for c in counts],
                                            options={"ftol": 1e-15, "gtol": 1e-13,
                                                     "maxiter": 500})
                    lam = res.x
                step = solve_dense(A0 + dH.combine(lam), b0 - lam @ D)[0]
            else:
                step = solve_dense(A, rhs)[0]
            # rows outside the candidates whose branch the step would change
            reach = np.linalg.norm(step)
            outside = kept.copy()
            outside[cand] = False
            near = np.flatnonzero(outside & (np.abs(self.kink_h_) <= self.kink_norm_ * reach))
            if near.size == 0:
                return step
            hn, _, Dn = self._kink_terms(objective, near, cols, theta)
            flips = np.sign(hn + Dn @ step) != np.sign(hn)
            if not flips.any():
                return step
            cand = np.sort(np.concatenate([cand, near[flips]]))
        return step


def _dual_newton(A0, b0, D, dH, h, lam, upper, max_iter=50):
    """Projected Newton ascent on the (concave) dual of the kink model.

    ``g(lam) = min_x x^T A(lam) x / 2 - b(lam)^T x + lam . h`` has gradient
    ``q+ - q-`` at ``x(lam)`` and Hessian ``-J^T A(lam)^-1 J`` with columns
    ``J_i = dH_i x + D_i``. Box ``0 <= lam <= upper``. Returns None when it does
    not converge (the caller then uses a quasi-Newton method).
    """
    def evaluate(lam):
        bl = b0 - lam @ D
        A = A0 + dH.combine(lam)
        x = solve_dense(A, bl)[0]
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
        G = J @ solve_dense(A, J.T)[0]  # minus the dual Hessian on the free set
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
    def build(cls, objective, theta, rows, cols, ties):
        factors = None
        if hasattr(objective, "branch_factors"):
            factors = objective.branch_factors(theta, rows, cols)
        if factors is not None:
            return cls(factors=factors)
        return cls(dense=np.array([
            objective.hessian_sum(theta, np.array([r]), kind="total", cols=cols,
                                  ties=type(ties)([r], [1.0]))
            - objective.hessian_sum(theta, np.array([r]), kind="total", cols=cols,
                                    ties=type(ties)([r], [0.0]))
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


class MUter(_NewtonType):
    """MUter: unlearning with the total Hessian of the adversarial objective.

    The total Hessian ``D_i = d_ww l - d_wdelta l (d_deltadelta l)^-1 d_deltaw l``
    accounts for the worst-case perturbation moving when the parameters move.
    By default (``total_hessian='exact'``) it is computed exactly: for linear
    models with an l_inf threat the worst case is piecewise constant in ``w``,
    so ``D_i`` is ``d_ww l`` at the worst-case point and the step is taken on
    the support of ``w`` only (the robust model is sparse, its zeros stay
    put); for l_2 it adds the curvature of the moving perturbation on its
    free coordinates. The memory (sum of ``D_i`` over the rows still in the
    model) is built once and downdated by each request.

    Parameters
    ----------
    total_hessian : {'exact', 'paper'}, default='exact'
        ``'paper'`` replicates the MUter paper's code: ``(d_deltadelta l)^-1``
        replaced by a Neumann series of order ``neumann_order`` and the system
        solved by ``cg_iter`` conjugate-gradient iterations, over all
        coordinates. On linear models ``d_deltadelta l`` is rank one, the series
        diverges, the memory comes out hugely negative definite and the step is
        close to doing nothing: use it only to reproduce the paper.
    support : {'auto', True, False}, default='auto'
        Restrict the step to the coordinates the objective reports as free
        (the non-zero weights of an l_inf model, and the intercept).
        ``'auto'`` is ``True`` for ``'exact'``; ``'paper'`` never restricts.
    neumann_order : int, default=3
        Order ``k`` of the Neumann series (``'paper'`` only).
    cg_iter : int, default=10
        CG iterations (``'paper'`` only).
    damping : float, default=0.0
        Added to the diagonal, per remaining row (in units of the mean objective).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmuter import AdversarialLogisticRegression
    >>> from skmuter.attacks import PGD
    >>> from skmuter.forgetters import MUter
    >>> X, y = load_digits(n_class=2, return_X_y=True)
    >>> est = AdversarialLogisticRegression(attack=PGD(epsilon=0.5), alpha=1e-2,
    ...                                     forgetter=MUter()).fit(X / 16, y)
    >>> est.forget([0, 5]).forgotten_
    array([0, 5])
    """

    name = "muter"
    _kind = "total"

    def __init__(self, total_hessian="exact", support="auto", neumann_order=3, cg_iter=10,
                 damping=0.0):
        self.total_hessian = total_hessian
        self.support = support
        self.neumann_order = neumann_order
        self.cg_iter = cg_iter
        self.damping = damping

    def _check(self):
        if self.total_hessian not in ("exact", "paper"):
            raise ValueError(
                f"total_hessian must be 'exact' or 'paper', got {self.total_hessian!r}."
            )
        for name in ("neumann_order", "cg_iter"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")

    def prepare(self, objective, theta, rows, zero_terms=True):
        self._check()
        return super().prepare(objective, theta, rows, zero_terms=zero_terms)

    def _restrict(self, objective, theta):
        if self.total_hessian == "paper":
            return False
        return super()._restrict(objective, theta)

    def _curvature_kind(self):
        return "paper" if self.total_hessian == "paper" else "total"

    def _uses_fixed_cg(self):
        return self.total_hessian == "paper"

    def label(self):
        return "muter-paper" if self.total_hessian == "paper" else "muter"


class Newton(_NewtonType):
    """Newton step with the Hessian of the loss over the remaining rows.

    Parameters
    ----------
    adversarial : bool, default=False
        ``True`` evaluates at the worst-case points ``x + delta(w*)`` (the
        paper's "Newton-delta"); ``False`` at the clean inputs.
    support : bool, default=False
        Restrict the step to the free coordinates (see :class:`MUter`).
    damping : float, default=0.0
        Added to the diagonal, per remaining row.

    Notes
    -----
    For a linear model with an l_inf threat, ``Newton(adversarial=True,
    support=True)`` is exactly the default :class:`MUter`.
    """

    name = "newton"
    _kind = "hessian"

    def __init__(self, adversarial=False, support=False, damping=0.0):
        self.adversarial = adversarial
        self.support = support
        self.damping = damping

    def label(self):
        return self.name + ("-delta" if self.adversarial else "")


class Influence(Newton):
    """Influence-function step: the Hessian over every row still in the model
    *before* the request (the removed rows not yet subtracted).

    Parameters
    ----------
    adversarial : bool, default=False
        Worst-case points (``'influence-delta'``) or clean inputs.
    support : bool, default=False
        Restrict the step to the free coordinates.
    damping : float, default=0.0
        Added to the diagonal, per row.
    """

    name = "influence"
    _exclude_request = False


class Fisher(Newton):
    """Step with the empirical Fisher matrix ``sum g_i g_i^T`` of the remaining rows.

    Parameters
    ----------
    adversarial : bool, default=False
        Worst-case points (``'fisher-delta'``) or clean inputs.
    support : bool, default=False
        Restrict the step to the free coordinates.
    damping : float, default=1e-4
        Added to the diagonal, per remaining row; the Fisher matrix is rank
        deficient in directions no gradient spans.
    """

    name = "fisher"
    _kind = "fisher"

    def __init__(self, adversarial=False, support=False, damping=1e-4):
        super().__init__(adversarial=adversarial, support=support, damping=damping)
