"""A network's forgotten parameters as one flat vector, and its linear head.

:func:`resolve_names` turns ``forget_params`` into parameter names;
:func:`flat_values` and :func:`write_flat` read and write them as one vector.

:class:`FlatParams` holds a frozen float64 copy of the network and maps the
flat vector ``theta`` of the forgotten parameters to the named tensors that
``torch.func.functional_call`` takes; every other parameter and buffer stays
at its fitted value.

:func:`find_head` detects when ``theta`` is exactly the parameters of an
``nn.Linear`` whose output is the network's output (the last layer on a
frozen body). Then the body's features do not depend on ``theta``: they are
computed once per input and every derivative in ``theta`` runs on the small
head alone (:class:`LinearHead`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

__all__ = ["HEAD_NAMES", "FlatParams", "LinearHead", "find_head", "flat_values", "frozen_copy",
           "output_linear", "resolve_names", "write_flat"]


def frozen_copy(module, device, dtype):
    """A copy of ``module`` on ``device`` in ``dtype``, in evaluation mode, without gradients."""
    out = copy.deepcopy(module).to(device=device, dtype=dtype).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


#: names that mark a network's output layer (torchvision: ``fc``, ``classifier``, ``heads.head``)
HEAD_NAMES = ("fc", "classifier", "linear", "head", "heads", "output", "out")


def _linear_modules(module):
    return [name for name, mod in module.named_modules() if isinstance(mod, torch.nn.Linear)]


def _own_params(names, mod_name):
    prefix = mod_name + "." if mod_name else ""
    return [n for n in names if n.startswith(prefix) and "." not in n[len(prefix):]]


def output_linear(module, sample):
    """Name of the ``nn.Linear`` whose output *is* the network's output on ``sample``, or None.

    The module runs once on ``sample`` (evaluation mode, no gradients; the
    modes of its submodules are put back), with a forward hook on every
    ``nn.Linear``: the layer that produced the very tensor the network
    returns is its output layer, wherever it is registered.
    """
    linears = {n: m for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)}
    if not linears:
        return None
    outputs, handles = [], []  # the outputs are kept alive: compared by identity
    for name, mod in linears.items():
        def hook(m, inp, out, name=name):
            outputs.append((out, name))
        handles.append(mod.register_forward_hook(hook))
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
            result = module(sample)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    hits = [name for out, name in outputs if out is result]
    return hits[-1] if hits else None


def resolve_names(module, spec, sample=None):
    """Names of the trainable parameters that ``forget_params=spec`` selects, in order.

    ``'last'`` is the network's output layer, an ``nn.Linear``: with a
    ``sample`` input, the one whose output is the network's output
    (:func:`output_linear`); otherwise (or when no layer's output is returned
    as it is) the last registered ``nn.Linear`` whose name has a component
    among :data:`HEAD_NAMES` (``fc``, ``classifier``, ``linear``, ``head``,
    ...), else the last registered ``nn.Linear``.
    """
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    names = [n for n, _ in named]
    if isinstance(spec, str) and spec == "all":
        return names
    if isinstance(spec, str) and spec == "last":
        linears = _linear_modules(module)
        if not linears:
            raise ValueError("forget_params='last' needs a torch.nn.Linear module in the "
                             "network; name the modules to forget instead.")
        last = output_linear(module, sample) if sample is not None else None
        if last is None:
            marked = [n for n in linears if set(n.split(".")) & set(HEAD_NAMES)]
            last = (marked or linears)[-1]
        own = _own_params(names, last)
        if not own:
            raise ValueError(f"forget_params='last' selects the output layer {last!r}, which "
                             "has no trainable parameters; name the modules to forget "
                             "instead.")
        return own
    if isinstance(spec, str) or not all(isinstance(s, str) for s in np.ravel(spec)):
        raise ValueError(
            f"forget_params must be 'last', 'all' or a list of module names, got {spec!r}."
        )
    out = []
    for s in spec:
        hits = [n for n in names if n == s or n.startswith(s + ".")]
        if not hits:
            raise ValueError(f"forget_params names {s!r}, which is not a module or trainable "
                             f"parameter of the network; parameters: {names[:8]}.")
        out.extend(h for h in hits if h not in out)
    return [n for n in names if n in out]


def flat_values(module, names):
    """The parameters ``names`` of ``module`` as one flat float64 vector (numpy)."""
    params = dict(module.named_parameters())
    return torch.cat([params[n].detach().flatten().double().cpu() for n in names]).numpy()


def write_flat(module, names, theta):
    """Write the flat vector ``theta`` into the parameters ``names`` of ``module``."""
    params = dict(module.named_parameters())
    theta = torch.as_tensor(np.asarray(theta, dtype=np.float64))
    with torch.no_grad():
        for name, piece in zip(names, torch.split(theta, [params[n].numel() for n in names])):
            p = params[name]
            p.copy_(piece.reshape(p.shape).to(device=p.device, dtype=p.dtype))


class FlatParams:
    """The parameters ``names`` of a network as one flat float64 vector.

    Parameters
    ----------
    module : torch.nn.Module
        The fitted network (copied; the copy is float64 and in evaluation mode).
    names : list of str
        Names of the parameters that ``theta`` holds, in order.
    device : torch.device
    """

    def __init__(self, module, names, device):
        self.device = torch.device(device)
        self.dtype = torch.float64
        self.module = frozen_copy(module, self.device, self.dtype)
        self.names = list(names)
        named = dict(self.module.named_parameters())
        self.shapes = [named[n].shape for n in self.names]
        self.sizes = [named[n].numel() for n in self.names]
        self.n_params = int(sum(self.sizes))
        # Only the frozen part is kept: theta always comes from the caller.
        self.fixed = {k: v for k, v in named.items() if k not in set(self.names)}
        self.fixed.update(dict(self.module.named_buffers()))
        for n in self.names:
            named[n].data = torch.zeros_like(named[n].data)

    def tensor(self, theta):
        """``theta`` as a float64 tensor on the device."""
        return torch.as_tensor(np.asarray(theta, dtype=np.float64), device=self.device)

    def unflatten(self, theta_t):
        """The named tensors of the flat ``theta_t``."""
        out = {}
        for name, piece, shape in zip(self.names, torch.split(theta_t, self.sizes),
                                      self.shapes):
            out[name] = piece.reshape(shape)
        return out

    def call_params(self, theta_t):
        """Every parameter and buffer of the network, ``theta_t`` in place of ``names``."""
        params = dict(self.fixed)
        params.update(self.unflatten(theta_t))
        return params

    def logits(self, theta_t, x):
        """Network output at flat parameters ``theta_t`` (a tensor) on inputs ``x``."""
        return functional_call(self.module, self.call_params(theta_t), (x,))

    def layer_input(self, layer_name, x, theta_t=None, detach=False):
        """Input of the module ``layer_name`` when the network runs on ``x``.

        At ``theta_t`` (zeros when None). None when the module does not run
        exactly once. ``detach=False`` keeps it differentiable in ``x``.
        """
        mod = dict(self.module.named_modules())[layer_name]
        if theta_t is None:
            theta_t = torch.zeros(self.n_params, dtype=self.dtype, device=self.device)
        box = []

        def hook(m, inp, out):
            box.append(inp[0].detach() if detach else inp[0])

        handle = mod.register_forward_hook(hook)
        try:
            functional_call(self.module, self.call_params(theta_t), (x,))
        finally:
            handle.remove()
        return box[0] if len(box) == 1 else None


class LinearHead:
    """The ``nn.Linear`` output layer whose parameters are exactly ``theta``.

    Parameters
    ----------
    params : FlatParams
    name : str
        Name of the module in the network (``''`` for the network itself).
    """

    def __init__(self, params, name):
        self.params = params
        self.name = name
        self.prefix = name + "." if name else ""
        self.layer = dict(params.module.named_modules())[name]
        offsets = dict(zip(params.names, np.cumsum([0] + params.sizes[:-1])))
        K, F_ = self.layer.weight.shape
        w = offsets[self.prefix + "weight"] + np.arange(K * F_).reshape(K, F_)
        b = self.prefix + "bias"
        b = offsets[b] + np.arange(K) if b in offsets else None
        #: positions in ``theta`` of the weight (K, F) and bias (K,) or None
        self.layout = (w, b)

    @property
    def weight(self):
        """The layer's weight, for its shape (zeros: ``theta`` holds the values)."""
        return self.layer.weight

    def features(self, x, theta_t=None):
        """The body's features on ``x``: detached, or differentiable in ``x`` at ``theta_t``."""
        if theta_t is None:
            return self.params.layer_input(self.name, x, detach=True)
        return self.params.layer_input(self.name, x, theta_t)

    def logits(self, theta_t, feats):
        """Output of the head at ``theta_t`` on the features ``feats``."""
        p = self.params.unflatten(theta_t)
        return F.linear(feats, p[self.prefix + "weight"], p.get(self.prefix + "bias"))

    def natural_index(self, cols_t):
        """Positions of ``cols_t`` in the head's natural order ``(k, [phi, 1])``."""
        w_pos, b_pos = self.layout
        K, F_ = w_pos.shape
        width = F_ + (b_pos is not None)
        pos = np.empty(self.params.n_params, dtype=np.int64)
        natural = np.arange(K * width).reshape(K, width)
        pos[w_pos.ravel()] = natural[:, :F_].ravel()
        if b_pos is not None:
            pos[b_pos] = natural[:, F_]
        return torch.as_tensor(pos, device=self.params.device)[cols_t]


def find_head(params, x):
    """The :class:`LinearHead` of ``params``, or None.

    The head is an ``nn.Linear`` whose parameters are exactly ``params.names``
    and whose output is the network's output, checked on the sample ``x`` at
    a random ``theta``.
    """
    for mod_name, mod in params.module.named_modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        prefix = mod_name + "." if mod_name else ""
        own = [prefix + n for n, _ in mod.named_parameters(recurse=False)]
        if sorted(own) != sorted(params.names):
            continue
        theta = torch.randn(params.n_params, dtype=params.dtype,
                            generator=torch.Generator().manual_seed(0)).to(params.device)
        with torch.no_grad():
            feats = params.layer_input(mod_name, x, detach=True)
            if feats is None:
                return None
            head = LinearHead(params, mod_name)
            same = torch.allclose(params.logits(theta, x), head.logits(theta, feats),
                                  rtol=1e-10, atol=1e-10)
        return head if same else None
    return None
