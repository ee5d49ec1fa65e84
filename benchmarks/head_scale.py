"""Forgetting with a head too large for a dense Hessian (matrix-free, Kronecker factors).

A head of ``--features`` x ``--classes`` (2,048 x 1,000 by default: about two
million parameters, whose dense Hessian would take 32 TB) on synthetic
features given directly (the body is the identity): Gaussian class means plus
noise. The head is adversarially trained (l_inf PGD on the features) for a
few epochs only (``--epochs``, no polish: a short fit is enough to time the
forget), then MUter forgets one row and then 1% of the rows, each request in
its own call. The curvature never exists as a matrix: the forgetter's memory
is the rows' features and softmax probabilities (:mod:`skmuter.nn._kron`),
solved by conjugate gradients with a Kronecker-factored preconditioner.

Printed: the fit time, per request the forget log's times (memory build,
solve, update: the downdate, and the state based at the published model
without a pass over the rows) with the CG iterations and final residual, the bytes the memory holds against a dense
matrix, the process's peak resident memory (``getrusage``), and on the last
memory the CG iterations with and without the preconditioner on the same
right-hand side (``--plain-maxiter`` caps the unpreconditioned run).

Run: ``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/head_scale.py``
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings

import numpy as np
import torch

from skmuter import AdversarialNet
from skmuter.attacks import PGD
from skmuter.forgetters import MUter


class IdentityBody(torch.nn.Module):
    """Features given directly: the network is its head."""

    def __init__(self, n_features=2048, n_classes=1000):
        super().__init__()
        self.body = torch.nn.Identity()
        self.head = torch.nn.Linear(n_features, n_classes)

    def forward(self, x):
        return self.head(self.body(x))


def synthetic(n, F, K, seed=0, noise=6.0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=1.0 / np.sqrt(F), size=(K, F)) * 3.0
    y = rng.permutation(np.arange(n) % K)  # every class present
    X = means[y] + rng.normal(scale=noise / np.sqrt(F), size=(n, F))
    return X.astype(np.float32), y


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_bytes(op):
    tensors = [op.U, op.P, *op.sums]
    return sum(t.numel() * t.element_size() for t in tensors)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--features", type=int, default=2048)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=1e-2)
    ap.add_argument("--epsilon", type=float, default=0.01)
    ap.add_argument("--pgd-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plain-maxiter", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cg-only", action="store_true",
                    help="stop after the CG comparison at the fitted model")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n, F, K = args.rows, args.features, args.classes
    X, y = synthetic(n, F, K, args.seed)
    p = K * (F + 1)
    print(f"head {F} x {K} (+bias): {p:,} parameters; a dense Hessian would be "
          f"{p * p * 8 / 1e12:,.1f} TB. {n:,} rows, l_inf PGD eps={args.epsilon} "
          f"({args.pgd_steps} steps), {args.threads} thread(s)")
    print(f"peak RSS after the data: {peak_rss_mb():,.0f} MB")

    net = AdversarialNet(
        IdentityBody, module__n_features=F, module__n_classes=K,
        attack=PGD(epsilon=args.epsilon, n_steps=args.pgd_steps), alpha=args.alpha,
        train_params="forget", forgetter=MUter(), forget_tol=None, polish=False,
        max_epochs=args.epochs, lr=0.5, batch_size=256, random_state=args.seed, verbose=0)
    t0 = time.perf_counter()
    net.fit(X, y)
    fit_s = time.perf_counter() - t0
    acc = float((net.predict(X) == y).mean())
    print(f"fit ({args.epochs} epochs, no polish): {fit_s:.1f} s, train accuracy {acc:.3f}; "
          f"peak RSS {peak_rss_mb():,.0f} MB")

    # preconditioned against plain CG on the memory at the fitted model, on the
    # right-hand side of a 1% request (the removed rows' summed gradient)
    obj = net.training_objective()[0]
    theta = net.forgetting_params()
    rng = np.random.default_rng(args.seed + 1)
    order = rng.permutation(n)
    t0 = time.perf_counter()
    op = obj.hessian_sum(theta, np.arange(n), kind="total")
    build_s = time.perf_counter() - t0
    rhs = obj.grad_sum(theta, order[:max(1, n // 100)])
    t0 = time.perf_counter()
    _, pre = op.solve(rhs, precondition=True)
    pre_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, plain = op.solve(rhs, precondition=False, maxiter=args.plain_maxiter)
    plain_s = time.perf_counter() - t0
    print(f"memory of {op.n_rows:,} rows ({type(op).__name__}, "
          f"{memory_bytes(op) / 2**20:,.0f} MB) built in {build_s:.1f} s; CG: "
          f"preconditioned {pre['iterations']} iterations to {pre['residual']:.1e} in "
          f"{pre_s:.1f} s, plain {plain['iterations']} iterations to {plain['residual']:.1e} "
          f"in {plain_s:.1f} s (cap {args.plain_maxiter})")
    del op
    if args.cg_only:
        return

    requests = [("1 row", order[:1]), ("1%", order[1:1 + max(1, n // 100)])]
    rows_out = []
    for label, req in requests:
        before = net.forgetting_params()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            net.forget(req)
            wall = time.perf_counter() - t0
        rec = net.forget_log_[-1]
        state = net._forgetter_states[0]
        info = state.solve_info_
        op = state.memory_
        step = float(np.linalg.norm(net.forgetting_params() - before))
        acc = float((net.predict(X) == y).mean())
        print(f"  step norm {step:.3g} (parameters {np.linalg.norm(before):.3g}), "
              f"train accuracy {acc:.3f}")
        rows_out.append((label, len(req), wall, rec, info, type(op).__name__,
                         memory_bytes(op), peak_rss_mb(), rss_mb()))
        print(f"forget {label}: {wall:.1f} s (memory {rec['precompute_time']:.1f} s, solve "
              f"{rec['solve_time']:.1f} s, update {rec['update_time']:.1f} s); CG "
              f"{info['iterations']} iterations, residual {info['residual']:.1e} "
              f"(rtol {info['rtol']:.0e}); memory {type(op).__name__} "
              f"{memory_bytes(op) / 2**20:,.0f} MB; peak RSS {peak_rss_mb():,.0f} MB")

    print()
    print("| request | rows | forget (s) | memory (s) | solve (s) | update (s) "
          "| CG iterations | CG residual | memory held (MB) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, m, wall, rec, info, _, nbytes, peak, _ in rows_out:
        print(f"| {label} | {m} | {wall:.1f} | {rec['precompute_time']:.1f} | "
              f"{rec['solve_time']:.1f} | {rec['update_time']:.1f} | {info['iterations']} | "
              f"{info['residual']:.1e} | {nbytes / 2**20:,.0f} | {peak:,.0f} |")
    print(f"peak RSS of the process: {peak_rss_mb():,.0f} MB (limit 2,048 MB)")


if __name__ == "__main__":
    main()
