"""Adversarial attacks: cloneable parameter objects and the threat model.

* :class:`PGD`, :class:`FGSM` and :class:`Penalized` are cloneable parameter
  objects in the scikit-learn sense: they store a threat model (``epsilon``,
  ``norm``, ``clip``) and an iterative recipe. Passed as the ``attack``
  parameter of an estimator, their parameters are reachable as
  ``attack__epsilon`` in a grid search. :meth:`PGD.perturb` runs the attack on
  any model that supplies the gradient of its loss with respect to the input.
* :class:`Threat` is the validated threat model (``epsilon``, ``norm``,
  ``clip``), with the membership check and projection every attack uses. The
  exact worst case of a linear model over it lives with the linear models
  (``skmuter.linear._worst_case``).
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Hidden,
    Interval,
    Options,
    validate_parameter_constraints,
)

__all__ = ["FGSM", "PGD", "Penalized", "Threat", "resolve_attack"]

DEFAULT_EPSILON = 0.1


def _parse_norm(norm):
    if isinstance(norm, str):
        key = norm.lower()
        if key in ("inf", "linf", "l_inf"):
            return "inf"
        if key in ("2", "l2", "l_2"):
            return 2
    elif isinstance(norm, Real) and not isinstance(norm, bool):
        if np.isinf(norm):
            return "inf"
        if norm == 2:
            return 2
    raise ValueError(f"norm must be 'inf' or 2, got {norm!r}.")


class _NotBool(Interval):
    """An :class:`~sklearn.utils._param_validation.Interval` refusing booleans
    (``True`` is no radius, price or count)."""

    def is_satisfied_by(self, val):
        return not isinstance(val, bool) and super().is_satisfied_by(val)


class _Norm(Options):
    """The ball's norm: ``'inf'`` or 2, in any of the spellings of :func:`_parse_norm`."""

    def __init__(self):
        super().__init__(object, {"inf", 2})

    def is_satisfied_by(self, val):
        try:
            _parse_norm(val)
        except ValueError:
            return False
        return True

    def __str__(self):
        return "'inf' or 2 (also 'linf', 'l_inf', numpy.inf, 'l2', 'l_2')"


#: constraints shared by the attacks and :class:`Threat`
_RADIUS = _NotBool(Real, 0, None, closed="left")  # finite, >= 0
_POSITIVE = _NotBool(Real, 0, None, closed="neither")  # finite, > 0
_NORM = _Norm()
_CLIP = [None, "array-like"]  # a pair (low, high): checked by Threat


class _Attack(BaseEstimator):
    """Shared validation and projection of the attacks.

    Parameters are checked against ``_parameter_constraints`` when the attack
    is used (:meth:`_check`); what depends on the data (per-feature ``clip``
    bounds, inputs inside the box) and on two parameters together
    (``step_size <= epsilon``) is checked there too.
    """

    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention)
        "epsilon": [_RADIUS],
        "norm": [_NORM],
        # a zero step leaves the inputs where they are: no attack at all
        "step_size": [None, _POSITIVE],
        "n_steps": [_NotBool(Integral, 1, None, closed="left")],
        "random_start": ["boolean", Hidden(Options(Integral, {0, 1}))],
        "clip": _CLIP,
        "random_state": ["random_state"],
    }

    def _step_size(self) -> float:
        raise NotImplementedError

    def threat(self, n_features: int | None = None) -> Threat:
        """Return the validated :class:`Threat` of this attack.

        Parameters
        ----------
        n_features : int, optional
            Number of input features, used to check per-feature ``clip`` bounds.
        """
        return Threat(self.epsilon, self.norm, self.clip, n_features)

    def _check(self, n_features):
        """Validate the parameters; return the :class:`Threat` and the step size."""
        self._validate_params()
        threat = self.threat(n_features)
        step = self._step_size()
        if step > threat.epsilon * (1 + 1e-12) and threat.epsilon > 0:
            raise ValueError(
                f"step_size={step!r} is larger than epsilon={threat.epsilon!r}; "
                "a step larger than the ball only overshoots."
            )
        return threat, step

    def _start(self, X, threat, rng):
        if not self.random_start or threat.epsilon == 0:
            return np.zeros_like(X)
        if threat.norm == "inf":
            delta = rng.uniform(-threat.epsilon, threat.epsilon, size=X.shape)
        else:
            direction = rng.standard_normal(X.shape)
            direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-300)
            radius = threat.epsilon * rng.uniform(size=(X.shape[0], 1)) ** (1.0 / X.shape[1])
            delta = direction * radius
        return threat.project(X, delta)

    def _ascend(self, X, y, delta, input_grad, threat, step):
        g = np.asarray(input_grad(X + delta, y), dtype=np.float64)
        if threat.norm == "inf":
            move = np.sign(g)
        else:
            norms = np.linalg.norm(g, axis=1, keepdims=True)
            move = np.divide(g, norms, out=np.zeros_like(g), where=norms > 0)
        return threat.project(X, delta + step * move)

    def _settled(self, delta, new):
        """Whether the ascent may stop early (never for a fixed number of steps)."""
        return False

    def perturb(self, X, y, input_grad):
        """Return adversarial inputs ``X + delta`` found by the attack.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Clean inputs (inside ``clip`` when it is set).
        y : ndarray of shape (n_samples,)
            Targets, passed through to ``input_grad``.
        input_grad : callable
            ``input_grad(X_adv, y)`` returns the gradient of each sample's loss
            with respect to its input, shape ``(n_samples, n_features)``.

        Returns
        -------
        X_adv : ndarray of shape (n_samples, n_features)
        """
        X = np.asarray(X, dtype=np.float64)
        threat, step = self._check(X.shape[1])
        return self._run(X, y, input_grad, threat, step)

    def _run(self, X, y, input_grad, threat, step):
        """:meth:`perturb` with the parameters validated already (``threat, step =
        self._check(n_features)``): a training loop checks them once, not per batch."""
        X = np.asarray(X, dtype=np.float64)
        threat.check_inside(X)
        rng = check_random_state(self.random_state)
        delta = self._start(X, threat, rng)
        for _ in range(self._n_steps()):
            new = self._ascend(X, y, delta, input_grad, threat, step)
            settled = self._settled(delta, new)
            delta = new
            if settled:
                break
        return X + delta


