"""Fit benchmark of the exact adversarial linear solvers on real data.

Prints wall-clock fit time, the optimality residual (norm of the minimal
subgradient of the robust objective), the number of non-zero weights, clean
and exact robust test accuracy, and the peak resident memory of the process.

Usage::

    python benchmarks/fit.py --dataset mnist-b --data DATA_DIR
    python benchmarks/fit.py --dataset covtype --data DATA_DIR
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from skmuter.benchmark import load_dataset, paper_attack, paper_estimator

DATASETS = ("mnist-b", "covtype")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, default="mnist-b")
    parser.add_argument("--model", choices=["logistic", "ridge"], default="logistic")
    parser.add_argument("--data", default=os.environ.get("SKMUTER_DATA"))
    parser.add_argument("--alpha", type=float, default=1e-4)
    args = parser.parse_args(argv)

    X_train, X_test, y_train, y_test = load_dataset(args.dataset, path=args.data)
    est = paper_estimator(args.model, paper_attack(args.dataset), alpha=args.alpha)
    eps = est.attack.epsilon
    t0 = time.perf_counter()
    est.fit(X_train, y_train)
    elapsed = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"dataset={args.dataset} model={args.model} n={X_train.shape[0]} d={X_train.shape[1]} "
          f"eps={eps:.4f} alpha={args.alpha:g}")
    print(f"fit time           {elapsed:.2f} s ({int(est.n_iter_.sum())} iterations)")
    print(f"optimality residual {est.optimality_residual_:.3e}")
    print(f"non-zero weights   {np.count_nonzero(est.coef_)} of {X_train.shape[1]}")
    print(f"test accuracy      clean {est.score(X_test, y_test):.4f}  "
          f"robust {est.robust_score(X_test, y_test):.4f}")
    print(f"peak memory        {peak_mb:.0f} MB (whole process, data included)")


if __name__ == "__main__":
    main()
