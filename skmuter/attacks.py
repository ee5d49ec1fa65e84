"""Adversarial attacks and the exact worst case of linear models.

Two kinds of object live here.

* :class:`PGD` and :class:`FGSM` are cloneable parameter objects in the
  scikit-learn sense: they store a threat model (``epsilon``, ``norm``,
  ``clip``) and an iterative recipe. Passed as the ``attack`` parameter of an
  estimator, their parameters are reachable as ``attack__epsilon`` in a grid
  search. :meth:`PGD.perturb` runs the attack on any model that supplies the
  gradient of its loss with respect to the input.
* :class:`Threat` is the validated threat model. For a linear score
  ``z = w . x + b`` the worst case over the ball (intersected with the input
  box when ``clip`` is set) has an exact answer, which :class:`BoundThreat`
  computes: in closed form for l_inf (with or without box) and l_2 without box,
  and by an exact one-dimensional search over sorted break points for l_2 with
  a box. PGD and FGSM can never beat it on a linear model.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

__all__ = ["FGSM", "PGD", "BoundThreat", "Penalized", "Threat", "resolve_attack"]

DEFAULT_EPSILON = 0.1


def _parse_norm(norm):
    if isinstance(norm, str):
        key = norm.lower()
        if key in ("inf", "linf", "l_inf"):
            return "inf"
        if key in ("2", "l2", "l_2"):
            return 2
    elif isinstance(norm, numbers.Real) and not isinstance(norm, bool):
        if np.isinf(norm):
            return "inf"
        if norm == 2:
            return 2
    raise ValueError(f"norm must be 'inf' or 2, got {norm!r}.")


class _Attack(BaseEstimator):
    """Shared validation and projection of the attacks."""

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
        threat = self.threat(n_features)
        step = self._step_size()
        if not np.isfinite(step) or step < 0:
            raise ValueError(f"step_size must be a finite non-negative number, got {step!r}.")
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
        Step of each iteration; ``None`` means ``min(epsilon, 2.5 * epsilon / n_steps)``.
        Must not exceed ``epsilon``.
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
        if not isinstance(self.n_steps, numbers.Integral) or self.n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {self.n_steps!r}.")
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
        Size of the single step, ``None`` means ``epsilon``.
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

    def __init__(self, gamma=1.0, n_steps=200, tol=1e-10, step_size=None, clip=None):
        self.gamma = gamma
        self.n_steps = n_steps
        self.tol = tol
        self.step_size = step_size
        self.clip = clip

    def _gamma(self):
        return _positive(self.gamma, "gamma")

    def _n_steps(self):
        if not isinstance(self.n_steps, numbers.Integral) or isinstance(self.n_steps, bool) \
                or self.n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {self.n_steps!r}.")
        return int(self.n_steps)

    def _tol(self):
        return _positive(self.tol, "tol")

    def _step_size(self):
        if self.step_size is None:
            return 1.0 / self._gamma()
        return _positive(self.step_size, "step_size")

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
        self._gamma()
        self._n_steps()
        self._tol()
        return self.threat(n_features), self._step_size()

    def _ascend(self, X, y, delta, input_grad, threat, step):
        g = np.asarray(input_grad(X + delta, y), dtype=np.float64)
        return threat.project(X, delta + step * (g - self._gamma() * delta))

    def _settled(self, delta, new):
        """Every row's step is below ``tol * (1 + ||delta||)``."""
        change = np.linalg.norm(new - delta, axis=1)
        return bool(np.all(change <= self._tol() * (1 + np.linalg.norm(new, axis=1))))


def _positive(value, name):
    """``value`` as a float, or a ``ValueError`` naming ``name`` unless finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


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
    """

    def __init__(self, epsilon, norm="inf", clip=None, n_features=None):
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
            raise TypeError(f"epsilon must be a real number, got {epsilon!r}.")
        if not np.isfinite(epsilon) or epsilon < 0:
            raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}.")
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
        if np.any(X < self.low - tol) or np.any(X > self.high + tol):
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

    def bind(self, X, cols=None, compress=False) -> BoundThreat:
        """Return the exact worst-case oracle of a linear model on rows ``X``.

        Parameters
        ----------
        X : ndarray of shape (n, k)
            Rows, restricted to the feature columns ``cols`` when given (the
            l_inf threat is separable over features).
        cols : array of int, optional
            Original feature indices of the columns of ``X``.
        compress : bool, default=False
            Store the l_inf box rooms as per-column constants minus sparse
            matrices (fast repeated products on large data; only the
            ``linf_*`` methods are then available).
        """
        return BoundThreat(self, X, cols=cols, compress=compress)


