"""The robust training objective of one linear problem, at any parameter vector.

``LinearObjective`` is the narrow interface through which solvers, forgetters
and metrics see a linear model: per-sample gradients and summed Hessian pieces
over any set of rows, at clean or adversarial points, in closed form. A binary
or regression model is one objective; a one-vs-rest multiclass model holds one
per class, all sharing the same rows. It is pure maths: it holds no solver
settings and imports no solver (its :meth:`refit` goes through the solver the
estimator binds).

Convention: the objective is

    J(theta) = 1/m sum_{i kept} s_i l_i(theta) + alpha/2 ||w||^2,   m = sum_{i kept} s_i,
    l_i(theta) = max_{delta in B_i} loss(w . (x_i + delta) + b, y_i),

with ``theta = (w, b)`` (``b`` only with an intercept, never perturbed nor
penalised) and sample weights ``s_i`` (all 1 without ``sample_weight``: then
``m`` is the number of rows). Sums over rows carry the regulariser once per
unit of weight: a row adds ``s_i alpha * w`` to a summed gradient and ``s_i
alpha * I`` (weights block) to a summed Hessian, so that removing rows removes
their share of it (the same convention as the MUter paper's code) and a row
of weight 2 is exactly a duplicated row.

The inputs may be a sparse CSR matrix: it stays sparse, and only blocks of
rows (or of the few support columns of an l_inf model) are made dense.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, sparse

from .._losses import get_loss
from .._objective import BaseObjective, iter_chunks
from ._kinks import KinkModel, Ties
from ._kkt import l2_zero_subgradient, linf_subgradient, subgradient_from_split
from ._logistic import checkpoint, keep_zero_sums
from ._paper import paper_hessian
from ._pass import RowPass, cacheable, pass_data
from ._worst_case import bind

#: blocks of at most this many columns are read from a cache of all rows
_CACHED_COLUMNS = 256


def _chunks(rows, width):
    """Blocks of ``rows`` of about 4M entries of ``width`` columns (see
    :func:`skmuter._objective.iter_chunks`)."""
    return iter_chunks(rows, max(256, 4_000_000 // max(width, 1)))


class LinearObjective(BaseObjective):
    """Robust objective of a linear score on stored rows.

    Parameters
    ----------
    X : ndarray or sparse CSR matrix of shape (n_samples, n_features), float64
        Training inputs (shared, not copied).
    y : ndarray of shape (n_samples,)
        Targets: +-1 for the logistic loss, real numbers for the squared loss.
    loss : {'logistic', 'squared'}
    threat : skmuter.attacks.Threat
    alpha : float
    fit_intercept : bool
    refitter : callable, optional
        ``refitter(objective, rows, theta0) -> theta``, the exact solver with
        its settings bound (see :func:`skmuter.linear._solvers.refit_exact`);
        needed by :meth:`~skmuter._objective.BaseObjective.refit` only.
    linear_term : ndarray of shape (n_params,), optional
        Linear term ``b`` of objective perturbation (certified removal): the
        summed objective over ``m`` rows gains ``b . theta``, the mean one
        ``b . theta / m``. It enters the values, the solvers and the
        optimality residual, never the per-row gradients and curvatures that
        the forgetters take away.
    refiner : callable, optional
        The solver's warm-started correction steps (see
        ``skmuter.linear._solvers.refine_exact``), used by
        :meth:`~skmuter._objective.BaseObjective.refine`.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative row weights (shared, not copied); None: every row weighs 1.
        Every sum over rows weighs row ``i`` by ``s_i`` (regulariser share
        included) and the mean divides by the weights' sum.
    """

    def __init__(self, X, y, loss, threat, alpha, fit_intercept, refitter=None,
                 linear_term=None, sample_weight=None, refiner=None):
        super().__init__(alpha, refitter=refitter, linear_term=linear_term, refiner=refiner)
        self.X = X
        self.y = np.asarray(y, dtype=np.float64)
        self.sample_weight = sample_weight
        self.loss = get_loss(loss)
        self.threat = threat
        self.fit_intercept = bool(fit_intercept)
        self.n_features = X.shape[1]
        self.n_params = self.n_features + int(self.fit_intercept)
        #: prepared passes over the rows (:meth:`row_pass`), shared by the
        #: objectives of one estimator; derived from X, never pickled
        self.pass_cache = {}
        if linear_term is not None and self.loss.name != "logistic":
            # The squared loss's kinks (ties of its two worst cases) are solved
            # through gradients that do not carry a linear term.
            raise ValueError("objective perturbation is implemented for the logistic loss only.")

    # ---- rows --------------------------------------------------------------
    def weight_sum(self, rows):
        """How many rows ``rows`` count for: their summed sample weight (their
        number without weights)."""
        if self.sample_weight is None:
            return len(rows)
        return float(self.sample_weight[rows].sum())

    def _sw(self, rows):
        """Sample weights of ``rows`` (None without weights)."""
        return None if self.sample_weight is None else self.sample_weight[rows]

    def _block(self, rows, cols=None):
        """Dense inputs of ``rows`` (on the feature columns ``cols``)."""
        X = self.X
        if cols is not None and len(cols) <= _CACHED_COLUMNS \
                and cacheable(X.shape[0], len(cols)):
            # a few columns (the support of an l_inf model): all rows of them
            # are cached, so that passes on the support never read X
            return self._columns(np.asarray(cols))[rows]
        if sparse.issparse(X):
            B = X[rows]
            return (B if cols is None else B[:, cols]).toarray()
        if cols is None:
            return X[rows]
        if isinstance(rows, slice):
            return X[rows, cols]
        return X[np.ix_(np.asarray(rows), cols)]

    def _columns(self, cols):
        """Dense ``X[:, cols]`` (all rows), cached by the prepared pass."""
        return self.row_pass().columns(cols)

    def row_pass(self):
        """The prepared pass over all training rows
        (``skmuter.linear._pass.RowPass``), built once and shared
        through :attr:`pass_cache`."""
        key = "rows"
        rp = self.pass_cache.get(key)
        if rp is None or rp.source is not self.X or rp.threat is not self.threat:
            self.pass_cache.clear()
            rp = self.pass_cache[key] = RowPass(self.X, self.threat)
        return rp

    def purge_rows(self, rows):
        """Erase ``rows`` from the prepared passes (the inputs themselves are
        the estimator's)."""
        for rp in self.pass_cache.values():
            rp.purge(rows)

    # ---- parameters --------------------------------------------------------
    def split(self, theta):
        d = self.n_features
        return theta[:d], (theta[d] if self.fit_intercept else 0.0)

    def penalised(self, cols=None):
        """Mask of the penalised coordinates among ``cols``: the weights, not the
        intercept."""
        cols = np.arange(self.n_params) if cols is None else np.asarray(cols)
        return cols < self.n_features

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
            Xa = self._block(rows, active)
            wa = w[active]
            z = Xa @ wa + b
            bound = bind(self.threat, Xa, cols=active)
            where = np.searchsorted(active, wcols)
            Xr = None
        else:
            Xr = self._block(rows)
            z = Xr @ w + b
            if points == "clean" or self.threat.epsilon == 0:
                x = Xr if wcols is None else Xr[:, wcols]
                return z, x, None, None
            bound = bind(self.threat, Xr)
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

    def _terms(self, theta, rows, points, wcols, ties=None, sample_weighted=True):
        """Yield ``(r, z, x, bound, s, weight)`` over chunks of ``rows``.

        Rows on a tie (see :meth:`find_ties`) come twice, once per branch, with
        weights ``lam`` and ``1 - lam``: the convex combination of the two
        branches' gradients that makes the fitted point stationary. With
        ``sample_weighted``, ``weight`` includes the sample weights. ``weight``
        is None when every row weighs 1.
        """
        width = max(self.n_features, 1)
        if wcols is not None and self.threat.norm == "inf" and points != "clean":
            # an l_inf pass reads only the support and the asked columns
            width = max(np.count_nonzero(theta[: self.n_features]) + len(wcols), 1)
        tie_rows = np.zeros(0, dtype=np.int64) if ties is None else ties.rows
        if tie_rows.size:
            pos = np.searchsorted(tie_rows, rows)
            pos = np.minimum(pos, tie_rows.size - 1)
            on_tie = tie_rows[pos] == rows
            plain, tied = rows[~on_tie], rows[on_tie]
        else:
            plain, tied = rows, rows[:0]
        weighted = sample_weighted and self.sample_weight is not None
        for r in _chunks(plain, width):
            z, x, bound, s = self.points(theta, r, points, wcols)
            yield r, z, x, bound, s, (self.sample_weight[r] if weighted else None)
        if tied.size:
            lam = ties.lam[np.searchsorted(tie_rows, tied)]
            for sign, weight in ((1.0, lam), (-1.0, 1.0 - lam)):
                z, x, bound, s = self.points(theta, tied, points, wcols, force_s=sign)
                if weighted:
                    weight = weight * self.sample_weight[tied]
                yield tied, z, x, bound, s, weight

    # ---- ties of the squared loss ------------------------------------------------
    def tie_gaps(self, theta, rows):
        """For the squared loss: ``(a - b, max(a, b))`` with ``a``, ``b`` the residual
        magnitudes of the two worst cases (pushing the score up or down)."""
        w, b = self.split(theta)
        linf = self.threat.norm == "inf"
        support = np.flatnonzero(w) if linf else None
        gaps, vals = [], []
        for r in _chunks(rows, len(support) + 1 if linf else self.n_features):
            # l_inf is separable: only the support moves the score and the worst case
            Xr = self._block(r, support) if linf else self._block(r)
            ws = w[support] if linf else w
            res = Xr @ ws + b - self.y[r]
            up, down = bind(self.threat, Xr, cols=support).shifts(ws)
            a, bb = res + up, down - res
            gaps.append(a - bb)
            vals.append(np.maximum(a, bb))
        if not gaps:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(gaps), np.concatenate(vals)

    def branch_terms(self, theta, rows, cols, sign):
        """Loss and per-sample gradient (on ``cols``) of each row at the worst case
        pushing the score in direction ``sign`` (one branch of a squared loss),
        weighted by the sample weights."""
        wcols, intercept = self._cols(cols)
        z, x, _, _ = self.points(theta, rows, "adversarial", wcols, force_s=sign)
        yr = self.y[rows]
        grads = self.loss.d1(z, yr)[:, None] * self._augment(x, intercept) + self.alpha * (
            self._wpad(theta, wcols, intercept))
        values = self.loss.value(z, yr)
        sw = self._sw(rows)
        if sw is not None:
            values, grads = values * sw, grads * sw[:, None]
        return values, grads

    def branch_factors(self, theta, rows, cols):
        """Rank-one factors of the two branches' curvatures, ``(U, cu, V, cv)`` with
        ``H+_i = cu_i u_i u_i^T`` and ``H-_i = cv_i v_i v_i^T`` (regulariser aside);
        None where the worst case curves (l_2), the curvature then not being rank one."""
        if self.threat.norm != "inf" and self.threat.epsilon > 0:
            return None
        wcols, intercept = self._cols(cols)
        sw = self._sw(rows)
        out = []
        for sign in (1.0, -1.0):
            z, x, _, _ = self.points(theta, rows, "adversarial", wcols, force_s=sign)
            c = self.loss.d2(z, self.y[rows])
            out += [self._augment(x, intercept), c if sw is None else c * sw]
        return tuple(out)

    def find_ties(self, theta, rows, tol=1e-7, cols=None):
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
            return Ties(tied, np.zeros(0))
        if cols is None:
            cols = np.flatnonzero(self.free_mask(theta))
        half = Ties(tied, np.full(tied.size, 0.5))
        base = self.grad_sum(theta, rows, cols=cols, ties=half)
        D = (self.per_sample_grads(theta, tied, cols=cols, force_s=1.0)
             - self.per_sample_grads(theta, tied, cols=cols, force_s=-1.0))
        # stationarity: base + D^T (lam - 1/2) = 0 with lam in [0, 1]
        sol = optimize.lsq_linear(D.T, -base, bounds=(-0.5, 0.5), method="bvls")
        return Ties(tied, 0.5 + sol.x)

    def kink_model(self, theta, rows, cols=None):
        """The exact local model of the squared loss's kinks at ``theta``, for ``rows``.

        A :class:`~skmuter.linear._kinks.KinkModel` on the coordinates ``cols``
        (default: the free ones), or None where nothing can tie (logistic loss,
        ``epsilon = 0``).
        """
        if cols is None:
            cols = np.flatnonzero(self.free_mask(theta))
        ties = self.find_ties(theta, rows, cols=cols)
        if ties is None:
            return None
        return KinkModel(self, theta, rows, cols, ties, n_samples=self.X.shape[0])

    # ---- values and gradients ---------------------------------------------
    def value(self, theta, rows):
        """Mean robust loss over ``rows`` plus the regulariser."""
        rows = np.asarray(rows)
        sweep = self._support_sweep(theta, rows, np.arange(0), None)
        if sweep is not None:
            return sweep(False)[0]
        w, _ = self.split(theta)
        total = self._loss_sum(theta, rows)
        if self.linear_term is not None:
            total += float(self.linear_term @ theta)
        return total / self.weight_sum(rows) + 0.5 * self.alpha * float(w @ w)

    # ---- row sums (a chunked objective runs them per chunk) ----------------------
    def _loss_sum(self, theta, rows):
        """``sum_i s_i l_i(theta)`` over ``rows`` (worst-case losses)."""
        total = 0.0
        for r in _chunks(rows, self.n_features):
            z, _, _, _ = self.points(theta, r, wcols=np.arange(0))
            values = self.loss.value(z, self.y[r])
            sw = self._sw(r)
            total += float((values if sw is None else values * sw).sum())
        return total

    def _zero_direction(self, theta, rows):
        """``sum_i s_i g_i dir_i`` at ``w = 0``: the l_2 subgradient's share there."""
        c = 0.0
        for r in _chunks(rows, self.n_features):
            z, _, _, s = self.points(theta, r, wcols=np.arange(0))
            g1 = self.loss.d1(z, self.y[r])
            sw = self._sw(r)
            c += float(np.sum(s * (g1 if sw is None else g1 * sw)))
        return c

    def _linf_pieces(self, theta, rows, ties):
        """``(X^T g, A, B, sum g)`` over ``rows`` of an l_inf minimal subgradient:
        the loss derivatives at the worst case (both branches of a tied row),
        their column sums and the derivatives of the summed shifts in ``w+``
        and ``w-``; linear term not included."""
        d = self.n_features
        xtg = np.zeros(d)
        A = np.zeros(d)
        B = np.zeros(d)
        gb = 0.0
        n = self.X.shape[0]
        if 2 * len(rows) >= n:
            # the loss derivatives per row (both branches of a tied row), then
            # the column sums from the prepared pass over all rows
            up_side, down_side = np.zeros(n), np.zeros(n)
            for r, z, _, _, s, weight in self._terms(theta, rows, "adversarial",
                                                      np.arange(0), ties):
                g1 = self.loss.d1(z, self.y[r])
                if weight is not None:
                    g1 = g1 * weight
                up_side[r] += np.where(s > 0, g1, 0.0)
                down_side[r] += np.where(s > 0, 0.0, g1)
            xtg, A, B = self.row_pass().linf_column_sums(up_side, down_side)
            gb = float(up_side.sum() + down_side.sum())
            rows = rows[:0]  # done
        for r, z, _, _, s, weight in self._terms(theta, rows, "adversarial", np.arange(0), ties):
            g1 = self.loss.d1(z, self.y[r])
            if weight is not None:
                g1 = g1 * weight
            Xr = self._block(r)
            xtg += g1 @ Xr
            a, bb = bind(self.threat, Xr).linf_split_grads(g1, s)
            A += a
            B += bb
            gb += float(g1.sum())
        return xtg, A, B, gb

    def per_sample_grads(self, theta, rows, points="adversarial", cols=None, force_s=None):
        """Gradients of ``s_i (l_i + alpha/2 ||w||^2)`` for each row (``s_i`` its
        sample weight), shape (len(rows), p)."""
        wcols, intercept = self._cols(cols)
        z, x, _, _ = self.points(theta, rows, points, wcols, force_s=force_s)
        g1 = self.loss.d1(z, self.y[rows])
        grads = g1[:, None] * self._augment(x, intercept) + self.regulariser_grad(theta, 1, cols)
        sw = self._sw(rows)
        return grads if sw is None else grads * sw[:, None]

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
        return out + self.regulariser_grad(theta, self.weight_sum(rows), cols)

    def distance_bound(self, theta, rows, residual, memory=None):
        """Upper estimate of the distance from ``theta`` to the exact optimum over ``rows``.

        ``residual / mu`` (see :meth:`skmuter._objective.BaseObjective.distance_bound`).
        Without an intercept the mean objective is ``alpha``-strongly convex
        (its loss part is convex): ``mu = alpha`` and the bound is rigorous.
        The intercept is not penalised; with one, ``mu`` is the smallest
        eigenvalue of the mean curvature ``memory / m`` on the free
        coordinates (a local estimate, exact for the squared loss on a fixed
        support), capped by ``alpha``.
        """
        if residual == 0:
            return 0.0
        mu = self.alpha if self.alpha > 0 else np.inf
        if self.fit_intercept or self.alpha <= 0:
            if memory is None or not isinstance(memory, np.ndarray) or memory.size == 0:
                return float("inf")
            lam = float(np.linalg.eigvalsh(memory)[0]) / self.weight_sum(rows)
            mu = min(mu, lam)
        if not mu > 0:
            return float("inf")
        return float(residual) / mu

    def gradient_residual(self, theta, rows):
        """Norm of the minimal subgradient of the mean objective over ``rows``.

        For l_inf the objective is non-smooth at ``w_j = 0``; there the residual
        counts only how much moving ``w_j`` either way would still descend. For
        the squared loss, rows on a tie contribute their best convex combination.
        """
        return float(np.linalg.norm(self.minimal_subgradient(theta, rows)))

    def minimal_subgradient(self, theta, rows, ties=None):
        """The minimal subgradient of the mean objective over ``rows`` (linear
        term included), whose norm is :meth:`gradient_residual`."""
        rows = np.asarray(rows)
        w, _ = self.split(theta)
        m = self.weight_sum(rows)
        if ties is None and self.loss.name != "squared" and (
                self.threat.epsilon == 0 or self.threat.norm == "inf" or np.any(w)):
            # no ties: one prepared pass (see skmuter.linear._pass)
            rp, y, weights, m = pass_data(self, rows)
            if self.threat.norm == "inf" and self.threat.epsilon > 0:
                d = self.n_features
                v = np.concatenate([np.maximum(w, 0), np.maximum(-w, 0), theta[d:]])
                return subgradient_from_split(rp.linf_split(self, y, weights, m)(v)[1], w, d)
            return rp.smooth(self, y, weights, m)(np.asarray(theta, dtype=np.float64))[1]
        if ties is None:
            ties = self.find_ties(theta, rows)
        if not (self.threat.norm == "inf" and self.threat.epsilon > 0):
            g = self.grad_sum(theta, rows, ties=ties) / m
            if self.linear_term is not None:
                g = g + self.linear_term / m
            if self.threat.epsilon > 0 and not np.any(w):
                c = self._zero_direction(theta, rows) * self.threat.epsilon / m
                l2_zero_subgradient(g, c, self.n_features)
            return g
        d = self.n_features
        xtg, A, B, gb = self._linf_pieces(theta, rows, ties)
        if self.linear_term is not None:
            xtg += self.linear_term[:d]
            gb += self.linear_term[d] if self.fit_intercept else 0.0
        return linf_subgradient(xtg, A, B, gb, w, self.alpha, m, self.fit_intercept)

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
            ``neumann_order`` for ``(d_deltadelta l)^-1`` (replication only, see
            :mod:`skmuter.linear._paper`).
        ties : Ties, optional
            Rows on a tie of the squared loss contribute both branches, weighted
            (the Hessian of the Lagrangian on the tie).
        """
        return super().hessian_sum(theta, rows, kind=kind, points=points, cols=cols,
                                   neumann_order=neumann_order, ties=ties)

    def _curvature_hessian(self, theta, rows, points, cols, ties=None, neumann_order=None):
        return self._second_order(theta, rows, points, cols, ties, total=False)[0]

    def _curvature_total(self, theta, rows, points, cols, ties=None, neumann_order=None):
        return self._second_order(theta, rows, points, cols, ties, total=True)[0]

    def grad_hessian_sum(self, theta, rows, kind="total", points="adversarial", cols=None,
                         ties=None):
        """``(grad_sum(...), hessian_sum(...))`` of ``kind`` 'hessian' or 'total'
        in one sweep over the rows (what a forgetter's memory needs)."""
        if kind == "total":
            points = "adversarial"
        rows = np.asarray(rows)
        if ties is None or ties.rows.size == 0:
            kept = self._take_checkpoint(theta, rows, cols, kind, points)
            if kept is not None:
                return kept
        sweep = self._support_sweep(theta, rows, cols, ties, points)
        if sweep is not None:
            return sweep(True, with_value=False)[1:]
        H, g = self._second_order(theta, rows, points, cols, ties, total=kind == "total")
        return g, H

    # ---- checked requests: one pass per point ------------------------------
    def checkpoint(self, theta, rows, reference=None, fresh=False, defer=False):
        """Everything a check needs at ``theta`` over ``rows`` from one pass (a
        ``Checkpoint`` of ``skmuter.linear._logistic``): the value, the minimal
        subgradient, and the summed gradient and total Hessian on the free
        coordinates. For the logistic loss under an l_inf threat on a prepared
        compressed pass over most rows; None otherwise (the caller takes the
        general passes). ``reference``: a checkpoint of the same request at
        the same signs, from which the zeros' conditions may be certified
        without summing them again. Without one, the first check of a request
        starts from the zeros' exact sums kept at the published model (half
        of them; see ``ZeroSums`` of ``skmuter.linear._logistic``); ``fresh``
        sums every zero here instead. ``defer`` leaves the zeros to the
        point's ``complete()`` (a point that a step leaves needs none)."""
        if not (self.loss.name == "logistic" and self.threat.norm == "inf"
                and self.threat.epsilon > 0) or getattr(self, "chunked_pass", None):
            return None
        rows = np.asarray(rows)
        if 2 * len(rows) < self.X.shape[0]:
            return None
        rp, y, weights, m = pass_data(self, rows)
        wc = rp.logistic_worst_case(self, y)
        if wc is None:
            return None
        point = checkpoint(rp, wc, self, theta, y, weights, m, reference, fresh, defer)
        if point is not None:
            point.rows = rows
        return point

    def keep_checkpoint(self, point):
        """Keep ``point`` (the last checkpoint of a checked request) for the
        forgetter's memory at the same model: :meth:`grad_hessian_sum` there
        returns its gradient and Hessian without a pass, once. Held by the
        prepared pass (never pickled, cleared by a purge). Its zeros' sums
        stay for the next request's first check
        (``ZeroSums`` of ``skmuter.linear._logistic``)."""
        rp = self.row_pass()
        rp.checkpoint = (self, point.complete())
        wc = rp.logistic_worst_case(self, self.y)
        if wc is not None:
            # the zeros' exact sums there, for the next request's first check
            keep_zero_sums(wc, point)

    def drop_stale_zero_sums(self, theta, rows):
        """After a purge of ``rows``: drop the zeros' sums kept for the next
        request unless they were taken at the published ``theta`` without
        those rows (else they hold a model changed after its check, or the
        rows themselves)."""
        rp = self.pass_cache.get("rows")
        wc = getattr(rp, "_worst", None)
        kept = getattr(wc, "zero_sums", None)
        if kept is not None and wc.y is self.y and (
                not np.array_equal(kept.theta, theta) or np.any(kept.g1[rows])):
            wc.zero_sums = None

    def _take_checkpoint(self, theta, rows, cols, kind, points):
        rp = self.pass_cache.get("rows")
        kept = getattr(rp, "checkpoint", None)
        if kept is None:
            return None
        rp.checkpoint = None
        obj, point = kept
        if (obj is not self or kind not in ("total", "hessian") or points != "adversarial"
                or cols is None
                or (point.rows is not rows and not np.array_equal(point.rows, rows))
                or not np.array_equal(np.asarray(cols), point.cols)
                or not np.array_equal(np.asarray(theta, dtype=np.float64), point.theta)):
            return None
        return point.g.copy(), point.H.copy()

    def _support_sweep(self, theta, rows, cols, ties, points="adversarial"):
        """The prepared pass's sweep over the support when it applies (an
        l_inf model at its worst case, ``cols`` free, no tied rows, most of the
        rows): a function ``hessian -> (value, g, H)``; else None."""
        if not (self.threat.norm == "inf" and self.threat.epsilon > 0
                and points == "adversarial" and (ties is None or ties.rows.size == 0)):
            return None
        n = self.X.shape[0]
        if cols is None or 2 * len(rows) < n:
            return None
        cols = np.asarray(cols)
        w = np.asarray(theta)[: self.n_features]
        wcols = cols[cols < self.n_features]
        if np.any(w[wcols] == 0) or len(wcols) + np.count_nonzero(w) > 2 * _CACHED_COLUMNS:
            return None
        rp, y, weights, m = pass_data(self, rows)
        theta = np.asarray(theta, dtype=np.float64)
        return lambda hessian, with_value=True: rp.support_sweep(
            self, theta, y, weights, m, cols, hessian, with_value=with_value)

    def _second_order(self, theta, rows, points, cols, ties, total):
        """``(H, g)``: ``sum d_ww l`` (plus, when ``total``, the l_2 worst case's
        own curvature) and the summed gradient of the same sweep, each with the
        regulariser's share."""
        wcols, intercept = self._cols(cols)
        w, _ = self.split(theta)
        p = (self.n_features if wcols is None else len(wcols)) + int(intercept)
        H = np.zeros((p, p))
        G = np.zeros(p)
        for r, z, x, bound, s, weight in self._terms(theta, rows, points, wcols, ties):
            yr = self.y[r]
            xt = self._augment(x, intercept)
            c = self.loss.d2(z, yr)
            if weight is not None:
                c = c * weight
            H += xt.T @ (c[:, None] * xt)
            g1 = self.loss.d1(z, yr)
            G += xt.T @ (g1 if weight is None else g1 * weight)
            if total and bound is not None and self.threat.norm == 2:
                g1 = self.loss.d1(z, yr)
                wg = np.abs(g1) if weight is None else np.abs(g1) * weight
                self._add_l2_curvature(H, w, bound, s, wg, wcols)
        m = self.weight_sum(rows)
        return self._add_regulariser(H, m, cols), G + self.regulariser_grad(theta, m, cols)

    def _curvature_fisher(self, theta, rows, points, cols, ties=None, neumann_order=None):
        """``sum g g^T`` of the per-row gradients (regulariser share included)."""
        wcols, intercept = self._cols(cols)
        p = (self.n_features if wcols is None else len(wcols)) + int(intercept)
        H = np.zeros((p, p))
        share = self.regulariser_grad(theta, 1, cols)
        for r, z, x, _, _, weight in self._terms(theta, rows, points, wcols, ties):
            G = self.loss.d1(z, self.y[r])[:, None] * self._augment(x, intercept) + share
            H += G.T @ G if weight is None else G.T @ (weight[:, None] * G)
        return H

    def _curvature_paper(self, theta, rows, points, cols, ties=None, neumann_order=3):
        H = paper_hessian(self, theta, rows, cols, ties=ties, neumann_order=neumann_order)
        return self._add_regulariser(H, self.weight_sum(rows), cols)

    def _add_regulariser(self, H, n_rows, cols):
        """Add the regulariser's share of ``n_rows`` rows to the diagonal of ``H``."""
        idx = np.arange(H.shape[0])
        H[idx, idx] += self.regulariser_diag(n_rows, cols)
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
            XZ = self._block(r, zcols)
            zb = bind(self.threat, XZ, cols=zcols)
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
