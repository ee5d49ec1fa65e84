"""Torch implementation of the :mod:`skmuter.attacks` objects.

The same :class:`~skmuter.attacks.PGD` / :class:`~skmuter.attacks.FGSM` /
:class:`~skmuter.attacks.Penalized` parameter objects drive the numpy attack
of the linear models and this one:
``attack._check(n_features)`` validates them and returns the threat model and
step, so both implementations accept and reject exactly the same settings.
Inputs are batches of any shape ``(n, *input_shape)``; the ball is taken over
the flattened input of each row.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from .._warnings import warn
from ..attacks import Penalized

__all__ = ["TorchThreat", "perturb", "start_noise"]


class TorchThreat:
    """A validated :class:`~skmuter.attacks.Threat` with its bounds as tensors.

    Parameters
    ----------
    attack : PGD or FGSM
        The attack object; validated with ``attack._check``.
    input_shape : tuple of int
        Shape of one input row.
    device, dtype : torch device and dtype of the bounds.
    """

    def __init__(self, attack, input_shape, device="cpu", dtype=torch.float32):
        n_features = int(np.prod(input_shape))
        self.threat, self.step = attack._check(n_features)
        self.n_steps = attack._n_steps()
        # Penalised attack: no ball, a price gamma on ||delta||^2 (None otherwise).
        self.gamma = attack._gamma() if isinstance(attack, Penalized) else None
        self.tol = attack._tol() if self.gamma is not None else None
        self.random_start = bool(attack.random_start)
        self.epsilon = self.threat.epsilon
        self.norm = self.threat.norm
        self.input_shape = tuple(input_shape)
        self.low = self.high = None
        if self.threat.boxed:
            def as_tensor(bound):
                t = torch.as_tensor(np.broadcast_to(bound, (n_features,)).copy(),
                                    device=device, dtype=dtype)
                return t.reshape(self.input_shape)
            self.low, self.high = as_tensor(self.threat.low), as_tensor(self.threat.high)

    @property
    def penalized(self) -> bool:
        """Whether the attack is :class:`~skmuter.attacks.Penalized` (no ball)."""
        return self.gamma is not None

    @property
    def boxed(self) -> bool:
        return self.low is not None

    def check_inside(self, X):
        """Raise ``ValueError`` when some clean input lies outside the box."""
        if not self.boxed:
            return
        tol = 1e-6
        if bool((X < self.low - tol).any()) or bool((X > self.high + tol).any()):
            raise ValueError(
                "X has values outside clip=(low, high); the attack box must contain the "
                "clean inputs (rescale X or widen clip)."
            )

    def _row_norms(self, t):
        return t.flatten(1).norm(dim=1).reshape((-1,) + (1,) * (t.dim() - 1))

    def project(self, X, delta):
        """Project perturbations onto the ball, then onto the box around ``X``."""
        if self.norm == "inf":
            delta = delta.clamp(-self.epsilon, self.epsilon)
        elif not self.penalized:
            norms = self._row_norms(delta)
            delta = delta * torch.clamp(self.epsilon / norms.clamp_min(1e-300), max=1.0)
        if self.boxed:
            # Clipping moves each coordinate towards 0, so the norm never grows.
            delta = torch.maximum(torch.minimum(X + delta, self.high), self.low) - X
        return delta

    def free_mask(self, X, delta, tol=1e-7):
        """Coordinates of ``delta`` strictly inside the l_inf ball and the box."""
        scale = 1.0 if self.penalized else max(self.epsilon, 1e-12)
        free = torch.ones_like(delta, dtype=torch.bool)
        if self.norm == "inf":
            free &= delta.abs() < self.epsilon - tol * scale
        if self.boxed:
            Xa = X + delta
            free &= (Xa > self.low + tol * scale) & (Xa < self.high - tol * scale)
        return free


def start_noise(shape, generator, device, dtype):
    """Uniform noise in [0, 1) of the given shape, drawn from ``generator``."""
    return torch.rand(shape, generator=generator, dtype=dtype, device="cpu").to(device)


def _start(threat, X, noise):
    if noise is None or not threat.random_start or threat.epsilon == 0:
        return torch.zeros_like(X)
    if threat.norm == "inf":
        delta = (2 * noise - 1) * threat.epsilon
    else:
        # A direction from the Gaussian quantiles of the noise, a radius from its
        # first coordinate: uniform in the ball.
        flat = noise.flatten(1).clamp(1e-7, 1 - 1e-7)
        direction = torch.special.ndtri(flat)
        direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-300)
        d = flat.shape[1]
        radius = threat.epsilon * flat[:, :1] ** (1.0 / d)
        delta = (direction * radius).reshape(X.shape)
    return threat.project(X, delta)


def perturb(threat, X, input_grad, noise=None, start=None, info=None):
    """Return adversarial inputs ``X + delta`` (detached) found by the attack.

    Parameters
    ----------
    threat : TorchThreat
    X : tensor of shape (n, *input_shape)
        Clean inputs (inside the box when there is one).
    input_grad : callable
        ``input_grad(X_adv)`` returns the gradient of each row's loss with
        respect to its input, same shape as ``X``.
    noise : tensor like ``X`` or None
        Uniform [0, 1) noise for the random start (ignored without one).
    start : tensor like ``X`` or None
        Penalised attack only: perturbation to start the ascent from (a warm
        start; the maximiser is unique, so only the number of steps changes).
    info : dict or None
        Penalised attack only: receives ``'converged'``; when given, the
        caller handles non-convergence and no warning is issued.

    Returns
    -------
    X_adv : tensor like ``X``
    """
    X = X.detach()
    if threat.penalized:
        return _penalized(threat, X, input_grad, start, info)
    delta = _start(threat, X, noise)
    for _ in range(threat.n_steps):
        g = input_grad(X + delta).detach()
        if threat.norm == "inf":
            move = g.sign()
        else:
            norms = threat._row_norms(g)
            move = torch.where(norms > 0, g / norms.clamp_min(1e-300), torch.zeros_like(g))
        delta = threat.project(X, delta + threat.step * move)
    return (X + delta).detach()


def _penalized(threat, X, input_grad, start=None, info=None):
    """Ascent on ``loss(x + delta) - gamma/2 ||delta||^2`` until every row settles.

    Rows stop moving once their step is below ``tol * (1 + ||delta||)``, with
    ``tol`` raised to the precision of the dtype. Without convergence in
    float64 (the objective's precision) a ``ConvergenceWarning`` says so:
    ``gamma`` is then probably below the curvature of the loss in the input.
    """
    tol = max(threat.tol, 100 * torch.finfo(X.dtype).eps)
    delta = torch.zeros_like(X) if start is None else threat.project(X, start.detach())
    converged = False
    for _ in range(threat.n_steps):
        g = input_grad(X + delta).detach()
        new = threat.project(X, delta + threat.step * (g - threat.gamma * delta))
        change = threat._row_norms(new - delta)
        delta = new
        if bool((change <= tol * (1 + threat._row_norms(delta))).all()):
            converged = True
            break
    if info is not None:
        info["converged"] = converged
    elif not converged and X.dtype == torch.float64:
        warn(f"the penalised attack did not converge in n_steps={threat.n_steps} steps; "
             f"gamma={threat.gamma} may be below the curvature of the loss in the input "
             "(raise gamma or n_steps).", ConvergenceWarning)
    return (X + delta).detach()
