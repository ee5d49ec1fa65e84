"""Inputs of ``AdversarialNet``: arrays, skorch Datasets and the device.

Functions of the net and its data, shared by ``fit``, ``partial_fit`` and
every inference method; the messages are scikit-learn's where it has one.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from skorch.dataset import Dataset as SkorchDataset
from skorch.utils import data_from_dataset, to_numpy
from torch.utils.data import Dataset as TorchDataset

from ._attacks import TorchThreat

#: numpy dtype of the inputs for a module of each torch float dtype (others: float32)
NUMPY_FLOATS = {torch.float16: np.float16, torch.float32: np.float32,
                torch.float64: np.float64}


def check_device_available(net):
    """Raise a clear ``ValueError`` when ``device`` names a backend this machine lacks."""
    if net.device is None:  # skorch: leave the module where it is
        return
    try:
        device = torch.device(net.device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={net.device!r} is not a torch device ('cpu', 'cuda', "
                         "'cuda:0', ...).") from exc
    available = ["'cpu'"]
    if torch.cuda.is_available():
        available.append("'cuda'")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        available.append("'mps'")
    hint = f"pass device={' or '.join(available)}"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "has no CUDA support" if torch.version.cuda is None else \
                "finds no CUDA driver or GPU"
            raise ValueError(f"device={net.device!r} was requested but CUDA is not "
                             f"available (this torch build {build}): {hint}.")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device={net.device!r} was requested but there "
                             f"{'is' if count == 1 else 'are'} only {count} CUDA "
                             f"device{'' if count == 1 else 's'} (cuda:0 to "
                             f"cuda:{count - 1}).")
    elif device.type == "mps" and "'mps'" not in available:
        raise ValueError(f"device={net.device!r} was requested but MPS is not "
                         f"available: {hint}.")


def torch_device(net):
    """The device data go to: ``device``, or the module's own when ``device=None``."""
    if net.device is not None:
        return torch.device(net.device)
    module = getattr(net, "module_", None)
    if isinstance(module, torch.nn.Module):
        for p in module.parameters():
            return p.device
    return torch.device("cpu")


def float_dtype(net):
    """The numpy float dtype of the module's parameters (float32 before initialisation)."""
    module = getattr(net, "module_", None)
    if isinstance(module, torch.nn.Module):
        for p in module.parameters():
            if p.is_floating_point():
                return np.dtype(NUMPY_FLOATS.get(p.dtype, np.float32))
    return np.dtype(np.float32)


def check_X(net, X, reset):
    """Validate an array ``X``: numeric, finite, at least 2-D, rows of the fitted shape.

    Cast to the module's float dtype. The messages are scikit-learn's
    (``check_array`` / ``validate_data``), as for the linear models.
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu()
        X = to_numpy(X.float() if X.dtype == torch.bfloat16 else X)
    original = X
    X = check_array(X, dtype=net._float_dtype(), allow_nd=True, input_name="X",
                    estimator=net)
    if not X.flags.writeable:  # a read-only view (pandas, a memory map): torch warns
        X = X.copy()
    if reset:
        net._input_shape = X.shape[1:]
    else:
        shape = getattr(net, "_input_shape", None)
        if shape is None and getattr(net, "_train_X", None) is not None:
            shape = net._train_X.shape[1:]
        if shape is not None and tuple(X.shape[1:]) != tuple(shape):
            if X.ndim == 2 and len(shape) == 1:
                raise ValueError(f"X has {X.shape[1]} features, but {type(net).__name__} "
                                 f"is expecting {shape[0]} features as input.")
            raise ValueError(f"X has rows of shape {tuple(X.shape[1:])}, but "
                             f"{type(net).__name__} was fitted on rows of shape "
                             f"{tuple(shape)}.")
    # feature names and n_features_in_, as every scikit-learn estimator
    validate_data(net, original, reset=reset, skip_check_array=True)
    return X


def from_dataset(X, y, caller):
    """``(X, y)`` from a skorch ``Dataset`` (or a ``Subset`` of one); arrays unchanged."""
    if not isinstance(X, TorchDataset):
        return X, y
    try:
        Xd, yd = data_from_dataset(X)
    except AttributeError:
        raise TypeError(
            f"{caller} needs arrays or a skorch Dataset (or a Subset of one) holding "
            f"arrays, got {type(X).__name__}."
        ) from None
    if isinstance(Xd, dict):
        raise TypeError(f"{caller} needs a single input array, got a Dataset of a dict.")
    return Xd, yd if y is None else y


def check_inference_X(net, X):
    """Inputs of the inference methods: arrays are validated; datasets pass through.

    A torch ``Dataset`` is what skorch hands to callbacks (``EpochScoring``)
    and validation splits (``ValidSplit``); a skorch ``Dataset`` of an
    array has that array validated.
    """
    if getattr(net, "_loop_n_classes", None) is None:
        check_is_fitted(net, "n_train_")
    elif isinstance(X, (TorchDataset, torch.Tensor)):
        return X  # the loop's own datasets and batches, made of the validated X
    if isinstance(X, SkorchDataset) and isinstance(X.X, (np.ndarray, torch.Tensor)):
        Xv = net._check_X(X.X, reset=False)
        return X if Xv is X.X else SkorchDataset(Xv, X.y)
    if isinstance(X, TorchDataset):
        return X
    return net._check_X(X, reset=False)


def check_X_y(net, X, y, reset):
    """Validate ``(X, y)``: ``X`` as :func:`check_X`, ``y`` the labels as class indices.

    Returns ``X``, the class index of each row and the classes.
    """
    X = net._check_X(X, reset)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"y must be 1-D with one entry per row of X ({X.shape[0]}), got shape {y.shape}."
        )
    if reset:
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError("the training data needs samples of at least 2 classes.")
        if net.classes is not None:
            # skorch's ``classes``: the labels in the order of the module's outputs
            given = np.asarray(net.classes)
            if given.ndim != 1 or len(np.unique(given)) != len(given) or \
                    not np.array_equal(np.sort(given), classes):
                raise ValueError(
                    f"classes={net.classes!r} must list each label of y once (in the "
                    f"order of the module's outputs); y has the labels {classes.tolist()}. "
                    "Leave classes=None to take them from y.")
            classes = given
    else:
        classes = np.asarray(net.classes_)
    order = np.argsort(classes, kind="stable")
    pos = np.clip(np.searchsorted(classes[order], y), 0, len(classes) - 1)
    if np.any(classes[order][pos] != y):
        raise ValueError("y has labels not seen in fit.")
    return X, order[pos].astype(np.int64), classes


def check_inside(attack, X):
    """Raise ``ValueError`` when rows of ``X`` (the first 100,000) leave the attack's box."""
    threat = TorchThreat(attack, X.shape[1:])
    threat.check_inside(torch.as_tensor(X[: min(len(X), 100_000)], dtype=torch.float32))


@contextlib.contextmanager
def training_loop(net, classes):
    """skorch's loop sees the targets as class indices: so do its callbacks."""
    net._loop_n_classes = len(classes)
    try:
        yield
    finally:
        del net._loop_n_classes
