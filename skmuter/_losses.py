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

from ._parallel import in_parallel

__all__ = ["LogisticLoss", "SquaredLoss", "get_loss"]


#: rows of one block of the logistic terms (its temporaries stay in the
#: processor's cache)
_TERMS_BLOCK = 1 << 13

#: rows from which the logistic terms are split in two halves (two cores)
_TERMS_SPLIT = 1 << 16


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
    def terms(z, y, weights=None):
        """``(value, d1, d2)`` at once (each times ``weights`` when given),
        from one exponential: with
        ``t = y z``, ``a = |t|``, ``r = exp(-a)`` and ``q = 1 / (1 + r)``, the
        loss is ``log1p(r) + (a - t) / 2``, ``sigmoid(-t)`` is ``r q``
        (``t >= 0``) or ``q``, and the curvature is ``r q^2``.

        The choice between both is a blend with 0/1 weights (exact, and
        without the branches that make a select slow on mixed signs), and
        the rows go a block at a time through temporaries that stay in the
        processor's cache: long inputs then cost about their exponentials."""
        z = np.asarray(z, dtype=np.float64)
        y = np.broadcast_to(np.asarray(y, dtype=np.float64), z.shape)
        n = z.shape[0] if z.ndim else 1
        if z.ndim != 1:
            value, d1, d2 = LogisticLoss.terms(
                z.reshape(-1), y.reshape(-1),
                None if weights is None else np.broadcast_to(weights, z.shape).reshape(-1))
            return value.reshape(z.shape), d1.reshape(z.shape), d2.reshape(z.shape)
        value, d1, d2 = np.empty(n), np.empty(n), np.empty(n)
        if n >= _TERMS_SPLIT:  # two halves at once, on two cores where allowed
            half = n // 2
            in_parallel(lambda: _logistic_terms(z, y, weights, value, d1, d2, 0, half),
                        lambda: _logistic_terms(z, y, weights, value, d1, d2, half, n))
        else:
            _logistic_terms(z, y, weights, value, d1, d2, 0, n)
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
    def terms(cls, z, y, weights=None):
        """``(value, d1, d2)`` at once (each times ``weights`` when given)."""
        out = cls.value(z, y), cls.d1(z, y), cls.d2(z, y)
        return out if weights is None else tuple(v * weights for v in out)

    @staticmethod
    def direction(z, y, up, down):
        # Push the residual away from zero on the side where it ends larger.
        r = z - y
        return np.where(r + up >= down - r, 1.0, -1.0)


_LOSSES = {"logistic": LogisticLoss, "squared": SquaredLoss}


def get_loss(name: str):
    """Return the loss class registered under ``name``."""
    return _LOSSES[name]


def _logistic_terms(z, y, weights, value, d1, d2, start, stop):
    """:meth:`LogisticLoss.terms` of the rows ``start:stop``, written into
    ``value``, ``d1`` and ``d2``, a block of rows at a time."""
    per = min(_TERMS_BLOCK, max(stop - start, 1))
    t_, a_, r_, q_, u_, h_ = (np.empty(per) for _ in range(6))
    for s in range(start, stop, per):
        e = min(s + per, stop)
        k = e - s
        t, a, r, q, u, h = t_[:k], a_[:k], r_[:k], q_[:k], u_[:k], h_[:k]
        np.multiply(y[s:e], z[s:e], out=t)
        np.abs(t, out=a)
        np.negative(a, out=r)
        np.exp(r, out=r)
        np.add(r, 1.0, out=q)
        np.reciprocal(q, out=q)
        np.multiply(r, q, out=u)  # sigmoid(-|t|)
        np.multiply(u, q, out=d2[s:e])
        np.greater_equal(t, 0.0, out=h, casting="unsafe")
        g = d1[s:e]
        np.multiply(u, h, out=g)
        h -= 1.0
        h *= q
        g -= h  # u where t >= 0, else q
        g *= y[s:e]
        np.negative(g, out=g)
        v = value[s:e]
        np.log1p(r, out=v)
        a -= t
        a *= 0.5  # max(-t, 0)
        v += a
        if weights is not None:
            wb = weights[s:e]
            v *= wb
            g *= wb
            d2[s:e] *= wb
