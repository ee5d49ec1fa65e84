"""A robust PyTorch network that forgets rows, checked against an exact retrain.

A tanh MLP is trained on scikit-learn's bundled digits against the penalised
l_2 attack (:class:`skmuter.attacks.Penalized`): its worst case is unique and
moves smoothly with the weights, so the last layer has an exactly computable
retrain and MUter's total Hessian is the Hessian of the robust objective.
Runs offline in well under a minute on one CPU core.

    python examples/network.py
"""

import copy
import warnings

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skmuter import AdversarialNet
from skmuter.attacks import Penalized
from skmuter.forgetters import ForgetWarning
from skmuter.metrics import forget_report

torch.set_num_threads(1)
X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    (X / 16).astype("float32"), y, test_size=0.25, stratify=y, random_state=0
)


class TanhMLP(torch.nn.Sequential):
    def __init__(self, hidden=32):
        super().__init__(torch.nn.Linear(64, hidden), torch.nn.Tanh(),
                         torch.nn.Linear(hidden, 10))


# The whole network is trained adversarially; the last layer is then solved to
# the optimum (polish) and is what forgetting updates (forget_params='last').
net = AdversarialNet(TanhMLP, attack=Penalized(gamma=2.0, clip=(0, 1)), alpha=1e-2,
                     max_epochs=10, lr=0.1, random_state=0, verbose=0)
net.fit(X_train, y_train)
print(f"clean accuracy  {net.score(X_test, y_test):.3f}")
print(f"robust accuracy {net.robust_score(X_test, y_test):.3f}")
print(f"optimality residual of the last layer {net.optimality_residual_:.1e}")

rows = [3, 14, 15, 92, 65]
results = {}
for forgetter in ("muter", "newton-delta"):
    model = copy.deepcopy(net).set_params(forgetter=forgetter)
    # The body saw these rows in training; only the last layer forgets them here
    # (train_params='forget' on a pre-trained body makes forgetting complete).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForgetWarning)
        model.forget(rows)
    report = forget_report(model, net, X_test, y_test)
    log = model.forget_log_[-1]
    print(f"\n{forgetter}: memory {log['precompute_time']:.2f} s, request "
          f"{log['total_time'] * 1e3:.1f} ms, retrain {report['retrain_time']:.2f} s")
    for key in ("distance_to_retrain", "do_nothing_distance", "residual_fraction",
                "robust_accuracy", "retrain_robust_accuracy"):
        print(f"  {key:24s} {report[key]:.3g}")
