"""Certified removal on MNIST-b: budget use per request, cost, accuracy.

Fits the paper's robust logistic model on MNIST-b with and without objective
perturbation (``skmuter.certified.CertifiedRemoval``), then forgets random rows
one request at a time with MUter. For each request it prints the exact gradient
residual of the result (summed objective), the share of the budget it spends,
whether the budget forced an exact re-solve, and the request time (the residual
is one pass over the remaining rows). At the end: clean and robust test
accuracy of the certified and the plain model, and the residual fraction of the
certified forget against the exact retrain of the same perturbed objective.

Usage::

    python benchmarks/certified.py --data DATA_DIR [--noise 1.0 --requests 20]
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np

from skmuter.benchmark import load_dataset, paper_attack, paper_estimator
from skmuter.certified import CertifiedRemoval
from skmuter.metrics import residual_fraction, retrain, robust_accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SKMUTER_DATA"))
    parser.add_argument("--noise", type=float, default=1.0, help="sigma of the noise")
    parser.add_argument("--epsilon", type=float, default=1.0, help="certificate epsilon")
    parser.add_argument("--delta", type=float, default=1e-4, help="certificate delta")
    parser.add_argument("--rows", type=int, default=10, help="rows per request")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=1e-4)
    args = parser.parse_args(argv)

    X, X_test, y, y_test = load_dataset("mnist-b", path=args.data)
    attack = paper_attack("mnist-b")
    plain = paper_estimator("logistic", attack, alpha=args.alpha).fit(X, y)
    settings = CertifiedRemoval(epsilon=args.epsilon, delta=args.delta, noise=args.noise)
    t0 = time.perf_counter()
    est = paper_estimator("logistic", attack, alpha=args.alpha).set_params(
        certified=settings, random_state=0).fit(X, y)
    fit_time = time.perf_counter() - t0
    cert = est.certificate_
    print(f"MNIST-b, sigma={args.noise}, (epsilon, delta)=({args.epsilon}, {args.delta}): "
          f"budget {cert['budget']:.4g}, fit {fit_time:.2f}s, fit residual "
          f"{max(cert['residual']):.2e}")
    original = copy.deepcopy(est)
    order = np.random.default_rng(0).permutation(len(y))
    print(f"{'request':>7} {'rows':>5} {'residual':>10} {'spent':>7} {'re-solve':>8} "
          f"{'time[ms]':>9}")
    for r in range(args.requests):
        rows = order[r * args.rows:(r + 1) * args.rows]
        t0 = time.perf_counter()
        est.forget(rows)
        elapsed = time.perf_counter() - t0
        rec = est.forget_log_[-1]
        print(f"{r:>7} {len(rows):>5} {rec['certified_residual']:>10.3e} "
              f"{rec['budget_spent']:>7.3f} {'yes' if rec['certified_retrain'] else 'no':>8} "
              f"{1e3 * elapsed:>9.1f}")
    ref = retrain(est)
    print(f"exact re-solves forced by the budget: {est.certificate_['n_retrains']}")
    print(f"residual fraction vs the retrain of the perturbed objective: "
          f"{residual_fraction(est, original, ref):.2e}")
    for name, model in (("plain", plain), ("certified", original), ("after forgets", est)):
        print(f"{name:>14}: clean {model.score(X_test, y_test):.4f} robust "
              f"{robust_accuracy(model, X_test, y_test):.4f}")


if __name__ == "__main__":
    main()
