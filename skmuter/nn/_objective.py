"""The robust training objective of a network, seen through a flat parameter vector.

:class:`NetObjective` is the network counterpart of
:class:`skmuter.linear._objective.LinearObjective`: the interface through which
the forgetters (:mod:`skmuter.forgetters`) and the metrics see an
:class:`~skmuter.nn.AdversarialNet`. ``theta`` is the flat vector of the
parameters that forgetting updates (``forget_params``); every other parameter
and buffer is frozen at its fitted value.

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
    The total Hessian of the robust loss, the principled form of MUter
    (MUTER.md 5.4 and 5.7): ``d_theta theta l_i`` at the worst case plus
    ``B_i^T N_i^+ B_i``, where ``B_i = d_delta d_theta l_i`` and ``N_i`` is
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
    with a frozen body it is computed through the features (``B_i = M_i J_i``,
    see ``_head_factors``) from a low-rank sketch of ``d_delta delta l_i``.
``'paper'``
    The MUter paper's form: ``(d_delta delta l)^-1`` replaced by the Neumann
    series ``sum_{j<=k} (I - d_delta delta l)^j`` over all input coordinates,
    applied matrix-free (``k`` extra Hessian-vector products per row and
    product). Kept for replication only.
``'fisher'``
    ``sum g_i g_i^T`` of the per-sample gradients.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from scipy.sparse.linalg import LinearOperator
from sklearn.exceptions import ConvergenceWarning
from torch.func import functional_call, grad, jacrev, jvp, vmap

from ._attacks import perturb

_NOISE_BLOCK = 1024


def _chunks(rows, size):
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class NetObjective:
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
    refit_tol : float
        Gradient tolerance of :meth:`refit` (mean objective).
    refit_max_iter : int
        Most L-BFGS iterations of :meth:`refit`.
    """

    def __init__(self, module, names, X, y, threat, alpha, seed=0, theta_init=None,
                 device="cpu", batch_size=256, dense_max=2048, refit_tol=1e-9,
                 refit_max_iter=1000):
        self.device = torch.device(device)
        self.dtype = torch.float64
        self.module = _frozen_copy(module, self.device, self.dtype)
        self.names = list(names)
        named = dict(self.module.named_parameters())
        self.shapes = [named[n].shape for n in self.names]
        self.sizes = [named[n].numel() for n in self.names]
        self.n_params = int(sum(self.sizes))
        # Only the frozen part is kept: theta always comes from the caller.
        self._fixed = {k: v for k, v in named.items() if k not in set(self.names)}
        self._fixed.update(dict(self.module.named_buffers()))
        for n in self.names:
            named[n].data = torch.zeros_like(named[n].data)
        self.X = X
        self.y = y
        self.threat = threat
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.theta_init = None if theta_init is None else np.asarray(theta_init, np.float64)
        self.batch_size = int(batch_size)
        self.dense_max = int(dense_max)
        self.refit_tol = float(refit_tol)
        self.refit_max_iter = int(refit_max_iter)
        self.input_shape = tuple(X.shape[1:])
        self._adv_cache = {}
        self._feat_cache = {}
        self._factor_cache = {}
        self.head = self._find_head()

    # ---- parameters -----------------------------------------------------------
    def _t(self, theta):
        return torch.as_tensor(np.asarray(theta, dtype=np.float64), device=self.device)

    def _unflatten(self, theta_t):
        out = {}
        for name, piece, shape in zip(self.names, torch.split(theta_t, self.sizes),
                                      self.shapes):
            out[name] = piece.reshape(shape)
        return out

    def _key(self, theta):
        return hash(np.asarray(theta, dtype=np.float64).tobytes())

    def free_mask(self, theta):
        """All coordinates move: a network's parameters have no pinned zeros."""
        return np.ones(self.n_params, dtype=bool)

    # ---- the network -----------------------------------------------------------
    def logits(self, theta_t, x):
        """Network output at flat parameters ``theta_t`` (a tensor) on inputs ``x``."""
        params = dict(self._fixed)
        params.update(self._unflatten(theta_t))
        return functional_call(self.module, params, (x,))

    def _find_head(self):
        """The ``nn.Linear`` whose parameters are exactly ``names`` and whose output
        is the network's output, or None.

        Then the body's features are fixed by ``theta`` and computed once: all
        derivatives in ``theta`` run on the small head alone.
        """
        for mod_name, mod in self.module.named_modules():
            if not isinstance(mod, torch.nn.Linear):
                continue
            prefix = mod_name + "." if mod_name else ""
            own = [prefix + n for n, _ in mod.named_parameters(recurse=False)]
            if sorted(own) != sorted(self.names):
                continue
            self._head_name = prefix
            x = self._x(np.arange(min(8, len(self.X))))
            theta = torch.randn(self.n_params, dtype=self.dtype,
                                generator=torch.Generator().manual_seed(0)).to(self.device)
            with torch.no_grad():
                feats = self._capture(x)
                if feats is None:
                    return None
                same = torch.allclose(self.logits(theta, x), self._head_logits(theta, feats),
                                      rtol=1e-10, atol=1e-10)
            return mod if same else None
        return None

    def _capture(self, x):
        """Input of the head module on the batch ``x`` (the body's features)."""
        mod = dict(self.module.named_modules())[self._head_name.rstrip(".")]
        box = []
        handle = mod.register_forward_hook(lambda m, inp, out: box.append(inp[0].detach()))
        try:
            params = dict(self._fixed)
            params.update(self._unflatten(torch.zeros(self.n_params, dtype=self.dtype,
                                                      device=self.device)))
            functional_call(self.module, params, (x,))
        finally:
            handle.remove()
        return box[0] if len(box) == 1 else None

    def _head_logits(self, theta_t, feats):
        p = self._unflatten(theta_t)
        return F.linear(feats, p[self._head_name + "weight"], p.get(self._head_name + "bias"))

    # ---- data and points -------------------------------------------------------
    def _x(self, rows):
        return torch.as_tensor(self.X[rows], device=self.device).to(self.dtype)

    def _y(self, rows):
        return torch.as_tensor(self.y[rows], device=self.device, dtype=torch.long)

    def _noise(self, rows):
        """The fixed uniform noise of each row's random start."""
        if not self.threat.random_start:
            return None
        out = torch.empty((len(rows),) + self.input_shape, dtype=self.dtype)
        blocks = rows // _NOISE_BLOCK
        for b in np.unique(blocks):
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(b))
            block = torch.rand((_NOISE_BLOCK,) + self.input_shape, generator=gen,
                               dtype=self.dtype)
            sel = blocks == b
            out[torch.as_tensor(np.flatnonzero(sel))] = block[
                torch.as_tensor(rows[sel] - b * _NOISE_BLOCK)]
        return out.to(self.device)

    def _input_grad(self, theta_t, y):
        def input_grad(xa):
            xa = xa.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(self.logits(theta_t, xa), y, reduction="sum")
                return torch.autograd.grad(loss, xa)[0]
        return input_grad

    def attack_rows(self, theta_t, rows, start=None, info=None):
        """Adversarial inputs of ``rows`` at ``theta_t`` (not cached).

        ``start`` and ``info`` are passed to the penalised attack (see
        :func:`~skmuter.nn._attacks.perturb`).
        """
        x, y = self._x(rows), self._y(rows)
        if self.threat.epsilon == 0:
            return x
        return perturb(self.threat, x, self._input_grad(theta_t.detach(), y),
                       self._noise(rows), start=start, info=info)

    def adversarial(self, theta, rows):
        """Adversarial inputs of ``rows`` at ``theta``, cached per parameter vector."""
        key = self._key(theta)
        if key not in self._adv_cache:
            if len(self._adv_cache) >= 2:
                self._adv_cache.pop(next(iter(self._adv_cache)))
            self._adv_cache[key] = ({}, self._t(theta))
        store, theta_t = self._adv_cache[key]
        missing = np.array([r for r in rows if int(r) not in store], dtype=np.int64)
        for chunk in _chunks(missing, self.batch_size):
            xa = self.attack_rows(theta_t, chunk)
            for r, v in zip(chunk, xa):
                store[int(r)] = v
        return torch.stack([store[int(r)] for r in rows]) if len(rows) else self._x(rows)

    def inputs(self, theta, rows, points):
        if points == "clean" or self.threat.epsilon == 0:
            return self._x(rows)
        if points != "adversarial":
            raise ValueError(f"points must be 'clean' or 'adversarial', got {points!r}.")
        return self.adversarial(theta, rows)

    def _model_inputs(self, theta, rows, points):
        """What the loss of ``theta`` runs on: head features when possible."""
        x = self.inputs(theta, rows, points)
        if self.head is None:
            return x, False
        with torch.no_grad():
            return self._capture(x), True

    def _batches(self, theta, rows, points):
        for chunk in _chunks(np.asarray(rows, dtype=np.int64), self.batch_size):
            inp, on_head = self._model_inputs(theta, chunk, points)
            yield chunk, inp, self._y(chunk), on_head

    def _loss_sum(self, theta_t, inp, y, on_head):
        z = self._head_logits(theta_t, inp) if on_head else self.logits(theta_t, inp)
        return F.cross_entropy(z, y, reduction="sum")

    def purge(self, rows):
        """Forget everything cached about ``rows``."""
        rows = {int(r) for r in rows}
        for store, _ in self._adv_cache.values():
            for r in rows:
                store.pop(r, None)
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
                    total -= self._price(self.adversarial(theta, chunk), chunk)
        return total / len(rows) + 0.5 * self.alpha * float(theta_t @ theta_t)

    def _price(self, xa, rows):
        """``gamma/2 sum ||delta_i||^2`` of a penalised attack (its share of ``J``)."""
        delta = (xa - self._x(rows)).flatten(1)
        return 0.5 * self.threat.gamma * float((delta * delta).sum())

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

    def gradient_residual(self, theta, rows):
        """Norm of the gradient of the mean robust objective over ``rows`` at ``theta``."""
        return float(np.linalg.norm(self.grad_sum(theta, rows) / len(rows)))

    # ---- curvature -------------------------------------------------------------
    def _hvp(self, theta_t, inp, y, on_head, V):
        """Rows of ``V`` times the Hessian of the summed loss (vmapped jvp of grad)."""
        g = grad(self._loss_sum)
        return vmap(lambda v: jvp(lambda t: g(t, inp, y, on_head), (theta_t,), (v,))[1])(V)

    def _delta_grad(self, theta_t, xa, y):
        """Per-row gradient of the loss in the input (rows are independent)."""
        return grad(lambda x: self._loss_sum(theta_t, x, y, False))(xa)

    def hessian_sum(self, theta, rows, kind="total", points="adversarial", cols=None,
                    neumann_order=3):
        """Sum over ``rows`` of a per-sample curvature, restricted to ``cols``.

        Returns a dense ndarray when there are at most ``dense_max`` columns
        (and ``kind != 'paper'``), else a ``scipy.sparse.linalg.LinearOperator``.
        See the module docstring for the kinds.
        """
        if kind not in ("hessian", "total", "fisher", "paper"):
            raise ValueError(f"unknown curvature kind {kind!r}")
        if kind in ("total", "paper"):
            points = "adversarial"
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.arange(self.n_params) if cols is None else np.asarray(cols)
        if kind != "paper" and len(cols) <= self.dense_max:
            return self._dense(theta, rows, kind, points, cols)
        return self._operator(theta, rows, kind, points, cols, neumann_order)

    def _dense(self, theta, rows, kind, points, cols):
        theta_t = self._t(theta)
        p = len(cols)
        cols_t = torch.as_tensor(cols, device=self.device)
        H = torch.zeros((p, p), dtype=self.dtype, device=self.device)
        if kind == "fisher":
            for start in range(0, len(rows), self.batch_size):
                G = torch.as_tensor(self.per_sample_grads(theta, rows[start:start + self.batch_size],
                                                          points, cols), device=self.device)
                H += G.T @ G
            return H.cpu().numpy()
        width = 64
        for _, inp, y, on_head in self._batches(theta, rows, points):
            if on_head:
                H += self._head_hessian(theta_t, inp, cols_t)
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
                H += self._head_indirect_sum(theta, theta_t, rows, cols_t)
        return H.cpu().numpy()

    @property
    def _head_layout(self):
        """Positions in ``theta`` of the head's weight (K, F) and bias (K,)."""
        if getattr(self, "_layout", None) is None:
            offsets = dict(zip(self.names, np.cumsum([0] + self.sizes[:-1])))
            K, F = self.head.weight.shape
            w = offsets[self._head_name + "weight"] + np.arange(K * F).reshape(K, F)
            b = self._head_name + "bias"
            b = offsets[b] + np.arange(K) if b in offsets else None
            self._layout = (w, b)
        return self._layout

    def _head_hessian(self, theta_t, feats, cols_t):
        """Hessian of the summed cross-entropy of the head, in closed form.

        With ``p_i = softmax(W phi_i + b)`` and ``u_i = (phi_i, 1)``, the Hessian
        in ``(W, b)`` is ``sum_i (diag(p_i) - p_i p_i^T) kron (u_i u_i^T)``:
        ``K`` weighted Gram matrices and one product of the ``n x K(F+1)``
        matrix of the ``p_i kron u_i``, instead of one Hessian-vector product
        per parameter.
        """
        w_pos, b_pos = self._head_layout
        K = w_pos.shape[0]
        with torch.no_grad():
            P = torch.softmax(self._head_logits(theta_t, feats), dim=1)
            U = feats if b_pos is None else torch.cat(
                [feats, torch.ones_like(feats[:, :1])], dim=1)
            width = U.shape[1]
            H = torch.zeros((K * width, K * width), dtype=self.dtype, device=self.device)
            for k in range(K):
                blk = slice(k * width, (k + 1) * width)
                H[blk, blk] = (U * P[:, k:k + 1]).T @ U
            V = (P[:, :, None] * U[:, None, :]).reshape(len(U), K * width)
            H -= V.T @ V
        idx = self._natural_index(cols_t)
        return H[idx][:, idx]

    def _natural_index(self, cols_t):
        """Positions of ``cols_t`` in the head's natural order ``(k, [phi, 1])``."""
        w_pos, b_pos = self._head_layout
        K, F = w_pos.shape
        width = F + (b_pos is not None)
        pos = np.empty(self.n_params, dtype=np.int64)
        natural = np.arange(K * width).reshape(K, width)
        pos[w_pos.ravel()] = natural[:, :F].ravel()
        if b_pos is not None:
            pos[b_pos] = natural[:, F]
        return torch.as_tensor(pos, device=self.device)[cols_t]

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
        (``_HeadFactor``) are skipped: :meth:`_head_indirect_sum` adds them.
        """
        if self.threat.epsilon == 0:
            return
        key = self._key(theta)
        store = self._factor_cache.setdefault(key, {})
        if len(self._factor_cache) > 2:
            self._factor_cache.pop(next(iter(self._factor_cache)))
        theta_t = self._t(theta)
        missing = np.array([r for r in rows if int(r) not in store], dtype=np.int64)
        for chunk in _chunks(missing, self.batch_size):
            for r, C in zip(chunk, self._chunk_factors(theta, theta_t, chunk)):
                store[int(r)] = C
        head_rows = [int(r) for r in rows if isinstance(store[int(r)], _HeadFactor)]
        if head_rows and expand_head:
            yield from self._expand_head(theta, theta_t, np.asarray(head_rows, dtype=np.int64),
                                         store)
        for r in rows:
            C = store[int(r)]
            if C is not None and not isinstance(C, _HeadFactor):
                yield C

    def _chunk_factors(self, theta, theta_t, chunk):
        x = self._x(chunk)
        xa = self.inputs(theta, chunk, "adversarial")
        y = self._y(chunk)
        delta = xa - x
        free = self.threat.free_mask(x, delta).flatten(1)
        out = [None] * len(chunk)
        if self.threat.penalized and self.head is not None:
            return self._head_factors(theta_t, xa, y, free)
        if self.threat.norm == "inf":
            candidates = np.flatnonzero(free.any(dim=1).cpu().numpy())
            if len(candidates) == 0:
                return out
            # One product per row: a piecewise-linear network has exactly zero
            # curvature of its outputs in the input, so its loss is convex in delta
            # and no free coordinate follows theta smoothly.
            curved = self._output_curvature(theta_t, xa[candidates], y[candidates],
                                            free[candidates])
            todo = candidates[curved]
        else:
            todo = np.arange(len(chunk))
        for i in todo:
            out[i] = self._row_factor(theta_t, xa[i], y[i], delta[i].flatten(), free[i])
        return out

    def _output_curvature(self, theta_t, xa, y, free):
        """Whether the network's output has curvature in the input (per row)."""
        gen = torch.Generator().manual_seed(self.seed + 17)
        t = torch.randn(xa.shape, generator=gen, dtype=self.dtype).to(self.device)
        t = t * free.reshape(xa.shape)
        with torch.no_grad():
            n_out = self.logits(theta_t, xa[:1]).shape[1]
        w = torch.randn((xa.shape[0], n_out), generator=gen, dtype=self.dtype).to(self.device)

        def contract(x):
            return (self.logits(theta_t, x) * w).sum()
        hv = jvp(grad(contract), (xa,), (t,))[1]
        return (hv.flatten(1).abs().amax(dim=1) > 0).cpu().numpy()

    def _row_factor(self, theta_t, xa, y, delta, free):
        """``C`` with ``C C^T = B^T N^+ B`` for one row, or None."""
        idx = torch.nonzero(free).flatten()
        k = len(idx)
        if k == 0:
            return None
        m = delta.numel()
        xa1, y1 = xa[None], y[None]
        E = torch.zeros((k, m), dtype=self.dtype, device=self.device)
        E[torch.arange(k), idx] = 1.0

        def dgrad(x):
            return self._delta_grad(theta_t, x, y1).flatten()

        hv = vmap(lambda e: jvp(dgrad, (xa1,), (e.reshape(xa1.shape),))[1])(E)
        G = hv[:, idx]
        G = 0.5 * (G + G.T)
        Q = torch.eye(k, dtype=self.dtype, device=self.device)
        mu = self.threat.gamma if self.threat.penalized else 0.0
        dF = delta[idx]
        sphere = self.threat.norm == 2 and not self.threat.penalized
        if sphere and float(delta.norm()) >= self.threat.epsilon * (1 - 1e-7) \
                and float(dF.norm()) > 0:
            # Active sphere: tangent directions only, Lagrange multiplier mu.
            g = dgrad(xa1)[idx]
            mu = float(g @ dF) / float(dF @ dF)
            u = dF / dF.norm()
            P = Q - torch.outer(u, u)
            evals, evecs = torch.linalg.eigh(P)
            Q = evecs[:, evals > 0.5]
            if Q.shape[1] == 0:
                return None
        N = -(Q.T @ (G - mu * torch.eye(k, dtype=self.dtype, device=self.device)) @ Q)
        lam, U = torch.linalg.eigh(0.5 * (N + N.T))
        scale = float(lam.abs().max()) if len(lam) else 0.0
        keep = lam > max(1e-8 * scale, 1e-12)
        if not bool(keep.any()):
            return None
        dirs = torch.zeros((int(keep.sum()), m), dtype=self.dtype, device=self.device)
        dirs[:, idx] = (Q @ U[:, keep]).T

        def theta_grad(x):
            return grad(lambda t: self._loss_sum(t, x, y1, False))(theta_t)

        B = vmap(lambda d: jvp(theta_grad, (xa1,), (d.reshape(xa1.shape),))[1])(dirs)
        return (B / lam[keep].sqrt()[:, None]).T


    # ---- penalised attack on a frozen body: the indirect term through the features ----
    def _features(self, theta_t, x):
        """Input of the head on ``x``, differentiable in ``x`` (unlike ``_capture``)."""
        mod = dict(self.module.named_modules())[self._head_name.rstrip(".")]
        box = []
        handle = mod.register_forward_hook(lambda m, inp, out: box.append(inp[0]))
        try:
            params = dict(self._fixed)
            params.update(self._unflatten(theta_t))
            functional_call(self.module, params, (x,))
        finally:
            handle.remove()
        return box[0]

    def _head_factors(self, theta_t, xa, y, free):
        """Per-row ``L_i`` with ``J_i N_i^+ J_i^T = L_i L_i^T`` (F x r), as ``_HeadFactor``.

        With the head ``z = W phi(x) + b`` on a frozen body, the mixed
        derivative factors through the features: ``B_i = M_i J_i`` with
        ``J_i = d phi / d x`` (F x d) and ``M_i = d (grad_theta l) / d phi``
        (p x F). So ``B_i N_i^+ B_i^T = M_i (J_i N_i^+ J_i^T) M_i^T`` with
        ``N_i = gamma I - G_i`` and ``G_i = d_xx l_i`` on the free coordinates;
        only the F x F matrix is kept, ``M_i`` is rebuilt when it is used.

        ``G_i`` has low rank when the body starts with a narrow layer (an MLP:
        at most its width). Its range is found from ``k`` Hessian-vector
        products with random directions and checked with one more; then
        ``N_i^+ = (P - Q Q^T) / gamma + Q (gamma I - T)^+ Q^T`` with
        ``T = Q^T G_i Q`` recovered from the same products (Nyström), exactly,
        with no d x d matrix. Rows whose check fails retry with twice the
        sketch, and at ``d`` directions fall back to block conjugate gradients
        (matrix-free, :meth:`_cg_head_factors`).
        """
        n = len(xa)
        d = int(np.prod(self.input_shape))
        k = min(d, int(self.head.weight.shape[1]) + 16)
        out = [None] * n
        todo = np.arange(n)
        gen = torch.Generator().manual_seed(self.seed + 29)
        while len(todo) and k < d:
            failed = []
            for chunk in _chunks(todo, max(1, self.batch_size // 4)):
                for i, L in zip(chunk, self._sketch_factors(theta_t, xa[chunk], y[chunk],
                                                            free[chunk], k, gen)):
                    if L is False:
                        failed.append(i)
                    else:
                        out[i] = L
            todo = np.asarray(failed, dtype=np.int64)
            k *= 2
        if len(todo):
            for i, L in zip(todo, self._cg_head_factors(theta_t, xa[todo], y[todo],
                                                        free[todo])):
                out[i] = L
        return out

    def _input_hvps(self, theta_t, x, y, V):
        """``G_i v`` for each row ``i`` and each of its directions ``V[i]`` (c, k, d)."""
        def loss1(x1, y1):
            return F.cross_entropy(self.logits(theta_t, x1[None]), y1[None])

        def row(x1, y1, Vi):
            g = grad(loss1)
            return vmap(lambda v: jvp(lambda z: g(z, y1), (x1,), (v.reshape(x1.shape),))[1]
                        .flatten())(Vi)

        return vmap(row)(x, y, V)

    def _jacobian_features(self, theta_t, x):
        J = vmap(jacrev(lambda x1: self._features(theta_t, x1[None])[0]))(x)
        return J.reshape(len(x), J.shape[1], -1)

    def _sketch_factors(self, theta_t, x, y, free, k, gen):
        """Low-rank path of :meth:`_head_factors`; ``False`` for rows that need more."""
        c = len(x)
        d = int(np.prod(self.input_shape))
        gamma = self.threat.gamma
        m = free.reshape(c, d).to(self.dtype)
        # One Gaussian sketch for the chunk (independent of every G_i), masked per row.
        omega = torch.randn((k + 1, d), generator=gen, dtype=self.dtype).to(self.device)
        omega = omega[None] * m[:, None, :]
        Y = self._input_hvps(theta_t, x, y, omega) * m[:, None, :]
        probe, Y = Y[:, -1], Y[:, :-1]
        # range of Y^T: Householder QR (d x k), then the SVD of the small k x k factor
        Q0, R0 = torch.linalg.qr(Y.transpose(1, 2))
        U, S, _ = torch.linalg.svd(R0)
        J = self._jacobian_features(theta_t, x) * m[:, None, :]
        out = []
        ranks = (S > 1e-10 * S[:, :1].clamp_min(1e-300)).sum(dim=1)
        for i in range(c):
            r = int(ranks[i])
            Q = Q0[i] @ U[i, :, :r]                               # d x r, free coordinates
            if r >= k:
                out.append(False)
                continue
            miss = probe[i] - Q @ (Q.T @ probe[i])
            if float(miss.norm()) > 1e-9 * max(float(probe[i].norm()), 1e-300):
                out.append(False)
                continue
            out.append(Q)
        result = [False] * c
        eye = None
        for i in range(c):
            if out[i] is False:
                continue
            Q = out[i]
            r = Q.shape[1]
            if r == 0:  # no curvature in the input: N = gamma I
                result[i] = _feature_factor(J[i] @ J[i].T / gamma)
                continue
            # G = Q T Q^T on the captured range, so Q^T Y^T = T (Q^T Omega^T): T by
            # least squares against the (well-conditioned) projected sketch.
            A = Q.T @ omega[i, :-1].T                              # r x k
            B = Q.T @ Y[i].T                                       # r x k
            T = torch.linalg.lstsq(A.T, B.T).solution.T
            if eye is None or eye.shape[0] != r:
                eye = torch.eye(r, dtype=self.dtype, device=self.device)
            lam, V = torch.linalg.eigh(gamma * eye - 0.5 * (T + T.T))
            scale = max(float(lam.abs().max()) if r else 0.0, gamma)
            keep = lam > 1e-8 * scale
            JQ = J[i] @ Q
            JQV = JQ @ V[:, keep]
            R = (J[i] @ J[i].T - JQ @ JQ.T) / gamma + (JQV / lam[keep]) @ JQV.T
            result[i] = _feature_factor(R)
        return result

    def _cg_head_factors(self, theta_t, xa, y, free, rtol=1e-12):
        """Matrix-free path of :meth:`_head_factors`: ``N_i Z_i = J_i^T`` by block CG.

        ``N_i v = gamma v - P G_i P v`` costs one Hessian-vector product per
        column; all rows of a chunk and the F right-hand sides run together,
        and no d x d matrix is formed. A row whose ``N_i`` shows a direction
        of non-positive curvature is no strict local maximum (``gamma`` below
        the curvature there): its indirect term is left out, with a warning.
        """
        n = len(xa)
        d = int(np.prod(self.input_shape))
        gamma = self.threat.gamma
        out = []
        indefinite = 0
        for chunk in _chunks(np.arange(n), max(1, self.batch_size // 4)):
            x, yc = xa[chunk], y[chunk]
            m = free[chunk].reshape(len(chunk), d).to(self.dtype)[:, None, :]
            J = self._jacobian_features(theta_t, x) * m                     # (c, F, d)

            def N(V, x=x, yc=yc, m=m):
                return gamma * V - self._input_hvps(theta_t, x, yc, V * m) * m

            Z = torch.zeros_like(J)
            res = J.clone()
            direction = res.clone()
            rs = (res * res).sum(-1)                                        # (c, F)
            stop = (rtol ** 2) * rs
            bad = torch.zeros(len(chunk), dtype=torch.bool, device=self.device)
            for _ in range(d):
                active = rs > stop
                if not bool(active.any()):
                    break
                Nd = N(direction)
                curv = (direction * Nd).sum(-1)
                bad |= (active & (curv <= 0)).any(dim=1)
                step = torch.where(active & (curv > 0), rs / curv.clamp_min(1e-300),
                                   torch.zeros_like(rs))
                Z += step[..., None] * direction
                res -= step[..., None] * Nd
                rs_new = (res * res).sum(-1)
                beta = torch.where(active, rs_new / rs.clamp_min(1e-300), torch.zeros_like(rs))
                direction = res + beta[..., None] * direction
                rs = rs_new
            for i in range(len(chunk)):
                if bool(bad[i]):
                    indefinite += 1
                    out.append(None)
                else:
                    out.append(_feature_factor(J[i] @ Z[i].T))
        if indefinite:
            warnings.warn(
                f"{indefinite} row(s) are no strict local maximum of the penalised attack "
                f"(gamma={gamma} below the curvature of the loss in the input); their "
                "indirect term is left out of the total Hessian (raise gamma).",
                ConvergenceWarning, stacklevel=4)
        return out

    def _head_indirect_sum(self, theta, theta_t, rows, cols_t):
        """``sum_i M_i R_i M_i^T`` over rows with a ``_HeadFactor``, restricted to ``cols_t``.

        For the head ``z = W phi + b``, with ``g = softmax(z) - e_y``,
        ``A = (diag(p) - p p^T) W`` and ``u = (phi, 1)``, the derivative of the
        head gradient in the features is ``M[(k, j), f] = A[k, f] u[j] +
        g[k] E[j, f]`` (``E`` the identity padded with a zero bias row). So
        ``M R M^T`` is four Kronecker-structured terms, summed over the rows
        with einsum at ``K^2 (F+1)^2`` per row instead of a ``p x p`` product.
        """
        store = self._factor_cache[self._key(theta)]
        rows = np.asarray([int(r) for r in rows if isinstance(store[int(r)], _HeadFactor)],
                          dtype=np.int64)
        w_pos, b_pos = self._head_layout
        K, F = w_pos.shape
        width = F + (b_pos is not None)
        T = torch.zeros((K, width, K, width), dtype=self.dtype, device=self.device)
        if len(rows):
            weights = self._unflatten(theta_t)
            W = weights[self._head_name + "weight"]
            for chunk in _chunks(rows, self.batch_size):
                with torch.no_grad():
                    phi = self._capture(self.adversarial(theta, chunk))
                    P = torch.softmax(self._head_logits(theta_t, phi), dim=1)
                    g = P - _onehot(self._y(chunk), K, self.dtype)
                    A = P[:, :, None] * (W[None] - (P @ W)[:, None, :])      # (c, K, F)
                    R = torch.stack([store[int(r)].L @ store[int(r)].L.T for r in chunk])
                    u = phi if b_pos is None else torch.cat(
                        [phi, torch.ones_like(phi[:, :1])], dim=1)
                    AR = A @ R
                    P1 = AR @ A.transpose(1, 2)                               # (c, K, K)
                    P2 = torch.zeros((len(chunk), K, width), dtype=self.dtype,
                                     device=self.device)
                    P2[:, :, :F] = AR
                    P4 = torch.zeros((len(chunk), width, width), dtype=self.dtype,
                                     device=self.device)
                    P4[:, :F, :F] = R
                    T += torch.einsum("ikl,ij,im->kjlm", P1, u, u)
                    T2 = torch.einsum("ikm,ij,il->kjlm", P2, u, g)
                    T += T2 + T2.permute(2, 3, 0, 1)
                    T += torch.einsum("ik,il,ijm->kjlm", g, g, P4)
        H = T.reshape(K * width, K * width)
        idx = self._natural_index(cols_t)
        return H[idx][:, idx]

    def _expand_head(self, theta, theta_t, rows, store):
        """Yield ``C_i = M_i L_i`` (p x r) for rows whose factor is a ``_HeadFactor``."""
        def head_grad(phi, yy):
            return grad(lambda t: self._loss_sum(t, phi[None], yy[None], True))(theta_t)

        for chunk in _chunks(rows, self.batch_size):
            with torch.no_grad():
                phi = self._capture(self.adversarial(theta, chunk))
            M = vmap(jacrev(head_grad))(phi, self._y(chunk))
            for r, Mi in zip(chunk, M):
                yield Mi @ store[int(r)].L

    # ---- exact refit -----------------------------------------------------------
    def refit(self, rows, theta0=None):
        """Optimum of the robust objective over ``rows`` in ``theta`` (all else frozen).

        L-BFGS on ``J`` itself: every evaluation re-runs the attack at the
        current ``theta`` (fixed random starts, so the worst case is a
        deterministic function of ``theta``) and uses the Danskin gradient, the
        gradient of the loss at those points. For the last layer on a frozen
        body the exact robust objective is convex (a maximum of convex
        functions); for deeper parameters the result is a local optimum near
        the start. ``refit_info_`` records the final gradient norm.

        The Danskin gradient is the gradient of ``J`` only where the worst case
        moves smoothly with ``theta``. With sign steps (l_inf PGD or FGSM), or
        any attack on a ReLU body, ``delta_i(theta)`` is piecewise constant in
        ``theta`` with very small cells (on MNIST, a relative change of 1e-4
        in the last layer moves the worst case of a quarter of the rows), so
        ``J`` jumps between cells and the solver stops at a jump with a
        gradient norm well above ``refit_tol``; ``refit_info_`` says so.
        """
        rows = np.asarray(rows, dtype=np.float64).astype(np.int64)
        if theta0 is None:
            theta0 = self.theta_init if self.theta_init is not None else np.zeros(self.n_params)
        theta = np.asarray(theta0, dtype=np.float64).copy()
        m = len(rows)
        # Penalised attack: each chunk's ascent starts from its last converged
        # worst case (successive iterates are close); local to this solve.
        warm = {}
        penalized = self.threat.penalized

        def attack(t, ci, chunk):
            if not penalized:
                return self.attack_rows(t, chunk)
            info = {}
            xa = self.attack_rows(t, chunk, start=warm.get(ci), info=info)
            if info["converged"]:
                warm[ci] = xa - self._x(chunk)
            else:
                warm.pop(ci, None)
            return xa, info["converged"]

        def fun(th):
            # chunk by chunk: the attacked inputs of all rows are never held at once
            t = self._t(th)
            total = 0.0
            g = torch.zeros_like(t)
            for ci, chunk in enumerate(_chunks(rows, self.batch_size)):
                xa = attack(t, ci, chunk)
                if penalized:
                    xa = xa[0]
                if self.head is not None:
                    with torch.no_grad():
                        inp, on_head = self._capture(xa), True
                else:
                    inp, on_head = xa.detach(), False
                tt = t.clone().requires_grad_(True)
                loss = self._loss_sum(tt, inp, self._y(chunk), on_head)
                g += torch.autograd.grad(loss, tt)[0]
                total += float(loss.detach())
                if self.threat.penalized:
                    total -= self._price(xa, chunk)
            f = total / m + 0.5 * self.alpha * float(t @ t)
            return f, (g / m + self.alpha * t).cpu().numpy()

        res = minimize(fun, theta, jac=True, method="L-BFGS-B",
                       options={"maxiter": self.refit_max_iter, "maxcor": 30,
                                "gtol": self.refit_tol, "ftol": 0.0})
        self.refit_info_ = {"n_iter": int(res.nit), "gradient_norm": float(np.linalg.norm(res.jac)),
                            "message": str(res.message)}
        if penalized:
            # Trial points of the line search may lie where gamma is below the
            # curvature; only the solution matters.
            t = self._t(res.x)
            done = all(attack(t, ci, chunk)[1]
                       for ci, chunk in enumerate(_chunks(rows, self.batch_size)))
            self.refit_info_["attack_converged"] = done
            if not done:
                warnings.warn(
                    "the penalised attack does not converge at the solution; gamma="
                    f"{self.threat.gamma} is probably below the curvature of the loss in "
                    "the input (raise gamma or n_steps).", ConvergenceWarning, stacklevel=2)
        return res.x


def _feature_factor(R):
    """``_HeadFactor`` of the PSD F x F matrix ``R`` (None when it is zero)."""
    lam, U = torch.linalg.eigh(0.5 * (R + R.T))
    keep = lam > 1e-12 * max(float(lam.abs().max()), 0.0)
    if not bool(keep.any()):
        return None
    return _HeadFactor(U[:, keep] * lam[keep].sqrt())


def _onehot(y, K, dtype):
    """One-hot rows of the class codes ``y``."""
    out = torch.zeros((len(y), K), dtype=dtype, device=y.device)
    out[torch.arange(len(y), device=y.device), y] = 1.0
    return out


class _HeadFactor:
    """Cached ``L`` (F x r) of a row's indirect term in feature space."""

    __slots__ = ("L",)

    def __init__(self, L):
        self.L = L


def _frozen_copy(module, device, dtype):
    import copy

    out = copy.deepcopy(module).to(device=device, dtype=dtype).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out