class PGD(_Attack):
    """Projected gradient descent attack (Madry et al., 2018).

    Parameters
    ----------
    epsilon : float
        Radius of the perturbation ball.
    norm : {'inf', 2}, default='inf'
        Norm of the ball.
    step_size : float, default=None
        Step of each iteration, ``> 0``; ``None`` means ``min(epsilon, 2.5 * epsilon /
        n_steps)``. Must not exceed ``epsilon``.
    n_steps : int, default=10
        Number of ascent steps.
    random_start : bool, default=True
        Start from a uniformly random point of the ball.
    clip : None or (low, high), default=None
        Bounds of the input domain, scalars or per-feature arrays. ``None``
        means unbounded inputs (tabular data); images use ``(0, 1)``.
    random_state : int, RandomState instance or None, default=None
        Seed of the random start.

    Examples
    --------
    >>> import numpy as np
    >>> from skmuter.attacks import PGD
    >>> attack = PGD(epsilon=0.1, clip=(0, 1), random_state=0)
    >>> X = np.full((2, 3), 0.5); y = np.array([1.0, -1.0])
    >>> w = np.array([1.0, -2.0, 0.5])
    >>> X_adv = attack.perturb(X, y, lambda Xa, ya: -ya[:, None] * w)
    >>> np.round(X_adv - X, 3)
    array([[-0.1,  0.1, -0.1],
           [ 0.1, -0.1,  0.1]])
    """

    def __init__(
        self,
        epsilon=DEFAULT_EPSILON,
        norm="inf",
        step_size=None,
        n_steps=10,
        random_start=True,
        clip=None,
        random_state=None,
    ):
        self.epsilon = epsilon
        self.norm = norm
        self.step_size = step_size
        self.n_steps = n_steps
        self.random_start = random_start
        self.clip = clip
        self.random_state = random_state

    def _n_steps(self):
        return int(self.n_steps)

    def _step_size(self):
        if self.step_size is None:
            return min(float(self.epsilon), 2.5 * float(self.epsilon) / self._n_steps())
        return float(self.step_size)


class FGSM(_Attack):
    """Fast gradient sign method (Goodfellow et al., 2015): one step.

    With ``random_start=True`` it is the "FGSM with random start" of Wong et
    al. (2020), the variant the MUter paper calls FGSM.

    Parameters
    ----------
    epsilon : float
        Radius of the perturbation ball.
    norm : {'inf', 2}, default='inf'
        Norm of the ball (for 2 the step follows the normalised gradient).
    clip : None or (low, high), default=None
        Bounds of the input domain, scalars or per-feature arrays.
    random_start : bool, default=False
        Start from a uniformly random point of the ball.
    step_size : float, default=None
        Size of the single step, ``> 0``; ``None`` means ``epsilon``. Must not
        exceed ``epsilon``.
    random_state : int, RandomState instance or None, default=None
        Seed of the random start.

    Examples
    --------
    >>> import numpy as np
    >>> from skmuter.attacks import FGSM
    >>> X = np.zeros((1, 2)); y = np.array([1.0])
    >>> FGSM(epsilon=0.5).perturb(X, y, lambda Xa, ya: np.array([[2.0, -1.0]]))
    array([[ 0.5, -0.5]])
    """

    def __init__(
        self,
        epsilon=DEFAULT_EPSILON,
        norm="inf",
        clip=None,
        random_start=False,
        step_size=None,
        random_state=None,
    ):
        self.epsilon = epsilon
        self.norm = norm
        self.clip = clip
        self.random_start = random_start
        self.step_size = step_size
        self.random_state = random_state

    def _n_steps(self):
        return 1

    def _step_size(self):
        return float(self.epsilon if self.step_size is None else self.step_size)


