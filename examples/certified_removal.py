"""Certified removal: forget with a statistical guarantee and watch its budget.

Trains a robust logistic model whose objective carries random noise (Guo et
al., 2020), forgets rows in several requests, and prints after each request the
exact gradient residual and the share of the certified budget it spends. The
forgetter's step is shown alone (``forget_tol=None``): with a small noise the
budget runs out, and the model re-solves itself exactly on the remaining rows
(``on_spent='retrain'``). With the default check (``forget_tol=1e-9``) every
request lands on the exact retrain of the noisy objective and spends almost
none of the budget (last line). Runs offline in seconds on scikit-learn's
digits (0 vs 1).

    python examples/certified_removal.py
"""

import numpy as np
from sklearn.datasets import load_digits

from skmuter import AdversarialLogisticRegression
from skmuter.attacks import PGD
from skmuter.certified import CertifiedRemoval
from skmuter.metrics import parameter_distance, retrain

X, y = load_digits(n_class=2, return_X_y=True)
X = X / 16.0

for noise in (1.0, 0.02):
    settings = CertifiedRemoval(epsilon=1.0, delta=1e-4, noise=noise, on_spent="retrain")
    model = AdversarialLogisticRegression(
        attack=PGD(norm=2, epsilon=0.5), alpha=1e-2, random_state=0, certified=settings,
        forget_tol=None,
    ).fit(X, y)
    print(f"noise sigma={noise}: budget {model.certificate_['budget']:.3g} "
          f"(largest gradient residual that keeps (1, 1e-4)-certified removal)")
    order = np.random.default_rng(0).permutation(len(y))
    for request in range(5):
        model.forget(order[request * 8:(request + 1) * 8])
        log = model.forget_log_[-1]
        print(f"  request {request}: residual {log['certified_residual']:.2e}, "
              f"budget spent {log['budget_spent']:.3f}"
              + (f"  <- the forget's own {log['proposed_residual']:.2e} exceeded the "
                 "budget: re-solved exactly" if log["certified_retrain"] else ""))
    # the exact retrain of the same (noisy) objective on the remaining rows
    print(f"  distance to the exact retrain: {parameter_distance(model, retrain(model)):.2e}, "
          f"accuracy {model.score(X, y):.3f}")

checked = AdversarialLogisticRegression(
    attack=PGD(norm=2, epsilon=0.5), alpha=1e-2, random_state=0,
    certified=CertifiedRemoval(epsilon=1.0, delta=1e-4, noise=0.02),
).fit(X, y)
checked.forget(np.random.default_rng(0).permutation(len(y))[:40])
print(f"checked forget of 40 rows (noise 0.02): budget spent "
      f"{checked.forget_log_[-1]['budget_spent']:.2e}, optimality residual "
      f"{checked.forget_log_[-1]['optimality_residual']:.1e}")
