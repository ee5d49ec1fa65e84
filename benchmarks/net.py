"""Forgetting benchmark of AdversarialNet on real MNIST (last layer unlearned).

Protocol (the paper's network setting: only the head is unlearned): a ReLU body is adversarially trained on
MNIST rows that are *not* in the unlearning set and then frozen; the last layer
is adversarially trained (l_inf PGD, clip [0, 1]) on the next ``--n-train``
rows and polished to the optimum. Random removal sets of 1 row, 5 rows and 1%
of the rows are forgotten by each forgetter; the reference is the last layer
re-solved on the remaining rows (body frozen), started from the fitted values.
Reported: distance to retrain, do-nothing distance, residual fraction, clean
and robust test accuracy, forget time and retrain time.

The reference has a precision of its own. With sign steps (l_inf PGD, as in the
paper) the worst cases are piecewise constant in the last layer with tiny
cells, the robust objective jumps between them and its solver stalls (its final
gradient norm is printed). The script therefore also prints the *reference
spread*: the distance between the solve started from the fitted values and the
one started from the initialisation. A residual fraction means something only
where the do-nothing distance is well above that spread; ``--epsilon 0``
removes the attack and gives an exact reference.

``--attack penalized`` trains with the penalised l_2 attack
(:class:`skmuter.attacks.Penalized`, price ``--gamma``) on a tanh body. Its worst
case is the unique maximiser of a strongly concave problem and moves smoothly
with the last layer, so the robust objective is smooth: the reference is solved
to a gradient of 1e-8 and the reference spread vanishes, and MUter's total
Hessian is the exact Hessian of that objective. This is the setting in which
residual fractions under attack are meaningful. The ``memory`` column is the
one-off pre-computation (the total Hessian of every row, built at the first
request); ``request`` is the time of the forget itself.

Two columns need no reference: the *objective gap*, the robust objective of the
kept rows (attack re-run) at the forgotten model minus its value at the fitted
model (below 0: better than doing nothing), and the norm of its gradient at the
worst cases (Danskin's gradient; compare with the fitted model's, printed above
each table).

The forgetters are compared on their own steps (``--forget-tol none``, the
default of this comparison); ``--forget-tol`` checks and corrects every request
as the net does by default.

``--mode verified`` measures verified forgetting (the net's default
``forget_tol``) on the paper's setting: a frozen ReLU body, the last layer
trained under l_inf PGD and under FGSM, removals of 1, 5 and 1% of the rows,
each request on a fresh copy of the fitted net and judged against retrains:
``skmuter.metrics.retrain`` (the head re-solved from its initialisation) and
the same exact solve started from the fitted model and from the forget. The
reference ``r`` is the lowest of the three (the best minimiser of the kept
rows' objective that is known). Per request it prints the kept rows' robust
objective (deterministic attack) of the forget and of the three solves
relative to doing nothing, the objective-gap fraction
``(R(u) - R(r)) / (R(0) - R(r))`` (and against the retrain from the
initialisation alone), the forget and retrain times; at the end, per
attack, the requests whose forget is above ``min(do-nothing, retrain)`` by more
than 10% of their gap, the median gap fraction, the largest forget/retrain time
ratio, and the *solver spread*: the robust objective of all rows at the fitted
model minus its value at a retrain from the initialisation on all rows (no row
removed), the precision with which this objective can be minimised at all.
Gaps below it are solver noise.

Usage::

    python benchmarks/net.py --data DATA_DIR
    python benchmarks/net.py --data DATA_DIR --mode verified --n-train 1000
    python benchmarks/net.py --data DATA_DIR --attack penalized --n-train 1000

(``DATA_DIR`` holds ``mnist.npz``; or set ``SKMUTER_DATA``; without either the
loader of :mod:`skmuter.datasets` downloads MNIST.)
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from skmuter import AdversarialNet
from skmuter.attacks import FGSM, PGD, Penalized
from skmuter.datasets import load_mnist as _load_mnist
from skmuter.forgetters import ForgetWarning
from skmuter.metrics import (
    objective_gap_fraction,
    parameter_distance,
    residual_fraction,
    retrain,
    robust_objective,
)
from skmuter.nn import paper_muter

ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "softplus": torch.nn.Softplus}


class Body(torch.nn.Sequential):
    def __init__(self, hidden=64, n_in=784, activation="relu"):
        super().__init__(torch.nn.Linear(n_in, hidden), ACTIVATIONS[activation](),
                         torch.nn.Linear(hidden, 10))


def load_mnist(path):
    """MNIST through :func:`skmuter.datasets.load_mnist` (a directory or ``mnist.npz``), float32."""
    X, Xt, y, yt = _load_mnist(path)
    return X.astype(np.float32), y, Xt.astype(np.float32), yt


def forgetters(neumann_order):
    return {
        "muter": "muter",
        "muter-paper": paper_muter(neumann_order=neumann_order, cg_iter=10),
        "newton-delta": "newton-delta",
        "newton": "newton",
        "influence-delta": "influence-delta",
        "fisher-delta": "fisher-delta",
        "retrain": "retrain",
    }


#: what runs by default: the reference solve already times a retrain
DEFAULT_NAMES = ["muter", "muter-paper", "newton-delta", "newton", "influence-delta",
                 "fisher-delta"]


def fit_body(X, y, n_train, n_body, attack, device, seed, epochs, activation="relu"):
    """The body, adversarially trained on rows that are never forgotten."""
    body_rows = slice(n_train, n_train + n_body)
    body = AdversarialNet(Body, module__activation=activation, attack=attack,
                          max_epochs=epochs, lr=0.05, batch_size=128, polish=False,
                          random_state=seed, device=device, verbose=0)
    return body.fit(X[body_rows], y[body_rows])


def fit_head(body, X, y, n_train, attack, device, seed, epochs, alpha, forget_tol="default"):
    """The last layer on the frozen body, trained under ``attack`` and polished."""
    kw = {} if forget_tol == "default" else {"forget_tol": forget_tol}
    head = AdversarialNet(copy.deepcopy(body.module_), attack=attack, train_params="forget",
                          alpha=alpha, max_epochs=epochs, lr=0.05, batch_size=128,
                          random_state=seed, device=device, verbose=0, **kw)
    return head.fit(X[:n_train], y[:n_train])


def fit_models(X, y, n_train, n_body, attack, device, seed, epochs, alpha, activation="relu",
               forget_tol=None):
    t0 = time.perf_counter()
    body = fit_body(X, y, n_train, n_body, attack, device, seed, epochs, activation)
    head = fit_head(body, X, y, n_train, attack, device, seed, epochs, alpha, forget_tol)
    return head, time.perf_counter() - t0


def run(X, y, Xt, yt, n_train=3000, n_body=10000, n_test=1000, device="cpu", seed=0,
        epochs=5, alpha=1e-3, neumann_order=10, sizes=None, names=None, epsilon=0.1,
        attack="pgd", gamma=10.0, activation=None, forget_tol=None, echo=print):
    if attack == "penalized":
        attack = Penalized(gamma=gamma)
        activation = activation or "tanh"
    else:
        attack = PGD(epsilon=epsilon, step_size=epsilon / 4, n_steps=7, clip=(0, 1),
                     random_state=seed)
        activation = activation or "relu"
    net, fit_time = fit_models(X, y, n_train, n_body, attack, device, seed, epochs, alpha,
                               activation, forget_tol)
    Xt, yt = Xt[:n_test], yt[:n_test]
    echo(f"attack={attack!r} body={activation}")
    echo(f"device={device} n_train={n_train} fit {fit_time:.1f}s; polish gradient "
         f"{net.polish_info_['gradient_norm']:.2e}; clean {net.score(Xt, yt):.3f} robust "
         f"{net.robust_score(Xt, yt):.3f}")
    rng = np.random.default_rng(seed)
    sizes = sizes or [1, 5, max(1, n_train // 100)]
    table = forgetters(neumann_order)
    names = names or DEFAULT_NAMES
    obj = net.training_objective()[0]
    theta0 = net.forgetting_params()
    rows_out = []
    spread = None
    for size in sizes:
        removed = rng.choice(n_train, size=size, replace=False)
        kept = np.setdiff1d(np.arange(n_train), removed)
        base = obj.value(theta0, kept)
        t0 = time.perf_counter()
        probe = copy.deepcopy(net)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ForgetWarning)
            probe.set_params(forgetter="newton").forget(removed)
        ref = probe.retrain(start=theta0)
        retrain_time = time.perf_counter() - t0
        nothing = parameter_distance(net, ref)
        if spread is None:
            spread = parameter_distance(probe.retrain(start="init"), ref)
        echo(f"\n{size} row(s): retrain {retrain_time:.2f}s (gradient "
             f"{ref.retrain_info_['gradient_norm']:.1e}), do-nothing distance {nothing:.4f}, "
             f"reference spread {spread:.4f}; fitted model on the kept rows: gradient "
             f"{obj.gradient_residual(theta0, kept):.2e}; retrain: objective gap "
             f"{obj.value(ref.forgetting_params(), kept) - base:+.1e}, clean "
             f"{ref.score(Xt, yt):.3f} robust {ref.robust_score(Xt, yt):.3f}")
        echo(f"  {'forgetter':16s} {'dist':>8s} {'resid.frac':>10s} {'obj.gap':>9s} "
             f"{'gradient':>9s} {'clean':>6s} {'robust':>6s} {'time[s]':>8s} {'memory':>7s} "
             f"{'request':>8s} {'x faster':>8s}")
        for name in names:
            un = copy.deepcopy(net).set_params(forgetter=table[name])
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ForgetWarning)
                un.partial_forget(removed) if size == 1 else un.forget(removed)
            elapsed = time.perf_counter() - t0
            memory = sum(r["precompute_time"] for r in un.forget_log_)
            request = sum(r["total_time"] for r in un.forget_log_)
            theta = un.forgetting_params()
            dist = parameter_distance(un, ref)
            frac = residual_fraction(un, net, ref)
            gap = obj.value(theta, kept) - base
            grad = obj.gradient_residual(theta, kept)
            clean, robust = un.score(Xt, yt), un.robust_score(Xt, yt)
            echo(f"  {name:16s} {dist:8.4f} {frac:10.3f} {gap:+9.1e} {grad:9.2e} {clean:6.3f} "
                 f"{robust:6.3f} {elapsed:8.3f} {memory:7.2f} {request:8.3f} "
                 f"{retrain_time / elapsed:8.1f}")
            rows_out.append({"size": size, "forgetter": name, "distance": dist,
                             "residual_fraction": frac, "objective_gap": gap,
                             "gradient": grad, "clean": clean, "robust": robust,
                             "time": elapsed, "memory_time": memory,
                             "request_time": request, "retrain_time": retrain_time,
                             "do_nothing": nothing, "reference_spread": spread})
    return rows_out


def verified(X, y, n_train=1000, n_body=10000, device="cpu", seed=0, epochs=5, alpha=1e-3,
             epsilon=0.1, sizes=None, repeats=None, attacks=("pgd", "fgsm"), echo=print):
    """Verified forgetting (default ``forget_tol``) under PGD and FGSM; see the module doc."""
    pgd = PGD(epsilon=epsilon, step_size=epsilon / 4, n_steps=7, clip=(0, 1), random_state=seed)
    threats = {"pgd": pgd, "fgsm": FGSM(epsilon=epsilon, clip=(0, 1))}
    repeats = repeats or {"pgd": 3, "fgsm": 4}
    sizes = sizes or [1, 5, max(1, n_train // 100)]
    t0 = time.perf_counter()
    body = fit_body(X, y, n_train, n_body, pgd, device, seed, epochs)
    echo(f"ReLU body 784-64-10 adversarially trained (l_inf PGD, eps={epsilon}) on "
         f"{n_body} other rows in {time.perf_counter() - t0:.1f}s, then frozen")
    out = []
    for name in attacks:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            net = fit_head(body, X, y, n_train, threats[name], device, seed, epochs, alpha)
        info = net.polish_info_
        everything = copy.deepcopy(net)
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            again = retrain(everything)
        spread = robust_objective(net) - robust_objective(net, again)
        echo(f"\n{name}: {n_train} rows, head fit {t1 - t0:.1f}s (polish: {info['n_iter']} "
             f"L-BFGS iterations, {info['polish_steps']} bundle steps, gradient "
             f"{info['gradient_norm']:.1e}, converged={net.converged_}); forget_tol="
             f"{net.forget_tol}; solver spread R(fit) - R(retrain of all rows) = "
             f"{spread:+.2e} ({time.perf_counter() - t1:.1f}s)")
        echo(f"  {'rows':>4s} {'forget-R0':>10s} {'init-R0':>10s} {'fitted-R0':>10s} "
             f"{'forget*-R0':>10s} {'gap.frac':>8s} {'(init)':>8s} {'excess':>8s} "
             f"{'forget[s]':>9s} {'retrain[s]':>10s} {'ratio':>6s} {'steps':>5s} "
             f"{'residual':>9s}")
        fitted = net.forgetting_params()
        rng = np.random.default_rng(seed)
        for rep in range(repeats[name]):
            for size in sizes:
                removed = rng.choice(n_train, size=size, replace=False)
                un = copy.deepcopy(net)
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    un.forget(removed)
                forget_time = time.perf_counter() - t0
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    ref = retrain(un)
                    retrain_time = time.perf_counter() - t0
                    # the same solve started from the fitted model and from the forget
                    warm = [un.retrain(start=fitted), un.retrain(start="current")]
                r_u, r_0 = robust_objective(un), robust_objective(un, net)
                r_i = robust_objective(un, ref)
                r_w = [robust_objective(un, w) for w in warm]
                # the lowest value known: the best retrain
                r_r, best = min(zip([r_i] + r_w, [ref] + warm), key=lambda p: p[0])
                gap = abs(r_0 - r_r)
                # above min(do-nothing, retrain), in units of their gap
                excess = (r_u - min(r_0, r_r)) / gap if gap > 0 else float("nan")
                frac = objective_gap_fraction(un, net, best)
                frac_init = objective_gap_fraction(un, net, ref)
                rec = un.forget_log_[-1]
                echo(f"  {size:4d} {r_u - r_0:+10.2e} {r_i - r_0:+10.2e} "
                     f"{r_w[0] - r_0:+10.2e} {r_w[1] - r_0:+10.2e} {frac:+8.2f} "
                     f"{frac_init:+8.2f} {excess:+8.2f} {forget_time:9.2f} "
                     f"{retrain_time:10.1f} {forget_time / retrain_time:6.3f} "
                     f"{rec['refine_steps']:5d} {rec['optimality_residual']:9.2e}")
                out.append({"attack": name, "size": size, "repeat": rep, "forget_minus_R0":
                            r_u - r_0, "retrain_minus_R0": r_i - r_0,
                            "warm_minus_R0": r_w[0] - r_0, "from_forget_minus_R0":
                            r_w[1] - r_0, "best_minus_R0": r_r - r_0, "gap_fraction": frac,
                            "gap_fraction_init": frac_init,
                            "excess": excess, "forget_time": forget_time,
                            "retrain_time": retrain_time, "solver_spread": spread,
                            "refine_steps": rec["refine_steps"],
                            "residual": rec["optimality_residual"]})
        mine = [r for r in out if r["attack"] == name]
        above = sum(r["excess"] > 0.1 for r in mine)
        floor = [r for r in mine if abs(r["best_minus_R0"]) > abs(spread)]
        echo(f"  {name}: {len(mine)} requests; never above doing nothing: "
             f"{all(r['forget_minus_R0'] <= 0 for r in mine)}; above min(do-nothing, "
             f"retrain) by more than 10% of the gap: {above}; median gap fraction "
             f"{np.median([r['gap_fraction'] for r in mine]):+.2f} (over the {len(floor)} "
             f"with a gap above the solver spread: "
             f"{np.median([r['gap_fraction'] for r in floor]) if floor else float('nan'):+.2f}"
             f"; against the retrain from the initialisation alone: "
             f"{np.median([r['gap_fraction_init'] for r in mine]):+.2f}"
             f"); largest forget/retrain time ratio "
             f"{max(r['forget_time'] / r['retrain_time'] for r in mine):.3f}")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SKMUTER_DATA"),
                        help="mnist.npz or a directory holding it (or set SKMUTER_DATA)")
    parser.add_argument("--mode", choices=["compare", "verified"], default="compare",
                        help="compare: the forgetters' steps; verified: checked forgets "
                             "under PGD and FGSM against retrains (see the module doc)")
    parser.add_argument("--forget-tol", default="none",
                        help="compare mode: the nets' forget_tol, 'none' (default: the "
                             "forgetters' own steps), 'default' or a number")
    parser.add_argument("--n-train", type=int, default=None,
                        help="rows of the last layer (default 3000; 1000 with --mode verified)")
    parser.add_argument("--n-body", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=1e-3)
    parser.add_argument("--epsilon", type=float, default=0.1,
                        help="l_inf radius of the attack (0: no attack, exact reference)")
    parser.add_argument("--attack", choices=["pgd", "penalized"], default="pgd",
                        help="pgd: l_inf PGD as in the paper; penalized: the penalised l_2 "
                             "attack (unique worst case, exact reference)")
    parser.add_argument("--gamma", type=float, default=10.0,
                        help="price of the penalised attack (smaller: stronger)")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default=None,
                        help="body activation (default relu for pgd, tanh for penalized)")
    parser.add_argument("--neumann-order", type=int, default=10,
                        help="order k of muter-paper (the paper uses 100)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--forgetters", default=",".join(DEFAULT_NAMES),
                        help=f"comma-separated, from {', '.join(forgetters(0))}")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # numpy's BLAS too: the dense solves of a forget, at the same thread count
    threadpool_limits(args.threads)
    X, y, Xt, yt = load_mnist(args.data)
    if args.mode == "verified":
        verified(X, y, n_train=args.n_train or 1000, n_body=args.n_body, device=args.device,
                 seed=args.seed, epochs=args.epochs, alpha=args.alpha, epsilon=args.epsilon)
        return
    names = args.forgetters.split(",")
    unknown = sorted(set(names) - set(forgetters(0)))
    if unknown:
        parser.error(f"unknown forgetter(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(forgetters(0))}")
    tol = {"none": None, "default": "default"}.get(args.forget_tol)
    run(X, y, Xt, yt, n_train=args.n_train or 3000, n_body=args.n_body, device=args.device,
        seed=args.seed, epochs=args.epochs, alpha=args.alpha,
        neumann_order=args.neumann_order, epsilon=args.epsilon,
        attack=args.attack, gamma=args.gamma, activation=args.activation, names=names,
        forget_tol=float(args.forget_tol) if tol is None and args.forget_tol != "none"
        else tol)


if __name__ == "__main__":
    main()
