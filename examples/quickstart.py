"""Quick start: train a robust model, forget a few rows, check against a retrain.

Runs offline in a few seconds on scikit-learn's bundled digits (1 vs 7).

    python examples/quickstart.py
"""

import copy

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skmuter import AdversarialLogisticRegression
from skmuter.attacks import PGD
from skmuter.metrics import forget_report

X, y = load_digits(return_X_y=True)
keep = (y == 1) | (y == 7)
X_train, X_test, y_train, y_test = train_test_split(
    X[keep] / 16.0, y[keep], test_size=0.25, stratify=y[keep], random_state=0
)

# Adversarial training against an l_inf attack of radius 0.25 inside the pixel box [0, 1].
model = AdversarialLogisticRegression(
    attack=PGD(epsilon=0.25, clip=(0, 1)), alpha=1e-4, fit_intercept=False
).fit(X_train, y_train)
print(f"clean accuracy  {model.score(X_test, y_test):.3f}")
print(f"robust accuracy {model.robust_score(X_test, y_test):.3f} (exact worst case)")

# Forget three training rows with MUter; keep a copy to measure "doing nothing".
before = copy.deepcopy(model)
model.forget([0, 10, 20])
print("forgot rows", model.forgotten_, "in", f"{model.forget_log_[-1]['total_time']:.1e} s")

report = forget_report(model, before, X_test, y_test)  # retrains exactly, for comparison
for key in ("distance_to_retrain", "do_nothing_distance", "residual_fraction",
            "retrain_time", "robust_accuracy", "retrain_robust_accuracy"):
    print(f"{key:24s} {report[key]:.3g}")
