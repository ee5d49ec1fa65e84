"""The exact refit of a network's forgotten parameters, and the check of a forget.

:func:`refit_head` minimises the robust objective of a
:class:`~skmuter.nn.NetObjective` over some rows (the fit's polish, the
retrain), everything but ``theta`` frozen; :func:`refine_head` checks and
corrects a forget's proposal with the same steps, warm-started.
:class:`~skmuter.nn.AdversarialNet` binds both, with its settings, as the
objective's ``refitter`` and ``refiner`` (:func:`net_objective`); the
objective itself holds no solver settings.

Two kinds of objective (:attr:`NetObjective.smooth
<skmuter.nn.NetObjective.smooth>`):

* smooth (no attack, the penalised attack): L-BFGS converges to a gradient
  of about ``1e-8``; a forget is corrected by Newton steps with the
  forgetter's curvature;
* hard-ball attacks (PGD, FGSM): the worst case is piecewise constant in
  ``theta`` with very small cells, so the objective jumps between cells and
  its minimum is a kink at which the gradient stays near ``1e-3``. L-BFGS
  stops at a jump; every point it evaluated is kept and the lowest one is
  the start of a *proximal bundle* polish (:func:`_bundle`): cutting planes
  from the gradients of nearby cells, with a proximal term that shrinks the
  steps while no lower point is found. The polish stops when its model
  predicts no further decrease. Every evaluated point is published (rounded
  to the network's parameter dtype) first, so the value of the returned
  parameters is the value that was measured.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning

from .._warnings import warn
from ._attacks import TorchThreat
from ._objective import NetObjective
from ._points import row_chunks

__all__ = ["net_objective", "refine_head", "refit_head"]

#: gradient tolerance (mean objective) of the exact refit: the polish and ``retrain``
_REFIT_TOL = 1e-9

#: a smooth refit counts as converged at this gradient norm (float32 parameters
#: limit the attainable gradient to about 1e-8)
CONVERGED_TOL = 1e-6

#: most evaluations of the bundle polish after L-BFGS (hard-ball attacks)
_POLISH_STEPS = 200

#: most trial points of the step control along a forgetter's step
_MAX_BACKTRACK = 8

#: a round of L-BFGS and polish that lowers the objective by less than this
#: (relative) ends the refit under a hard-ball attack
_ROUND_GAIN = 1e-7

#: cuts kept by the bundle
_BUNDLE_SIZE = 25

#: the bundle stops when its model predicts a decrease below this (mean objective)
_BUNDLE_TOL = 1e-8


class _Evaluator:
    """The objective and its Danskin gradient over ``rows``, lowest point kept.

    ``cached`` evaluations go through the objective's cache of worst cases
    (a forget's check: the rebuilt forgetter state reuses the last point's);
    otherwise the attack runs afresh, warm-started per chunk under the
    penalised attack (a solve visits many points).
    """

    def __init__(self, obj, rows, cached):
        self.obj = obj
        self.rows = np.asarray(rows, dtype=np.int64)
        self.cached = cached
        self.n_evals = 0
        self.best = None  # (value, theta, grad)
        self._warm = {}

    def _attack(self, t, ci, chunk):
        points = self.obj.attack_points
        if not self.obj.threat.penalized:
            return points.attack(t, chunk), True
        info = {}
        xa = points.attack(t, chunk, start=self._warm.get(ci), info=info)
        if info["converged"]:
            self._warm[ci] = xa - points.x(chunk)
        else:
            self._warm.pop(ci, None)
        return xa, info["converged"]

    def _fresh(self, theta):
        # chunk by chunk: the attacked inputs of all rows are never held at once
        obj = self.obj
        points = obj.attack_points
        t = obj._t(theta)
        total = 0.0
        g = torch.zeros_like(t)
        for ci, chunk in enumerate(row_chunks(self.rows, obj.batch_size)):
            xa, _ = self._attack(t, ci, chunk)
            if obj.head is not None:
                with torch.no_grad():
                    inp, on_head = obj.head.features(xa), True
            else:
                inp, on_head = xa.detach(), False
            tt = t.clone().requires_grad_(True)
            loss = obj._loss_sum(tt, inp, points.labels(chunk), on_head)
            g += torch.autograd.grad(loss, tt)[0]
            total += float(loss.detach())
            if obj.threat.penalized:
                total -= points.price(xa, chunk)
        m = len(self.rows)
        return total / m + 0.5 * obj.alpha * float(t @ t), (g / m + obj.alpha * t).cpu().numpy()

    def __call__(self, theta, publish=True):
        theta = self.obj.published(theta) if publish else np.asarray(theta, np.float64)
        if self.cached:
            f, g = self.obj.value_and_grad(theta, self.rows)
            self.obj.attack_points.keep(self.best[1] if self.best is not None else theta)
        else:
            f, g = self._fresh(theta)
        self.n_evals += 1
        if self.best is None or f < self.best[0]:
            self.best = (f, theta, g)
            if self.cached:
                self.obj.attack_points.keep(theta)
        return f, g, theta

    def attack_converged(self, theta):
        """Whether the penalised ascent converges on every row at ``theta``."""
        t = self.obj._t(theta)
        return all(self._attack(t, ci, chunk)[1]
                   for ci, chunk in enumerate(row_chunks(self.rows, self.obj.batch_size)))


# ---- the steps ------------------------------------------------------------------------
def _project_simplex(v):
    """Euclidean projection onto the probability simplex."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.arange(1, len(v) + 1)
    rho = np.nonzero(u - css / k > 0)[0][-1]
    return np.maximum(v - css[rho] / (rho + 1.0), 0.0)


