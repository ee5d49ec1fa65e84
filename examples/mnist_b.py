"""Reproduce the MUter paper's MNIST-b experiments (Table 6, Figures 6-8), linear models.

Digits 1 vs 7, l_inf radius 64/255 inside [0, 1], no intercept, alpha = 1e-4.
Every forgetter against an exact retrain; prints the tables, writes CSV and PNG.

    python examples/mnist_b.py --data path/to/folder/with/mnist_1_7.npz --out results

Without --data the SKMUTER_DATA folder is used, else scikit-learn downloads MNIST.
"""

import argparse

import pandas as pd

from skmuter.benchmark import paper_attack, paper_estimator, run_benchmark
from skmuter.datasets import load_mnist_b

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", help="mnist_1_7.npz / mnist.npz or their folder")
parser.add_argument("--out", default="mnist_b_results", help="output folder")
parser.add_argument("--model", default="logistic", choices=["logistic", "ridge"])
parser.add_argument("--removals", default="1,5,10,1%,2%")
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()

X_train, X_test, y_train, y_test = load_mnist_b(args.data)
attack = paper_attack("mnist-b", "fgsm")  # the paper's FGSM: random start + one step
model = paper_estimator(args.model, attack)

result = run_benchmark(model, X_train, y_train, X_test, y_test, removals=args.removals,
                       repeats=args.repeats, attack=attack,
                       info={"dataset": "MNIST-b", "model": args.model, "attack": "FGSM"})

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
print("\nwrote", len(result.save(args.out, prefix=f"mnist-b_{args.model}_")), "files to",
      args.out)
