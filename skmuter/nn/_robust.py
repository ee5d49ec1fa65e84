"""The attack against ``AdversarialNet``'s module: training batches and the robust score."""

from __future__ import annotations

import numbers

import torch

from ._attacks import TorchThreat, perturb


def penalty(net):
    """``alpha/2 ||theta||^2`` on the forgotten parameters (a torch scalar, or 0.0)."""
    if net.alpha == 0:
        return 0.0
    params = dict(net.module_.named_parameters())
    return 0.5 * net.alpha * sum((params[n] ** 2).sum() for n in net.forget_names_)


def perturb_batch(net, Xi, yi):
    """Worst case of a batch for the current module (evaluation mode)."""
    threat = net._threat
    if threat.epsilon == 0:
        return Xi
    net.module_.eval()

    def input_grad(xa):
        xa = xa.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = torch.nn.functional.cross_entropy(net.module_(xa), yi, reduction="sum")
            return torch.autograd.grad(loss, xa)[0]

    noise = torch.rand(Xi.shape, dtype=Xi.dtype, device=Xi.device) \
        if threat.random_start else None
    return perturb(threat, Xi, input_grad, noise)


def robust_accuracy(net, X, codes, attack):
    """Accuracy of the module on validated ``(X, codes)`` under ``attack``, seeded."""
    device = net._torch_device()
    threat = TorchThreat(attack, X.shape[1:], device=device,
                         dtype=torch.from_numpy(X[:0]).dtype)
    seed = attack.random_state if isinstance(attack.random_state, numbers.Integral) else (
        net.random_state or 0)
    gen = torch.Generator().manual_seed(int(seed))
    net.module_.eval()
    correct = 0
    for start in range(0, len(X), 512):
        xb = torch.as_tensor(X[start:start + 512], device=device)
        threat.check_inside(xb)  # batch by batch: X may be a dataset's rows
        yb = torch.as_tensor(codes[start:start + 512], device=device)

        def input_grad(xa, yb=yb):
            xa = xa.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = torch.nn.functional.cross_entropy(net.module_(xa), yb,
                                                         reduction="sum")
                return torch.autograd.grad(loss, xa)[0]

        noise = torch.rand(xb.shape, generator=gen).to(device=device, dtype=xb.dtype) \
            if threat.random_start else None
        xa = perturb(threat, xb, input_grad, noise)
        with torch.no_grad():
            correct += int((net.module_(xa).argmax(dim=1) == yb).sum())
    return correct / len(X)
