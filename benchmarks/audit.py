"""Membership-inference audits of forgetting on real data.

Two audits.

*Loss-threshold attack* (``--part auc``; ``skmuter.metrics.membership_audit``):
fits the paper's robust logistic model on MNIST-b, forgets a random 1% of the
training rows with MUter and with an exact retrain, and prints the AUC of the
loss-threshold attack separating the forgotten rows from held-out test rows,
for the original model, the MUter model and the retrain. 0.5 means the
forgotten rows look like rows never seen; the original model shows how much
the attack sees before forgetting (on this model: nothing, so this audit
cannot fail).

*Population audit* (``--part linear`` and ``--part net``;
``skmuter.metrics.audit_populations`` and ``unlearning_audit``), in the spirit
of the NeurIPS 2023 unlearning challenge: for each forgotten row, the loss of
``--models`` models of each population on it, and the epsilon of the best
threshold test telling a population from the retrains (``delta = 0.01``),
averaged over the forgotten rows. Every member leaves out its own random
``--drop`` share of the kept rows (the retrain of these strongly convex
problems is otherwise unique); the populations are doing nothing (the members
fitted with the forgotten rows), MUter (the default checked forget, and its
step alone, ``forget_tol=None``), and two independent retrain populations:
the second one against the first is the noise floor, and its *spread* is the
range of the mean epsilon over 20 random splits of the pooled retrains.
``--part linear``: the paper's MNIST-b logistic model (``skmuter.benchmark``
protocol: l_inf FGSM threat 64/255, no intercept, alpha 1e-4) forgetting
``--fraction`` of its rows. ``--part net``: the last layer of an
``AdversarialNet`` on a frozen ReLU body (as in ``benchmarks/net.py``, on
scikit-learn's digits so that populations of head fits stay cheap): the body
adversarially trained on the rows the head never sees, the head trained under
l_inf FGSM (0.1; ``--net-attack pgd``, or ``penalized``: the penalised l_2
attack on a tanh body, whose robust objective is smooth) on ``--net-rows``
rows, forgetting ``--net-forget`` of them; the statistic is the clean
log-loss. The network also forgets with ``forgetter='retrain'`` (the head
re-solved in place from its initialisation), a control that should sit with
the retrains: where it does not, the retrains' own solver (epochs, then the
polish) and the in-place re-solve land in different places of a kinked
objective, and the audit sees the solver, not the rows.

Usage::

    python benchmarks/audit.py --data DATA_DIR            # all three parts
    python benchmarks/audit.py --data DATA_DIR --part linear --models 16
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings

import numpy as np

from skmuter.benchmark import load_dataset, paper_attack, paper_estimator
from skmuter.metrics import audit_populations, membership_audit, retrain, unlearning_audit

#: populations in the order printed, with their labels
LABELS = {
    "original": "do-nothing",
    "muter": "muter",
    "muter-unchecked": "muter (forget_tol=None)",
    "head-retrain": "forgetter='retrain'",
    "retrained_ref": "retrain (2nd population)",
}
METHODS = {"muter": {}, "muter-unchecked": {"forget_tol": None}}
#: the network also forgets by re-solving the head in place (from its initialisation):
#: a control, distributed like the retrains unless the two solves differ
NET_METHODS = {**METHODS, "head-retrain": {"forgetter": "retrain"}}


def auc_table(X, y, X_test, y_test, est, fraction, repeats):
    rng = np.random.default_rng(0)
    k = round(fraction * len(y))
    print(f"MNIST-b, forgetting {k} rows ({fraction:.0%}), loss-threshold attack vs "
          f"{len(y_test)} held-out rows; AUC (0.5 = indistinguishable)")
    print(f"{'repeat':>6} {'loss':>7} {'original':>9} {'muter':>7} {'retrain':>8} {'|diff|':>7}")
    for rep in range(repeats):
        rows = rng.choice(len(y), size=k, replace=False)
        unlearned = copy.deepcopy(est).forget(rows)
        reference = retrain(unlearned)
        for loss in ("robust", "clean"):
            auc = [membership_audit(m, X[rows], y[rows], X_test, y_test, loss=loss)["auc"]
                   for m in (est, unlearned, reference)]
            print(f"{rep:>6} {loss:>7} {auc[0]:>9.4f} {auc[1]:>7.4f} {auc[2]:>8.4f} "
                  f"{abs(auc[1] - auc[2]):>7.4f}")


def report(populations, title, save=None):
    if save:
        np.savez(save, **populations)
    audit = unlearning_audit(populations)
    low, high = audit["retrained_ref"]["spread"]
    n_models = populations["retrained"].shape[0]
    print(title)
    print(f"  epsilon of each population against the retrains, per forgotten row "
          f"(delta 0.01, {n_models} models each, measurable cap "
          f"{audit['original']['max_epsilon']:.2f}); retrain-to-retrain spread "
          f"[{low:.3f}, {high:.3f}]")
    print(f"  {'population':26s} {'mean eps':>8s} {'median':>7s} {'score':>6s} "
          f"{'within spread':>13s}")
    for key, label in LABELS.items():
        if key not in audit:
            continue
        row = audit[key]
        print(f"  {label:26s} {row['mean']:8.3f} {row['median']:7.3f} {row['score']:6.3f} "
              f"{'yes' if row['within_spread'] else 'no':>13s}")
    return audit


def linear_audit(X, y, est, fraction, n_models, drop, seed, save=None):
    rng = np.random.default_rng(seed)
    forget = rng.choice(len(y), size=round(fraction * len(y)), replace=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unchecked step's convergence notes
        pops = audit_populations(est, X, y, forget, n_models=n_models, drop_fraction=drop,
                                 methods=METHODS, random_state=seed)
    return report(pops, f"\nMNIST-b logistic (paper protocol), {len(y)} rows, forgetting "
                        f"{len(forget)} ({fraction:.0%}); each member leaves out "
                        f"{round(drop * (len(y) - len(forget)))} random kept rows; robust "
                        f"loss; {3 * n_models} fits in {time.perf_counter() - t0:.0f}s", save)


def net_audit(n_rows, n_forget, n_models, drop, seed, epochs, attack="fgsm", save=None):
    import torch
    from sklearn.datasets import load_digits

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from net import Body  # the ReLU body of the network benchmark

    from skmuter import AdversarialNet
    from skmuter.attacks import FGSM, PGD, Penalized

    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    X, y = (X[order] / 16).astype(np.float32), y[order]
    Xh, yh = X[:n_rows], y[:n_rows]  # the head's rows; the body never sees them
    pgd = PGD(epsilon=0.1, step_size=0.025, n_steps=7, clip=(0, 1), random_state=seed)
    threat = {"fgsm": FGSM(epsilon=0.1, clip=(0, 1)), "pgd": pgd,
              "penalized": Penalized(gamma=10.0)}[attack]
    activation = "tanh" if attack == "penalized" else "relu"
    t0 = time.perf_counter()
    body = AdversarialNet(Body, module__n_in=64, module__hidden=32,
                          module__activation=activation, attack=threat if attack == "penalized"
                          else pgd,
                          max_epochs=20, lr=0.05, batch_size=64, polish=False,
                          random_state=seed, verbose=0).fit(X[n_rows:], y[n_rows:])
    body_time = time.perf_counter() - t0
    head = AdversarialNet(copy.deepcopy(body.module_), attack=threat,
                          train_params="forget", alpha=1e-3, max_epochs=epochs, lr=0.05,
                          batch_size=64, verbose=0)
    forget = np.random.default_rng(seed).choice(n_rows, size=n_forget, replace=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PGD/FGSM: no forget reaches forget_tol, each says so
        pops = audit_populations(head, Xh, yh, forget, n_models=n_models, drop_fraction=drop,
                                 methods=NET_METHODS, random_state=seed)
    return report(pops, f"\nAdversarialNet head (64-32-10 {activation} body trained under "
                        f"{body.attack_!r} on {len(y) - n_rows} other digits rows in "
                        f"{body_time:.0f}s, frozen; head under {threat!r}) on {n_rows} digits "
                        f"rows, forgetting "
                        f"{n_forget}; each member leaves out "
                        f"{round(drop * (n_rows - n_forget))} random kept rows and has its "
                        f"own seed; clean log-loss; {3 * n_models} head fits in "
                        f"{time.perf_counter() - t0:.0f}s", save)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SKMUTER_DATA"))
    parser.add_argument("--part", choices=["all", "auc", "linear", "net"], default="all")
    parser.add_argument("--fraction", type=float, default=0.01,
                        help="share of the MNIST-b rows forgotten")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the AUC table")
    parser.add_argument("--alpha", type=float, default=1e-4)
    parser.add_argument("--models", type=int, default=16, help="members per population")
    parser.add_argument("--drop", type=float, default=0.002,
                        help="share of the kept rows each member leaves out")
    parser.add_argument("--net-models", type=int, default=12)
    parser.add_argument("--net-rows", type=int, default=800)
    parser.add_argument("--net-forget", type=int, default=16)
    parser.add_argument("--net-drop", type=float, default=0.01)
    parser.add_argument("--net-attack", choices=["fgsm", "pgd", "penalized"], default="fgsm",
                        help="the head's attack (penalized: the penalised l_2 attack on a "
                             "tanh body, a smooth objective)")
    parser.add_argument("--epochs", type=int, default=5, help="head epochs before the polish")
    parser.add_argument("--save", default=None,
                        help="write the populations to SAVE-linear.npz / SAVE-net.npz")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.part in ("all", "auc", "linear"):
        X, X_test, y, y_test = load_dataset("mnist-b", path=args.data)
        est = paper_estimator("logistic", paper_attack("mnist-b"), alpha=args.alpha)
        if args.part in ("all", "auc"):
            auc_table(X, y, X_test, y_test, clone_fit(est, X, y), args.fraction, args.repeats)
        if args.part in ("all", "linear"):
            linear_audit(X, y, est, args.fraction, args.models, args.drop, args.seed,
                         args.save and f"{args.save}-linear.npz")
    if args.part in ("all", "net"):
        net_audit(args.net_rows, args.net_forget, args.net_models, args.net_drop, args.seed,
                  args.epochs, args.net_attack, args.save and f"{args.save}-net.npz")


def clone_fit(est, X, y):
    return copy.deepcopy(est).fit(X, y)


if __name__ == "__main__":
    main()
