"""Solvers of the robust objective of a linear problem.

``solve_exact`` finds the unique optimum of the convex robust objective with
the worst case in closed form:

* l_inf threat: the worst-case score is linear in the split ``w = w+ - w-``
  (``w+, w- >= 0``), so the problem becomes smooth and bound constrained; L-BFGS-B
  solves it with exact zeros, then projected Newton steps on the support (with
  the zeros' optimality conditions checked and violators added) polish it to
  the requested optimality residual.
* l_2 threat (or ``epsilon = 0``): the objective is smooth away from ``w = 0``;
  L-BFGS-B then Newton steps with the exact (total) Hessian.

``solve_sgd`` is the paper's recipe: minibatch SGD on examples produced by the
attack against the current model at every step. ``refit_exact`` is the exact
solve an objective's ``refit`` goes through (bound with its settings by the
estimator), so that the objective never imports a solver.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg, optimize
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from .._linalg import solve_dense
from .._warnings import warn
from ._kkt import subgradient_from_split
from ._pass import pass_data

DEFAULT_EXACT_MAX_ITER = 10_000
DEFAULT_SGD_EPOCHS = 100
#: projected Newton steps of a forget's correction before the exact solver takes over
_POLISH_STEPS = 6


def _linf_split_problem(obj, rows):
    """Value and gradient of the l_inf robust objective in ``v = (w+, w-, b)``."""
    rp, y, weights, m = pass_data(obj, rows)
    return rp.linf_split(obj, y, weights, m)


def _smooth_problem(obj, rows):
    """Value and gradient of the robust objective in ``theta`` (l_2 or eps = 0)."""
    rp, y, weights, m = pass_data(obj, rows)
    return rp.smooth(obj, y, weights, m)


def _tie_step(obj, probe, rows, cols):
    """Newton step of the squared robust loss, exact on its kinks.

    A Newton step from ``probe`` minimises the local piecewise-quadratic model
    there with the whole current (sub)gradient as right-hand side: the solve of
    the objective's kink model (the one MUter's step uses). Returns the step,
    the subgradient on ``cols`` and whether the model's Hessian is singular (a
    flat direction: collinear features without a penalty); its solves are
    quiet, the polish reports a singular fit once.
    """
    free = np.flatnonzero(obj.free_mask(probe))
    kinks = obj.kink_model(probe, rows, free)
    A = obj.hessian_sum(probe, rows, kind="total", cols=free, ties=kinks.ties)
    g = obj.grad_sum(probe, rows, cols=free, ties=kinks.ties)
    step = kinks.solve(obj, A, -g, rows, quiet=True)
    try:
        linalg.cho_factor(A, check_finite=False)
        singular = False
    except linalg.LinAlgError:
        singular = True
    where = np.searchsorted(cols, free)
    out_step, out_g = np.zeros(len(cols)), np.zeros(len(cols))
    out_step[where] = step
    out_g[where] = g
    return out_step, out_g, singular


def _newton_polish(obj, theta, rows, tol, max_steps, fun):
    """Projected Newton steps on the free coordinates; returns ``(theta, steps,
    singular, residual)``, ``singular`` when the last kink model's Hessian was
    singular, ``residual`` the optimality residual at ``theta``.

    ``fun`` is the value-and-gradient function of the solver stage (in the split
    variables for l_inf); the Hessian comes from the objective on the free
    coordinates only.
    """
    linf = obj.threat.norm == "inf" and obj.threat.epsilon > 0
    kinked = obj.loss.name == "squared" and obj.threat.epsilon > 0
    d = obj.n_features
    m = obj.weight_sum(rows)

    def evaluate(th, need_residual=True):
        if kinked:
            # one-sided gradients mislead at ties: use the minimal subgradient,
            # computed only for accepted points (it costs a pass over the rows)
            f = fun(_split(th) if linf else th)[0]
            return f, (obj.minimal_subgradient(th, rows) if need_residual else None)
        if linf:
            f, g = fun(_split(th))
            return f, subgradient_from_split(g, th[:d], d)
        return fun(th)

    def _split(th):
        w = th[:d]
        return np.concatenate([np.maximum(w, 0), np.maximum(-w, 0), th[d:]])

    f0, res = evaluate(theta)
    steps = 0
    singular = False
    for _ in range(max_steps):
        if np.linalg.norm(res) <= tol:
            break
        # Orientation of each weight: its sign, or for a zero whose optimality
        # condition fails, the side on which the objective descends.
        orient = np.sign(theta[:d]).copy()
        if linf:
            woken = (orient == 0) & (res[:d] != 0)
            orient[woken] = -np.sign(res[:d][woken])
        free = np.concatenate([orient != 0 if linf else np.ones(d, bool),
                               [True] * int(obj.fit_intercept)])
        cols = np.flatnonzero(free)
        probe = theta.copy()
        probe[:d] = np.where(theta[:d] == 0, orient * 1e-300, theta[:d])
        if kinked:
            step, g, singular = _tie_step(obj, probe, rows, cols)
            slope = min(float(g @ step) / m, 0.0)
        else:
            H = obj.hessian_sum(probe, rows, "total", cols=cols) / m
            try:
                step = -linalg.cho_solve(linalg.cho_factor(H), res[cols])
            except linalg.LinAlgError:
                step = -np.linalg.lstsq(H, res[cols], rcond=None)[0]
            slope = float(res[cols] @ step)
        t = 1.0
        accepted = False
        for _ in range(40):
            cand = theta.copy()
            cand[cols] += t * step
            if linf:
                wc = cand[:d]
                wc[np.sign(wc) * orient < 0] = 0.0  # never cross zero: stop there
                wc[orient == 0] = 0.0
            f1, res1 = evaluate(cand, need_residual=False)
            if f1 <= f0 + 1e-4 * t * slope or (f1 <= f0 and t < 1e-3):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        if res1 is None:
            res1 = evaluate(cand)[1]
        theta, f0, res = cand, f1, res1
        steps += 1
    return theta, steps, kinked and singular, float(np.linalg.norm(res))


def _warn_ill_posed(obj, residual, tol, singular):
    """One warning for a squared-loss fit whose Newton system stayed singular
    (a flat direction of the objective: collinear features, ``alpha = 0``) or
    whose polish stopped short of ``tol``."""
    if residual <= max(1e3 * tol, 1e-8):
        reached = f"it reached the optimality residual {residual:.3g}"
    else:
        reached = f"the fit stopped at the optimality residual {residual:.3g} > tol={tol:.3g}"
    what = ("the robust objective is singular at the fitted parameters: its minimiser is "
            f"not unique and {reached}" if singular else
            f"{reached}: the robust objective is badly conditioned")
    warn(
        f"{what} (alpha={obj.alpha:g}; collinear, constant or badly scaled features?). "
        "Forgetting will need damping. Set alpha > 0 (or drop the redundant features, "
        "standardise them).",
        ConvergenceWarning,
    )


def solve_exact(obj, rows=None, theta0=None, tol=1e-10, max_iter=None, newton_steps=50,
                keep_point=False):
    """Minimise the robust objective over ``rows`` to optimality residual ``tol``.

    With ``keep_point`` (a fit: the result is published), the last pass's
    point is kept for the forgetter's memory there where the objective has a
    one-pass checkpoint (:meth:`~skmuter.linear.LinearObjective.keep_checkpoint`).

    Returns
    -------
    theta : ndarray
        Optimal parameters ``(w, b)``.
    n_iter : int
        L-BFGS-B iterations plus Newton steps.
    residual : float
        Norm of the minimal subgradient of the mean objective at ``theta``.
    """
    rows = np.arange(obj.X.shape[0]) if rows is None else np.asarray(rows)
    max_iter = DEFAULT_EXACT_MAX_ITER if max_iter is None else max_iter
    d = obj.n_features
    theta = np.zeros(obj.n_params) if theta0 is None else np.array(theta0, dtype=np.float64)
    options = {"maxiter": max_iter, "maxfun": 2 * max_iter + 20, "ftol": 1e-14,
               "gtol": max(tol, 1e-7), "maxcor": 30}
    linf = obj.threat.norm == "inf" and obj.threat.epsilon > 0
    fun = _linf_split_problem(obj, rows) if linf else _smooth_problem(obj, rows)
    n_iter = steps = 0
    newton_first = getattr(obj, "chunked", False) or (
        theta0 is None and len(rows) >= _NEWTON_FIRST_ROWS)
    if newton_first:
        # Many rows, or rows in chunks (a Dask array): every evaluation is a
        # pass over them. Newton steps need a few passes each and converge in
        # a few steps from the optimum of a subsample; L-BFGS-B (hundreds of
        # passes) only if they stall.
        if theta0 is None:
            theta = _subsample_start(obj, rows, tol, max_iter)
        theta, steps, singular, residual = _newton_polish(obj, theta, rows, tol,
                                                          newton_steps, fun)
        newton_first = residual <= tol
    if not newton_first:
        if linf:
            w = theta[:d]
            v0 = np.concatenate([np.maximum(w, 0), np.maximum(-w, 0), theta[d:]])
            bounds = [(0, None)] * (2 * d) + [(None, None)] * int(obj.fit_intercept)
            res = optimize.minimize(fun, v0, jac=True, method="L-BFGS-B", bounds=bounds,
                                    options=options)
            v = res.x
            theta = np.concatenate([v[:d] - v[d : 2 * d], v[2 * d :]])
        else:
            res = optimize.minimize(fun, theta, jac=True, method="L-BFGS-B", options=options)
            theta = res.x
        n_iter = int(res.nit)
        theta, more, singular, _ = _newton_polish(obj, theta, rows, tol, newton_steps, fun)
        steps += more
    # the residual of the result; where one pass gives it with the gradient
    # and the Hessian (the logistic l_inf pass), a fit keeps that point: the
    # first forget request's memory at the fitted model then needs no pass
    point = None
    if keep_point:
        point = getattr(obj, "checkpoint", lambda *a, **k: None)(theta, rows)
    if point is not None:
        residual = float(np.linalg.norm(point.residual))
        obj.keep_checkpoint(point)
    else:
        residual = obj.gradient_residual(theta, rows)
    if not linf and obj.threat.epsilon > 0 and np.linalg.norm(theta[:d]) < 1e-6:
        # eps ||w||_2 has a kink at w = 0, where a smooth solver only creeps
        # towards it: try the zero model (with its best intercept) exactly.
        zero = _zero_model(obj, theta, rows)
        zero_residual = obj.gradient_residual(zero, rows)
        if zero_residual <= residual:
            theta, residual = zero, zero_residual
    kinked = obj.loss.name == "squared" and obj.threat.epsilon > 0
    if kinked and (singular or residual > max(1e3 * tol, 1e-8)):
        _warn_ill_posed(obj, residual, tol, singular)
    elif not kinked and residual > max(1e3 * tol, 1e-8):
        warn(
            f"the exact solver stopped at the optimality residual {residual:.3g} > "
            f"tol={tol:.3g} after {n_iter} iterations and {steps} Newton steps: the fit is "
            "not the optimum, and forgetting from it has no exact reference. Raise max_iter "
            f"(now {max_iter}) or alpha (now {obj.alpha:g}; a flat objective converges "
            "slowly), or standardise the features.",
            ConvergenceWarning,
        )
    return theta, n_iter + steps, residual


#: rows of the in-memory subsample whose optimum starts a chunked fit
_SUBSAMPLE_ROWS = 20_000
#: from this many rows an in-memory fit starts that way too
_NEWTON_FIRST_ROWS = 100_000


def _subsample_start(obj, rows, tol, max_iter):
    """The exact optimum over a random subsample of ``rows`` (at most
    ``_SUBSAMPLE_ROWS``, fetched into memory): the start of a fit over rows in
    chunks, close to the optimum over all of them."""
    from ._objective import LinearObjective

    rows = np.asarray(rows)
    if len(rows) > _SUBSAMPLE_ROWS:
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(rows, _SUBSAMPLE_ROWS, replace=False))
    Xs = obj._block(rows)
    sub = LinearObjective(Xs, obj.y[rows], obj.loss.name, obj.threat, obj.alpha,
                          obj.fit_intercept, sample_weight=obj._sw(rows))
    getattr(obj, "forget_fetched", lambda: None)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # only a start
        theta, _, _ = solve_exact(sub, tol=max(tol, 1e-9), max_iter=max_iter)
    return theta


def refit_exact(objective, rows, theta0=None, *, tol, max_iter):
    """The exact optimum over ``rows`` (``solve_exact``'s parameters only): the
    ``refitter`` of a :class:`~skmuter.linear.LinearObjective`, bound as
    ``functools.partial(refit_exact, tol=..., max_iter=...)``."""
    theta, _, _ = solve_exact(objective, rows, theta0=theta0, tol=tol, max_iter=max_iter)
    return theta


def refine_exact(objective, theta, rows, tol, *, start=None, max_steps=20, memory=None):
    """Warm-started projected Newton steps over ``rows`` from ``theta`` until the
    optimality residual is <= ``tol`` (``tol=None``: measure only): the
    ``refiner`` of a :class:`~skmuter.linear.LinearObjective`.

    The steps are those of the exact solver's polish: on the support of
    ``theta`` plus the zeros whose optimality condition fails (they are woken
    on the side on which the objective descends), never letting a weight
    cross zero within a step (it stops there and leaves the support), with a
    line search on the objective. So the sign pattern may change, and every
    accepted step lowers the kept rows' objective. Returns ``(theta, residual,
    n_steps)``.

    Where the objective has one-pass checkpoints (the logistic loss under an
    l_inf threat, see :meth:`~skmuter.linear.LinearObjective.checkpoint`),
    sign-keeping Newton steps on the support come first, one pass per point
    (:func:`_checked_newton`); the steps above take over where a zero must
    wake or a sign change.
    """
    rows = np.asarray(rows)
    linf = objective.threat.norm == "inf" and objective.threat.epsilon > 0
    theta = np.array(theta, dtype=np.float64)
    steps = 0
    if tol is not None and linf:
        theta, residual, steps = _checked_newton(objective, theta, rows, tol,
                                                 min(max_steps, _POLISH_STEPS), start, memory)
        if residual is not None:
            return theta, residual, steps
    if tol is not None and linf and objective.loss.name != "squared" and not steps:
        # First on the support alone, where the objective is smooth: each
        # step reads the support's columns only. The pass below then checks
        # the zeros.
        # (one step: from a forgetter's Newton step it converges quadratically,
        # and the checking pass below decides whether more are needed)
        theta, steps = _support_newton(objective, theta, rows, 0.1 * tol, 1)
    fun = _linf_split_problem(objective, rows) if linf else _smooth_problem(objective, rows)
    # the polish converges in a few steps from a good start; past that the
    # exact solver below is faster
    steps_cap = 0 if tol is None else min(max_steps, _POLISH_STEPS)
    theta, more, _, residual = _newton_polish(objective, theta, rows,
                                              0.0 if tol is None else tol, steps_cap, fun)
    steps += more
    if tol is not None and residual > tol:
        # The projected steps stalled (a start far from the optimum, weights
        # bouncing at zero): the exact solver, warm-started, follows the
        # support; its own polish ends it.
        cand, n_iter, cand_res = solve_exact(objective, rows, theta0=theta, tol=tol)
        steps += n_iter
        if cand_res < residual:
            theta, residual = cand, cand_res
    return theta, residual, steps


def _checked_newton(obj, theta, rows, tol, max_steps, start=None, memory=None):
    """Newton steps on the support from ``theta``, one pass per point, while
    every zero stays optimal and no weight changes sign, until the
    optimality residual is <= ``tol`` (see
    :meth:`~skmuter.linear.LinearObjective.checkpoint`). Returns ``(theta,
    residual, steps)``; ``residual`` is None where the objective has no such
    pass or a zero must wake, a sign change or a step that does not descend
    stops it (the general steps go on from ``theta``). The last point's
    gradient and Hessian are kept for the forgetter's memory there.

    The first step solves with the forgetter's ``memory`` (its curvature at
    ``start`` over the kept rows, when it lives on the same coordinates):
    close enough to the Hessian at ``theta`` for the step to land within the
    tolerance, without a Hessian sweep at a point that is not published.
    Should that step not descend, it is taken again with the exact Hessian.
    """
    # the zeros of a point are taken only where it may be published: a point
    # whose support alone calls for a step needs none
    point = getattr(obj, "checkpoint", lambda *a, **k: None)(theta, rows, defer=True)
    if point is None:
        return theta, None, 0
    d = obj.n_features
    linear = obj.linear_term_on(point.cols)
    steps = 0
    quasi = (isinstance(memory, np.ndarray) and start is not None
             and memory.shape == (len(point.cols),) * 2
             and np.array_equal(np.flatnonzero(obj.free_mask(start)), point.cols))
    while True:
        if float(np.linalg.norm(point.residual)) <= tol or steps >= max_steps \
                or not len(point.cols):
            point.complete()
        residual = float(np.linalg.norm(point.residual))
        if residual <= tol:
            obj.keep_checkpoint(point)
            return theta, residual, steps
        if steps >= max_steps or not len(point.cols) or (
                point.pending is None and np.any(point.residual[:d][theta[:d] == 0])):
            return theta, None, steps
        g = point.g if linear is None else point.g + linear
        A = memory if quasi and not steps else point.H
        step, _ = solve_dense(A, -g, quiet=True)
        cand = theta.copy()
        cand[point.cols] += step
        new = None
        if np.all(np.sign(cand[:d][point.support]) == point.signs):
            new = obj.checkpoint(cand, rows, reference=point, defer=True)
        if new is None or not new.value <= point.value + 1e-14 * abs(point.value):
            if A is memory:
                quasi = False  # again from theta, with the Hessian there
                continue
            return theta, None, steps
        theta, point = cand, new
        steps += 1


def _support_newton(obj, theta, rows, tol, max_steps):
    """Newton steps on the free coordinates (the support and the intercept) of an
    l_inf model whose loss is smooth there, until the mean gradient on them is
    <= ``tol``. Stops before a step that would change a weight's sign or not
    lower the objective (the projected polish handles those). Returns
    ``(theta, steps)``."""
    cols = np.flatnonzero(obj.free_mask(theta))
    weights = cols < obj.n_features
    m = obj.weight_sum(rows)
    linear = obj.linear_term_on(cols)
    f0 = None
    steps = 0
    for _ in range(max_steps):
        g, H = obj.grad_hessian_sum(theta, rows, kind="total", cols=cols)
        if linear is not None:
            g = g + linear
        if np.linalg.norm(g) / m <= tol:
            break
        step, _ = solve_dense(H, -g, quiet=True)
        cand = theta.copy()
        cand[cols] += step
        if np.any(np.sign(cand[cols][weights]) != np.sign(theta[cols][weights])):
            break
        f0 = obj.value(theta, rows) if f0 is None else f0
        f1 = obj.value(cand, rows)
        if not f1 <= f0 + 1e-14 * abs(f0):
            break
        theta, f0 = cand, f1
        steps += 1
    return theta, steps


def _zero_model(obj, theta, rows):
    """``w = 0`` with the intercept minimising the (then unperturbed) loss."""
    zero = np.zeros_like(theta)
    if not obj.fit_intercept:
        return zero
    y = obj.y[rows]
    b = float(theta[-1])
    sw = obj._sw(rows)
    mean = np.mean if sw is None else (lambda v: float(np.sum(sw * v)) / float(np.sum(sw)))
    shift = 0.0 if obj.linear_term is None else obj.linear_term[-1] / obj.weight_sum(rows)
    for _ in range(50):
        g = float(mean(obj.loss.d1(np.full(len(y), b), y))) + shift
        h = float(mean(obj.loss.d2(np.full(len(y), b), y)))
        if h <= 0 or abs(g) < 1e-15:
            break
        b -= g / h
    zero[-1] = b
    return zero


def solve_sgd(obj, attack, rows=None, theta0=None, max_iter=None, learning_rate=0.01,
              batch_size=128, random_state=None, verbose=0, desc="sgd"):
    """Adversarial training by minibatch SGD (the MUter paper's recipe).

    Every step attacks the current model on the minibatch with ``attack``, then
    takes a gradient step on the mean loss of the adversarial examples plus
    ``alpha/2 ||w||^2``. Returns ``(theta, n_epochs, residual)``.
    """
    rng = check_random_state(random_state)
    rows = np.arange(obj.X.shape[0]) if rows is None else np.asarray(rows)
    epochs = DEFAULT_SGD_EPOCHS if max_iter is None else max_iter
    attack = clone(attack).set_params(random_state=rng)
    threat, step = attack._check(obj.n_features)
    theta = np.zeros(obj.n_params) if theta0 is None else np.array(theta0, dtype=np.float64)
    loss, d = obj.loss, obj.n_features
    # With sample weights the minibatch gradient weighs each row by s_i / mean(s)
    # (an unbiased estimate of the weighted mean's gradient).
    scale = None if obj.sample_weight is None else (
        obj.sample_weight * (len(rows) / obj.weight_sum(rows)))
    m = obj.weight_sum(rows)
    iterator = range(epochs)
    if verbose:
        from .._progress import progress

        iterator = progress(iterator, desc=desc, unit="epoch")
    for _ in iterator:
        order = rng.permutation(rows)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            Xb, yb = obj._block(batch), obj.y[batch]
            w, b = obj.split(theta)

            def input_grad(Xa, ya, w=w, b=b):
                return loss.d1(Xa @ w + b, ya)[:, None] * w

            Xa = attack._run(Xb, yb, input_grad, threat, step) if obj.threat.epsilon > 0 else Xb
            g1 = loss.d1(Xa @ w + b, yb) / len(batch)
            if scale is not None:
                g1 = g1 * scale[batch]
            grad = np.empty_like(theta)
            grad[:d] = g1 @ Xa + obj.alpha * w
            if obj.fit_intercept:
                grad[d] = g1.sum()
            if obj.linear_term is not None:
                grad += obj.linear_term / m
            theta = theta - learning_rate * grad
    return theta, epochs, obj.gradient_residual(theta, rows)


def newton_on_support(obj, theta, rows, tol, max_steps):
    """Full Newton steps on the summed objective over ``rows``, on the free
    coordinates of ``theta`` (its zeros stay pinned), with the exact total
    Hessian, until the optimality residual reaches ``tol``.

    The re-linearisation of a model whose features changed (a pipeline's
    scaler forgot rows): the start is close to the new optimum, so no line
    search. Returns the new ``theta``.
    """
    theta = np.array(theta, dtype=np.float64)
    cols = np.flatnonzero(obj.free_mask(theta))
    for _ in range(max_steps):
        if obj.gradient_residual(theta, rows) <= tol:
            break
        g = obj.grad_sum(theta, rows, cols=cols)
        linear = obj.linear_term_on(cols)
        if linear is not None:  # certified removal's linear term
            g = g + linear
        H = obj.hessian_sum(theta, rows, kind="total", cols=cols)
        theta[cols] -= solve_dense(H, g)[0]
    return theta
