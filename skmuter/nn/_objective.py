"""The robust training objective of a network, seen through a flat parameter vector.

:class:`NetObjective` implements the objective contract
(:class:`skmuter._objective.Objective`) for an
:class:`~skmuter.nn.AdversarialNet`: the interface through which the
forgetters (:mod:`skmuter.forgetters`) and the metrics see the network.
``theta`` is the flat vector of the parameters that forgetting updates
(``forget_params``); every other parameter and buffer is frozen at its fitted
value.

Convention (the same as the linear models): the objective is

    J(theta) = 1/m sum_{i kept} l_i(theta) + alpha/2 ||theta||^2,
    l_i(theta) = cross_entropy(f(theta; x_i + delta_i(theta)), y_i),

with ``delta_i`` the attack's worst case found by PGD/FGSM. Under the
penalised attack ``l_i`` also subtracts ``gamma/2 ||delta_i||^2`` (which has
no gradient in ``theta`` at the maximiser). A row adds
``alpha * theta`` to a summed gradient and ``alpha * I`` to a summed Hessian.

Everything is computed with ``torch.func``: per-sample gradients by ``vmap``
of ``grad``, Hessian-vector products by forward-over-reverse ``jvp``. A dense
matrix is only ever formed over the forgotten parameters, and only when they
are few (``dense_max``, e.g. the last layer); otherwise ``hessian_sum``
returns a ``LinearOperator`` and the forgetters solve matrix-free.

Curvature kinds (``hessian_sum``):

``'hessian'``
    ``d_theta theta l_i`` at clean or adversarial points.
``'total'``
    The total Hessian of the robust loss, the principled form of MUter: the
    worst case moves with ``theta``, and by the implicit function theorem
    its motion adds ``B_i^T N_i^+ B_i`` to ``d_theta theta l_i`` at the worst
    case, where ``B_i = d_delta d_theta l_i`` and ``N_i`` is
    minus the Hessian of the Lagrangian of the inner maximisation, restricted
    to the *free* directions of ``delta_i``: coordinates pinned at the l_inf
    bound or at the input box do not move with ``theta`` and are left out; an
    active l_2 sphere keeps only its tangent directions and contributes its
    multiplier ``mu_i = g.delta / ||delta||^2``. ``N_i^+`` keeps the
    directions where ``N_i`` is positive definite (a genuine local maximum,
    which is what the implicit function theorem needs); directions of
    non-negative curvature of the loss in ``delta`` are kinks or no maximum
    and do not move smoothly. For an l_inf threat on a piecewise-linear
    network (ReLU, max-pooling) the loss is convex in ``delta`` inside each
    linear region, so the term vanishes exactly (tested per row by one
    Hessian-vector product); then ``'total'`` is ``d_theta theta l`` at the
    worst case, as for linear l_inf models. For the penalised attack
    (:class:`~skmuter.attacks.Penalized`) there is no sphere and
    ``N_i = gamma I - d_delta delta l_i`` on the coordinates off the box;
    with a frozen body it is computed through the features
    (:mod:`skmuter.nn._head`) from a low-rank sketch of ``d_delta delta l_i``.
``'paper'``
    The MUter paper's form: ``(d_delta delta l)^-1`` replaced by the Neumann
    series ``sum_{j<=k} (I - d_delta delta l)^j`` over all input coordinates,
    applied matrix-free (``k`` extra Hessian-vector products per row and
    product). Kept for replication only.
``'fisher'``
    ``sum g_i g_i^T`` of the per-sample gradients.

The parts live beside this module: the flat parameters and the head
(:mod:`~skmuter.nn._params`), the attacked points and their cache
(:mod:`~skmuter.nn._points`), the head's closed forms and the penalised
factors (:mod:`~skmuter.nn._head`), and the exact refit
and the check of a forget
(:mod:`~skmuter.nn._refit`, bound as the ``refitter`` and the ``refiner``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator
from torch.func import grad, jvp, vmap

from .._objective import BaseObjective
from . import _head, _kron
from ._indirect import output_curvature, row_factor
from ._params import FlatParams, find_head
from ._points import AttackPoints, row_chunks, theta_key

__all__ = ["NetObjective"]


class NetObjective(BaseObjective):
    """Robust cross-entropy objective of a network over a flat parameter vector.

    Parameters
    ----------
    module : torch.nn.Module
        The fitted network (copied; the copy is float64 and in evaluation mode).
    names : list of str
        Names of the parameters that ``theta`` holds, in order.
    X : ndarray of shape (n_samples, *input_shape)
        Training inputs, shared with the estimator (which purges them).
    y : ndarray of shape (n_samples,)
        Class codes ``0..K-1``.
    threat : skmuter.nn._attacks.TorchThreat
        Threat model and attack recipe of the training.
    alpha : float
        Ridge penalty on ``theta`` (one share per row).
    seed : int
        Seed of the attack's random starts (a fixed start per row, so that
        ``delta_i(theta)`` is a deterministic function of ``theta``).
    theta_init : ndarray, optional
        Starting point of :meth:`refit` when none is given.
    device : str or torch.device
    batch_size : int
        Rows per chunk.
    dense_max : int
        Largest number of columns for which curvature is returned dense.
    refitter : callable, optional
        ``refitter(objective, rows, theta0) -> theta``, the exact solver of
        :meth:`refit` with its settings bound (see
        ``skmuter.nn._refit.refit_head``).
    refiner : callable, optional
        The warm-started correction of :meth:`refine` (see
        ``skmuter.nn._refit.refine_head``); None: :meth:`refine` only measures.
    """

    def __init__(self, module, names, X, y, threat, alpha, seed=0, theta_init=None,
                 device="cpu", batch_size=256, dense_max=2048, refitter=None, refiner=None):
        super().__init__(alpha, refitter=refitter, refiner=refiner)
        self.device = torch.device(device)
        self.dtype = torch.float64
        named = dict(module.named_parameters())
        #: dtype in which the network stores ``theta`` (what is published)
        self.param_dtype = named[names[0]].dtype if names else torch.float64
        self.params = FlatParams(module, names, self.device)
        self.names = self.params.names
        self.n_params = self.params.n_params
        self.threat = threat
        self.seed = int(seed)
        self.theta_init = None if theta_init is None else np.asarray(theta_init, np.float64)
        self.batch_size = int(batch_size)
        self.dense_max = int(dense_max)
        self.input_shape = tuple(X.shape[1:])
        self.attack_points = AttackPoints(X, y, threat, self.params, seed=self.seed,
                                          batch_size=self.batch_size)
        self._factor_cache = {}
        #: the linear head whose parameters are ``theta`` (None: derivatives run
        #: through the whole network)
        self.head = find_head(self.params, self._x(np.arange(min(8, len(X)))))
        if self.head is not None and not isinstance(X, np.ndarray):
            # rows read from a dataset: keep per row what the head sees, not the inputs
            self.attack_points.stream_features(self.head.features)

    # ---- parameters, data and points ---------------------------------------------
    def _t(self, theta):
        return self.params.tensor(theta)

    def _x(self, rows):
        return self.attack_points.x(rows)

    def _y(self, rows):
        return self.attack_points.labels(rows)

    def free_mask(self, theta):
        """All coordinates move: a network's parameters have no pinned zeros."""
        return np.ones(self.n_params, dtype=bool)

    def published(self, theta):
        """``theta`` as the network stores it (rounded to its parameter dtype).

        Solvers evaluate the objective at published points: a hard-ball worst
        case can change between ``theta`` and its float32 rounding.
        """
        t = torch.as_tensor(np.asarray(theta, dtype=np.float64))
        return t.to(self.param_dtype).to(torch.float64).numpy().copy()

    @property
    def smooth(self):
        """Whether the robust objective is differentiable in ``theta``.

        True without attack and under the penalised attack (a unique worst
        case moving smoothly with ``theta``); False under the hard-ball
        attacks (PGD, FGSM), whose worst case is piecewise constant in
        ``theta`` with tiny cells: the objective jumps between cells and its
        minimum is a kink, where the gradient does not vanish.
        """
        return bool(self.threat.penalized or self.threat.epsilon == 0)

    def retain(self, theta):
        """Drop everything cached at parameter vectors other than ``theta``."""
        self.attack_points.retain(theta)
        key = theta_key(theta)
        for other in [k for k in self._factor_cache if k != key]:
            del self._factor_cache[other]

    def logits(self, theta_t, x):
        """Network output at flat parameters ``theta_t`` (a tensor) on inputs ``x``."""
        return self.params.logits(theta_t, x)

    def adversarial(self, theta, rows):
        """Adversarial inputs of ``rows`` at ``theta``, cached per parameter vector."""
        return self.attack_points.adversarial(theta, rows)

    def inputs(self, theta, rows, points):
        """Inputs of ``rows`` at ``points`` (``'clean'`` or ``'adversarial'``)."""
        return self.attack_points.inputs(theta, rows, points)

    def _model_inputs(self, theta, rows, points):
        """What the loss of ``theta`` runs on: head features when possible."""
        if self.head is not None and self.attack_points.features is not None:
            return self.attack_points.model_features(theta, rows, points), True
        x = self.inputs(theta, rows, points)
        if self.head is None:
            return x, False
        with torch.no_grad():
            return self.head.features(x), True

    def _batches(self, theta, rows, points):
        for chunk in row_chunks(np.asarray(rows, dtype=np.int64), self.batch_size):
            inp, on_head = self._model_inputs(theta, chunk, points)
            yield chunk, inp, self._y(chunk), on_head

    def _loss_sum(self, theta_t, inp, y, on_head):
        z = self.head.logits(theta_t, inp) if on_head else self.logits(theta_t, inp)
        return F.cross_entropy(z, y, reduction="sum")

    def purge(self, rows):
        """Forget everything cached about ``rows``."""
        self.attack_points.purge(rows)
        rows = {int(r) for r in rows}
        for store in self._factor_cache.values():
            for r in rows:
                store.pop(r, None)

    # ---- values and gradients --------------------------------------------------
    def value(self, theta, rows, points="adversarial"):
        """Mean loss over ``rows`` plus the penalty."""
        theta_t = self._t(theta)
        total = 0.0
        with torch.no_grad():
            for chunk, inp, y, on_head in self._batches(theta, rows, points):
                total += float(self._loss_sum(theta_t, inp, y, on_head))
                if self.threat.penalized and points == "adversarial":
                    total -= self.attack_points.price(self.adversarial(theta, chunk), chunk)
        return total / len(rows) + 0.5 * self.alpha * float(theta_t @ theta_t)

    def grad_sum(self, theta, rows, points="adversarial", cols=None):
        """Sum over ``rows`` of the per-sample gradients (penalty share included)."""
        theta_t = self._t(theta)
        out = torch.zeros_like(theta_t)
        for _, inp, y, on_head in self._batches(theta, rows, points):
            out += grad(self._loss_sum)(theta_t, inp, y, on_head)
        out += len(rows) * self.alpha * theta_t
        out = out.cpu().numpy()
        return out if cols is None else out[cols]

    def per_sample_grads(self, theta, rows, points="adversarial", cols=None):
        """Gradients of ``l_i + alpha/2 ||theta||^2`` for each row, (len(rows), p)."""
        theta_t = self._t(theta)
        parts = []
        for _, inp, y, on_head in self._batches(theta, rows, points):
            def one(xi, yi, on_head=on_head):
                return grad(self._loss_sum)(theta_t, xi[None], yi[None], on_head)
            parts.append(vmap(one)(inp, y) + self.alpha * theta_t)
        out = torch.cat(parts).cpu().numpy()
        return out if cols is None else out[:, cols]

    def value_and_grad(self, theta, rows):
        """:meth:`value` and the gradient of the mean objective (Danskin's: the
        loss's gradient at the worst cases), in one pass over ``rows``."""
        theta_t = self._t(theta)
        total = 0.0
        g = torch.zeros_like(theta_t)
        for chunk, inp, y, on_head in self._batches(theta, rows, "adversarial"):
            tt = theta_t.clone().requires_grad_(True)
            loss = self._loss_sum(tt, inp, y, on_head)
            g += torch.autograd.grad(loss, tt)[0]
            total += float(loss.detach())
            if self.threat.penalized:
                total -= self.attack_points.price(self.adversarial(theta, chunk), chunk)
        m = len(rows)
        value = total / m + 0.5 * self.alpha * float(theta_t @ theta_t)
        return value, (g / m + self.alpha * theta_t).cpu().numpy()

    def gradient_residual(self, theta, rows):
        """Norm of the gradient of the mean robust objective over ``rows`` at ``theta``."""
        return float(np.linalg.norm(self.grad_sum(theta, rows) / len(rows)))

    # ---- verification of forgetting -----------------------------------------------
    def refine(self, theta, rows, tol, *, start=None, max_steps=20, memory=None):
        """Check a forget's proposal ``theta`` on the kept ``rows`` and correct it.

        Through the bound ``refiner`` (``skmuter.nn._refit.refine_head``):

        1. *step control*: the kept rows' robust objective (the deterministic
           attack of :meth:`value`) at ``theta`` is compared with its value at
           ``start``, the model before the request. Above it, the step
           ``start -> theta`` is shortened by a safeguarded line search; a
           point whose value exceeds ``value(start)`` is never accepted (if no
           shorter step does better, the result starts from ``start``);
        2. *correction*, while the gradient residual exceeds ``tol`` (at
           most ``max_steps`` trial points with those of step 1): on a
           smooth objective (:attr:`smooth`) Newton steps with the
           forgetter's curvature ``memory`` (the kept rows' total Hessian,
           dense) as the matrix, each checked by a line search; under a
           hard-ball attack the proximal bundle steps of the exact
           retrain's final polish, warm-started, which descend on the
           kinked objective and stop when no nearby point is lower.

        Every evaluated point is published (rounded to the network's
        parameter dtype), and the returned residual is
        :meth:`gradient_residual` at the returned parameters. Under a
        hard-ball attack the residual stays near its value at the fitted
        model (the gradient does not vanish at a kink), so ``tol`` is
        reached only on smooth objectives; the guarantee under a hard-ball
        attack is the value: never above doing nothing. ``tol=None`` only
        measures.

        Returns
        -------
        theta : ndarray of shape (n_params,)
        residual : float
        n_steps : int
            Objective evaluations at trial points (line search included).
        """
        return super().refine(theta, rows, tol, start=start, max_steps=max_steps,
                              memory=memory)

    def distance_bound(self, theta, rows, residual, memory=None):
        """Estimate of ``||theta - theta_r||`` from the residual at ``theta``.

        * Last layer on a frozen body with a smooth objective (no attack, or
          the penalised attack): the objective is convex (a maximum over the
          perturbations of functions convex in the head) and the ridge makes
          it ``alpha``-strongly convex, so ``residual / alpha`` is a rigorous
          bound (as the ascent's precision allows).
        * Deeper parameters with a smooth objective: not convex; ``residual``
          over the smallest eigenvalue of the mean curvature ``memory``
          (summed over ``rows``) is a local estimate, valid near a strict
          local minimum (``residual / alpha`` without ``memory``).
        * Hard-ball attacks (PGD, FGSM): no bound. The objective is not convex
          (the attack's point is not the maximum) and its gradient does not
          vanish at its kinked minimum, so a residual says nothing about the
          distance: ``inf``. Judge such forgets by their objective value
          (:func:`skmuter.metrics.objective_gap_fraction`).
        """
        if not self.smooth or self.alpha <= 0:
            return float("inf")
        mu = self.alpha
        if self.head is None and isinstance(memory, np.ndarray) and memory.size:
            low = float(np.linalg.eigvalsh(0.5 * (memory + memory.T))[0]) / len(rows)
            if low <= 0:
                return float("inf")
            mu = low
        return float(residual) / mu

    # ---- curvature -------------------------------------------------------------
    def _hvp(self, theta_t, inp, y, on_head, V):
        """Rows of ``V`` times the Hessian of the summed loss (vmapped jvp of grad)."""
        g = grad(self._loss_sum)
        return vmap(lambda v: jvp(lambda t: g(t, inp, y, on_head), (theta_t,), (v,))[1])(V)

    def _delta_grad(self, theta_t, xa, y):
        """Per-row gradient of the loss in the input (rows are independent)."""
        return grad(lambda x: self._loss_sum(theta_t, x, y, False))(xa)

    # The kinds of :meth:`hessian_sum` (dispatched by the base class; the total
    # and paper kinds always at the worst case). Each is a dense ndarray when
    # there are at most ``dense_max`` columns, else a LinearOperator; the paper's
    # form is always an operator.
    def _curvature_hessian(self, theta, rows, points, cols, neumann_order=3):
        return self._curvature("hessian", theta, rows, points, cols, neumann_order)

    def _curvature_total(self, theta, rows, points, cols, neumann_order=3):
        return self._curvature("total", theta, rows, points, cols, neumann_order)

    def _curvature_fisher(self, theta, rows, points, cols, neumann_order=3):
        return self._curvature("fisher", theta, rows, points, cols, neumann_order)

    def _curvature_paper(self, theta, rows, points, cols, neumann_order=3):
        return self._curvature("paper", theta, rows, points, cols, neumann_order)

    def _curvature(self, kind, theta, rows, points, cols, neumann_order):
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.arange(self.n_params) if cols is None else np.asarray(cols)
        if kind != "paper" and len(cols) <= self.dense_max:
            return self._dense(theta, rows, kind, points, cols)
        if kind in ("hessian", "total") and self.head is not None:
            # a large head: its Kronecker factors, never a per-parameter product
            return _kron.head_curvature(self, theta, rows, kind, points, cols)
        return self._operator(theta, rows, kind, points, cols, neumann_order)

    def _dense(self, theta, rows, kind, points, cols):
        theta_t = self._t(theta)
        p = len(cols)
        cols_t = torch.as_tensor(cols, device=self.device)
        H = torch.zeros((p, p), dtype=self.dtype, device=self.device)
        if kind == "fisher":
            for start in range(0, len(rows), self.batch_size):
                block = rows[start:start + self.batch_size]
                G = torch.as_tensor(self.per_sample_grads(theta, block, points, cols),
                                    device=self.device)
                H += G.T @ G
            return H.cpu().numpy()
        width = 64
        for _, inp, y, on_head in self._batches(theta, rows, points):
            if on_head:
                H += _head.head_hessian(self, theta_t, inp, cols_t)
                continue
            for start in range(0, p, width):
                idx = cols_t[start:start + width]
                V = torch.zeros((len(idx), self.n_params), dtype=self.dtype, device=self.device)
                V[torch.arange(len(idx)), idx] = 1.0
                H[start:start + width] += self._hvp(theta_t, inp, y, on_head, V)[:, cols_t]
        H[range(p), range(p)] += len(rows) * self.alpha
        if kind == "total":
            for C in self._factors(theta, rows, expand_head=False):
                Cc = C[cols_t]
                H += Cc @ Cc.T
            if self.threat.penalized and self.head is not None:
                H += _head.head_indirect_sum(self, theta, theta_t, rows, cols_t)
        return H.cpu().numpy()

    def _operator(self, theta, rows, kind, points, cols, neumann_order):
        theta_t = self._t(theta)
        cols_t = torch.as_tensor(cols, device=self.device)
        factors = list(self._factors(theta, rows)) if kind == "total" else []

        def embed(v):
            full = torch.zeros(self.n_params, dtype=self.dtype, device=self.device)
            full[cols_t] = torch.as_tensor(np.ravel(v), device=self.device)
            return full

        def matvec(v):
            v = embed(v)
            out = torch.zeros_like(v)
            for chunk, inp, y, on_head in self._batches(theta, rows, points):
                if kind == "fisher":
                    G = torch.as_tensor(self.per_sample_grads(theta, chunk, points),
                                        device=self.device)
                    out += G.T @ (G @ v)
                    continue
                out += self._hvp(theta_t, inp, y, on_head, v[None])[0]
                if kind == "paper":
                    xa = self.inputs(theta, chunk, "adversarial")
                    out -= self._paper_indirect(theta_t, xa, y, v, neumann_order)
            if kind != "fisher":
                out += len(rows) * self.alpha * v
            for C in factors:
                out += C @ (C.T @ v)
            return out[cols_t].cpu().numpy()

        p = len(cols)
        return LinearOperator((p, p), matvec=matvec, rmatvec=matvec, dtype=np.float64)

    def _paper_indirect(self, theta_t, xa, y, v, k):
        """``sum_i B_i^T S_k(G_i) B_i v`` with the Neumann series ``S_k`` of the paper."""
        u = jvp(lambda t: self._delta_grad(t, xa, y), (theta_t,), (v,))[1]
        s, term = u.clone(), u
        for _ in range(k):
            hv = jvp(lambda x: self._delta_grad(theta_t, x, y), (xa,), (term,))[1]
            if self.threat.penalized:
                hv = hv - self.threat.gamma * term  # Hessian of the penalised inner problem
            term = term - hv
            s = s + term
        return grad(lambda t: (self._delta_grad(t, xa, y) * s).sum())(theta_t)

    # ---- the free-coordinate indirect term (principled total Hessian) ----------
    def _factors(self, theta, rows, expand_head=True):
        """Yield ``C_i`` (p x r_i) with ``C_i C_i^T = B_i^T N_i^+ B_i`` for rows with r_i > 0.

        With ``expand_head=False`` rows whose factor lives in feature space
        (``HeadFactor``) are skipped: :func:`~skmuter.nn._head.head_indirect_sum` adds them.
        """
        if self.threat.epsilon == 0:
            return
        key = theta_key(theta)
        store = self._factor_cache.setdefault(key, {})
        if len(self._factor_cache) > 2:
            self._factor_cache.pop(next(iter(self._factor_cache)))
        theta_t = self._t(theta)
        missing = np.array([r for r in rows if int(r) not in store], dtype=np.int64)
        for chunk in row_chunks(missing, self.batch_size):
            for r, C in zip(chunk, self._chunk_factors(theta, theta_t, chunk)):
                store[int(r)] = C
        head_rows = [int(r) for r in rows if isinstance(store[int(r)], _head.HeadFactor)]
        if head_rows and expand_head:
            yield from _head.expand_head(self, theta, theta_t,
                                         np.asarray(head_rows, dtype=np.int64), store)
        for r in rows:
            C = store[int(r)]
            if C is not None and not isinstance(C, _head.HeadFactor):
                yield C

    def _chunk_factors(self, theta, theta_t, chunk):
        x = self._x(chunk)
        xa = self.inputs(theta, chunk, "adversarial")
        y = self._y(chunk)
        delta = xa - x
        free = self.threat.free_mask(x, delta).flatten(1)
        out = [None] * len(chunk)
        if self.threat.penalized and self.head is not None:
            return _head.head_factors(self, theta_t, xa, y, free)
        if self.threat.norm == "inf":
            candidates = np.flatnonzero(free.any(dim=1).cpu().numpy())
            if len(candidates) == 0:
                return out
            # One product per row: a piecewise-linear network has exactly zero
            # curvature of its outputs in the input, so its loss is convex in delta
            # and no free coordinate follows theta smoothly.
            curved = output_curvature(self, theta_t, xa[candidates], y[candidates],
                                     free[candidates])
            todo = candidates[curved]
        else:
            todo = np.arange(len(chunk))
        for i in todo:
            out[i] = row_factor(self, theta_t, xa[i], y[i], delta[i].flatten(), free[i])
        return out
