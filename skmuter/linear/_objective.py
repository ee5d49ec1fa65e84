"""The robust training objective of one linear problem, at any parameter vector.

``LinearObjective`` is the narrow interface through which solvers, forgetters
and metrics see a linear model: per-sample gradients and summed Hessian pieces
over any set of rows, at clean or adversarial points, in closed form. A binary
or regression model is one objective; a one-vs-rest multiclass model holds one
per class, all sharing the same rows.

Convention: the objective is

    J(theta) = 1/m sum_{i kept} l_i(theta) + alpha/2 ||w||^2,
    l_i(theta) = max_{delta in B_i} loss(w . (x_i + delta) + b, y_i),

with ``theta = (w, b)`` (``b`` only with an intercept, never perturbed nor
penalised). Sums over rows carry the regulariser once per row: a row adds
``alpha * w`` to a summed gradient and ``alpha * I`` (weights block) to a summed
Hessian, so that removing rows removes their share of it (the same convention
as the MUter paper's code).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from .._losses import get_loss


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


class TieState:
    """Rows on a tie of the squared robust loss and their branch weights ``lam``."""

    def __init__(self, rows, lam):
        self.rows = np.asarray(rows, dtype=np.int64)
        self.lam = np.asarray(lam, dtype=np.float64)


def _chunks(rows, width):
    """Blocks of ``rows`` of about 4M entries; runs of consecutive rows come as
    slices, so that indexing the stored data gives views, not copies."""
    size = max(256, 4_000_000 // max(width, 1))
    rows = np.asarray(rows)
    contiguous = len(rows) > 0 and rows[-1] - rows[0] + 1 == len(rows) and (
        len(rows) == 1 or bool(np.all(np.diff(rows) == 1)))
    for start in range(0, len(rows), size):
        if contiguous:
            yield slice(int(rows[start]), int(rows[min(start + size, len(rows)) - 1]) + 1)
        else:
            yield rows[start : start + size]


class LinearObjective:
    """Robust objective of a linear score on stored rows.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64
        Training inputs (shared, not copied).
    y : ndarray of shape (n_samples,)
        Targets: +-1 for the logistic loss, real numbers for the squared loss.
    loss : {'logistic', 'squared'}
    threat : skmuter.attacks.Threat
    alpha : float
    fit_intercept : bool
    tol, max_iter : float, int or None
        Settings of the exact solver used by :meth:`refit`.
    noise : ndarray of shape (n_params,), optional
        Linear term ``b`` of objective perturbation (certified removal): the
        summed objective over ``m`` rows gains ``b . theta``, the mean one
        ``b . theta / m``. It enters the values, the solvers and the
        optimality residual, never the per-row gradients and curvatures that
        the forgetters take away.
    """

    def __init__(self, X, y, loss, threat, alpha, fit_intercept, tol=1e-10, max_iter=None,
                 noise=None):
        self.X = X
        self.tol = tol
        self.max_iter = max_iter
        self.y = np.asarray(y, dtype=np.float64)
        self.loss = get_loss(loss)
        self.threat = threat
        self.alpha = float(alpha)
        self.fit_intercept = bool(fit_intercept)
        self.n_features = X.shape[1]
        self.n_params = self.n_features + int(self.fit_intercept)
        if noise is not None and self.loss.name != "logistic":
            # The squared loss's kinks (ties of its two worst cases) are solved
            # through gradients that do not carry a linear term.
            raise ValueError("objective perturbation is implemented for the logistic loss only.")
        self.noise = None if noise is None else np.asarray(noise, dtype=np.float64)

    # ---- parameters --------------------------------------------------------
    def split(self, theta):
        d = self.n_features
        return theta[:d], (theta[d] if self.fit_intercept else 0.0)

    def free_mask(self, theta):
        """Coordinates that move under a local step.

        With an l_inf threat the robust model is sparse and its zeros are pinned
        (the ``eps ||w||_1`` term acts like a lasso); the intercept is always free.
        """
        free = np.ones(self.n_params, dtype=bool)
        if self.threat.norm == "inf" and self.threat.epsilon > 0:
            free[: self.n_features] = theta[: self.n_features] != 0
        elif self.threat.epsilon > 0 and not np.any(theta[: self.n_features]):
            # eps ||w||_2 is not differentiable at w = 0: a zero model stays zero
            free[: self.n_features] = False
        return free

    # ---- points ------------------------------------------------------------
    def points(self, theta, rows, points="adversarial", wcols=None, force_s=None):
        """Scores and inputs of ``rows`` at clean or worst-case points.

        Returns ``(z, x, bound, s)``: scores ``z``, inputs restricted to the weight
        columns ``wcols``, the bound threat (None for clean points) and the
        adversary's directions ``s`` (``force_s`` imposes them: the two branches
        of a squared loss at a tie).
        """
        w, b = self.split(theta)
        if self.threat.norm == "inf" and self.threat.epsilon > 0 and wcols is not None \
                and points != "clean":
            # Separable over features: only the support and the asked columns
            # matter (w is zero elsewhere), so read just those columns.
            active = np.union1d(np.flatnonzero(w), wcols)
            if isinstance(rows, slice):
                Xa = self.X[rows, active]
            else:
                Xa = self.X[np.ix_(np.asarray(rows), active)]
            wa = w[active]
            z = Xa @ wa + b
            bound = self.threat.bind(Xa, cols=active)
            where = np.searchsorted(active, wcols)
            Xr = None
        else:
            Xr = self.X[rows]
            z = Xr @ w + b
            if points == "clean" or self.threat.epsilon == 0:
                x = Xr if wcols is None else Xr[:, wcols]
                return z, x, None, None
            bound = self.threat.bind(Xr)
            wa, where = w, wcols
        up, down = bound.shifts(wa)
        yr = self.y[rows]
        if force_s is None:
            s = self.loss.direction(z, yr, up, down)
        else:
            s = np.broadcast_to(np.asarray(force_s, dtype=np.float64), z.shape)
        z = z + s * np.where(s > 0, up, down)
        if Xr is None:
            x = Xa[:, where] + bound.delta(wa, s, where)
        else:
            x = (Xr if wcols is None else Xr[:, wcols]) + bound.delta(wa, s, where)
        return z, x, bound, s

    def _cols(self, cols):
        """Split parameter columns into weight columns and an intercept flag."""
        if cols is None:
            return None, self.fit_intercept
        cols = np.asarray(cols)
        d = self.n_features
        return cols[cols < d], bool(self.fit_intercept and np.any(cols == d))

    @staticmethod
    def _augment(x, intercept):
        if not intercept:
            return x
        return np.hstack([x, np.ones((x.shape[0], 1))])

    def _wpad(self, theta, wcols, intercept):
        w, _ = self.split(theta)
        wc = w if wcols is None else w[wcols]
        return np.concatenate([wc, [0.0]]) if intercept else wc

    def _terms(self, theta, rows, points, wcols, ties=None):
        """Yield ``(r, z, x, bound, s, weight)`` over chunks of ``rows``.

        Rows on a tie (see :meth:`tie_state`) come twice, once per branch, with
        weights ``lam`` and ``1 - lam``: the convex combination of the two
        branches' gradients that makes the fitted point stationary.
        """
        width = max(self.n_features, 1)
        tie_rows = np.zeros(0, dtype=np.int64) if ties is None else ties.rows
        if tie_rows.size:
            pos = np.searchsorted(tie_rows, rows)
            pos = np.minimum(pos, tie_rows.size - 1)
            on_tie = tie_rows[pos] == rows
            plain, tied = rows[~on_tie], rows[on_tie]
        else:
            plain, tied = rows, rows[:0]
        for r in _chunks(plain, width):
            z, x, bound, s = self.points(theta, r, points, wcols)
            yield r, z, x, bound, s, None
        if tied.size:
            lam = ties.lam[np.searchsorted(tie_rows, tied)]
            for sign, weight in ((1.0, lam), (-1.0, 1.0 - lam)):
                z, x, bound, s = self.points(theta, tied, points, wcols, force_s=sign)
                yield tied, z, x, bound, s, weight

    # ---- ties of the squared loss ------------------------------------------------
    def tie_gaps(self, theta, rows):
        """For the squared loss: ``(a - b, max(a, b))`` with ``a``, ``b`` the residual
        magnitudes of the two worst cases (pushing the score up or down)."""
        w, b = self.split(theta)
        support = np.flatnonzero(w) if self.threat.norm == "inf" else slice(None)
        cols = support if self.threat.norm == "inf" else None
        gaps, vals = [], []
        for r in _chunks(rows, self.n_features):
            Xr = self.X[r]
            res = Xr @ w + b - self.y[r]
            # l_inf is separable: only the support moves the worst case
            up, down = self.threat.bind(Xr[:, support], cols=cols).shifts(w[support])
            a, bb = res + up, down - res
            gaps.append(a - bb)
            vals.append(np.maximum(a, bb))
        if not gaps:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(gaps), np.concatenate(vals)

    def branch_terms(self, theta, rows, cols, sign):
        """Loss and per-sample gradient (on ``cols``) of each row at the worst case
        pushing the score in direction ``sign`` (one branch of a squared loss)."""
        wcols, intercept = self._cols(cols)
        z, x, _, _ = self.points(theta, rows, "adversarial", wcols, force_s=sign)
        yr = self.y[rows]
        grads = self.loss.d1(z, yr)[:, None] * self._augment(x, intercept) + self.alpha * (
            self._wpad(theta, wcols, intercept))
        return self.loss.value(z, yr), grads

    def branch_factors(self, theta, rows, cols):
        """Rank-one factors of the two branches' curvatures, ``(U, cu, V, cv)`` with
        ``H+_i = cu_i u_i u_i^T`` and ``H-_i = cv_i v_i v_i^T`` (regulariser aside);
        None where the worst case curves (l_2), the curvature then not being rank one."""
        if self.threat.norm != "inf" and self.threat.epsilon > 0:
            return None
        wcols, intercept = self._cols(cols)
        out = []
        for sign in (1.0, -1.0):
            z, x, _, _ = self.points(theta, rows, "adversarial", wcols, force_s=sign)
            out += [self._augment(x, intercept), self.loss.d2(z, self.y[rows])]
        return tuple(out)

    def tie_state(self, theta, rows, tol=1e-7, cols=None):
        """Rows sitting on the kink of the squared robust loss, with their weights.

        The robust squared loss ``max(q+, q-)`` of a row is not differentiable
        where both worst cases tie; at an exact optimum a few rows (at most about
        the number of free parameters) sit there, like the interpolated points of
        least absolute deviations. Their subgradient is ``lam q+' + (1-lam) q-'``
        with ``lam`` in [0, 1] chosen so that the objective over ``rows`` is
        stationary (bounded least squares on the free coordinates).

        Returns None for losses without ties (logistic) or ``epsilon = 0``.
        """
        if self.loss.name != "squared" or self.threat.epsilon == 0:
            return None
        rows = np.asarray(rows)
        gap, val = self.tie_gaps(theta, rows)
        tied = np.sort(rows[np.abs(gap) <= tol * np.maximum(1.0, val)])
        if tied.size == 0:
            return TieState(tied, np.zeros(0))
        if cols is None:
            cols = np.flatnonzero(self.free_mask(theta))
        half = TieState(tied, np.full(tied.size, 0.5))
        base = self.grad_sum(theta, rows, cols=cols, ties=half)
        D = (self.per_sample_grads(theta, tied, cols=cols, force_s=1.0)
             - self.per_sample_grads(theta, tied, cols=cols, force_s=-1.0))
        # stationarity: base + D^T (lam - 1/2) = 0 with lam in [0, 1]
        sol = optimize.lsq_linear(D.T, -base, bounds=(-0.5, 0.5), method="bvls")
        return TieState(tied, 0.5 + sol.x)

    # ---- values and gradients ---------------------------------------------
    def value(self, theta, rows):
        """Mean robust loss over ``rows`` plus the regulariser."""
        w, _ = self.split(theta)
        total = 0.0
        for r in _chunks(rows, self.n_features):
            z, _, _, _ = self.points(theta, r, wcols=np.arange(0))
            total += self.loss.value(z, self.y[r]).sum()
        if self.noise is not None:
            total += float(self.noise @ theta)
        return total / len(rows) + 0.5 * self.alpha * float(w @ w)

    def per_sample_grads(self, theta, rows, points="adversarial", cols=None, force_s=None):
        """Gradients of ``l_i + alpha/2 ||w||^2`` for each row, shape (len(rows), p)."""
        wcols, intercept = self._cols(cols)
        z, x, _, _ = self.points(theta, rows, points, wcols, force_s=force_s)
        g1 = self.loss.d1(z, self.y[rows])
        return g1[:, None] * self._augment(x, intercept) + self.alpha * self._wpad(
            theta, wcols, intercept
        )

    def grad_sum(self, theta, rows, points="adversarial", cols=None, ties=None):
        """Sum over ``rows`` of the per-sample gradients (regulariser included)."""
        wcols, intercept = self._cols(cols)
        p = (self.n_features if wcols is None else len(wcols)) + int(intercept)
        out = np.zeros(p)
        for r, z, x, _, _, weight in self._terms(theta, rows, points, wcols, ties):
            g1 = self.loss.d1(z, self.y[r])
            if weight is not None:
                g1 = g1 * weight
            out += self._augment(x, intercept).T @ g1
        return out + len(rows) * self.alpha * self._wpad(theta, wcols, intercept)

    def kkt_residual(self, theta, rows):
        """Norm of the minimal subgradient of the mean objective over ``rows``.

        For l_inf the objective is non-smooth at ``w_j = 0``; there the residual
        counts only how much moving ``w_j`` either way would still descend. For
        the squared loss, rows on a tie contribute their best convex combination.
        """
        return float(np.linalg.norm(self.kkt_vector(theta, rows)))

    def kkt_vector(self, theta, rows, ties=None):
        rows = np.asarray(rows)
        w, _ = self.split(theta)
        m = len(rows)
        if ties is None:
            ties = self.tie_state(theta, rows)
        if not (self.threat.norm == "inf" and self.threat.epsilon > 0):
            g = self.grad_sum(theta, rows, ties=ties) / m
            if self.noise is not None:
                g = g + self.noise / m
            if self.threat.epsilon > 0 and not np.any(w):
                # At w = 0 the shift eps ||w||_2 contributes c * u for any unit-ball
                # u, with c = eps * mean(s_i * loss'_i): keep the smallest element.
                c = 0.0
                for r in _chunks(rows, self.n_features):
                    z, _, _, s = self.points(theta, r, wcols=np.arange(0))
                    c += float(np.sum(s * self.loss.d1(z, self.y[r])))
                c *= self.threat.epsilon / m
                d = self.n_features
                norm = np.linalg.norm(g[:d])
                g[:d] *= max(0.0, norm - c) / norm if norm > 0 else 0.0
            return g
        d = self.n_features
        xtg = np.zeros(d)
        A = np.zeros(d)
        B = np.zeros(d)
        gb = 0.0
        for r, z, _, _, s, weight in self._terms(theta, rows, "adversarial", np.arange(0), ties):
            g1 = self.loss.d1(z, self.y[r])
            if weight is not None:
                g1 = g1 * weight
            Xr = self.X[r]
            xtg += g1 @ Xr
            a, bb = self.threat.bind(Xr).linf_split_grads(g1, s)
            A += a
            B += bb
            gb += g1.sum()
        if self.noise is not None:
            xtg += self.noise[:d]
            gb += self.noise[d] if self.fit_intercept else 0.0
        gp = (xtg + A) / m + self.alpha * w  # d/dw+ (w_j > 0 side)
        gm = (-xtg + B) / m - self.alpha * w  # d/dw- (w_j < 0 side)
        res = min_norm_subgradient(gp, gm, w)
        if self.fit_intercept:
            res = np.concatenate([res, [gb / m]])
        return res

    # ---- curvature ---------------------------------------------------------
    def hessian_sum(self, theta, rows, kind="total", points="adversarial", cols=None,
                    neumann_order=3, ties=None):
        """Sum over ``rows`` of a per-sample curvature matrix, restricted to ``cols``.

        Parameters
        ----------
        kind : {'hessian', 'total', 'fisher', 'paper'}
            ``'hessian'``: ``d_ww l`` at the chosen points. ``'total'``: the exact
            total Hessian of the robust loss (MUter), ``d_ww l`` at the worst case
            plus, for l_2, the curvature of the moving perturbation restricted to
            its free coordinates. ``'fisher'``: sum of ``g g^T``. ``'paper'``: the
            MUter paper's total Hessian with a Neumann series of order
            ``neumann_order`` for ``(d_deltadelta l)^-1`` (diverges on linear
            models; kept for replication).
        ties : TieState, optional
            Rows on a tie of the squared loss contribute both branches, weighted
            (the Hessian of the Lagrangian on the tie).
        """
        if kind in ("total", "paper"):
            points = "adversarial"
        wcols, intercept = self._cols(cols)
        w, _ = self.split(theta)
        pw = self.n_features if wcols is None else len(wcols)
        p = pw + int(intercept)
        H = np.zeros((p, p))
        wpad = self._wpad(theta, wcols, intercept)
        ww = float(w @ w)
        paper_b = np.zeros(p)
        paper_scalars = [0.0, 0.0]
        for r, z, x, bound, s, weight in self._terms(theta, rows, points, wcols, ties):
            yr = self.y[r]
            xt = self._augment(x, intercept)
            g1 = self.loss.d1(z, yr)
            c = self.loss.d2(z, yr)
            if weight is not None:
                c = c * weight
            if kind in ("hessian", "total"):
                H += xt.T @ (c[:, None] * xt)
                if kind == "total" and bound is not None and self.threat.norm == 2:
                    wg = np.abs(g1) if weight is None else np.abs(g1) * weight
                    self._add_l2_curvature(H, w, bound, s, wg, wcols)
            elif kind == "fisher":
                G = g1[:, None] * xt + self.alpha * wpad
                H += G.T @ G
            elif kind == "paper":
                k = neumann_order
                sigma = np.zeros_like(c)
                term = np.ones_like(c)
                for _ in range(k + 1):
                    sigma += term
                    term = term * (1.0 - c * ww)
                a = c * (1.0 - c * sigma * ww)
                H += xt.T @ (a[:, None] * xt)
                paper_b += xt.T @ (c * g1 * sigma)
                paper_scalars[0] += float((g1**2).sum()) * (k + 1)
                paper_scalars[1] += float((g1**2 * (sigma - k - 1)).sum())
            else:
                raise ValueError(f"unknown curvature kind {kind!r}")
        if kind == "paper":
            H -= np.outer(paper_b, wpad) + np.outer(wpad, paper_b)
            idx = np.arange(pw)
            H[idx, idx] -= paper_scalars[0]
            if ww > 0:
                H -= paper_scalars[1] * np.outer(wpad, wpad) / ww
        if kind != "fisher":
            idx = np.arange(pw)
            H[idx, idx] += len(rows) * self.alpha
        return H

    def zero_kkt_terms(self, theta, rows, scols, ties=None):
        """One-sided derivatives at the pinned zeros of an l_inf model, and their
        coupling to the free coordinates.

        For each zero weight ``j`` (``w_j = 0``), moving it up or down enters the
        worst case with ``delta_j`` at the top or bottom of its room, so the
        objective has two one-sided derivatives. Returns ``(zcols, gp, gm, Cp, Cm)``:
        the zero columns, the summed derivatives in ``w_j+`` and ``w_j-`` over
        ``rows`` (regulariser share included, it is 0 at ``w_j = 0``), and the
        summed cross curvatures with the free coordinates ``scols`` such that,
        after a step ``s`` on ``scols``, the derivatives become
        ``gp + Cp @ s`` and ``gm - Cm @ s`` (to first order).
        """
        w, _ = self.split(theta)
        zcols = np.flatnonzero(w == 0)
        wcols, intercept = self._cols(scols)
        k = len(scols)
        gp, gm = np.zeros(len(zcols)), np.zeros(len(zcols))
        Cp, Cm = np.zeros((len(zcols), k)), np.zeros((len(zcols), k))
        if len(zcols) == 0 or len(rows) == 0:
            return zcols, gp, gm, Cp, Cm
        for r, z, x, _, s, weight in self._terms(theta, rows, "adversarial", wcols, ties):
            yr = self.y[r]
            g1 = self.loss.d1(z, yr)
            c = self.loss.d2(z, yr)
            if weight is not None:
                g1, c = g1 * weight, c * weight
            XZ = self.X[r][:, zcols]
            zb = self.threat.bind(XZ, cols=zcols)
            P = np.broadcast_to(zb.P, XZ.shape)
            Q = np.broadcast_to(zb.Q, XZ.shape)
            up = XZ + np.where(s[:, None] > 0, Q, -P)
            down = XZ + np.where(s[:, None] < 0, Q, -P)
            xt = self._augment(x, intercept)
            gp += up.T @ g1
            gm -= down.T @ g1
            Cp += up.T @ (c[:, None] * xt)
            Cm += down.T @ (c[:, None] * xt)
        return zcols, gp, gm, Cp, Cm

    def _add_l2_curvature(self, H, w, bound, s, weight, wcols):
        """Add sum_i weight_i * eps_F,i/rho_i * (I_F - w_F w_F^T / rho_i^2) to ``H``."""
        scale, F, rho = bound.l2_curvature(w, s)
        coef = weight * scale
        wc = w if wcols is None else w[wcols]
        pw = len(wc)
        idx = np.arange(pw)
        inv_rho2 = np.divide(1.0, rho**2, out=np.zeros_like(rho), where=rho > 0)
        if F is None:
            H[idx, idx] += coef.sum()
            H[:pw, :pw] -= (coef * inv_rho2).sum() * np.outer(wc, wc)
        else:
            Fc = F if wcols is None else F[:, wcols]
            H[idx, idx] += coef @ Fc
            V = Fc * wc
            H[:pw, :pw] -= V.T @ ((coef * inv_rho2)[:, None] * V)

    # ---- exact refit -------------------------------------------------------
    def refit(self, rows, theta0=None):
        """Exact optimum of the robust objective over ``rows`` (used by Retrain)."""
        from ._solvers import solve_exact

        theta, _, _ = solve_exact(self, rows, theta0=theta0, tol=self.tol, max_iter=self.max_iter)
        return theta
