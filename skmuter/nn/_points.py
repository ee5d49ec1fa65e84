"""The points at which a network's per-row terms are evaluated.

:class:`AttackPoints` owns the training rows seen by a
:class:`~skmuter.nn.NetObjective`: clean inputs, the attack's worst case at
a parameter vector, and what is cached about each row. Each row's random
start is fixed (drawn from a seed per block of rows), so the worst case
``delta_i(theta)`` is a deterministic function of ``theta``: the robust
objective is a function, and the cache may key it by ``theta``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._attacks import perturb

__all__ = ["AttackPoints", "row_chunks"]

#: rows per block of random starts drawn from one seed
_NOISE_BLOCK = 1024

#: parameter vectors whose worst cases are cached
_CACHED_VECTORS = 2


def row_chunks(rows, size):
    """Consecutive blocks of at most ``size`` of the positions ``rows`` (arrays)."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def theta_key(theta):
    """Cache key of a parameter vector."""
    return hash(np.asarray(theta, dtype=np.float64).tobytes())


class AttackPoints:
    """Clean and adversarial inputs of the training rows.

    Parameters
    ----------
    X : ndarray of shape (n_samples, *input_shape)
        Training inputs, shared with the estimator (which purges them).
    y : ndarray of shape (n_samples,)
        Class codes ``0..K-1``.
    threat : skmuter.nn._attacks.TorchThreat
        Threat model and attack recipe of the training.
    params : skmuter.nn._params.FlatParams
        The network the attack runs on.
    seed : int
        Seed of the random starts.
    batch_size : int
        Rows per attacked chunk.
    """

    def __init__(self, X, y, threat, params, seed=0, batch_size=256):
        self.X = X
        self.y = y
        self.threat = threat
        self.params = params
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.device = params.device
        self.dtype = params.dtype
        self.input_shape = tuple(X.shape[1:])
        self._adv_cache = {}
        #: the head's feature map when only features are cached (see :meth:`stream_features`)
        self.features = None
        self._clean_features = {}

    def stream_features(self, features):
        """Cache the head's features of each row instead of its (adversarial) inputs.

        For rows read from a dataset: what is kept per row is what the head
        sees (``n x n_features`` per cached parameter vector), never the
        inputs; :meth:`adversarial` then re-runs the attack on each call.
        """
        self.features = features
        self._adv_cache.clear()

    def x(self, rows):
        """Clean inputs of ``rows`` (float64 tensor)."""
        return torch.as_tensor(self.X[rows], device=self.device).to(self.dtype)

    def labels(self, rows):
        """Class codes of ``rows`` (long tensor)."""
        return torch.as_tensor(self.y[rows], device=self.device, dtype=torch.long)

    def noise(self, rows):
        """The fixed uniform noise of each row's random start (None without one)."""
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
                loss = F.cross_entropy(self.params.logits(theta_t, xa), y, reduction="sum")
                return torch.autograd.grad(loss, xa)[0]
        return input_grad

    def attack(self, theta_t, rows, start=None, info=None):
        """Adversarial inputs of ``rows`` at ``theta_t`` (not cached).

        ``start`` and ``info`` are passed to the penalised attack (see
        :func:`~skmuter.nn._attacks.perturb`).
        """
        x, y = self.x(rows), self.labels(rows)
        if self.threat.epsilon == 0:
            return x
        return perturb(self.threat, x, self._input_grad(theta_t.detach(), y),
                       self.noise(rows), start=start, info=info)

    def _attacked(self, theta_t, rows):
        """Adversarial inputs of ``rows`` at ``theta_t``, attacked chunk by chunk (not cached)."""
        return torch.cat([self.attack(theta_t, chunk)
                          for chunk in row_chunks(np.asarray(rows, dtype=np.int64),
                                                  self.batch_size)])

    def adversarial(self, theta, rows):
        """Adversarial inputs of ``rows`` at ``theta``, cached for the two vectors
        used last (least recently used first out); recomputed each time when
        only features are cached."""
        if not len(rows):
            return self.x(rows)
        if self.features is not None:
            return self._attacked(self.params.tensor(theta), rows)
        return self._cached(theta, rows, self.attack)

    def _cached(self, theta, rows, compute):
        key = theta_key(theta)
        if key in self._adv_cache:
            self._adv_cache[key] = self._adv_cache.pop(key)  # now the most recent
        else:
            if len(self._adv_cache) >= _CACHED_VECTORS:
                self._adv_cache.pop(next(iter(self._adv_cache)))
            self._adv_cache[key] = ({}, self.params.tensor(theta))
        store, theta_t = self._adv_cache[key]
        missing = np.array([r for r in rows if int(r) not in store], dtype=np.int64)
        for chunk in row_chunks(missing, self.batch_size):
            for r, v in zip(chunk, compute(theta_t, chunk)):
                store[int(r)] = v
        return torch.stack([store[int(r)] for r in rows])

    def model_features(self, theta, rows, points):
        """The head's features of ``rows`` at ``points`` (with :meth:`stream_features`).

        ``rows`` must not be empty.

        Clean features are cached once per row; adversarial ones per
        parameter vector, like the adversarial inputs otherwise.
        """
        if points == "clean" or self.threat.epsilon == 0:
            missing = np.array([r for r in rows if int(r) not in self._clean_features],
                               dtype=np.int64)
            for chunk in row_chunks(missing, self.batch_size):
                with torch.no_grad():
                    phi = self.features(self.x(chunk))
                for r, v in zip(chunk, phi):
                    self._clean_features[int(r)] = v
            return torch.stack([self._clean_features[int(r)] for r in rows])
        if points != "adversarial":
            raise ValueError(f"points must be 'clean' or 'adversarial', got {points!r}.")
        if not len(rows):
            return self.model_features(theta, rows, "clean")

        def compute(theta_t, chunk):
            xa = self.attack(theta_t, chunk)
            with torch.no_grad():
                return self.features(xa)

        return self._cached(theta, rows, compute)

    def inputs(self, theta, rows, points):
        """Inputs of ``rows`` at ``points`` (``'clean'`` or ``'adversarial'``)."""
        if points == "clean" or self.threat.epsilon == 0:
            return self.x(rows)
        if points != "adversarial":
            raise ValueError(f"points must be 'clean' or 'adversarial', got {points!r}.")
        return self.adversarial(theta, rows)

    def price(self, xa, rows):
        """``gamma/2 sum ||delta_i||^2`` of a penalised attack (its share of the objective)."""
        delta = (xa - self.x(rows)).flatten(1)
        return 0.5 * self.threat.gamma * float((delta * delta).sum())

    def keep(self, theta):
        """Mark the worst cases cached at ``theta`` as the most recently used (a
        solver keeps its best point's while it tries others)."""
        key = theta_key(theta)
        if key in self._adv_cache:
            self._adv_cache[key] = self._adv_cache.pop(key)

    def retain(self, theta):
        """Drop the worst cases cached at every parameter vector but ``theta``
        (after a forget: nothing computed at the parameters before it stays)."""
        key = theta_key(theta)
        for other in [k for k in self._adv_cache if k != key]:
            del self._adv_cache[other]

    def purge(self, rows):
        """Forget the cached worst cases of ``rows``."""
        rows = {int(r) for r in rows}
        for store, _ in self._adv_cache.values():
            for r in rows:
                store.pop(r, None)
        for r in rows:
            self._clean_features.pop(r, None)