class _ColumnConstMinusSparse:
    """A matrix stored as ``c[None, :] - S`` with ``S`` sparse (CSR).

    The l_inf box rooms ``min(eps, x - low)`` and ``min(eps, high - x)`` equal
    0 or ``eps`` on most entries of typical data (image background, one-hot
    columns): per column the more frequent value goes into ``c``.
    """

    def __init__(self, M, eps):
        n = M.shape[0]
        at_eps = np.count_nonzero(M == eps, axis=0)
        at_zero = np.count_nonzero(M == 0, axis=0)
        self.c = np.where(at_eps > at_zero, eps, 0.0)
        S = self.c[None, :] - M
        self.S = sparse.csr_matrix(S)
        self.shape = M.shape
        self.n = n

    __array_ufunc__ = None  # make ``H @ self`` call ``__rmatmul__``

    def __matmul__(self, V):
        return (self.c @ V)[None, :] - self.S @ V

    def __rmatmul__(self, H):
        # H is (k, n): returns (k, d)
        return np.outer(H.sum(axis=1), self.c) - np.asarray((self.S.T @ H.T).T)


def _products(M, V):
    """``M @ V`` for ``V`` of shape (d, k); ``M`` may be a scalar constant matrix."""
    if isinstance(M, (float, np.floating)):
        return (M * V.sum(axis=0))[None, :]
    return M @ V


def _rproducts(M, H):
    """``H @ M`` for ``H`` of shape (k, n); returns (k, d) (broadcastable)."""
    if isinstance(M, (float, np.floating)):
        return (M * H.sum(axis=1))[:, None]
    return H @ M