def _simplex_qp(Q, e, start=None, iters=400):
    """``argmin 1/2 l.Q.l + e.l`` over the simplex (accelerated projected
    gradient from ``start``, stopped when the iterates settle)."""
    k = len(e)
    if k == 1:
        return np.ones(1)
    L = float(np.linalg.eigvalsh(Q)[-1])
    if not L > 0:
        out = np.zeros(k)
        out[int(np.argmin(e))] = 1.0
        return out
    lam = np.full(k, 1.0 / k) if start is None or len(start) != k else start.copy()
    z, t = lam.copy(), 1.0
    for _ in range(iters):
        new = _project_simplex(z - (Q @ z + e) / L)
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        z = new + ((t - 1.0) / t_new) * (new - lam)
        settled = float(np.abs(new - lam).max()) < 1e-10
        lam, t = new, t_new
        if settled:
            break
    return lam


def _bundle(ev, x, f, g, *, max_evals, length=None, tol=0.0):
    """Proximal bundle descent from ``(x, f, g)`` on a kinked objective.

    The model is the largest of the cutting planes ``f_j + g_j.(y - x_j)``
    of the points evaluated nearby (their linearisation errors at the
    centre clipped at 0: the objective jumps), plus ``mu/2 ||y - x||^2``.
    A trial point that lowers the objective by a tenth of the predicted
    decrease (and by more than ``_BUNDLE_TOL``) becomes the centre and
    ``mu`` halves; otherwise its plane joins the model and ``mu`` doubles.
    The first step has the given ``length``, at least ``1e-3 max(1,
    ||x||)``. Returns ``((f, x, g), n_evals, stalled)``; ``stalled``: the
    model predicts no decrease above ``_BUNDLE_TOL`` (the polish ended by
    itself).
    """
    gnorm = float(np.linalg.norm(g))
    if gnorm == 0 or max_evals <= 0:
        return (f, x, g), 0, gnorm == 0
    length = max(length or 0.0, 1e-3 * max(1.0, float(np.linalg.norm(x))))
    mu = gnorm / length
    cuts = [(x, f, g)]
    n, stalled, lam = 0, False, None
    while n < max_evals and float(np.linalg.norm(g)) > tol:
        G = np.array([c[2] for c in cuts])
        e = np.array([max(f - fj - gj @ (x - xj), 0.0) for xj, fj, gj in cuts])
        if lam is not None and len(lam) < len(cuts):
            lam = np.append(lam, np.zeros(len(cuts) - len(lam)))
        lam = _simplex_qp(G @ G.T / mu, e, lam)
        agg = G.T @ lam
        predicted = -(agg @ agg) / mu - e @ lam
        if -predicted <= _BUNDLE_TOL * max(1.0, abs(f)):
            stalled = True
            break
        fn, gn, xn = ev(x - agg / mu)
        n += 1
        if fn < f - _BUNDLE_TOL * max(1.0, abs(f)) and fn <= f + 0.1 * predicted:
            x, f, g = xn, fn, gn
            mu *= 0.5
        else:
            mu *= 2.0
        cuts.append((xn, fn, gn))
        if len(cuts) > _BUNDLE_SIZE:
            drop = next(i for i, c in enumerate(cuts) if c[0] is not x)
            cuts.pop(drop)
            lam = np.delete(lam, drop)
    return (f, x, g), n, stalled


