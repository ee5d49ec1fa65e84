"""Certified removal (Guo, Goldstein, Hannun and van der Maaten, ICML 2020).

Objective perturbation makes a forget statistically indistinguishable from a
retrain. At fit, the training objective of each problem gains a random linear
term (in the summed form of the paper)::

    L_b(theta; D) = sum_{i in D} (l_i(theta) + alpha/2 ||w||^2) + b . theta,
    b ~ N(0, sigma^2 I).

If a forget returns parameters whose gradient residual on the remaining rows
is at most ``e'``, ``||grad L_b(theta_u; D')|| <= e'``, then ``theta_u`` is the
exact optimum of the same objective with the linear term ``b'``, ``||b' - b||
<= e'``. With ``sigma = c e' / epsilon`` and ``c = sqrt(2 log(1.5 / delta))``
the released parameters are then ``(epsilon, delta)``-indistinguishable from
the exact retrain (the paper's Theorem 3). For a given noise scale ``sigma``
that gives the *budget* ``e' = sigma epsilon / c``.

The paper bounds the residual from the data (its Corollary 1) and adds the
bounds of successive requests. skmuter computes the residual itself, the
quantity those bounds bound: one pass over the remaining rows (the same cost
as the data-dependent bound), no Lipschitz constants, and it covers every
request since the last exact solve (the forgetters linearise at the fitted
model, so the residual of the current model *is* the accumulated one). It is
checked at the end of every ``forget`` or ``partial_forget`` call, on the
parameters that call would publish. When it exceeds the budget ``on_spent``
decides. The call's last record in ``forget_log_`` gets ``proposed_residual``
(the forgetter's result), ``certified_residual`` and ``budget_spent`` (of the
published parameters), ``certified_retrain`` and ``certified_retrain_time``.

One-vs-rest problems each get their own noise and the budget
``(epsilon / K, delta / K)``, so that the ``K`` released weight vectors
together are ``(epsilon, delta)``-certified (basic composition).

Scope. The theorem needs a strongly convex objective (``alpha > 0``) whose
optimum is unique; it is stated for twice-differentiable losses. The logistic
loss with an l_2 threat or without attack meets it as stated. Under an l_inf
threat the robust objective is not differentiable where a weight is exactly
zero; there the residual is the minimal subgradient (what ``b' - b`` has to
absorb) and the certificate rests on the same argument without the paper's
smoothness assumption. The noise ``b`` is a secret of the model's owner, like
the training rows: publish ``coef_`` and ``intercept_``, not the pickled
estimator.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from ._warnings import warn

__all__ = ["CertificationError", "CertificationWarning", "CertifiedRemoval"]


def _weight_sum(objective, rows):
    """How many rows ``rows`` count for in ``objective`` (their summed weight)."""
    weight_sum = getattr(objective, "weight_sum", None)
    return len(rows) if weight_sum is None else weight_sum(rows)


class CertificationError(RuntimeError):
    """A forget would leave the model outside its certified-removal budget."""


class CertificationWarning(UserWarning):
    """The model is no longer covered by its certified-removal budget."""


class CertifiedRemoval(BaseEstimator):
    """Settings of certified removal for :class:`~skmuter.AdversarialLogisticRegression`.

    It draws each problem's secret linear term at fit (:meth:`linear_terms`)
    and owns the budget: the certificate of the fit (:meth:`certificate`) and
    the check every forget goes through before it is committed (:meth:`check`
    on :meth:`residuals`).

    Parameters
    ----------
    epsilon : float, default=1.0
        Privacy parameter of the certificate (smaller is stronger).
    delta : float, default=1e-4
        Failure probability of the certificate, in (0, 1).
    noise : float, default=1.0
        Standard deviation ``sigma`` of each coordinate of the objective's
        random linear term. Larger noise buys a larger budget (more requests
        before a retrain) at the price of accuracy.
    on_spent : {'retrain', 'raise', 'warn'}, default='retrain'
        What a forget does when the gradient residual of its result exceeds
        the budget: ``'retrain'`` re-solves the perturbed objective exactly on
        the remaining rows (the paper's recipe; the forgetter is then
        linearised afresh there), ``'raise'`` raises
        :class:`CertificationError` and leaves the estimator unchanged,
        ``'warn'`` keeps the result and warns with
        :class:`CertificationWarning`.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skmuter import AdversarialLogisticRegression
    >>> from skmuter.attacks import PGD
    >>> from skmuter.certified import CertifiedRemoval
    >>> X, y = load_digits(n_class=2, return_X_y=True)
    >>> est = AdversarialLogisticRegression(
    ...     attack=PGD(norm=2, epsilon=0.5), alpha=1e-2, random_state=0,
    ...     certified=CertifiedRemoval(epsilon=1.0, noise=1.0)).fit(X / 16, y)
    >>> est.forget([0, 1]).certificate_["spent"] < 1
    True
    """

    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention)
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "delta": [Interval(numbers.Real, 0, 1, closed="neither")],
        "noise": [Interval(numbers.Real, 0, None, closed="neither")],
        "on_spent": [StrOptions({"retrain", "raise", "warn"})],
    }

    def __init__(self, epsilon=1.0, delta=1e-4, noise=1.0, on_spent="retrain"):
        self.epsilon = epsilon
        self.delta = delta
        self.noise = noise
        self.on_spent = on_spent

    def linear_terms(self, n_problems, n_params, random_state=None):
        """Draw the secret linear term ``b ~ N(0, noise^2 I)`` of each problem.

        Parameters
        ----------
        n_problems : int
            Number of separately perturbed problems (one per one-vs-rest class).
        n_params : int
            Parameters of each problem.
        random_state : int, RandomState instance or None
            Source of the noise.

        Returns
        -------
        terms : list of ndarray of shape (n_params,)
        """
        self._validate_params()
        rng = check_random_state(random_state)
        return [rng.normal(0.0, self.noise, n_params) for _ in range(n_problems)]

    def budget(self, n_problems=1):
        """Largest gradient residual (summed objective) that keeps the certificate.

        Parameters
        ----------
        n_problems : int, default=1
            Number of separately perturbed problems sharing ``(epsilon, delta)``.

        Returns
        -------
        budget : float
            ``sigma * (epsilon / K) / sqrt(2 log(1.5 K / delta))``.
        """
        self._validate_params()
        eps = self.epsilon / n_problems
        c = np.sqrt(2.0 * np.log(1.5 * n_problems / self.delta))
        return float(self.noise * eps / c)

    @staticmethod
    def residuals(objectives, thetas, rows):
        """Gradient residual of each summed perturbed objective over ``rows``.

        This is the norm of ``grad L_b(theta; rows)``, the shift of the linear
        term that would make ``theta`` an exact optimum.

        Parameters
        ----------
        objectives : list of objectives
            One per problem, each with its linear term.
        thetas : list of ndarray
            The parameters of each problem.
        rows : ndarray of int
            The rows kept.

        Returns
        -------
        residuals : list of float
        """
        # the summed objective weighs each row by its sample weight (1 without)
        return [_weight_sum(obj, rows) * float(obj.gradient_residual(theta, rows))
                for obj, theta in zip(objectives, thetas)]

    def certificate(self, residuals, n_problems):
        """The certificate of a fit whose summed residuals are ``residuals``.

        Raises ``ValueError`` when the fit itself already exceeds the budget
        (it is not converged enough to be certified).

        Returns
        -------
        certificate : dict
            ``budget``, ``residual``, ``spent`` and ``n_retrains`` (0).
        """
        budget = self.budget(n_problems)
        if max(residuals) > budget:
            raise ValueError(
                f"the fit is not converged enough to certify removal: its gradient "
                f"residual {max(residuals):.3g} exceeds the budget {budget:.3g}. Use "
                "solver='exact', a smaller tol, or more noise."
            )
        return {"budget": budget, "residual": list(residuals),
                "spent": max(residuals) / budget, "n_retrains": 0}

    def check(self, residuals, budget):
        """Share of the budget the residuals spend; act on ``on_spent`` above 1.

        Parameters
        ----------
        residuals : list of float
            Summed gradient residuals of the parameters a forget would publish.
        budget : float
            The certificate's budget.

        Returns
        -------
        spent : float
            ``max(residuals) / budget``.
        retrain : bool
            True when the caller must re-solve exactly (``on_spent='retrain'``
            and the budget is exceeded).

        Raises
        ------
        CertificationError
            Over budget with ``on_spent='raise'``.
        """
        spent = max(residuals) / budget
        if spent <= 1.0:
            return spent, False
        message = (
            f"the forget leaves a gradient residual of {max(residuals):.3g}, "
            f"{spent:.2f} times the certified-removal budget {budget:.3g}"
        )
        if self.on_spent == "raise":
            raise CertificationError(
                message + "; nothing was changed. Refit, forget fewer rows per model, or "
                "use on_spent='retrain'."
            )
        if self.on_spent == "warn":
            warn(message + "; the model is no longer certified.", CertificationWarning)
            return spent, False
        return spent, True