class BoundThreat:
    """Exact worst case of a linear score on fixed rows ``X``.

    For a direction ``s_i`` in {-1, +1} per row and weights ``w``, the
    adversary maximises ``s_i * w . delta_i`` over the threat set of row ``i``.
    ``shift`` is that maximum (>= 0), ``delta`` the maximiser; the worst-case
    score is ``z_i + s_i * shift_i``.

    For l_inf the room of each coordinate is ``P = min(eps, x - low)`` below
    and ``Q = min(eps, high - x)`` above (scalars ``eps`` without box): the
    maximiser takes ``Q`` where ``s w_j > 0`` and ``-P`` where ``s w_j < 0``.
    """

    def __init__(self, threat: Threat, X, cols=None, compress=False):
        self.threat = threat
        self.X = X
        self.n, self.d = X.shape
        eps = threat.epsilon
        if threat.boxed:
            low, high = threat.low, threat.high
            if cols is not None:
                low = low[cols] if low.ndim else low
                high = high[cols] if high.ndim else high
            # For l_2 the box room is capped at eps too: harmless, |delta_j| <= eps.
            self.P = np.minimum(eps, X - low)
            self.Q = np.minimum(eps, high - X)
            np.maximum(self.P, 0.0, out=self.P)
            np.maximum(self.Q, 0.0, out=self.Q)
            if compress and threat.norm == "inf":
                self.P = _ColumnConstMinusSparse(self.P, eps)
                self.Q = _ColumnConstMinusSparse(self.Q, eps)
        else:
            self.P = self.Q = eps

    # ---- l_inf pieces, linear in (w+, w-) --------------------------------
    def linf_shifts(self, wp, wm):
        """Return ``(up, down)``: the l_inf shifts for ``s=+1`` and ``s=-1``."""
        V = np.column_stack([wp, wm])
        PV = _products(self.P, V)
        QV = _products(self.Q, V)
        up = QV[:, 0] + PV[:, 1]
        down = PV[:, 0] + QV[:, 1]
        if up.shape[0] != self.n:
            up, down = np.full(self.n, up[0]), np.full(self.n, down[0])
        return up, down

    def linf_split_grads(self, g, s):
        """Return ``(A, B)``: gradients of ``sum_i g_i s_i shift_i`` in ``w+`` and ``w-``."""
        H = np.vstack([np.where(s > 0, g, 0.0), np.where(s > 0, 0.0, g)])
        PH = _rproducts(self.P, H)
        QH = _rproducts(self.Q, H)
        A = QH[0] - PH[1]
        B = PH[0] - QH[1]
        if A.shape[0] != self.d:
            A, B = np.full(self.d, A[0]), np.full(self.d, B[0])
        return A, B

    # ---- general interface ------------------------------------------------
    def shifts(self, w):
        """Return ``(up, down)`` for both directions at weights ``w``."""
        if self.threat.norm == "inf":
            return self.linf_shifts(np.maximum(w, 0.0), np.maximum(-w, 0.0))
        if not self.threat.boxed:
            t = np.full(self.n, self.threat.epsilon * np.linalg.norm(w))
            return t, t
        up = np.einsum("ij,j->i", self._l2_box_delta(w, np.ones(self.n))[0], w)
        down = -np.einsum("ij,j->i", self._l2_box_delta(w, -np.ones(self.n))[0], w)
        return up, down

    def delta(self, w, s, cols=None):
        """Return the maximiser ``delta`` (rows x ``cols``) for directions ``s``."""
        s = np.asarray(s, dtype=np.float64)
        if self.threat.norm == "inf":
            idx = slice(None) if cols is None else cols
            sw = s[:, None] * w[idx][None, :]
            P = self.P if np.ndim(self.P) == 0 else self.P[:, idx]
            Q = self.Q if np.ndim(self.Q) == 0 else self.Q[:, idx]
            return np.where(sw > 0, Q, np.where(sw < 0, -P, 0.0))
        if not self.threat.boxed:
            nw = np.linalg.norm(w)
            unit = w / nw if nw > 0 else np.zeros_like(w)
            out = self.threat.epsilon * s[:, None] * unit[None, :]
        else:
            out = self._l2_box_delta(w, s)[0]
        return out if cols is None else out[:, cols]

    def deltaT_dot(self, w, s, g):
        """Return ``sum_i g_i delta_i`` without forming ``delta`` where possible."""
        if self.threat.norm == "inf":
            A, B = self.linf_split_grads(g, s)
            return np.where(w > 0, A, np.where(w < 0, -B, 0.0))
        if not self.threat.boxed:
            nw = np.linalg.norm(w)
            if nw == 0:
                return np.zeros(self.d)
            return self.threat.epsilon * float(np.dot(g, s)) * w / nw
        return g @ self._l2_box_delta(w, s)[0]

    def l2_curvature(self, w, s):
        """Curvature of the l_2 shift: ``shift_i`` is ``eps_F,i * ||w_{F_i}||`` plus a
        linear term, so its Hessian is ``eps_F,i / rho_i * (I_F - w_F w_F^T / rho_i^2)``.

        Returns ``(scale, F, rho)`` with ``scale = eps_F / rho`` (0 where the ball
        is inactive), ``F`` the free-coordinate mask (None: all free) and
        ``rho = ||w_F||``.
        """
        if not self.threat.boxed:
            rho = np.linalg.norm(w)
            scale = self.threat.epsilon / rho if rho > 0 else 0.0
            return np.full(self.n, scale), None, np.full(self.n, rho)
        _, F, eps_f = self._l2_box_delta(w, s)
        rho = np.sqrt(((F * w) ** 2).sum(axis=1))
        scale = np.divide(eps_f, rho, out=np.zeros(self.n), where=rho > 0)
        return scale, F, rho

    def _l2_box_delta(self, w, s):
        """Maximise ``u . delta`` over ``||delta||_2 <= eps`` and ``-P <= delta <= Q``.

        The maximiser is ``clip(lam * u, -P, Q)`` for the ``lam`` at which its
        norm reaches ``eps`` (or the box corner when that lies inside the ball).
        Break points ``|corner_j| / |u_j|`` are sorted per row and the segment
        holding ``eps`` found from cumulative sums: exact, no iteration.
        Returns ``(delta, free_mask, eps_free)``.
        """
        eps = self.threat.epsilon
        u = s[:, None] * w[None, :]
        P = np.broadcast_to(self.P, u.shape)
        Q = np.broadcast_to(self.Q, u.shape)
        corner = np.where(u > 0, Q, np.where(u < 0, -P, 0.0))
        au = np.abs(u)
        with np.errstate(divide="ignore", invalid="ignore"):
            brk = np.where(au > 0, np.abs(corner) / au, np.inf)
        order = np.argsort(brk, axis=1)
        b_s = np.take_along_axis(brk, order, axis=1)
        c2 = np.take_along_axis(corner**2, order, axis=1)
        u2 = np.take_along_axis(au**2, order, axis=1)
        clipped_before = np.cumsum(c2, axis=1) - c2  # sum_{m<k} c_m^2
        free_from = np.cumsum(u2[:, ::-1], axis=1)[:, ::-1]  # sum_{m>=k} u_m^2
        finite = np.isfinite(b_s)
        # Squared norm of the maximiser at each break point; past the last finite
        # break point only zero-direction coordinates remain and the norm stays put.
        norm_at = clipped_before + np.where(finite, np.where(finite, b_s, 0.0) ** 2, 0.0) * free_from
        reach = norm_at >= eps**2
        inside = ~reach.any(axis=1) | (eps == 0)
        k = np.argmax(reach, axis=1)
        rows = np.arange(u.shape[0])
        denom = free_from[rows, k]
        lam2 = np.divide(eps**2 - clipped_before[rows, k], denom, out=np.zeros(u.shape[0]),
                         where=denom > 0)
        lam = np.sqrt(np.maximum(lam2, 0.0))
        delta = np.clip(lam[:, None] * u, -P, Q)
        free = (brk > lam[:, None]) & ~inside[:, None]
        delta = np.where(inside[:, None], corner, delta)
        pinned2 = np.where(free, 0.0, delta**2).sum(axis=1)
        eps_free = np.where(inside, 0.0, np.sqrt(np.maximum(eps**2 - pinned2, 0.0)))
        return delta, free, eps_free
