"""Pinned zeros: the weights a forgetting step holds at zero.

An l_inf robust objective carries a term ``eps ||w||_1`` that holds many
weights exactly at zero, as a lasso does, and a local step moves only the free
coordinates. A zero stays optimal while both one-sided derivatives of the
remaining objective at it are >= 0. :class:`Zeros` keeps those derivatives,
summed over the rows still in the model and downdated by each request, and
:meth:`Zeros.wake` frees the zeros that a step makes descend.
"""

from __future__ import annotations

import numpy as np

from .._objective import HasLinearTerm


class Zeros:
    """One-sided derivatives at the pinned zeros, summed over the kept rows.

    ``cols`` are the zero coordinates; ``gp`` and ``gm`` the derivatives in
    ``w_j+`` and ``w_j-`` (linear term included); ``Cp`` and ``Cm`` their
    coupling to the free coordinates: after a step ``s`` on those, the
    derivatives become ``gp + Cp @ s`` and ``gm - Cm @ s`` (to first order).
    """

    def __init__(self, cols, gp, gm, Cp, Cm):
        self.cols, self.gp, self.gm, self.Cp, self.Cm = cols, gp, gm, Cp, Cm

    @classmethod
    def at(cls, objective, theta, rows, free, ties_kw):
        """The zeros of ``theta`` over ``rows``, coupled to the coordinates ``free``."""
        zcols, gp, gm, Cp, Cm = objective.zero_kkt_terms(theta, rows, free, **ties_kw)
        b = objective.linear_term if isinstance(objective, HasLinearTerm) else None
        if b is not None:
            # the objective's linear term stays with the zeros' derivatives
            gp, gm = gp + b[zcols], gm - b[zcols]
        return cls(zcols, gp, gm, Cp, Cm)

    def without(self, objective, theta, removed, free, ties_kw):
        """The zeros once the rows ``removed`` are taken out (a new object)."""
        _, rp, rm, rCp, rCm = objective.zero_kkt_terms(theta, removed, free, **ties_kw)
        return Zeros(self.cols, self.gp - rp, self.gm - rm, self.Cp - rCp, self.Cm - rCm)

    def wake(self, objective, theta, free, step, rhs, remaining, n_after, resolve, ties_kw):
        """Check the zeros after ``step`` (on ``free``); let those that would descend move.

        The objective is non-differentiable at ``w_j = 0``. When the step makes
        a one-sided derivative negative, that weight leaves zero on that side:
        the step is solved again with it free, by ``resolve(probe, cols, b)``
        (the system over the ``remaining`` rows at ``probe`` on ``cols``),
        until the woken weights keep their sides. Returns ``(cols, step)``.
        """
        zcols, gp, gm, Cp, Cm = self.cols, self.gp, self.gm, self.Cp, self.Cm
        tol = 1e-9 * max(n_after, 1)
        up = gp + Cp @ step
        down = gm - Cm @ step
        viol = np.maximum(-up, -down)
        woken = viol > tol
        if not woken.any():
            return free, step
        orient = np.where(-up >= -down, 1.0, -1.0)
        cols, new = free, step
        for _ in range(20):
            wcols = zcols[woken]
            sides = orient[woken]
            cols = np.union1d(free, wcols)
            probe = theta.copy()
            probe[wcols] = sides * 1e-300
            b = np.zeros(len(cols))
            b[np.searchsorted(cols, free)] = rhs
            b[np.searchsorted(cols, wcols)] = np.where(sides > 0, -gp[woken], gm[woken])
            new = resolve(probe, cols, b)
            wrong = sides * new[np.searchsorted(cols, wcols)] <= 0
            if wrong.any():
                woken[np.flatnonzero(woken)[wrong]] = False
                if not woken.any():
                    return free, step
                continue
            # the woken weights moved the rest: check the other zeros again, with
            # their coupling to the enlarged set computed over the remaining rows
            zc2, _, _, Cp2, Cm2 = objective.zero_kkt_terms(probe, remaining, cols, **ties_kw)
            rest = np.flatnonzero(~woken)
            pos = np.searchsorted(zc2, zcols[rest])
            up = gp[rest] + Cp2[pos] @ new
            down = gm[rest] - Cm2[pos] @ new
            more = np.maximum(-up, -down) > tol
            if not more.any():
                return cols, new
            woken[rest[more]] = True
            orient[rest[more]] = np.where(-up[more] >= -down[more], 1.0, -1.0)
        return cols, new
