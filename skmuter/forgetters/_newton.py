"""Newton-type forgetters: MUter and its comparators (Newton, Influence, Fisher).

All of them take one Newton-type step from the point their state is based at:

    A dtheta = G,   theta_u = theta_0 + dtheta,

where ``G`` is the removed rows' summed gradient at ``theta_0`` plus what is
left of the kept rows' gradient there, and ``A`` a curvature matrix summed
over rows. By default (``linearization='published'``) the estimator rebases
the state at every published model (:meth:`Forgetter.rebase`), after checking
the result; with ``linearization='fitted'`` everything stays linearised at the
fitted ``theta*`` (the MUter paper's Algorithm 1), so ``forget(A + B)`` and
``forget(A)`` then ``forget(B)`` give the same parameters for every forgetter
except Influence, whose matrix depends on the request order.

Dense objectives (linear models) keep the memory ``M_r`` (curvature of the
rows still in the model) as a matrix: a request subtracts its rows'
curvature. Matrix-free objectives (networks) rebuild the operator over the
remaining rows and solve by conjugate gradients, except a large linear head,
whose curvature keeps its own factors (:class:`FactoredCurvature`): built once,
downdated per request, solved by preconditioned conjugate gradients. With the exact total Hessian
the step also respects the objective's non-smooth parts, through its
capabilities: the rows on a kink (:mod:`skmuter.linear._kinks`) and the pinned
zeros (:mod:`skmuter.forgetters._zeros`). The paper's own form lives in
:mod:`skmuter.forgetters._paper`.
"""

from __future__ import annotations

import time
from numbers import Integral, Real
from typing import Protocol, runtime_checkable

import numpy as np
from scipy.sparse.linalg import LinearOperator
from sklearn.utils._param_validation import Interval, StrOptions

from .._linalg import solve_dense, solve_operator
from .._objective import KinkedRows, PinnedZeros
from ._base import Forgetter
from ._paper import PaperForm
from ._zeros import Zeros

_DAMPING = [Interval(Real, 0, None, closed="left")]


@runtime_checkable
class FactoredCurvature(Protocol):
    """A matrix-free curvature that keeps its own factors (a network's large head,
    :class:`skmuter.nn._kron.HeadCurvature`): the forgetter's memory is built
    once and downdated per request instead of rebuilt over the kept rows."""

    def without(self, rows):
        """The curvature without the terms of ``rows``."""

    def shifted(self, lam):
        """The curvature plus ``lam`` on the diagonal."""

    def solve(self, rhs):
        """``(x, info)`` with ``A x = rhs`` (preconditioned CG; ``info`` records it)."""


def _n_rows(objective, rows):
    """How many rows ``rows`` count for: their summed sample weight where the
    objective has weights (damping is per unit of weight), else their number."""
    weight_sum = getattr(objective, "weight_sum", None)
    return len(rows) if weight_sum is None else weight_sum(rows)


