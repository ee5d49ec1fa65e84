"""The exact refit of a network's forgotten parameters (the polish and the retrain).

:func:`refit_head` minimises the robust objective of a
:class:`~skmuter.nn.NetObjective` over some rows with L-BFGS, everything but
``theta`` frozen. :class:`~skmuter.nn.AdversarialNet` binds it, with its
settings, as the objective's ``refitter`` (:func:`net_objective`); the
objective itself holds no solver settings.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning

from .._warnings import warn
from ._attacks import TorchThreat
from ._objective import NetObjective
from ._points import row_chunks

__all__ = ["net_objective", "refit_head"]

#: gradient tolerance (mean objective) of the exact refit: the polish and ``retrain``
_REFIT_TOL = 1e-9


def refit_head(objective, rows, theta0=None, *, tol, max_iter):
    """Optimum of the robust objective over ``rows`` in ``theta`` (all else frozen).

    L-BFGS on ``J`` itself: every evaluation re-runs the attack at the
    current ``theta`` (fixed random starts, so the worst case is a
    deterministic function of ``theta``) and uses the Danskin gradient, the
    gradient of the loss at those points. For the last layer on a frozen
    body the exact robust objective is convex (a maximum of convex
    functions); for deeper parameters the result is a local optimum near
    the start. ``objective.refit_info_`` records the final gradient norm.

    The Danskin gradient is the gradient of ``J`` only where the worst case
    moves smoothly with ``theta``. With sign steps (l_inf PGD or FGSM), or
    any attack on a ReLU body, ``delta_i(theta)`` is piecewise constant in
    ``theta`` with very small cells, so ``J`` jumps between cells and the
    solver stops at a jump with a gradient norm well above ``tol``;
    ``refit_info_`` says so.

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

    Returns
    -------
    theta : ndarray of shape (n_params,)
    """
    obj = objective
    points = obj.attack_points
    rows = np.asarray(rows, dtype=np.float64).astype(np.int64)
    if theta0 is None:
        theta0 = obj.theta_init if obj.theta_init is not None else np.zeros(obj.n_params)
    theta = np.asarray(theta0, dtype=np.float64).copy()
    m = len(rows)
    # Penalised attack: each chunk's ascent starts from its last converged
    # worst case (successive iterates are close); local to this solve.
    warm = {}
    penalized = obj.threat.penalized

    def attack(t, ci, chunk):
        if not penalized:
            return points.attack(t, chunk)
        info = {}
        xa = points.attack(t, chunk, start=warm.get(ci), info=info)
        if info["converged"]:
            warm[ci] = xa - points.x(chunk)
        else:
            warm.pop(ci, None)
        return xa, info["converged"]

    def fun(th):
        # chunk by chunk: the attacked inputs of all rows are never held at once
        t = obj._t(th)
        total = 0.0
        g = torch.zeros_like(t)
        for ci, chunk in enumerate(row_chunks(rows, obj.batch_size)):
            xa = attack(t, ci, chunk)
            if penalized:
                xa = xa[0]
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
        f = total / m + 0.5 * obj.alpha * float(t @ t)
        return f, (g / m + obj.alpha * t).cpu().numpy()

    res = minimize(fun, theta, jac=True, method="L-BFGS-B",
                   options={"maxiter": int(max_iter), "maxcor": 30, "gtol": float(tol),
                            "ftol": 0.0})
    obj.refit_info_ = {"n_iter": int(res.nit), "gradient_norm": float(np.linalg.norm(res.jac)),
                       "message": str(res.message)}
    if penalized:
        # Trial points of the line search may lie where gamma is below the
        # curvature; only the solution matters.
        t = obj._t(res.x)
        done = all(attack(t, ci, chunk)[1]
                   for ci, chunk in enumerate(row_chunks(rows, obj.batch_size)))
        obj.refit_info_["attack_converged"] = done
        if not done:
            warn("the penalised attack does not converge at the solution; gamma="
                 f"{obj.threat.gamma} is probably below the curvature of the loss in "
                 "the input (raise gamma or n_steps).", ConvergenceWarning)
    return res.x


def net_objective(net):
    """The :class:`~skmuter.nn.NetObjective` of a fitted ``AdversarialNet``.

    On its stored training rows, with :func:`refit_head` bound (the net's
    ``polish_max_iter``) as the refitter.
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
    )
