"""Reproduce the MUter paper's MNIST-b experiments (Table 6, Figures 6-8), linear models.

Digits 1 vs 7, l_inf radius 64/255 inside [0, 1], no intercept, alpha = 1e-4.
Every forgetter against an exact retrain; prints the tables, writes CSV and PNG.

    python examples/mnist_b.py --data path/to/folder/with/mnist_1_7.npz --out results

Without --data the SKMUTER_DATA folder is used, else scikit-learn downloads MNIST.
"""

import argparse

from skmuter.benchmark import paper_attack, paper_estimator, run_benchmark
from skmuter.datasets import load_mnist_b

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", help="mnist_1_7.npz / mnist.npz or their folder")
parser.add_argument("--out", default="mnist_b_results", help="output folder")
parser.add_argument("--model", default="logistic", choices=["logistic", "ridge"])
parser.add_argument("--removals", default="1,5,10,1%,2%")
parser.add_argument("--repeats", type=int, default=2)
args = parser.parse_args()

X_train, X_test, y_train, y_test = load_mnist_b(args.data)
attack = paper_attack("mnist-b", "fgsm")  # the paper's FGSM: random start + one step
model = paper_estimator(args.model, attack)

result = run_benchmark(model, X_train, y_train, X_test, y_test, removals=args.removals,
                       repeats=args.repeats, attack=attack, gradient_residuals="largest",
                       info={"dataset": "MNIST-b", "model": args.model, "attack": "FGSM"})

print(result.report())  # Table 6 layout, then Figures 6-8 as tables
paths = result.save(args.out, prefix=f"mnist-b_{args.model}_")
print(f"\nwrote {len(paths)} files (CSV tables, PNG figures) to {args.out}")
