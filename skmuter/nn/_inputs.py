"""Inputs of ``AdversarialNet``: arrays, skorch and torch Datasets, loaders, the device.

Functions of the net and its data, shared by ``fit``, ``partial_fit`` and
every inference method; the messages are scikit-learn's where it has one.

A map-style torch ``Dataset`` (or a ``DataLoader`` over one) that does not
hold arrays is *streamed*: :func:`scan_dataset` checks it in one pass and
keeps only the labels; :class:`DatasetRows` stands in for the training array
(reads rows on demand, purges forgotten ones, never pickles the dataset);
:class:`CodedDataset` is what the training loop iterates and
:class:`CastDataset` what inference reads.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from skorch.dataset import Dataset as SkorchDataset
from skorch.utils import data_from_dataset, to_numpy
from torch.utils.data import DataLoader, IterableDataset
from torch.utils.data import Dataset as TorchDataset

from .._transaction import record_undo
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
    if isinstance(X, (CastDataset, CodedDataset)):
        return X
    if is_streamed(X):
        # a user's dataset (or loader) of (x, y) items: x cast as it is read
        return CastDataset(dataset_of(X, "inference"), net._float_dtype(), "inference")
    if isinstance(X, TorchDataset):
        return X
    return net._check_X(X, reset=False)


def check_X_y(net, X, y, reset):
    """Validate ``(X, y)``: ``X`` as :func:`check_X`, ``y`` the labels as class indices.

    Returns ``X``, the class index of each row and the classes.
    """
    X = net._check_X(X, reset)
    codes, classes = check_labels(net, y, X.shape[0], reset)
    return X, codes, classes


def check_labels(net, y, n, reset):
    """The class index of each of the ``n`` labels ``y``, and the classes."""
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(
            f"y must be 1-D with one entry per row of X ({n}), got shape {y.shape}."
        )
    if reset:
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError("the training data needs samples of at least 2 classes.")
        if net.classes is not None:
            # skorch's ``classes``: the labels in the order of the module's
            # outputs, every label of y among them (more are allowed: classes
            # with no training row)
            given = np.asarray(net.classes)
            if given.ndim != 1 or len(np.unique(given)) != len(given) or \
                    not np.all(np.isin(classes, given)):
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
    return order[pos].astype(np.int64), classes


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


# ---- torch datasets and data loaders ---------------------------------------------------
#: rows read at once when a dataset is scanned or streamed
SCAN_BATCH = 256


def is_streamed(X):
    """Whether ``X`` is a dataset or data loader read row by row (not arrays).

    A skorch ``Dataset`` holding arrays (or a ``Subset`` of one) is unpacked
    into its arrays instead, as before; any other map-style torch
    ``Dataset``, and a ``DataLoader`` over one, is streamed.
    """
    if isinstance(X, DataLoader):
        return True
    if not isinstance(X, TorchDataset):
        return False
    try:
        Xd, _ = data_from_dataset(X)
    except AttributeError:
        return True
    return not isinstance(Xd, (np.ndarray, torch.Tensor))


def dataset_of(X, caller):
    """The map-style dataset behind ``X`` (a ``Dataset`` or a ``DataLoader`` over one)."""
    ds = X.dataset if isinstance(X, DataLoader) else X
    if isinstance(ds, IterableDataset) or not hasattr(ds, "__getitem__") or \
            not hasattr(ds, "__len__"):
        raise TypeError(f"{caller} needs a map-style torch Dataset (with __len__ and "
                        f"__getitem__: forgetting refers to its positions), got "
                        f"{type(ds).__name__}.")
    return ds


def _as_row(item, i, caller):
    """``(x, y)`` of the dataset's item ``i``: ``x`` a numeric array, ``y`` a scalar label."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"{caller} needs a dataset whose items are (x, y) pairs; item {i} is "
                        f"a {type(item).__name__}"
                        f"{f' of length {len(item)}' if hasattr(item, '__len__') else ''}.")
    x, y = item
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = to_numpy(x.float() if x.dtype == torch.bfloat16 else x)
    x = np.asarray(x)
    if x.dtype.kind not in "biuf" or x.ndim == 0:
        raise TypeError(f"{caller}: the input x of dataset item {i} must be a numeric array "
                        f"or tensor of at least one dimension, got {type(item[0]).__name__} "
                        f"of dtype {x.dtype} and shape {x.shape}.")
    if isinstance(y, torch.Tensor):
        y = to_numpy(y.detach().cpu())
    y = np.asarray(y)
    if y.size != 1:
        raise TypeError(f"{caller}: the label y of dataset item {i} must be a scalar, got "
                        f"shape {y.shape}.")
    return x, y.reshape(())[()]