class _NewtonType(Forgetter):
    """The Newton step; subclasses fix the curvature kind, the points and the support.

    State after :meth:`prepare`: ``theta0_`` (the point it is based at: the
    published model, or the fitted one with ``linearization='fitted'``),
    ``cols_`` (the coordinates the step moves), ``grad_`` (minus the kept
    rows' gradient at ``theta0_``, plus the removed rows' so far when fitted),
    ``memory_`` (dense curvature of the kept rows, a :class:`FactoredCurvature`
    for a network's large head, or None for other matrix-free objectives),
    ``n_remaining_``, ``solve_info_`` (after a request with a
    :class:`FactoredCurvature`: its preconditioned CG's tolerance, iterations
    and final residual, also returned with the timings), and with the exact total
    Hessian ``kinks_`` (the objective's kink model) and ``zeros_``
    (:class:`~._zeros.Zeros`), None when the objective has none.
    """

    _kind = "hessian"
    _exclude_request = True  # False: Influence (matrix before this request)

    # ---- configuration hooks -------------------------------------------
    def _points(self):
        return "adversarial"

    def _paper(self):
        """The paper's Neumann/CG form when this forgetter replicates it, else None."""

    def _curvature_kind(self):
        paper = self._paper()
        return self._kind if paper is None else paper.kind

    def _restrict(self):
        # 'auto' restricts; the paper's form never does
        return self._paper() is None and bool(self.support)

    # ---- life cycle -------------------------------------------------------
    @property
    def rebases(self):
        return getattr(self, "linearization", "published") == "published"

    def prepare(self, objective, theta, rows):
        self._validate_params()
        theta = np.asarray(theta, dtype=np.float64)
        self.theta0_ = theta.copy()
        self._model_grad = None
        if self._restrict():
            self.cols_ = np.flatnonzero(objective.free_mask(theta))
        else:
            self.cols_ = np.arange(objective.n_params)
        self.n_remaining_ = _n_rows(objective, rows)
        self.kinks_ = self.zeros_ = None
        if self._curvature_kind() == "total":
            # Rows on a kink of the robust loss (squared loss: both worst cases
            # tie) stay on it under the exact total Hessian.
            if isinstance(objective, KinkedRows):
                self.kinks_ = objective.kink_model(self.theta0_, rows, self.cols_)
            if (not self.rebases and isinstance(objective, PinnedZeros)
                    and len(self.cols_) < objective.n_params):
                # Algorithm 1 keeps the zeros' one-sided derivatives at the
                # fitted point; a rebased forgetter leaves support changes to
                # the estimator's check (forget_tol), which sees them exactly.
                self.zeros_ = Zeros.at(objective, theta, rows, self.cols_, self._ties_kw())
        smooth = bool(np.all(objective.free_mask(theta)[self.cols_]))
        both = getattr(objective, "grad_hessian_sum", None)
        g = None
        if (self.rebases and smooth and both is not None and self._points() == "adversarial"
                and self._curvature_kind() in ("hessian", "total")):
            g, M = both(self.theta0_, rows, kind=self._curvature_kind(), points="adversarial",
                        cols=self.cols_, **self._ties_kw())
        else:
            M = self._curvature(objective, rows)
        if self.rebases:
            # Minus the kept rows' summed (sub)gradient of the objective itself,
            # whatever points the step's own terms use: zero at an exact
            # optimum, so the next step also corrects what is left of it. On
            # pinned zeros (a step over all coordinates of an l_inf model) it
            # is the minimal subgradient's share, 0 where the zero is optimal.
            minimal = getattr(objective, "minimal_subgradient", None)
            if not smooth and minimal is not None:
                m = _n_rows(objective, rows)
                self.grad_ = -m * minimal(theta, rows, **self._ties_kw())[self.cols_]
            else:
                if g is None:
                    g = objective.grad_sum(self.theta0_, rows, points="adversarial",
                                           cols=self.cols_, **self._ties_kw())
                linear = objective.linear_term_on(self.cols_)
                self.grad_ = -(g if linear is None else g + linear)
        else:
            self.grad_ = np.zeros(len(self.cols_))
        self.dense_ = isinstance(M, np.ndarray)
        self.memory_ = M if self.dense_ or isinstance(M, FactoredCurvature) else None
        return self

    @property
    def needs_rows(self):
        """Whether a request reads the kept rows (matrix-free curvature other
        than a :class:`FactoredCurvature`, the rows on a kink, the pinned
        zeros), not only the removed ones."""
        downdated = getattr(self, "dense_", False) or isinstance(
            getattr(self, "memory_", None), FactoredCurvature)
        return not (downdated and self.kinks_ is None and self.zeros_ is None)

    def advance(self, objective, theta):
        """Base the state at the published ``theta`` without a pass over the
        rows: the gradient there is the one the step's quadratic model
        predicts, the memory is the kept rows' curvature as downdated. Returns
        None where the model does not carry over (the rows on a kink, pinned
        zeros, matrix-free curvature other than a :class:`FactoredCurvature`): the estimator then rebases with a pass,
        or keeps the state where it is when it keeps no rows."""
        if not self.rebases:
            return self
        model_grad = getattr(self, "_model_grad", None)
        if model_grad is None:
            return None
        self.theta0_ = np.array(theta, dtype=np.float64)
        self.grad_ = model_grad
        self._model_grad = None
        return self

    def _ties_kw(self):
        return {} if self.kinks_ is None else {"ties": self.kinks_.ties}

    def _curvature(self, objective, rows):
        paper = self._paper()
        options = {} if paper is None else paper.curvature_options()
        return objective.hessian_sum(
            self.theta0_, rows, kind=self._curvature_kind(), points=self._points(),
            cols=self.cols_, **options, **self._ties_kw(),
        )

    def _gradient(self, objective, rows):
        return objective.grad_sum(self.theta0_, rows, points=self._points(), cols=self.cols_,
                                  **self._ties_kw())

    def _damped(self, A, n_rows):
        lam = self.damping * n_rows
        if lam == 0:
            return A
        if isinstance(A, FactoredCurvature):
            return A.shifted(lam)
        if isinstance(A, np.ndarray):
            return A + lam * np.eye(A.shape[0])
        return LinearOperator(A.shape, matvec=lambda v: A.matvec(v) + lam * v, dtype=A.dtype)

    def _solve(self, objective, A, rhs, remaining):
        paper = self._paper()
        if paper is not None:
            return paper.solve(A, rhs)
        if not isinstance(A, np.ndarray) and isinstance(A, FactoredCurvature):
            step, self.solve_info_ = A.solve(rhs)
            return step
        if not isinstance(A, np.ndarray):
            return solve_operator(A, rhs)
        if self.kinks_ is not None:
            return self.kinks_.solve(objective, A, rhs, remaining)
        return solve_dense(A, rhs)[0]

    def forget(self, objective, removed, remaining):
        t0 = time.perf_counter()
        g = self._gradient(objective, removed)
        n_after = self.n_remaining_ - _n_rows(objective, removed)
        factored = isinstance(self.memory_, FactoredCurvature)
        self.solve_info_ = None
        if self.dense_:
            memory_after = self.memory_ - self._curvature(objective, removed)
            A = memory_after if self._exclude_request else self.memory_
        elif factored:
            memory_after = self.memory_.without(removed)
            A = memory_after if self._exclude_request else self.memory_
        else:
            A = self._curvature(objective, remaining if self._exclude_request else
                                np.concatenate([remaining, removed]))
        A = self._damped(A, n_after if self._exclude_request else self.n_remaining_)
        t1 = time.perf_counter()
        rhs = self.grad_ + g
        step = self._solve(objective, A, rhs, remaining)
        theta = self.theta0_.copy()
        cols, zeros_after = self.cols_, None
        if self.zeros_ is not None:
            ties = self._ties_kw()
            zeros_after = self.zeros_.without(objective, self.theta0_, removed, self.cols_, ties)

            def resolve(probe, cols, b):
                A = self._damped(objective.hessian_sum(probe, remaining, kind="total",
                                                       cols=cols, **ties), n_after)
                if self.kinks_ is not None:
                    return self.kinks_.solve(objective, A, b, remaining, cols, probe)
                return solve_dense(A, b)[0]

            cols, step = zeros_after.wake(objective, self.theta0_, self.cols_, step, rhs,
                                          remaining, n_after, resolve, ties)
        theta[cols] += step
        # minus the kept rows' gradient at theta that the quadratic model
        # predicts (0 for a plain Newton step): what advance() bases on
        self._model_grad = None
        if (self.dense_ or factored) and zeros_after is None and self.kinks_ is None:
            self._model_grad = rhs - memory_after @ step
        t2 = time.perf_counter()
        if self.dense_ or factored:
            self.memory_ = memory_after
        if zeros_after is not None:
            self.zeros_ = zeros_after
        if self.kinks_ is not None:
            self.kinks_.purge(removed)  # nothing of a forgotten row stays here
        self.grad_ = rhs
        self.n_remaining_ = n_after
        t3 = time.perf_counter()
        timing = {"update_time": (t1 - t0) + (t3 - t2), "solve_time": t2 - t1}
        if self.solve_info_ is not None:
            timing["solve_info"] = self.solve_info_
        return theta, timing


