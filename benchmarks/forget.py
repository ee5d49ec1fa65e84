"""Forgetting benchmark of the linear estimators: fidelity and speed.

For a dataset and model, fits the exact adversarially trained model once, then
for each removal size (random rows) forgets with each forgetter, retrains
exactly on the remaining rows, and prints the residual fraction
``||w_u - w_r|| / ||w* - w_r||`` beside the do-nothing distance, and the
timings (memory pre-computation, per-request time, retrain) as medians over
repeats. By default the forgetters' own steps are measured, unchecked
(``--forget-tol none``); ``--forget-tol 1e-9`` checks and corrects every
request as the estimators do by default.

Usage::

    python benchmarks/forget.py --dataset mnist-b --data DATA_DIR
    python benchmarks/forget.py --dataset covtype --model ridge --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone

from skmuter.benchmark import load_dataset, paper_attack, paper_estimator
from skmuter.metrics import parameter_distance

DATASETS = ("mnist-b", "covtype")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, default="mnist-b")
    parser.add_argument("--model", choices=["logistic", "ridge"], default="logistic")
    parser.add_argument("--data", default=os.environ.get("SKMUTER_DATA"))
    parser.add_argument("--removals", default="1,10,1%")
    parser.add_argument("--forgetters", default="muter,newton-delta,influence-delta,"
                                                "fisher-delta,muter-paper")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--forget-tol", default="none",
                        help="the estimators' forget_tol: 'none' (default: each forgetter's "
                             "own step, unchecked) or a number (checked and corrected)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    X, _, y, _ = load_dataset(args.dataset, path=args.data)
    est = paper_estimator(args.model, paper_attack(args.dataset))
    est.set_params(forget_tol=None if args.forget_tol == "none" else float(args.forget_tol))
    t0 = time.perf_counter()
    est.fit(X, y)
    fit_time = time.perf_counter() - t0
    print(f"{args.dataset} {args.model}: n={X.shape[0]} d={X.shape[1]} fit {fit_time:.2f} s, "
          f"optimality residual {est.optimality_residual_:.2e}, "
          f"non-zero weights {np.count_nonzero(est.coef_)}")
    rng = np.random.default_rng(args.seed)
    rows = []
    for spec in args.removals.split(","):
        k = round(float(spec[:-1]) / 100 * X.shape[0]) if spec.endswith("%") else int(spec)
        for rep in range(args.repeats):
            remove = rng.choice(X.shape[0], size=k, replace=False)
            t0 = time.perf_counter()
            reference = _retrained(est, remove)
            retrain_time = time.perf_counter() - t0
            nothing = parameter_distance(est, reference)
            for name in args.forgetters.split(","):
                model = copy.deepcopy(est).set_params(forgetter=name)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if k == 1:
                        model.partial_forget(remove)
                    else:
                        model.forget(remove)
                log = model.forget_log_
                rows.append({
                    "removed": k, "repeat": rep, "forgetter": name,
                    "residual_fraction": parameter_distance(model, reference) / nothing,
                    "distance": parameter_distance(model, reference),
                    "do_nothing": nothing,
                    "precompute_s": log[0]["precompute_time"],
                    "forget_s": sum(r["total_time"] - r["precompute_time"] for r in log),
                    "retrain_s": retrain_time,
                })
    table = pd.DataFrame(rows)
    summary = table.groupby(["removed", "forgetter"], sort=False).median(numeric_only=True)
    summary = summary.drop(columns="repeat")
    summary["speedup"] = summary["retrain_s"] / summary["forget_s"]
    with pd.option_context("display.width", 250, "display.max_columns", None,
                           "display.float_format", "{:.3g}".format):
        print(summary)


def _retrained(est, remove):
    """Exact retrain without ``remove`` (without touching ``est``)."""
    X, y = est.remaining_training_data()
    kept = np.setdiff1d(np.arange(est.n_train_), remove)
    return clone(est).fit(X[kept], y[kept])


if __name__ == "__main__":
    main()