class Penalized(_Attack):
    """Penalised l_2 attack (Sinha, Namkoong and Duchi, 2018): a unique worst case.

    Instead of a hard ball, the perturbation pays ``gamma / 2 * ||delta||^2``:

        delta(theta) = argmax_delta  loss(theta; x + delta) - gamma / 2 ||delta||^2,

    optionally inside the input box ``clip``. The adversarial objective is
    ``loss(theta; x + delta) - gamma / 2 ||delta||^2`` at that maximiser (the
    penalty has no gradient in ``theta``). When ``gamma`` exceeds the largest
    curvature of the loss in the input, the inner problem is strongly concave:
    its maximiser is unique and moves smoothly with ``theta``, so the robust
    objective is smooth, an exact retrain can be solved to any precision, and
    the total Hessian of MUter is exactly the Hessian of the robust objective.
    Hard-ball attacks (:class:`PGD`, :class:`FGSM`) give none of these on a
    network: their worst cases jump between local maxima or are piecewise
    constant in ``theta``. Smaller ``gamma`` means a stronger attack.

    Supported by :class:`~skmuter.nn.AdversarialNet` (use a smooth body: tanh,
    softplus, GELU; a ReLU body has no curvature to make ``gamma`` meaningful).
    The linear estimators reject it: their worst cases are exact already.

    Parameters
    ----------
    gamma : float, default=1.0
        Price of the perturbation, ``> 0``.
    n_steps : int, default=200
        Most ascent steps; the ascent stops earlier once every row's step is
        below ``tol`` (relative to ``1 + ||delta||``).
    tol : float, default=1e-10
        Convergence tolerance of the ascent (raised to the precision of the
        input's dtype, e.g. about 1e-5 for float32 training batches).
    step_size : float, default=None
        Ascent step ``delta += step_size * (grad - gamma * delta)``; ``None``
        means ``1 / gamma`` (the fixed-point iteration ``delta = grad / gamma``).
    clip : None or (low, high), default=None
        Bounds of the input domain (projected ascent).

    Examples
    --------
    >>> import numpy as np
    >>> from skmuter.attacks import Penalized
    >>> X = np.zeros((1, 2)); y = np.array([1.0])
    >>> w = np.array([2.0, -1.0])   # a linear loss: the worst case is w / gamma
    >>> Penalized(gamma=4.0).perturb(X, y, lambda Xa, ya: np.tile(w, (len(Xa), 1)))
    array([[ 0.5 , -0.25]])
    """

    random_start = False
    random_state = None

    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention)
        "gamma": [_POSITIVE],
        "n_steps": [_NotBool(Integral, 1, None, closed="left")],
        "tol": [_POSITIVE],
        "step_size": [None, _POSITIVE],
        "clip": _CLIP,
    }

    def __init__(self, gamma=1.0, n_steps=200, tol=1e-10, step_size=None, clip=None):
        self.gamma = gamma
        self.n_steps = n_steps
        self.tol = tol
        self.step_size = step_size
        self.clip = clip

    def _gamma(self):
        return float(self.gamma)

    def _n_steps(self):
        return int(self.n_steps)

    def _tol(self):
        return float(self.tol)

    def _step_size(self):
        if self.step_size is None:
            return 1.0 / self._gamma()
        return float(self.step_size)

    def threat(self, n_features: int | None = None) -> Threat:
        """The input box of the attack as a :class:`Threat` (no ball: ``epsilon=inf``).

        Parameters
        ----------
        n_features : int, optional
            Number of input features, used to check per-feature ``clip`` bounds.
        """
        threat = Threat(0.0, 2, self.clip, n_features)
        threat.epsilon = float("inf")
        return threat

    def _check(self, n_features):
        self._validate_params()
        return self.threat(n_features), self._step_size()

    def _ascend(self, X, y, delta, input_grad, threat, step):
        g = np.asarray(input_grad(X + delta, y), dtype=np.float64)
        return threat.project(X, delta + step * (g - self._gamma() * delta))

    def _settled(self, delta, new):
        """Every row's step is below ``tol * (1 + ||delta||)``."""
        change = np.linalg.norm(new - delta, axis=1)
        return bool(np.all(change <= self._tol() * (1 + np.linalg.norm(new, axis=1))))


