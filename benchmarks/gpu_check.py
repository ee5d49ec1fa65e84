"""GPU check of AdversarialNet forgetting (one CUDA device, a few minutes).

1. The MNIST measurements of ``benchmarks/net.py`` with ``device='cuda'``
   (data from ``--data`` or ``SKMUTER_DATA``; skipped when neither is given).
2. A CIFAR-10-sized synthetic run: 50,000 x 3x32x32 inputs, a frozen
   convolutional body, the last layer adversarially trained and polished;
   forget 1, 5 and 10 rows with the default MUter, timed against the exact
   retrain of the last layer (the paper: 3.7-4 s per row, retrain 799 s on
   an RTX 3090, full network retrain).

Usage::

    python benchmarks/gpu_check.py --data DATA_DIR/mnist.npz
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
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
        )
        self.head = torch.nn.Linear(128, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def synthetic_cifar(n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n)
    means = rng.uniform(0.3, 0.7, size=(10, 3, 1, 1))
    X = np.clip(means[y] + 0.15 * rng.standard_normal((n, 3, 32, 32)), 0, 1)
    return X.astype(np.float32), y


def cifar_run(n=50_000, echo=print):
    X, y = synthetic_cifar(n)
    attack = PGD(epsilon=8 / 255, step_size=2 / 255, n_steps=10, clip=(0, 1), random_state=0)
    t0 = time.perf_counter()
    net = AdversarialNet(ConvBody, attack=attack, train_params="forget", alpha=1e-3,
                         max_epochs=1, lr=0.05, batch_size=512, random_state=0, device="cuda",
                         verbose=0).fit(X, y)
    torch.cuda.synchronize()
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
        torch.cuda.synchronize()
        forget_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = un.retrain(start=net.forgetting_params())
        torch.cuda.synchronize()
        retrain_time = time.perf_counter() - t0
        echo(f"  forget {size:2d} row(s): {forget_time:7.2f}s "
             f"({forget_time / size:.2f}s per row, first includes the memory); "
             f"retrain {retrain_time:7.2f}s; residual fraction "
             f"{residual_fraction(un, net, ref):.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SKMUTER_DATA"))
    parser.add_argument("--n-cifar", type=int, default=50_000)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    echo = lambda s: print(s, flush=True)
    if args.data:
        X, y, Xt, yt = load_mnist(args.data)
        run(X, y, Xt, yt, device="cuda", names=["muter", "newton-delta", "newton"],
            echo=echo)
    cifar_run(args.n_cifar, echo=echo)


if __name__ == "__main__":
    main()
