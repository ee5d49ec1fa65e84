"""The parameters of ``AdversarialNet``: constraints, seeding, what forgetting misses
(parameters that forgetting leaves, a fit that did not converge).

Also :func:`paper_muter`, the MUter paper's forgetter for networks.
"""

from __future__ import annotations

import contextlib
import numbers

import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import (
    Interval,
    Options,
    StrOptions,
    validate_parameter_constraints,
)

from .._warnings import warn
from ..attacks import _Attack, resolve_attack
from ..forgetters import Forgetter, ForgetWarning, MUter

__all__ = ["paper_muter"]


class _NoBool(Interval):
    """An :class:`Interval` that refuses booleans (``True`` is no count or penalty)."""

    def is_satisfied_by(self, val):
        return not isinstance(val, bool) and super().is_satisfied_by(val)


def paper_muter(neumann_order=100, cg_iter=10, damping=1e-4):
    """The MUter paper's forgetter for networks (replication only).

    ``MUter(total_hessian='paper')`` with the paper's network settings: a
    Neumann series of order 100 for ``(d_delta delta l)^-1``, ``cg_iter``
    conjugate-gradient iterations and damping ``1e-4`` (per row).

    Examples
    --------
    >>> from skmuter.nn import paper_muter
    >>> paper_muter(neumann_order=5).neumann_order
    5
    """
    return MUter(total_hessian="paper", neumann_order=neumann_order, cg_iter=cg_iter,
                 damping=damping)


#: ``AdversarialNet._parameter_constraints`` (scikit-learn's convention)
PARAMETER_CONSTRAINTS: dict = {
    "attack": [StrOptions({"pgd", "fgsm"}), _Attack],
    "alpha": [_NoBool(numbers.Real, 0, np.inf, closed="left")],
    "train_params": [StrOptions({"all", "forget"})],
    "forgetter": [str, Forgetter],
    "forget_tol": [_NoBool(numbers.Real, 0, np.inf, closed="neither"), None],
    "polish": ["boolean"],
    "polish_max_iter": [_NoBool(numbers.Integral, 1, None, closed="left")],
    "max_dense_params": [Interval(numbers.Integral, 0, None, closed="left")],
    "random_state": [_NoBool(numbers.Integral, None, None, closed="neither"), None],
    # the module returns logits: only the cross-entropy on logits is supported
    "criterion": [Options(type, {torch.nn.CrossEntropyLoss})],
}


def check_settings(net):
    """Validate the parameters (scikit-learn's constraints); the attack to train with."""
    validate_parameter_constraints(
        net._parameter_constraints,
        {name: getattr(net, name) for name in net._parameter_constraints},
        caller_name=type(net).__name__,
    )
    net._check_device_available()
    return clone(resolve_attack(net.attack))


def seeded(net):
    """A context seeding torch with ``random_state``; the global generators are restored."""
    if net.random_state is None:
        return contextlib.nullcontext()
    devices = []
    if net.device is not None and str(net.device).startswith("cuda") \
            and torch.cuda.is_available():
        devices = [torch.device(net.device).index or 0]
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=devices))
    torch.manual_seed(int(net.random_state))
    return stack


def warn_unconverged(net):
    """Warn when forgetting starts from a fit that did not converge."""
    if getattr(net, "converged_", None) is not False:
        return
    info = getattr(net, "polish_info_", None) or {}
    if net._objective().smooth:
        attack = resolve_attack(net.attack_)
        change = (f"raise gamma (now {attack.gamma}) well above the curvature of the loss "
                  f"in the input, or alpha (now {net.alpha}), and refit"
                  if hasattr(attack, "gamma") else f"raise alpha (now {net.alpha}) and refit")
        what = (f"its polish stopped at a gradient norm of {info.get('gradient_norm', 0):.2g}"
                + ("" if info.get("attack_converged", True)
                   else " and the attack does not converge at it"))
    else:
        change = "raise polish_max_iter and refit"
        what = "its polish was still descending when it stopped"
    warn(f"this net's fit did not converge ({what}): there is no exact reference to forget "
         f"towards, and retrain() solves the same problem no better; {change}.",
         ConvergenceWarning)


def warn_unforgotten(net):
    """Warn when trained parameters or batch-norm statistics escape forgetting."""
    if net.train_params == "forget":
        return
    left = [n for n, p in net.module_.named_parameters()
            if p.requires_grad and n not in set(net.forget_names_)]
    stats = [n for n, m in net.module_.named_modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats]
    if left or stats:
        what = f"parameters {left[:4]}{'...' if len(left) > 4 else ''}" if left else \
            f"batch-norm statistics of {stats[:4]}"
        warn(
            f"{what} were trained on the rows being forgotten but are not updated by "
            "forgetting, so information about the rows remains in them. Train only the "
            "forgotten parameters on a body pre-trained on other data "
            "(train_params='forget'), or forget every parameter (forget_params='all').",
            ForgetWarning,
        )
