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

from .._losses import get_loss


def _chunks(rows, width):
    size = max(256, 4_000_000 // max(width, 1))
    for start in range(0, len(rows), size):
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
    """

    def __init__(self, X, y, loss, threat, alpha, fit_intercept, tol=1e-10, max_iter=None):
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
        return free

    # ---- points ------------------------------------------------------------
    def points(self, theta, rows, points="adversarial", wcols=None):
        """Scores and inputs of ``rows`` at clean or worst-case points.

        Returns ``(z, x, bound, s)``: scores ``z``, inputs restricted to the weight
        columns ``wcols``, the bound threat (None for clean points) and the
        adversary's directions ``s``.
        """
        w, b = self.split(theta)
        Xr = self.X[rows]
        z = Xr @ w + b
        if points == "clean" or self.threat.epsilon == 0:
            x = Xr if wcols is None else Xr[:, wcols]
            return z, x, None, None
        bound = self.threat.bind(Xr)
        up, down = bound.shifts(w)
        yr = self.y[rows]
        s = self.loss.direction(z, yr, up, down)
        z = z + s * np.where(s > 0, up, down)
        x = (Xr if wcols is None else Xr[:, wcols]) + bound.delta(w, s, wcols)
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

    # ---- values and gradients ---------------------------------------------
    def value(self, theta, rows):
        """Mean robust loss over ``rows`` plus the regulariser."""
        w, _ = self.split(theta)
        total = 0.0
        for r in _chunks(rows, self.n_features):
            z, _, _, _ = self.points(theta, r, wcols=np.arange(0))
            total += self.loss.value(z, self.y[r]).sum()
        return total / len(rows) + 0.5 * self.alpha * float(w @ w)

    def per_sample_grads(self, theta, rows, points="adversarial", cols=None):
        """Gradients of ``l_i + alpha/2 ||w||^2`` for each row, shape (len(rows), p)."""
        wcols, intercept = self._cols(cols)
        z, x, _, _ = self.points(theta, rows, points, wcols)
        g1 = self.loss.d1(z, self.y[rows])
        return g1[:, None] * self._augment(x, intercept) + self.alpha * self._wpad(
            theta, wcols, intercept
        )

    def grad_sum(self, theta, rows, points="adversarial", cols=None):
        """Sum over ``rows`` of the per-sample gradients (regulariser included)."""
        wcols, intercept = self._cols(cols)
        p = (self.n_features if wcols is None else len(wcols)) + int(intercept)
        out = np.zeros(p)
        for r in _chunks(rows, p):
            z, x, _, _ = self.points(theta, r, points, wcols)
            g1 = self.loss.d1(z, self.y[r])
            out += self._augment(x, intercept).T @ g1
        return out + len(rows) * self.alpha * self._wpad(theta, wcols, intercept)

    def kkt_residual(self, theta, rows):
        """Norm of the minimal subgradient of the mean objective over ``rows``.

        For l_inf the objective is non-smooth at ``w_j = 0``; there the residual
        counts only how much moving ``w_j`` either way would still descend.
        """
        return float(np.linalg.norm(self.kkt_vector(theta, rows)))

    def kkt_vector(self, theta, rows):
        w, _ = self.split(theta)
        m = len(rows)
        if not (self.threat.norm == "inf" and self.threat.epsilon > 0):
            return self.grad_sum(theta, rows) / m
        d = self.n_features
        xtg = np.zeros(d)
        A = np.zeros(d)
        B = np.zeros(d)
        gb = 0.0
        for r in _chunks(rows, d):
            z, _, bound, s = self.points(theta, r, wcols=np.arange(0))
            g1 = self.loss.d1(z, self.y[r])
            xtg += g1 @ self.X[r]
            a, bb = bound.linf_split_grads(g1, s)
            A += a
            B += bb
            gb += g1.sum()
        gp = (xtg + A) / m + self.alpha * w  # d/dw+ (w_j > 0 side)
        gm = (-xtg + B) / m - self.alpha * w  # d/dw- (w_j < 0 side)
        res = np.where(w > 0, gp, np.where(w < 0, -gm, 0.0))
        # At w_j = 0 the subdifferential in w_j is [-gm_j, gp_j]; keep its
        # element of least magnitude.
        zero = w == 0
        res[zero] = np.minimum(np.maximum(0.0, -gm[zero]), gp[zero])
        if self.fit_intercept:
            res = np.concatenate([res, [gb / m]])
        return res

    # ---- curvature ---------------------------------------------------------
    def hessian_sum(self, theta, rows, kind="total", points="adversarial", cols=None,
                    neumann_order=3):
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
        for r in _chunks(rows, max(p, self.n_features)):
            z, x, bound, s = self.points(theta, r, points, wcols)
            yr = self.y[r]
            xt = self._augment(x, intercept)
            g1 = self.loss.d1(z, yr)
            c = self.loss.d2(z, yr)
            if kind in ("hessian", "total"):
                H += xt.T @ (c[:, None] * xt)
                if kind == "total" and bound is not None and self.threat.norm == 2:
                    self._add_l2_curvature(H, w, bound, s, np.abs(g1), wcols)
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
