"""The contract between models and forgetters.

A fitted model exposes each of its training problems as an *objective*: the
robust training objective at any parameter vector ``theta``, for any set of
training rows. Forgetters, metrics and certified removal see models only
through it, so a new model gets every forgetter and a new forgetter works on
every model.

Convention (every objective): the mean objective over ``m`` kept rows is

    J(theta) = 1/m sum_i l_i(theta) + alpha/2 ||theta_pen||^2  (+ b . theta / m)

where ``theta_pen`` are the penalised coordinates and ``b`` an optional linear
term (objective perturbation for certified removal). Sums over rows carry the
regulariser once per row: a row adds ``alpha theta_pen`` to a summed gradient
and ``alpha I`` (penalised block) to a summed curvature, so that removing rows
removes their share. Per-row sums never carry the linear term.

:class:`Objective` is the base protocol; the optional capabilities
(:class:`KinkedRows`, :class:`PinnedZeros`, :class:`HasLinearTerm`) are tested
with ``isinstance``, never by attribute names. :class:`BaseObjective` holds
what every implementation shares: chunking, the regulariser's share, the
curvature-kind dispatch and the refit hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import numpy as np

#: curvature kinds of :meth:`Objective.hessian_sum`
CURVATURE_KINDS = ("hessian", "total", "fisher", "paper")

#: points at which per-row terms are evaluated
POINTS = ("clean", "adversarial")


@runtime_checkable
class Objective(Protocol):
    """What every objective provides.

    ``rows`` are positions in the model's training set; ``cols`` restrict the
    parameter coordinates (None: all); ``points`` is ``'clean'`` or
    ``'adversarial'`` (the worst case at ``theta``).
    """

    n_params: int
    alpha: float

    def free_mask(self, theta) -> np.ndarray:
        """Coordinates a local step may move (False: pinned, e.g. l_inf zeros)."""

    def value(self, theta, rows) -> float:
        """Mean robust objective over ``rows`` (regulariser and linear term included)."""

    def grad_sum(self, theta, rows, points="adversarial", cols=None) -> np.ndarray:
        """Summed per-row gradients, regulariser share included."""

    def per_sample_grads(self, theta, rows, points="adversarial", cols=None) -> np.ndarray:
        """Per-row gradients (regulariser share included), shape ``(len(rows), p)``."""

    def hessian_sum(self, theta, rows, kind="total", points="adversarial", cols=None,
                    neumann_order=3):
        """Summed curvature of ``kind`` (see :data:`CURVATURE_KINDS`): a dense
        ndarray or a ``scipy.sparse.linalg.LinearOperator``."""

    def gradient_residual(self, theta, rows) -> float:
        """Norm of the minimal subgradient of the mean objective over ``rows``."""

    def refit(self, rows, theta0=None) -> np.ndarray:
        """The exact optimum over ``rows`` (the reference of every forgetter)."""


@runtime_checkable
class KinkedRows(Protocol):
    """Rows whose robust loss is a max of two smooth branches (squared loss).

    At an optimum a few rows sit on the kink (both worst cases tie); the exact
    local model keeps them there with a convex weight ``lam`` per row, and a
    step may move other rows onto a kink. The model's ``ties`` (the rows on a
    tie with their weights) are passed as ``ties=`` to ``grad_sum``,
    ``hessian_sum`` and ``zero_kkt_terms``, which then count a tied row as both
    branches, weighted.
    """

    def kink_model(self, theta, rows, cols=None):
        """The local kink model at ``theta`` for ``rows`` on ``cols``, or None
        where nothing can tie. It provides

        * ``ties``: the rows on a tie and their weights,
        * ``solve(objective, A, rhs, remaining, cols=None, theta=None)``: the
          exact minimiser of the piecewise-quadratic model whose quadratic part
          (every row on its branch, tied rows at their weights) is
          ``A x = rhs``, over the ``remaining`` rows (``cols``, ``theta``:
          another point and coordinates for the same rows),
        * ``purge(rows)``: erase what it keeps of forgotten rows.
        """


@runtime_checkable
class PinnedZeros(Protocol):
    """Coordinates held at zero by a non-smooth term (``eps ||w||_1`` of l_inf)."""

    def zero_kkt_terms(self, theta, rows, scols, ties=None):
        """One-sided derivatives at the zeros and their coupling to ``scols``."""


@runtime_checkable
class HasLinearTerm(Protocol):
    """An objective with a linear term ``b . theta`` (None when absent)."""

    linear_term: np.ndarray | None


def iter_chunks(rows, size: int) -> Iterator[np.ndarray | slice]:
    """Blocks of at most ``size`` rows; a run of consecutive rows comes as
    slices, so that indexing stored data gives views, not copies."""
    size = max(int(size), 1)
    rows = np.asarray(rows)
    contiguous = len(rows) > 0 and rows[-1] - rows[0] + 1 == len(rows) and (
        len(rows) == 1 or bool(np.all(np.diff(rows) == 1)))
    for start in range(0, len(rows), size):
        if contiguous:
            yield slice(int(rows[start]), int(rows[min(start + size, len(rows)) - 1]) + 1)
        else:
            yield rows[start : start + size]


class BaseObjective:
    """Shared machinery of the objectives.

    Subclasses set ``n_params`` and ``alpha``, implement the per-row maths and
    the curvature kinds as ``_curvature_<kind>(theta, rows, points, cols,
    **options)``, and may override :meth:`penalised` (default: every
    coordinate is penalised).

    Parameters
    ----------
    alpha : float
        Ridge penalty.
    refitter : callable, optional
        ``refitter(objective, rows, theta0) -> theta``: the exact solver with
        its settings bound (the objective holds no solver settings and imports
        no solver).
    refiner : callable, optional
        ``refiner(objective, theta, rows, tol, start=, max_steps=, memory=)``
        with the signature and result of :meth:`refine`: the solver's
        warm-started correction steps (None: :meth:`refine` only measures).
    linear_term : ndarray of shape (n_params,), optional
        Linear term of the objective (objective perturbation).
    """

    n_params: int

    def __init__(self, alpha: float, refitter: Callable | None = None, linear_term=None,
                 refiner: Callable | None = None):
        self.alpha = float(alpha)
        self.refitter = refitter
        self.refiner = refiner
        self.linear_term = None if linear_term is None else np.asarray(linear_term, np.float64)

    # ---- regulariser ---------------------------------------------------------
    def penalised(self, cols=None) -> np.ndarray:
        """Boolean mask over ``cols`` (all coordinates when None) of the
        penalised coordinates."""
        n = self.n_params if cols is None else len(cols)
        return np.ones(n, dtype=bool)

    def regulariser_grad(self, theta, n_rows: int, cols=None) -> np.ndarray:
        """The regulariser's share of ``n_rows`` rows in a summed gradient."""
        theta = np.asarray(theta, dtype=np.float64)
        t = theta if cols is None else theta[np.asarray(cols)]
        return n_rows * self.alpha * np.where(self.penalised(cols), t, 0.0)

    def regulariser_diag(self, n_rows: int, cols=None) -> np.ndarray:
        """Diagonal of the regulariser's share of ``n_rows`` rows in a summed curvature."""
        return n_rows * self.alpha * self.penalised(cols).astype(np.float64)

    def linear_term_on(self, cols=None) -> np.ndarray | None:
        """The linear term on ``cols`` (None when the objective has none)."""
        if self.linear_term is None:
            return None
        return self.linear_term if cols is None else self.linear_term[np.asarray(cols)]

    # ---- curvature -------------------------------------------------------------
    def hessian_sum(self, theta, rows, kind="total", points="adversarial", cols=None,
                    **options):
        """Sum over ``rows`` of the per-row curvature of ``kind``, on ``cols``.

        ``'hessian'``: ``d_ww l`` at ``points``; ``'total'``: the exact total
        Hessian of the robust loss (the worst case moving with ``theta``);
        ``'fisher'``: the empirical Fisher matrix ``sum g g^T``; ``'paper'``:
        the MUter paper's Neumann-series form (replication only). The total
        and paper kinds are always at the worst case.
        """
        if kind not in CURVATURE_KINDS:
            raise ValueError(f"unknown curvature kind {kind!r}; use one of {CURVATURE_KINDS}.")
        if points not in POINTS:
            raise ValueError(f"unknown points {points!r}; use one of {POINTS}.")
        if kind in ("total", "paper"):
            points = "adversarial"
        return getattr(self, f"_curvature_{kind}")(theta, np.asarray(rows), points, cols,
                                                  **options)

    def _curvature_paper(self, theta, rows, points, cols, **options):
        raise NotImplementedError(
            f"{type(self).__name__} has no replication of the paper's total Hessian.")

    # ---- refit -------------------------------------------------------------------
    def refit(self, rows, theta0=None) -> np.ndarray:
        """Exact optimum over ``rows`` through the bound solver."""
        if self.refitter is None:
            raise RuntimeError(f"{type(self).__name__} was built without a solver to refit.")
        return self.refitter(self, np.asarray(rows), theta0)

    # ---- verification of forgetting ----------------------------------------------
    def refine(self, theta, rows, tol, *, start=None, max_steps=20, memory=None):
        """Check ``theta`` on ``rows`` and correct it until the residual is <= ``tol``.

        The verification step of every forget: the optimality residual
        (``gradient_residual``) of the objective over the kept ``rows`` at
        the forgetter's proposal ``theta`` and, when it is above ``tol``,
        warm-started steps from there. ``start`` is the model before the
        request (a step must never make the kept rows' objective worse than
        it); ``memory`` the forgetter's curvature, a preconditioner where the
        objective can use one. ``tol=None`` only measures.

        Goes through the ``refiner`` the model bound; without one it only
        measures. Subclasses may override it.

        Returns
        -------
        theta : ndarray
            The corrected parameters.
        residual : float
            The optimality residual at ``theta``.
        n_steps : int
            Correction steps taken.
        """
        if self.refiner is not None:
            return self.refiner(self, theta, np.asarray(rows), tol, start=start,
                                max_steps=max_steps, memory=memory)
        return np.asarray(theta, dtype=np.float64), float(self.gradient_residual(theta, rows)), 0

    def distance_bound(self, theta, rows, residual, memory=None) -> float:
        """Upper estimate of ``||theta - theta_r||``, ``theta_r`` the exact
        minimiser over ``rows``, from the optimality residual at ``theta``.

        For a ``mu``-strongly convex objective every subgradient ``g`` at
        ``theta`` satisfies ``||theta - theta_r|| <= ||g|| / mu`` (strong
        monotonicity of the subdifferential: ``mu ||theta - theta_r||^2 <=
        g . (theta - theta_r)``). This default takes ``mu = alpha`` (the ridge
        term), a global bound when every coordinate is penalised; infinite
        without a ridge term. ``memory`` is the forgetter's summed curvature
        over the kept rows at ``theta`` where it has one (subclasses may use
        it for a local estimate).
        """
        if self.alpha <= 0:
            return float("inf")
        return float(residual) / self.alpha
