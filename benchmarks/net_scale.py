"""The network protocol at scale: MNIST, a frozen conv body, 10,000 head rows, on CPU.

Measures, on one machine in one run, the figures the network protocol is
judged by:

* ``epoch``: one adversarial (PGD) epoch of the head over its rows, body frozen;
* ``memory``: the forgetter's one-off pre-computation (the worst case and the
  head's Hessian of every row), target at most one epoch;
* ``request``: one forget request of one row after the memory is built,
  target at most 1 s;
* ``retrain``: the head re-solved from its initialisation on the kept rows
  (``AdversarialNet.retrain``), target at least 10 times the forget with its
  memory;
* the objective-gap fraction of each request (0 = as good as the retrain,
  1 = do nothing), with the forgetter's own step (``forget_tol=None``, the
  paper's protocol) and, with ``--checked``, the net's checked forget.

The head is fine-tuned by SGD epochs (``--epochs``); ``--polish`` also solves
it to the optimum first, at the price of a retrain. The retrain runs at most
``--retrain-iter`` L-BFGS iterations (plus the bundle polish of
:meth:`~skmuter.nn.AdversarialNet.retrain`): with a cap its time is a lower
bound of the full retrain's.

Usage::

    python benchmarks/net_scale.py --data DATA_DIR            # 10,000 head rows
    python benchmarks/net_scale.py --data DATA_DIR --n-train 2000 --requests 3
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from skmuter.benchmark import NET_PROTOCOLS, load_net_data, net_attack
from skmuter.benchmark._net import fit_body, head_net
from skmuter.forgetters import ForgetWarning
from skmuter.metrics import robust_objective


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SKMUTER_DATA"))
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--polish", action="store_true")
    parser.add_argument("--retrain-iter", type=int, default=10)
    parser.add_argument("--requests", type=int, default=3, help="one-row requests timed")
    parser.add_argument("--forgetter", default="muter")
    parser.add_argument("--checked", action="store_true",
                        help="also time the net's checked forget (default forget_tol)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    # expected under PGD: no exact optimum (kinked objective), unconverged solves
    for category in (ConvergenceWarning, ForgetWarning, UserWarning):
        warnings.simplefilter("ignore", category)

    p = dataclasses.replace(NET_PROTOCOLS["mnist"], n_train=args.n_train,
                            head_epochs=args.epochs, polish_max_iter=args.retrain_iter)
    data = load_net_data("mnist", args.data, p)
    t0 = time.perf_counter()
    body = fit_body(data, p, device=args.device, random_state=args.seed)
    print(f"body: pre-trained (FGSM) on {len(data.y_body)} other MNIST rows in "
          f"{time.perf_counter() - t0:.1f} s, clean test accuracy "
          f"{body.score(data.X_test, data.y_test):.4f}; {torch.get_num_threads()} thread(s), "
          f"device {args.device}")
    attack = net_attack(p, "pgd", random_state=args.seed)
    net = head_net(body, p, attack, forget_tol=None, device=args.device,
                   random_state=args.seed).set_params(polish=args.polish, max_epochs=1)
    t0 = time.perf_counter()
    net.fit(data.X_train, data.y_train)
    epoch = time.perf_counter() - t0
    for _ in range(args.epochs - 1):
        net.partial_fit(data.X_train, data.y_train)
    print(f"head: {len(net.forgetting_params())} parameters, {args.n_train} rows, "
          f"{attack!r}; one adversarial epoch {epoch:.1f} s; clean "
          f"{net.score(data.X_test, data.y_test):.4f}, robust "
          f"{net.robust_score(data.X_test, data.y_test):.4f}")

    rng = np.random.default_rng(args.seed)
    rows = rng.choice(args.n_train, size=args.requests, replace=False)
    variants = [("step", None)] + ([("checked", "default")] if args.checked else [])
    for label, tol in variants:
        un = copy.deepcopy(net).set_params(forgetter=args.forgetter)
        if tol is None:
            un.set_params(forget_tol=None)
        else:
            un.set_params(forget_tol=1e-6)
        print(f"\n{args.forgetter} ({label}): one row per request")
        print(f"  {'row':>6s} {'memory[s]':>9s} {'request[s]':>10s} {'retrain[s]':>10s} "
              f"{'x (incl. memory)':>16s} {'gap.frac':>8s}")
        before = copy.deepcopy(un)
        for row in rows:
            un.forget([int(row)])
            rec = un.forget_log_[-1]
            # total_time includes the memory built by the first request
            memory = rec["precompute_time"]
            request = rec["total_time"] - memory
            print(f"  row {int(row)}: memory {memory:.2f} s (one adversarial epoch "
                  f"{epoch:.1f} s: memory <= epoch {memory <= epoch}), request "
                  f"{request:.3f} s (<= 1 s {request <= 1.0})", flush=True)
            t0 = time.perf_counter()
            ref = un.retrain()
            retrain = time.perf_counter() - t0
            r_u, r_0, r_r = (robust_objective(un), robust_objective(un, before),
                             robust_objective(un, ref))
            frac = (r_u - r_r) / (r_0 - r_r) if r_0 != r_r else float("nan")
            info = ref.retrain_info_
            print(f"  {int(row):6d} {memory:9.2f} {request:10.3f} {retrain:10.1f} "
                  f"{retrain / (memory + request):16.1f} {frac:+8.3f}   (retrain: "
                  f"{info['n_iter']} L-BFGS iterations, cap {args.retrain_iter}, "
                  f"{info['polish_steps']} polish steps)", flush=True)
            before = copy.deepcopy(un)

if __name__ == "__main__":
    main()
