"""Membership-inference audit of forgetting on real data.

Fits the paper's robust logistic model on MNIST-b, forgets a random 1% of the
training rows with MUter and with an exact retrain, and prints the AUC of the
loss-threshold membership attack (``skmuter.metrics.membership_audit``)
separating the forgotten rows from held-out test rows, for the original model,
the MUter model and the retrain. 0.5 means the forgotten rows look like rows
never seen; the original model shows how much the attack sees before
forgetting.

Usage::

    python benchmarks/audit.py --data DATA_DIR
"""

from __future__ import annotations

import argparse
import copy
import os

import numpy as np

from skmuter.benchmark import load_dataset, paper_attack, paper_estimator
from skmuter.metrics import membership_audit, retrain


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SKMUTER_DATA"))
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=1e-4)
    args = parser.parse_args(argv)

    X, X_test, y, y_test = load_dataset("mnist-b", path=args.data)
    est = paper_estimator("logistic", paper_attack("mnist-b"), alpha=args.alpha).fit(X, y)
    rng = np.random.default_rng(0)
    k = round(args.fraction * len(y))
    print(f"MNIST-b, forgetting {k} rows ({args.fraction:.0%}), loss-threshold attack vs "
          f"{len(y_test)} held-out rows; AUC (0.5 = indistinguishable)")
    print(f"{'repeat':>6} {'loss':>7} {'original':>9} {'muter':>7} {'retrain':>8} {'|diff|':>7}")
    for rep in range(args.repeats):
        rows = rng.choice(len(y), size=k, replace=False)
        unlearned = copy.deepcopy(est).forget(rows)
        reference = retrain(unlearned)
        for loss in ("robust", "clean"):
            auc = [membership_audit(m, X[rows], y[rows], X_test, y_test, loss=loss)["auc"]
                   for m in (est, unlearned, reference)]
            print(f"{rep:>6} {loss:>7} {auc[0]:>9.4f} {auc[1]:>7.4f} {auc[2]:>8.4f} "
                  f"{abs(auc[1] - auc[2]):>7.4f}")


if __name__ == "__main__":
    main()