def _backtrack(ev, start, f0, g0, d, f1):
    """Shorten the step ``start -> start + d`` (value ``f1 > f0``) until it
    lowers the objective below ``f0``: safeguarded quadratic interpolation
    with the slope ``g0.d`` at the start. Returns ``((f, x, g), n_evals,
    step_length)``; the start itself when no shorter step is lower."""
    slope = float(g0 @ d)
    t, ft = 1.0, f1
    for k in range(_MAX_BACKTRACK):
        curv = (ft - f0 - slope * t) / (t * t)
        t_next = -slope / (2.0 * curv) if (slope < 0 and curv > 0) else 0.1 * t
        t = float(np.clip(t_next, 0.01 * t, 0.5 * t))
        ft, gt, xt = ev(start + t * d)
        if ft < f0:
            return (ft, xt, gt), k + 1, t * float(np.linalg.norm(d))
    return (f0, start, g0), _MAX_BACKTRACK, None


def _newton(ev, x, f, g, tol, max_steps, memory, f_cap):
    """Newton steps on a smooth objective with the summed curvature ``memory``
    (else the total Hessian at ``x`` when dense), each with a backtracking
    line search; never above ``f_cap``. Without a dense matrix: L-BFGS."""
    obj, m = ev.obj, len(ev.rows)
    p = obj.n_params
    H, fresh = None, False
    if isinstance(memory, np.ndarray) and memory.shape == (p, p):
        H = memory
    elif p <= obj.dense_max:
        H, fresh = obj.hessian_sum(x, ev.rows, kind="total"), True
    try:
        factor = None if H is None else cho_factor(0.5 * (H + H.T) / m)
    except np.linalg.LinAlgError:  # not positive definite (deeper parameters)
        factor = None
    if factor is None:
        return _lbfgs(ev, x, f, g, tol, max_steps, f_cap)
    eps = 8 * np.finfo(np.float64).eps * max(1.0, abs(f))
    n = 0
    while n < max_steps and float(np.linalg.norm(g)) > tol:
        d = -cho_solve(factor, g)
        slope = float(g @ d)
        t, accepted = 1.0, False
        while n < max_steps and t > 1e-3:
            fn, gn, xn = ev(x + t * d)
            n += 1
            if fn <= f_cap and (fn <= f + 1e-4 * t * slope
                                or (fn <= f + eps
                                    and np.linalg.norm(gn) < np.linalg.norm(g))):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            if fresh or p > obj.dense_max:
                break
            # the memory is the curvature before the request: take it here
            fresh = True
            try:
                factor = cho_factor(obj.hessian_sum(x, ev.rows, kind="total") / m)
            except np.linalg.LinAlgError:
                break
            continue
        x, f, g = xn, fn, gn
    return (f, x, g), n


def _lbfgs(ev, x, f, g, tol, max_steps, f_cap):
    """Warm-started L-BFGS (matrix-free objectives); the lowest point not above ``f_cap``."""
    best = [(f, x, g)]
    n0 = ev.n_evals

    def fun(y):
        fy, gy, yp = ev(y)
        if fy <= f_cap and fy < best[0][0]:
            best[0] = (fy, yp, gy)
        return fy, gy

    minimize(fun, x, jac=True, method="L-BFGS-B",
             options={"maxiter": int(max_steps), "maxfun": int(max_steps), "gtol": float(tol),
                      "ftol": 0.0})
    return best[0], ev.n_evals - n0


