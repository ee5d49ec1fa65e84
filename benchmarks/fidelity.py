"""Fidelity of forgetting against exact retrains computed without the library.

The reference minimises the l_inf robust logistic objective inside the input
box [lo, hi] written out here: with the split w = w+ - w- (w+, w- >= 0) the
worst-case margin of a row is linear,

    m_i = s_i w.x_i - sum_j (w+_j R-_ij + w-_j R+_ij)   (s_i = +1),
    m_i = s_i w.x_i - sum_j (w+_j R+_ij + w-_j R-_ij)   (s_i = -1),

with R-_ij = min(eps, x_ij - lo) and R+_ij = min(eps, hi - x_ij) the room the
adversary has below and above x_ij, so the objective
mean softplus(-m_i) + alpha/2 ||w||^2 is smooth and convex on the orthant.
scipy's L-BFGS-B minimises it, then Newton steps on the free variables
polish it to a projected-gradient norm below 1e-12; the script prints the
reference's own residual so its precision is visible.

For each setting it fits the library's model once, forgets single random rows
(one fresh copy per row) with the default forgetter, and prints the residual
fraction ||w_u - w_ref|| / ||w* - w_ref|| (0 perfect, 1 no better than doing
nothing): median, 90th percentile and worst; then the same for successive
single-row requests on one copy.

Usage::

    python benchmarks/fidelity.py                    # digits, 120 rows per setting
    python benchmarks/fidelity.py --rows 40 --successive 60
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import numpy as np
from scipy import optimize
from scipy.special import expit
from sklearn.datasets import load_digits

from skmuter import AdversarialLogisticRegression
from skmuter.attacks import PGD


class Reference:
    """The l_inf-box robust logistic objective on fixed rows, in split variables."""

    def __init__(self, X, s, eps, alpha, lo=0.0, hi=1.0):
        self.X, self.s, self.alpha = X, s, alpha
        down = np.minimum(eps, X - lo)
        up = np.minimum(eps, hi - X)
        pos = s > 0
        # room charged to w+ and to w- in each row's margin
        self.Rp = np.where(pos[:, None], down, up)
        self.Rm = np.where(pos[:, None], up, down)

    def pieces(self, v, rows):
        d = self.X.shape[1]
        wp, wm = v[:d], v[d:]
        X, s = self.X[rows], self.s[rows]
        margin = s * (X @ (wp - wm)) - self.Rp[rows] @ wp - self.Rm[rows] @ wm
        p = expit(-margin)  # d softplus(-m) / d(-m)
        n = len(rows)
        value = np.logaddexp(0.0, -margin).mean() + 0.5 * self.alpha * np.sum((wp - wm) ** 2)
        # d margin / d wp = s x - Rp ; d margin / d wm = -s x - Rm
        Gp = s[:, None] * X - self.Rp[rows]
        Gm = -s[:, None] * X - self.Rm[rows]
        w = wp - wm
        grad = np.concatenate([-(p @ Gp) / n + self.alpha * w, -(p @ Gm) / n - self.alpha * w])
        return value, grad, (Gp, Gm, p * (1 - p) / n)

    def solve(self, rows, v0=None):
        d = self.X.shape[1]
        v = np.zeros(2 * d) if v0 is None else np.maximum(v0, 0.0)
        res = optimize.minimize(lambda u: self.pieces(u, rows)[:2], v, jac=True,
                                method="L-BFGS-B", bounds=[(0, None)] * (2 * d),
                                options={"maxiter": 20000, "ftol": 1e-16, "gtol": 1e-13,
                                         "maxcor": 30})
        v = res.x
        for _ in range(50):
            f, g, (Gp, Gm, c) = self.pieces(v, rows)
            if self.residual(v, g) < 1e-13:
                break
            # free variables: positive, or at zero with a descending derivative
            free = (v > 0) | (g < 0)
            J = np.hstack([Gp, Gm])[:, free]
            H = J.T @ (J * c[:, None])
            idx = np.flatnonzero(free)
            A = np.zeros((2 * d, 2 * d))
            A[:d, :d] = A[d:, d:] = self.alpha * np.eye(d)
            A[:d, d:] = A[d:, :d] = -self.alpha * np.eye(d)
            H += A[np.ix_(idx, idx)]
            step = -np.linalg.lstsq(H, g[free], rcond=None)[0]
            t = 1.0
            while t > 1e-12:
                cand = v.copy()
                cand[free] = np.maximum(v[free] + t * step, 0.0)
                if self.pieces(cand, rows)[0] <= f:
                    break
                t *= 0.5
            v = cand
        return v

    @staticmethod
    def residual(v, g):
        """Projected-gradient norm on the orthant."""
        return float(np.linalg.norm(np.where(v > 0, g, np.minimum(g, 0.0))))

    def weights(self, v):
        d = self.X.shape[1]
        return v[:d] - v[d:]


def digits_pair(a, b):
    X, y = load_digits(return_X_y=True)
    keep = (y == a) | (y == b)
    return X[keep] / 16.0, y[keep]


def run_setting(name, X, y, eps, rows, successive, rng):
    est = AdversarialLogisticRegression(attack=PGD(epsilon=eps, clip=(0, 1)), alpha=1e-4,
                                        fit_intercept=False).fit(X, y)
    s = np.where(y == est.classes_[1], 1.0, -1.0)
    ref = Reference(X, s, eps, 1e-4)
    n = len(y)
    all_rows = np.arange(n)
    v_fit = ref.solve(all_rows)
    w_fit = est.coef_.ravel()
    gap = np.linalg.norm(w_fit - ref.weights(v_fit))
    fractions, worst_ref = [], 0.0
    times = []
    for i in rng.choice(n, size=min(rows, n), replace=False):
        kept = np.delete(all_rows, i)
        v = ref.solve(kept, v_fit)
        worst_ref = max(worst_ref, ref.residual(v, ref.pieces(v, kept)[1]))
        w_ref = ref.weights(v)
        model = copy.deepcopy(est)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            model.forget([i])
            times.append(time.perf_counter() - t0)
        nothing = np.linalg.norm(w_fit - w_ref)
        if nothing > 0:
            fractions.append(np.linalg.norm(model.coef_.ravel() - w_ref) / nothing)
    f = np.array(fractions)
    print(f"{name:<22} n={n:<4} fit vs reference {gap:.1e}; single rows ({len(f)}): "
          f"median {np.median(f):.1e}  p90 {np.quantile(f, 0.9):.1e}  worst {f.max():.2e}; "
          f"reference residual <= {worst_ref:.0e}; forget median {np.median(times) * 1e3:.1f} ms")
    if successive:
        model = copy.deepcopy(est)
        order = rng.choice(n, size=min(successive, n // 2), replace=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.partial_forget(order)
        kept = np.setdiff1d(all_rows, order)
        w_ref = ref.weights(ref.solve(kept, v_fit))
        frac = np.linalg.norm(model.coef_.ravel() - w_ref) / np.linalg.norm(w_fit - w_ref)
        print(f"{'':<22} {len(order)} successive single-row requests: residual fraction "
              f"{frac:.2e}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=120, help="random single rows per setting")
    parser.add_argument("--successive", type=int, default=200,
                        help="successive single-row requests (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    for a, b in ((0, 1), (1, 7)):
        X, y = digits_pair(a, b)
        for eps in (0.1, 0.25):
            run_setting(f"digits {a} vs {b} eps={eps}", X, y, eps, args.rows, args.successive,
                        rng)


if __name__ == "__main__":
    main()
