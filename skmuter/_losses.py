"""Per-sample losses of a linear score ``z = w . x + b``.

This module is the single source of the loss values and of their first and
second derivatives with respect to the score. Fitting, attacks, forgetting and
metrics all go through it, so that no derivative is written twice.

Each loss also says in which direction an adversary should move the score:
``direction(z, y, up, down)`` returns ``s`` in {-1, +1} such that the worst
case reachable score is ``z + s * shift``, where ``up`` (``down``) is how far
the adversary can push the score up (down).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit

__all__ = ["LogisticLoss", "SquaredLoss", "get_loss"]


class LogisticLoss:
    """Logistic loss ``log(1 + exp(-y z))`` for labels ``y`` in {-1, +1}."""

    name = "logistic"

    @staticmethod
    def value(z, y):
        return -log_expit(y * z)

    @staticmethod
    def d1(z, y):
        # d/dz log(1 + exp(-y z)) = -y * sigmoid(-y z)
        return -y * expit(-y * z)

    @staticmethod
    def d2(z, y):
        p = expit(y * z)
        return p * (1.0 - p)

    @staticmethod
    def terms(z, y):
        """``(value, d1, d2)`` at once, from one exponential: with
        ``t = y z`` and ``r = exp(-|t|)`` the loss is ``max(-t, 0) + log1p(r)``,
        ``sigmoid(-t)`` is ``r / (1 + r)`` (``t >= 0``) or ``1 / (1 + r)``,
        and the curvature is ``r / (1 + r)^2``."""
        t = y * z
        r = np.abs(t)
        np.negative(r, out=r)
        np.exp(r, out=r)
        opp = 1.0 + r
        d1 = np.where(t >= 0, r, 1.0)
        d1 /= opp
        d1 *= -y
        d2 = r / opp
        d2 /= opp
        value = np.log1p(r)
        value += np.maximum(-t, 0.0)
        return value, d1, d2

    @staticmethod
    def direction(z, y, up, down):
        # The loss decreases in y*z, so the adversary always pushes against y.
        return -np.sign(y).astype(np.float64)


class SquaredLoss:
    """Squared loss ``(z - y)^2 / 2``."""

    name = "squared"

    @staticmethod
    def value(z, y):
        r = z - y
        return 0.5 * r * r

    @staticmethod
    def d1(z, y):
        return z - y

    @staticmethod
    def d2(z, y):
        return np.ones_like(np.asarray(z, dtype=np.float64))

    @classmethod
    def terms(cls, z, y):
        """``(value, d1, d2)`` at once."""
        return cls.value(z, y), cls.d1(z, y), cls.d2(z, y)

    @staticmethod
    def direction(z, y, up, down):
        # Push the residual away from zero on the side where it ends larger.
        r = z - y
        return np.where(r + up >= down - r, 1.0, -1.0)


_LOSSES = {"logistic": LogisticLoss, "squared": SquaredLoss}


def get_loss(name: str):
    """Return the loss class registered under ``name``."""
    return _LOSSES[name]