class MUter(_NewtonType):
    """MUter: unlearning with the total Hessian of the adversarial objective.

    The total Hessian ``D_i = d_ww l - d_wdelta l (d_deltadelta l)^-1 d_deltaw l``
    accounts for the worst-case perturbation moving when the parameters move.
    By default (``total_hessian='exact'``) it is computed exactly: for linear
    models with an l_inf threat the worst case is piecewise constant in ``w``,
    so ``D_i`` is ``d_ww l`` at the worst-case point and the step is taken on
    the support of ``w`` only (the robust model is sparse, its zeros stay
    put); for l_2 it adds the curvature of the moving perturbation on its
    free coordinates. The memory (sum of ``D_i`` over the rows still in the
    model) is built once and downdated by each request.

    Parameters
    ----------
    total_hessian : {'exact', 'paper'}, default='exact'
        ``'paper'`` replicates the MUter paper's code: ``(d_deltadelta l)^-1``
        replaced by a Neumann series of order ``neumann_order`` and the system
        solved by ``cg_iter`` conjugate-gradient iterations, over all
        coordinates. On linear models ``d_deltadelta l`` is rank one and the
        series diverges: use it only to reproduce the paper.
    support : {'auto', True, False}, default='auto'
        Restrict the step to the coordinates the objective reports as free
        (the non-zero weights of an l_inf model, and the intercept).
        ``'auto'`` is ``True`` for ``'exact'``; ``'paper'`` never restricts.
    neumann_order : int, default=3
        Order ``k`` of the Neumann series (``'paper'`` only).
    cg_iter : int, default=10
        CG iterations (``'paper'`` only).
    damping : float, default=0.0
        Added to the diagonal, per remaining row (in units of the mean objective).
    linearization : {'published', 'fitted'}, default='published'
        Where the step is linearised. ``'published'``: after every request
        the state is rebuilt at the parameters just published, over the kept
        rows (the memory, and the gradient there, which is not exactly zero),
        so the next request corrects earlier error and nothing computed at a
        point fitted on forgotten rows is kept. ``'fitted'``: the MUter
        paper's Algorithm 1, everything linearised once at the fitted point:
        the state keeps the fitted parameters ``theta0_`` and the summed
        gradients of all removed rows there (so it still holds what the
        forgotten rows taught the model), and its error grows with the
        number of requests; for replication.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmuter import AdversarialLogisticRegression
    >>> from skmuter.attacks import PGD
    >>> from skmuter.forgetters import MUter
    >>> X, y = load_digits(n_class=2, return_X_y=True)
    >>> est = AdversarialLogisticRegression(attack=PGD(epsilon=0.5), alpha=1e-2,
    ...                                     forgetter=MUter()).fit(X / 16, y)
    >>> est.forget([0, 5]).forgotten_
    array([0, 5])
    """

    name = "muter"
    _kind = "total"
    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention)
        "total_hessian": [StrOptions({"exact", "paper"})],
        "support": [StrOptions({"auto"}), "boolean"],
        "neumann_order": [Interval(Integral, 0, None, closed="left")],
        "cg_iter": [Interval(Integral, 0, None, closed="left")],
        "damping": _DAMPING,
        "linearization": [StrOptions({"published", "fitted"})],
    }

    def __init__(self, total_hessian="exact", support="auto", neumann_order=3, cg_iter=10,
                 damping=0.0, linearization="published"):
        self.total_hessian = total_hessian
        self.support = support
        self.neumann_order = neumann_order
        self.cg_iter = cg_iter
        self.damping = damping
        self.linearization = linearization

    def _paper(self):
        if self.total_hessian == "paper":
            return PaperForm(self.neumann_order, self.cg_iter)
        return None

    def label(self):
        return "muter-paper" if self.total_hessian == "paper" else "muter"


