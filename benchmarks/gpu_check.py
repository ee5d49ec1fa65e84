"""GPU check of AdversarialNet forgetting (one CUDA device, a few minutes).

1. The MNIST measurements of ``benchmarks/net.py`` with ``device='cuda'``
   (data from ``--data`` or ``SKMUTER_DATA``; skipped when neither is given),
   with the penalised attack by default (``--attack pgd`` for the paper's).
2. A CIFAR-10-sized synthetic run: 50,000 x 3x32x32 inputs, a frozen
   convolutional body shaped like WideResNet-28-10's end (640 features, 10
   classes), the last layer adversarially trained and polished;
   forget 1, 5 and 10 rows with the default MUter, timed against the exact
   retrain of the last layer (the paper: 3.7-4 s per row, retrain 799 s on
   an RTX 3090, full network retrain). The polish and the retrains are capped
   at ``--polish-iter`` L-BFGS iterations, each a full attack on 50,000 rows:
   this part measures time, not accuracy.

Usage::

    python benchmarks/gpu_check.py --data DATA_DIR/mnist.npz

A small run on the CPU checks the script itself before a GPU is at hand::

    python benchmarks/gpu_check.py --device cpu --n-train 300 --n-cifar 400
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from net import load_mnist, run

from skmuter import AdversarialNet
from skmuter.attacks import PGD
from skmuter.forgetters import ForgetWarning
from skmuter.metrics import residual_fraction


class ConvBody(torch.nn.Module):
    """A frozen body shaped like WideResNet-28-10's end: ``width`` pooled
    channels (640 there) into a 10-class linear head (6,410 parameters: above
    ``max_dense_params``, so the head's curvature runs matrix-free)."""

    def __init__(self, width=640):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(64, width, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
        )
        self.head = torch.nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def synthetic_cifar(n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n)
    means = rng.uniform(0.3, 0.7, size=(10, 3, 1, 1))
    X = np.clip(means[y] + 0.15 * rng.standard_normal((n, 3, 32, 32)), 0, 1)
    return X.astype(np.float32), y


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def cifar_run(n=50_000, device="cuda", polish_max_iter=40, echo=print, width=640):
    X, y = synthetic_cifar(n)
    attack = PGD(epsilon=8 / 255, step_size=2 / 255, n_steps=10, clip=(0, 1), random_state=0)
    t0 = time.perf_counter()
    net = AdversarialNet(ConvBody, module__width=width, attack=attack, train_params="forget",
                         alpha=1e-3,
                         max_epochs=1, lr=0.05, batch_size=512, random_state=0, device=device,
                         polish_max_iter=polish_max_iter, verbose=0).fit(X, y)
    _sync(device)
    echo(f"CIFAR-sized synthetic: n={n}, fit+polish {time.perf_counter() - t0:.1f}s, "
         f"polish gradient {net.polish_info_['gradient_norm']:.2e}")
    rng = np.random.default_rng(1)
    for size in (1, 5, 10):
        removed = rng.choice(n, size=size, replace=False)
        un = copy.deepcopy(net)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ForgetWarning)
            un.partial_forget(removed)
        _sync(device)
        forget_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = un.retrain(start=net.forgetting_params())
        _sync(device)
        retrain_time = time.perf_counter() - t0
        echo(f"  forget {size:2d} row(s): {forget_time:7.2f}s "
             f"({forget_time / size:.2f}s per row, first includes the memory); "
             f"retrain {retrain_time:7.2f}s; residual fraction "
             f"{residual_fraction(un, net, ref):.3f}")
    echo("  the paper (Table 7, WideResNet-28-10 last layer, CIFAR-10, RTX 3090): MUter "
         "3.7-4.0 s per row, retrain 150-799 s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SKMUTER_DATA"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n-train", type=int, default=3000, help="MNIST rows of the last layer")
    parser.add_argument("--n-cifar", type=int, default=50_000)
    parser.add_argument("--polish-iter", type=int, default=40)
    parser.add_argument("--width", type=int, default=640,
                        help="features of the CIFAR body (WideResNet-28-10: 640)")
    parser.add_argument("--attack", choices=["pgd", "penalized"], default="penalized",
                        help="attack of the MNIST part (penalized: exact reference)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device")
    start = time.perf_counter()

    def echo(line):
        print(f"[{time.perf_counter() - start:6.1f}s] {line}", flush=True)

    if args.data:
        X, y, Xt, yt = load_mnist(args.data)
        run(X, y, Xt, yt, n_train=args.n_train, n_body=3 * args.n_train, device=args.device,
            names=["muter", "newton-delta", "newton"], attack=args.attack, echo=echo)
    cifar_run(args.n_cifar, device=args.device, polish_max_iter=args.polish_iter, echo=echo,
              width=args.width)


if __name__ == "__main__":
    main()