# ---- the exact refit ------------------------------------------------------------------
def refit_head(objective, rows, theta0=None, *, tol, max_iter, polish_steps=_POLISH_STEPS):
    """Optimum of the robust objective over ``rows`` in ``theta`` (all else frozen).

    L-BFGS on ``J`` itself: every evaluation re-runs the attack at the
    current ``theta`` (fixed random starts, so the worst case is a
    deterministic function of ``theta``) and uses the Danskin gradient, the
    gradient of the loss at those points. For the last layer on a frozen
    body the exact robust objective is convex (a maximum of convex
    functions); for deeper parameters the result is a local optimum near
    the start.

    Under a hard-ball attack (sign steps, or any attack on a ReLU body) the
    worst case is piecewise constant in ``theta`` with very small cells, so
    ``J`` jumps between cells and L-BFGS stops at a jump: the lowest point
    it evaluated is then polished by proximal bundle steps until no nearby
    point is lower, and L-BFGS restarts from the result, in rounds, while a
    round lowers the objective (at most ``max_iter`` L-BFGS iterations and
    ``polish_steps`` polish evaluations in all). The gradient norm at such a
    kinked minimum stays near ``1e-3``.

    ``objective.refit_info_`` records ``n_iter`` (L-BFGS), ``n_evals``,
    ``polish_steps``, ``value``, ``gradient_norm``, ``message``,
    ``converged`` (smooth: gradient at most ``CONVERGED_TOL`` and, penalised,
    the ascent converged at the solution; hard-ball: the polish ended by
    itself, not at its cap) and, penalised, ``attack_converged``. A solve
    that did not converge warns (``ConvergenceWarning``) with what to change.

    Parameters
    ----------
    objective : NetObjective
    rows : array-like of int
        Training rows of the objective.
    theta0 : ndarray of shape (n_params,), optional
        Start (default: ``objective.theta_init``, else zeros).
    tol : float
        Gradient tolerance on the mean objective.
    max_iter : int
        Most L-BFGS iterations.
    polish_steps : int, default=200
        Most evaluations of the bundle polish (hard-ball attacks), in all rounds.

    Returns
    -------
    theta : ndarray of shape (n_params,)
        Published (rounded to the network's parameter dtype).
    """
    obj = objective
    rows = np.asarray(rows, dtype=np.float64).astype(np.int64)
    if theta0 is None:
        theta0 = obj.theta_init if obj.theta_init is not None else np.zeros(obj.n_params)
    theta = np.asarray(theta0, dtype=np.float64).copy()
    smooth = obj.smooth
    ev = _Evaluator(obj, rows, cached=False)

    def fun(th):
        f, g, _ = ev(th, publish=not smooth)
        return f, g

    def lbfgs(x, iters):
        return minimize(fun, x, jac=True, method="L-BFGS-B",
                        options={"maxiter": int(iters), "maxcor": 30, "gtol": float(tol),
                                 "ftol": 0.0})

    res = lbfgs(theta, max_iter)
    n_iter, n_polish, stalled = int(res.nit), 0, False
    if smooth:
        f, g, theta = ev(res.x)  # the published point
    else:
        # Rounds of L-BFGS (restarted from the lowest point, fresh memory) and
        # the bundle polish, while a round still lowers the objective.
        while True:
            f_round = ev.best[0]
            f, theta, g = ev.best
            if float(np.linalg.norm(g)) <= tol:
                break
            (f, theta, g), k, stalled = _bundle(ev, theta, f, g,
                                                max_evals=polish_steps - n_polish, tol=tol)
            n_polish += k
            if n_iter >= max_iter or n_polish >= polish_steps:
                break
            res = lbfgs(theta, max_iter - n_iter)
            n_iter += max(int(res.nit), 1)
            if ev.best[0] >= f_round - _ROUND_GAIN * max(1.0, abs(f_round)):
                f, theta, g = ev.best
                break
    gnorm = float(np.linalg.norm(g))
    info = {"n_iter": n_iter, "n_evals": ev.n_evals, "polish_steps": n_polish,
            "value": float(f), "gradient_norm": gnorm, "message": str(res.message)}
    if obj.threat.penalized:
        # Trial points of the line search may lie where gamma is below the
        # curvature; only the solution matters.
        done = ev.attack_converged(theta)
        info["attack_converged"] = done
        if not done:
            warn("the penalised attack does not converge at the solution; gamma="
                 f"{obj.threat.gamma} is probably below the curvature of the loss in "
                 "the input (raise gamma or n_steps).", ConvergenceWarning)
    if smooth:
        info["converged"] = gnorm <= max(CONVERGED_TOL, tol) and info.get("attack_converged",
                                                                          True)
        if gnorm > max(CONVERGED_TOL, tol):
            what = (f"raise gamma (now {obj.threat.gamma}) well above the curvature of the "
                    f"loss in the input, or alpha (now {obj.alpha})"
                    if obj.threat.penalized else f"raise alpha (now {obj.alpha})")
            warn(f"the exact solve of the forgotten parameters stopped at a gradient norm of "
                 f"{gnorm:.2g} > {max(CONVERGED_TOL, tol):.0e} after {res.nit} L-BFGS "
                 f"iterations ({str(res.message).strip()}): the robust objective is not "
                 f"smooth enough at this scale and the result is no exact optimum; "
                 f"{what}.", ConvergenceWarning)
    else:
        info["converged"] = bool(stalled or gnorm <= tol)
        if not info["converged"]:
            warn(f"the exact solve of the forgotten parameters was still descending after "
                 f"{res.nit} L-BFGS iterations and {n_polish} polish steps (value "
                 f"{f:.8g}): no kinked minimum was reached; raise polish_max_iter.",
                 ConvergenceWarning)
    obj.refit_info_ = info
    return theta


