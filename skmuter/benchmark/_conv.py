"""The small convolutional network of the network benchmark (imports torch).

Kept apart from :mod:`skmuter.benchmark._net` so that importing the
benchmark package never imports torch: this module is loaded only when a
network benchmark runs.
"""

from __future__ import annotations

import torch

__all__ = ["ConvNet"]


class ConvNet(torch.nn.Module):
    """Two convolutions with ReLU and max-pooling, a feature layer, a linear head.

    The body (``body``) is piecewise linear in its input (ReLU, max-pooling),
    so an l_inf attack on the frozen body leaves the head's total Hessian
    equal to its Hessian at the worst case; the head (``head``, the last
    ``nn.Linear`` registered) is what forgetting updates.

    Parameters
    ----------
    side : int, default=28
        Images are ``side x side`` with one channel, given as flat rows of
        ``side**2`` values (reshaped in :meth:`forward`).
    channels : tuple of int, default=(8, 16)
        Output channels of the two convolutions.
    kernel : int, default=5
        Kernel size (odd) of the convolutions, padded to keep the image size;
        each is followed by a 2 x 2 max-pooling.
    features : int, default=32
        Width of the feature layer, the input of the head.
    n_classes : int, default=10
        Outputs of the head (logits).
    input_pool : int, default=1
        Average-pool the image by this factor before the first convolution
        (2: a 28 x 28 image is seen at 14 x 14; the attack still perturbs
        every pixel), a quarter of the convolutions' work.
    """

    def __init__(self, side=28, channels=(8, 16), kernel=5, features=32, n_classes=10,
                 input_pool=1):
        super().__init__()
        self.side = int(side)
        c1, c2 = (int(c) for c in channels)
        pool = int(input_pool)
        size = self.side // pool // 4
        if size < 1:
            raise ValueError(f"images of side {side} are too small for two 2 x 2 poolings "
                             f"after an input pooling by {pool}.")
        pad = int(kernel) // 2
        first = [torch.nn.AvgPool2d(pool)] if pool > 1 else []
        self.body = torch.nn.Sequential(
            *first,
            torch.nn.Conv2d(1, c1, kernel, padding=pad), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(c1, c2, kernel, padding=pad), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(c2 * size * size, int(features)),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(int(features), int(n_classes))

    def forward(self, x):
        return self.head(self.body(x.reshape(-1, 1, self.side, self.side)))
