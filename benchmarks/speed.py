"""Speed of checked forgetting on the paper's data, with the retrain timed in the same run.

Fits the paper's model once (exact solver), then times, as wall-clock medians
of whole ``forget`` calls (validation, step, check and correction to
``forget_tol``, state rebuild, purge, commit):

* the first request after ``fit`` (one row);
* later one-row requests (successive requests on one model);
* a 1% batch (on a copy of the fitted model);
* the exact retrain of the kept rows (``metrics.retrain``, warm-started from
  nothing, as a user would refit);

and prints the ratios retrain / request, with each request's residual and the
number of correction steps it took. ``--forget-tol none`` times the step alone.

Usage::

    python benchmarks/speed.py --dataset mnist-b --data DATA_DIR
    python benchmarks/speed.py --dataset covtype --data DATA_DIR --requests 10
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import warnings

import numpy as np

from skmuter import metrics
from skmuter.benchmark import load_dataset, paper_attack, paper_estimator


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["mnist-b", "covtype"], default="mnist-b")
    parser.add_argument("--model", choices=["logistic", "ridge"], default="logistic")
    parser.add_argument("--data", default=os.environ.get("SKMUTER_DATA"))
    parser.add_argument("--requests", type=int, default=20, help="one-row requests timed")
    parser.add_argument("--batches", type=int, default=3, help="1%% batches timed")
    parser.add_argument("--retrains", type=int, default=3, help="retrains timed")
    parser.add_argument("--forget-tol", default="default",
                        help="the estimator's forget_tol: a number, 'none', or 'default'")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    X, _, y, _ = load_dataset(args.dataset, path=args.data)
    est = paper_estimator(args.model, paper_attack(args.dataset))
    if args.forget_tol != "default":
        est.set_params(forget_tol=None if args.forget_tol == "none" else float(args.forget_tol))
    fit_time = _timed(lambda: est.fit(X, y))
    n = X.shape[0]
    print(f"{args.dataset} {args.model}: n={n} d={X.shape[1]} fit {fit_time:.2f} s, residual "
          f"{est.optimality_residual_:.1e}, {np.count_nonzero(est.coef_)} non-zero weights, "
          f"forget_tol={est.forget_tol}")
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(n)
    fitted = copy.deepcopy(est)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ConvergenceWarning is reported below
        first = _timed(lambda: est.forget([order[0]]))
        later, steps, residuals = [], [], []
        for row in order[1 : 1 + args.requests]:
            later.append(_timed(lambda row=row: est.forget([row])))
            rec = est.forget_log_[-1]
            steps.append(rec["refine_steps"])
            residuals.append(rec["optimality_residual"])
        k = max(1, round(0.01 * n))
        batch, batch_steps = [], []
        for b in range(args.batches):
            copy_ = copy.deepcopy(fitted)
            rows = order[1 + args.requests + b * k : 1 + args.requests + (b + 1) * k]
            batch.append(_timed(lambda c=copy_, r=rows: c.forget(r)))
            batch_steps.append(copy_.forget_log_[-1]["refine_steps"])
        retrains = []
        for _ in range(args.retrains):
            retrains.append(_timed(lambda: metrics.retrain(est)))
    retrain = float(np.median(retrains))
    one = float(np.median(later))

    def line(what, t, extra=""):
        print(f"  {what:<28} {t * 1e3:9.2f} ms   retrain/this {retrain / t:9.0f}x  {extra}")

    print(f"  exact retrain (median of {len(retrains)}): {retrain:.2f} s")
    line("first request (1 row)", first)
    res = [r for r in residuals if r is not None]
    line(f"1 row (median of {len(later)})", one,
         f"steps median {np.median(steps):.0f}, residual max "
         f"{max(res) if res else float('nan'):.1e}")
    line(f"1% = {k} rows (median of {len(batch)})", float(np.median(batch)),
         f"steps median {np.median(batch_steps):.0f}")


if __name__ == "__main__":
    main()