class Newton(_NewtonType):
    """Newton step with the Hessian of the loss over the remaining rows.

    Parameters
    ----------
    adversarial : bool, default=False
        ``True`` evaluates at the worst-case points ``x + delta(w*)`` (the
        paper's "Newton-delta"); ``False`` at the clean inputs.
    support : bool, default=False
        Restrict the step to the free coordinates (see :class:`MUter`).
    damping : float, default=0.0
        Added to the diagonal, per remaining row.
    linearization : {'published', 'fitted'}, default='published'
        See :class:`MUter`.

    Notes
    -----
    For a linear model with an l_inf threat, ``Newton(adversarial=True,
    support=True)`` is exactly the default :class:`MUter`.
    """

    name = "newton"
    _kind = "hessian"
    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention)
        "adversarial": ["boolean"],
        "support": ["boolean"],
        "damping": _DAMPING,
        "linearization": [StrOptions({"published", "fitted"})],
    }

    def __init__(self, adversarial=False, support=False, damping=0.0,
                 linearization="published"):
        self.adversarial = adversarial
        self.support = support
        self.damping = damping
        self.linearization = linearization

    def _points(self):
        return "adversarial" if self.adversarial else "clean"

    def label(self):
        return self.name + ("-delta" if self.adversarial else "")


class Influence(Newton):
    """Influence-function step: the Hessian over every row still in the model
    *before* the request (the removed rows not yet subtracted).

    Parameters
    ----------
    adversarial : bool, default=False
        Worst-case points (``'influence-delta'``) or clean inputs.
    support : bool, default=False
        Restrict the step to the free coordinates.
    damping : float, default=0.0
        Added to the diagonal, per row.
    linearization : {'published', 'fitted'}, default='published'
        See :class:`MUter`.
    """

    name = "influence"
    _exclude_request = False


class Fisher(Newton):
    """Step with the empirical Fisher matrix ``sum g_i g_i^T`` of the remaining rows.

    Parameters
    ----------
    adversarial : bool, default=False
        Worst-case points (``'fisher-delta'``) or clean inputs.
    support : bool, default=False
        Restrict the step to the free coordinates.
    damping : float, default=1e-4
        Added to the diagonal, per remaining row; the Fisher matrix is rank
        deficient in directions no gradient spans.
    linearization : {'published', 'fitted'}, default='published'
        See :class:`MUter`.
    """

    name = "fisher"
    _kind = "fisher"

    def __init__(self, adversarial=False, support=False, damping=1e-4,
                 linearization="published"):
        super().__init__(adversarial=adversarial, support=support, damping=damping,
                         linearization=linearization)