def resolve_attack(attack):
    """Turn the ``attack`` parameter of an estimator into an attack object.

    ``'pgd'`` and ``'fgsm'`` give :class:`PGD` and :class:`FGSM` with
    ``epsilon=0.1`` and no input box; an attack object is returned unchanged.
    """
    if isinstance(attack, str):
        key = attack.lower()
        if key == "pgd":
            return PGD()
        if key == "fgsm":
            return FGSM()
        raise ValueError(f"attack must be 'pgd', 'fgsm' or an attack object, got {attack!r}.")
    if isinstance(attack, _Attack):
        return attack
    raise TypeError(
        "attack must be 'pgd', 'fgsm' or an attack object such as "
        f"skmuter.attacks.PGD(epsilon=...), got {type(attack).__name__}."
    )


class Threat:
    """A validated threat model: a norm ball, optionally inside an input box.

    Parameters
    ----------
    epsilon : float
        Radius, ``>= 0``.
    norm : {'inf', 2}
        Norm of the ball.
    clip : None or (low, high)
        Box of the input domain, scalars or arrays of length ``n_features``.
    n_features : int, optional
        Checks the shape of per-feature bounds.

    ``epsilon``, ``norm`` and ``clip`` meet the attacks' constraints; that
    ``clip`` is a pair of bounds, of the inputs' width and not inverted is
    checked here, where the number of features is known.
    """

    _parameter_constraints: dict = {  # noqa: RUF012 (scikit-learn's convention)
        "epsilon": [_RADIUS], "norm": [_NORM], "clip": _CLIP}

    def __init__(self, epsilon, norm="inf", clip=None, n_features=None):
        validate_parameter_constraints(
            self._parameter_constraints, {"epsilon": epsilon, "norm": norm, "clip": clip},
            caller_name=type(self).__name__)
        self.epsilon = float(epsilon)
        self.norm = _parse_norm(norm)
        self.low = self.high = None
        if clip is not None:
            try:
                low, high = clip
            except (TypeError, ValueError):
                raise ValueError(
                    f"clip must be None or a pair (low, high), got {clip!r}."
                ) from None
            low = np.asarray(low, dtype=np.float64)
            high = np.asarray(high, dtype=np.float64)
            for name, bound in (("low", low), ("high", high)):
                if bound.ndim > 1 or (
                    bound.ndim == 1 and n_features is not None and bound.shape[0] != n_features
                ):
                    raise ValueError(
                        f"clip {name} bound must be a scalar or an array of length "
                        f"n_features={n_features}, got shape {bound.shape}."
                    )
                if np.isnan(bound).any():
                    raise ValueError(f"clip {name} bound contains NaN.")
            if np.any(low > high):
                raise ValueError(f"clip is inverted: low > high in {clip!r}.")
            self.low, self.high = low, high

    @property
    def boxed(self) -> bool:
        return self.low is not None

    def check_inside(self, X):
        """Raise ``ValueError`` if some input lies outside the box."""
        if not self.boxed:
            return
        tol = 1e-12
        if sparse.issparse(X):
            # the stored entries against their column's bounds; a column with
            # implicit zeros needs 0 inside its bounds
            X = X.tocoo()
            low = np.broadcast_to(self.low, (X.shape[1],))
            high = np.broadcast_to(self.high, (X.shape[1],))
            zeros = np.bincount(X.col[X.data != 0], minlength=X.shape[1]) < X.shape[0]
            outside = (np.any(X.data < low[X.col] - tol) or np.any(X.data > high[X.col] + tol)
                       or np.any(zeros & ((low > tol) | (high < -tol))))
        else:
            outside = np.any(X < self.low - tol) or np.any(X > self.high + tol)
        if outside:
            raise ValueError(
                "X has values outside clip=(low, high); the attack box must contain the "
                "clean inputs (rescale X or widen clip)."
            )

    def project(self, X, delta):
        """Project perturbations onto the ball, then onto the box around ``X``."""
        if self.norm == "inf":
            delta = np.clip(delta, -self.epsilon, self.epsilon)
        else:
            norms = np.linalg.norm(delta, axis=1, keepdims=True)
            scale = np.minimum(1.0, self.epsilon / np.maximum(norms, 1e-300))
            delta = delta * scale
        if self.boxed:
            # Clipping moves each coordinate towards 0, so the norm never grows.
            delta = np.clip(X + delta, self.low, self.high) - X
        return delta
