"""The forgetter interface.

A forgetter never knows which model it serves. It sees an *objective*, the
contract of :mod:`skmuter._objective`: at any parameter vector ``theta`` and
for any set of training rows, summed gradients and curvatures (dense or
matrix-free), the coordinates a local step may move, and the exact refit; and,
tested with ``isinstance``, the optional capabilities (rows on a kink, pinned
zeros, a linear term) that an exact step must respect. A forgetter takes the
objective as it is given and returns new parameters. Its life cycle:

``prepare(objective, theta, rows)``
    Once, before the first request (the paper's Stage I): build the memory
    at the fitted point ``theta`` over the training ``rows``.
``rebase(objective, theta, rows)``
    After each request, once the estimator has checked (and corrected) the
    result: returns the state to use for the next request, based at the
    published parameters ``theta`` over the kept ``rows`` (by default a fresh
    :meth:`prepare` there), so that it holds nothing computed from the
    forgotten rows and the next request corrects any earlier error. A
    forgetter replicating the paper's Algorithm 1 (everything linearised at
    the fitted point) returns itself unchanged (``rebases = False``).
``forget(objective, removed, remaining)``
    One request (Stage II and III): returns ``(theta_new, timings)`` where
    ``timings`` has ``'solve_time'`` and ``'update_time'`` in seconds, and
    updates the memory in place. The estimator calls it on a copy of the
    forgetter and keeps the copy only when every request succeeded, so a
    failing request leaves nothing behind.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator

from .._transaction import CachedParamNames


class Forgetter(CachedParamNames, BaseEstimator):
    """Base class of the forgetters (cloneable parameter objects)."""

    #: short name used in logs and tables
    name = "forgetter"

    def prepare(self, objective, theta, rows):  # pragma: no cover - interface
        raise NotImplementedError

    def forget(self, objective, removed, remaining):  # pragma: no cover - interface
        raise NotImplementedError

    #: whether :meth:`rebase` re-linearises at the published parameters
    rebases = True

    def rebase(self, objective, theta, rows):
        """The state for the next request, based at ``theta`` over ``rows``."""
        return self.prepare(objective, theta, rows) if self.rebases else self

    #: whether a request reads the kept rows (else only the removed ones)
    needs_rows = True

    def advance(self, objective, theta):
        """The state for the next request based at ``theta`` without reading
        the rows, or None where that is not possible (see
        :meth:`skmuter.forgetters.MUter.advance`)."""
        return self if not self.rebases else None

    def label(self) -> str:
        """Name for logs and tables, e.g. ``'newton-delta'``."""
        return self.name
