"""Reproduce the MUter paper's Covtype experiments (Table 6, Figures 6-8), linear models.

Covtype class 2 vs rest, min-max scaled to [0, 1], stratified 90/10 split
(522,910 / 58,102 rows), l_inf radius 4/255, no intercept, alpha = 1e-4.

    python examples/covtype.py --data path/to/folder/with/covtype.npz --out results

Without --data the SKMUTER_DATA folder is used, else scikit-learn downloads Covtype.
"""

import argparse

from skmuter.benchmark import paper_attack, paper_estimator, run_benchmark
from skmuter.datasets import load_covtype_binary

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", help="covtype.npz or its folder")
parser.add_argument("--out", default="covtype_results", help="output folder")
parser.add_argument("--model", default="logistic", choices=["logistic", "ridge"])
parser.add_argument("--removals", default="1,5,10,1%,2%")
parser.add_argument("--repeats", type=int, default=2)
args = parser.parse_args()

X_train, X_test, y_train, y_test = load_covtype_binary(args.data)
attack = paper_attack("covtype", "fgsm")
model = paper_estimator(args.model, attack)

result = run_benchmark(model, X_train, y_train, X_test, y_test, removals=args.removals,
                       repeats=args.repeats, attack=attack, gradient_residuals="largest",
                       info={"dataset": "Covtype", "model": args.model, "attack": "FGSM"})

print(result.report())  # Table 6 layout, then Figures 6-8 as tables
paths = result.save(args.out, prefix=f"covtype_{args.model}_")
print(f"\nwrote {len(paths)} files (CSV tables, PNG figures) to {args.out}")
