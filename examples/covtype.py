"""Reproduce the MUter paper's Covtype experiments (Table 6, Figures 6-8), linear models.

Covtype class 2 vs rest, min-max scaled to [0, 1], stratified 90/10 split
(522,910 / 58,102 rows), l_inf radius 4/255, no intercept, alpha = 1e-4.

    python examples/covtype.py --data path/to/folder/with/covtype.npz --out results

Without --data the SKMUTER_DATA folder is used, else scikit-learn downloads Covtype.
"""

import argparse

import pandas as pd

from skmuter.benchmark import paper_attack, paper_estimator, run_benchmark
from skmuter.datasets import load_covtype_binary

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", help="covtype.npz or its folder")
parser.add_argument("--out", default="covtype_results", help="output folder")
parser.add_argument("--model", default="logistic", choices=["logistic", "ridge"])
parser.add_argument("--removals", default="1,5,10,1%,2%")
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()

X_train, X_test, y_train, y_test = load_covtype_binary(args.data)
attack = paper_attack("covtype", "fgsm")
model = paper_estimator(args.model, attack)

result = run_benchmark(model, X_train, y_train, X_test, y_test, removals=args.removals,
                       repeats=args.repeats, attack=attack,
                       info={"dataset": "Covtype", "model": args.model, "attack": "FGSM"})

pd.set_option("display.width", 160)
print(f"fit {result.info['fit_time']:.1f} s; clean / robust test accuracy "
      f"{result.info['original_clean_accuracy']:.4f} / "
      f"{result.info['original_robust_accuracy']:.4f}")
print("\nSeconds to forget (Table 6 layout):\n", result.efficiency_table().to_string(
    float_format="{:.3g}".format))
print("\n||w_u - w_retrain|| (Figure 6):\n", result.effectiveness_table().to_string(
    float_format="{:.2e}".format))
print("\nClean test accuracy (Figure 7):\n", result.accuracy_table().round(4).to_string())
print("\nRobust test accuracy (Figure 8):\n", result.robustness_table().round(4).to_string())
print("\nwrote", len(result.save(args.out, prefix=f"covtype_{args.model}_")), "files to",
      args.out)