# ---- the check of a forget ------------------------------------------------------------
def refine_head(objective, theta, rows, tol, *, start=None, max_steps=20, memory=None):
    """Check and correct a forget's proposal (see :meth:`NetObjective.refine
    <skmuter.nn.NetObjective.refine>`).

    Step control along ``start -> theta`` (at most 8 trial points), then
    Newton steps with ``memory`` (smooth objectives) or the bundle polish of
    :func:`refit_head` (hard-ball attacks), warm-started, while the gradient
    residual exceeds ``tol``: at most ``max_steps`` trial points in all. No
    accepted point has a value above ``value(start)``.

    Returns
    -------
    theta : ndarray of shape (n_params,)
        Published parameters.
    residual : float
        ``objective.gradient_residual(theta, rows)``.
    n_steps : int
        Objective evaluations at trial points.
    """
    obj = objective
    rows = np.asarray(rows, dtype=np.int64)
    theta = obj.published(theta)
    if tol is None:
        return theta, obj.gradient_residual(theta, rows), 0
    ev = _Evaluator(obj, rows, cached=True)
    f, g, theta = ev(theta)
    n, length, f_cap = 0, None, np.inf
    if start is not None:
        f0, g0, start = ev(start)
        f_cap = f0
        if not f <= f0:
            (f, theta, g), n, length = _backtrack(ev, start, f0, g0, theta - start, f)
    left = max_steps - n
    if float(np.linalg.norm(g)) > tol and left > 0:
        if obj.smooth:
            (f, theta, g), k = _newton(ev, theta, f, g, tol, left, memory, f_cap)
        else:
            (f, theta, g), k, _ = _bundle(ev, theta, f, g, max_evals=left, length=length,
                                          tol=tol)
        n += k
    obj.attack_points.keep(theta)  # the rebuilt forgetter state reuses its worst cases
    return theta, obj.gradient_residual(theta, rows), n


def net_objective(net):
    """The :class:`~skmuter.nn.NetObjective` of a fitted ``AdversarialNet``.

    On its stored training rows, with :func:`refit_head` (the net's
    ``polish_max_iter``) and :func:`refine_head` bound as the refitter and the
    refiner.
    """
    threat = TorchThreat(net.attack_, net._train_X.shape[1:],
                         device=net._torch_device(), dtype=torch.float64)
    return NetObjective(
        net.module_, net.forget_names_, net._train_X, net._train_y, threat,
        net.alpha, seed=0 if net.random_state is None else int(net.random_state),
        theta_init=net._theta_init, device=net._torch_device(),
        dense_max=net.max_dense_params,
        refitter=functools.partial(refit_head, tol=_REFIT_TOL,
                                   max_iter=net.polish_max_iter),
        refiner=refine_head,
    )