class DatasetRows:
    """The training rows of a map-style dataset, read on demand; forgotten rows purged.

    Stands in for the training array: ``rows[positions]`` reads those items
    (cast to ``dtype``; purged rows read as zeros without touching the
    dataset), ``rows[positions] = 0`` purges them, ``shape``, ``dtype`` and
    ``len`` are the array's. The dataset is held by reference (copies share
    it) and never pickled: an unpickled net gets it back with
    :meth:`AdversarialNet.attach_dataset <skmuter.nn.AdversarialNet.attach_dataset>`.
    """

    def __init__(self, dataset, input_shape, dtype, purged=None):
        self.dataset = dataset
        self.input_shape = tuple(input_shape)
        self.dtype = np.dtype(dtype)
        self.purged = np.zeros(len(dataset), dtype=bool) if purged is None else purged

    @property
    def shape(self):
        return (len(self.purged),) + self.input_shape

    @property
    def ndim(self):
        return 1 + len(self.input_shape)

    def __len__(self):
        return len(self.purged)

    def _positions(self, rows):
        if isinstance(rows, slice):
            return np.arange(len(self))[rows]
        rows = np.asarray(rows)
        if rows.dtype == bool:
            return np.flatnonzero(rows)
        return np.atleast_1d(rows).astype(np.int64)

    def item(self, i):
        """Input of row ``i`` as an array of ``dtype`` (zeros once purged)."""
        if self.purged[i]:
            return np.zeros(self.input_shape, dtype=self.dtype)
        if self.dataset is None:
            raise ValueError("this net was fitted on a torch Dataset, which is not pickled "
                             "with it: call net.attach_dataset(dataset) to forget, retrain "
                             "or measure on its training rows again.")
        x, _ = _as_row(self.dataset[int(i)], int(i), "AdversarialNet")
        if x.shape != self.input_shape:
            raise ValueError(f"dataset item {int(i)} has an input of shape {x.shape}, but the "
                             f"net was fitted on rows of shape {self.input_shape}.")
        return x.astype(self.dtype, copy=False)

    def __getitem__(self, rows):
        pos = self._positions(rows)
        out = np.empty((len(pos),) + self.input_shape, dtype=self.dtype)
        for k, i in enumerate(pos):
            out[k] = self.item(i)
        return out

    def __setitem__(self, rows, value):
        if np.any(np.asarray(value) != 0):
            raise ValueError("the rows of a dataset can only be purged (set to 0).")
        pos = self._positions(rows)
        old = self.purged[pos].copy()
        self.purged[pos] = True
        def put_back():
            self.purged[pos] = old

        record_undo(put_back)  # a failed forget puts the rows back

    def copy(self):
        """A copy with its own purge marks, reading the same dataset."""
        return DatasetRows(self.dataset, self.input_shape, self.dtype, self.purged.copy())

    def __deepcopy__(self, memo):
        return self.copy()  # the dataset is the user's, read only: shared

    def __getstate__(self):
        state = dict(self.__dict__)
        state["dataset"] = None  # neither the user's data nor its forgotten rows
        return state

    def attach(self, dataset):
        """Read the training rows from ``dataset`` again (after unpickling)."""
        self.dataset = dataset


class CodedDataset(TorchDataset):
    """What the training loop iterates: ``(x, class code)`` of each dataset row."""

    def __init__(self, rows, codes):
        self.rows = rows
        self.codes = codes

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return torch.from_numpy(self.rows.item(i)), self.codes[i]


class CastDataset(TorchDataset):
    """A user's dataset seen by inference: ``x`` cast to the module's dtype, no label."""

    def __init__(self, dataset, dtype, caller):
        self.dataset = dataset
        self.dtype = np.dtype(dtype)
        self.caller = caller

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        x, _ = _as_row(self.dataset[i], i, self.caller)
        return torch.from_numpy(np.asarray(x, dtype=self.dtype)), 0


def scan_dataset(net, X, attack, reset, caller):
    """Check every row of a dataset (or a loader's) in one pass, keeping only the labels.

    Inputs must be numeric, finite, of one shape (the fitted one unless
    ``reset``) and inside the attack's box. Returns the rows
    (:class:`DatasetRows`) and the labels.
    """
    ds = dataset_of(X, caller)
    n = len(ds)
    if n == 0:
        raise ValueError(f"{caller} got an empty dataset.")
    dtype = net._float_dtype()
    shape = None if reset else getattr(net, "_input_shape", None)
    threat = None
    labels = []
    for start in range(0, n, SCAN_BATCH):
        xs = []
        for i in range(start, min(n, start + SCAN_BATCH)):
            x, y = _as_row(ds[i], i, caller)
            if shape is None:
                shape = x.shape
            if x.shape != tuple(shape):
                raise ValueError(f"{caller}: dataset item {i} has an input of shape {x.shape}, "
                                 f"expected {tuple(shape)} (every row must have the "
                                 f"{'fitted' if not reset else 'same'} shape).")
            xs.append(x)
            labels.append(y)
        batch = np.asarray(xs, dtype=dtype)
        if not np.isfinite(batch).all():
            raise ValueError(f"{caller}: the dataset has inputs with NaN or infinity (rows "
                             f"{start} to {start + len(xs) - 1}).")
        if attack is not None:
            if threat is None:
                threat = TorchThreat(attack, shape)
            threat.check_inside(torch.as_tensor(batch, dtype=torch.float32))
    if reset:
        net._input_shape = tuple(shape)
        # n_features_in_, as for arrays (from one row)
        validate_data(net, np.zeros((1,) + tuple(shape), dtype=dtype), reset=True,
                      skip_check_array=True)
    return DatasetRows(ds, shape, dtype), np.asarray(labels)
