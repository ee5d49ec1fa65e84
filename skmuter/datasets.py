"""Datasets of the MUter paper, under its protocol.

* :func:`load_mnist_b`: MNIST digits 1 vs 7, pixels scaled to [0, 1]
  (13,007 train / 2,163 test rows, the labels are the digits 1 and 7);
* :func:`load_covtype_binary`: Forest Covertype, class 2 (Lodgepole Pine)
  vs the rest, every column min-max scaled to [0, 1] over all rows, a
  stratified 90/10 split with a fixed seed (522,910 / 58,102 rows);
* :func:`load_mnist`: the ten MNIST digits (60,000 / 10,000), for networks.

Every loader returns ``X_train, X_test, y_train, y_test`` with float64
inputs in [0, 1]. Where the data come from, first match wins:

1. ``path``: a ``.npz`` file, or a directory holding the files below;
2. the directory named by the ``SKMUTER_DATA`` environment variable;
3. scikit-learn's fetchers (``fetch_openml('mnist_784')``,
   ``fetch_covtype``), which read their cache and download when needed.

The local files are ``numpy.savez_compressed`` archives without pickled
objects:

``mnist.npz``
    ``X_train`` (60000, 784) and ``X_test`` (10000, 784) as uint8 pixels
    0..255, ``y_train`` and ``y_test`` the digits 0..9.
``mnist_1_7.npz``
    The same keys restricted to the digits 1 and 7 (original order).
    When only ``mnist.npz`` is present, the subset is taken from it.
``covtype.npz``
    ``X`` (581012, 54) raw features, ``y`` the Cover_Type labels 1..7, in
    the original ``covtype.data`` order.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

__all__ = [
    "DATA_ENV",
    "DatasetNotFoundError",
    "load_covtype_binary",
    "load_mnist",
    "load_mnist_b",
]

#: environment variable naming a directory with the local data files
DATA_ENV = "SKMUTER_DATA"

#: seed of the stratified Covtype split (the sizes do not depend on it)
COVTYPE_SPLIT_SEED = 0

_MNIST_KEYS = ("X_train", "X_test", "y_train", "y_test")
_COVTYPE_KEYS = ("X", "y")


class DatasetNotFoundError(FileNotFoundError):
    """No local file and no download: the message says how to provide the data."""


# ---- locating and reading local files ---------------------------------------------
def _local_candidates(path, names):
    """Files to try, in order, for the given ``path`` argument and environment."""
    if path is not None:
        path = Path(path).expanduser()
        if path.is_dir():
            return [path / n for n in names], f"path={str(path)!r}"
        return [path], f"path={str(path)!r}"
    env = os.environ.get(DATA_ENV)
    if env:
        root = Path(env).expanduser()
        return [root / n for n in names], f"{DATA_ENV}={env!r}"
    return [], None


def _read_npz(file, keys):
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # zipfile, pickle and OS errors alike
        raise ValueError(f"cannot read {file} as a numpy .npz archive: {exc}") from exc
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(
            f"{file} is not a valid data file: keys {missing} are missing "
            f"(it has {sorted(arrays)})."
        )
    return arrays


def _not_found(what, files, source, names, fetch_error=None):
    where = ", ".join(str(f) for f in files)
    if source is not None and source.startswith("path="):
        lines = [f"{what} data not found: no such file {where}."]
    elif files:
        lines = [f"{what} data not found: no file {where} ({source})."]
    else:
        lines = [f"{what} data not found."]
    if fetch_error is not None:
        lines.append(f"Downloading it with scikit-learn failed ({fetch_error}).")
    lines.append(
        "Either let scikit-learn download it (needs the internet once, then it is cached), "
        f"or give a local copy: the path argument (--data on the command line) naming "
        f"{' or '.join(names)} or a directory holding it, or the {DATA_ENV} environment "
        "variable set to such a directory."
    )
    return DatasetNotFoundError(" ".join(lines))


def _load(what, path, names, keys, fetch, download, data_home):
    """Return the arrays of the first local file found, else those of ``fetch``."""
    files, source = _local_candidates(path, names)
    for file in files:
        if file.is_file():
            return _read_npz(file, keys), file
    if path is not None or not download:
        # An explicit path is a promise: never silently download instead.
        raise _not_found(what, files, source, names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arrays = fetch(data_home)
        except Exception as exc:  # network errors come in many types
            raise _not_found(what, files, source, names, fetch_error=exc) from exc
    for w in caught:  # retries that ended well are still worth knowing about
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return arrays, None


# ---- scikit-learn fetchers ---------------------------------------------------------
def _fetch_mnist(data_home):
    from sklearn.datasets import fetch_openml

    X, y = fetch_openml("mnist_784", version=1, return_X_y=True, as_frame=False,
                        data_home=data_home, parser="auto")
    # OpenML lists the standard split: the first 60,000 rows train, the last 10,000 test.
    y = np.asarray(y).astype(np.int64)
    X = np.asarray(X)
    return {"X_train": X[:60000], "X_test": X[60000:], "y_train": y[:60000],
            "y_test": y[60000:]}


def _fetch_covtype(data_home):
    from sklearn.datasets import fetch_covtype

    X, y = fetch_covtype(data_home=data_home, return_X_y=True)
    return {"X": X, "y": y}


# ---- conversions -----------------------------------------------------------------
def _pixels(X):
    # Both sources store pixels as 0..255.
    return np.asarray(X, dtype=np.float64) / 255.0


def _digits_subset(d, digits):
    out = {}
    for part in ("train", "test"):
        y = np.asarray(d[f"y_{part}"]).astype(np.int64)
        keep = np.isin(y, digits)
        out[f"X_{part}"] = np.asarray(d[f"X_{part}"])[keep]
        out[f"y_{part}"] = y[keep]
    return out


def _mnist_split(d):
    return (_pixels(d["X_train"]), _pixels(d["X_test"]),
            np.asarray(d["y_train"]).astype(np.int64), np.asarray(d["y_test"]).astype(np.int64))


# ---- public loaders ----------------------------------------------------------------
def load_mnist_b(path: str | os.PathLike | None = None, *, download: bool = True,
                 data_home: str | os.PathLike | None = None):
    """MNIST-b: the digits 1 and 7, pixels scaled to [0, 1].

    Parameters
    ----------
    path : str or path-like, default=None
        A ``.npz`` file (``mnist_1_7.npz`` or the full ``mnist.npz``) or a
        directory holding one of them. ``None``: the ``SKMUTER_DATA``
        directory, then scikit-learn's ``fetch_openml('mnist_784')``.
    download : bool, default=True
        Use scikit-learn's fetcher (its cache, else the network) when no
        local file is found. An explicit ``path`` never falls back to it.
    data_home : str or path-like, default=None
        Cache directory of scikit-learn's fetcher.

    Returns
    -------
    X_train : ndarray of shape (13007, 784), float64 in [0, 1]
    X_test : ndarray of shape (2163, 784), float64 in [0, 1]
    y_train : ndarray of shape (13007,), int
        The digits 1 and 7 (estimators map them to -1/+1 themselves).
    y_test : ndarray of shape (2163,), int

    Raises
    ------
    DatasetNotFoundError
        When no local file is found and the download is off or fails.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from skmuter.datasets import load_mnist_b
    >>> rng = np.random.default_rng(0)
    >>> fake = {"X_train": rng.integers(0, 256, (6, 784), dtype=np.uint8),
    ...         "y_train": np.array([1, 7, 3, 1, 7, 0], dtype=np.uint8),
    ...         "X_test": rng.integers(0, 256, (2, 784), dtype=np.uint8),
    ...         "y_test": np.array([7, 1], dtype=np.uint8)}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     np.savez_compressed(os.path.join(tmp, "mnist.npz"), **fake)
    ...     X_train, X_test, y_train, y_test = load_mnist_b(tmp)
    >>> X_train.shape, y_train.tolist(), float(X_train.max()) <= 1.0
    ((4, 784), [1, 7, 1, 7], True)
    """
    names = ("mnist_1_7.npz", "mnist.npz")
    d, _ = _load("MNIST", path, names, _MNIST_KEYS, _fetch_mnist, download, data_home)
    return _mnist_split(_digits_subset(d, (1, 7)))


def load_mnist(path: str | os.PathLike | None = None, *, download: bool = True,
               data_home: str | os.PathLike | None = None):
    """The ten MNIST digits, pixels scaled to [0, 1] (for networks).

    Parameters
    ----------
    path : str or path-like, default=None
        ``mnist.npz`` or a directory holding it; ``None``: the
        ``SKMUTER_DATA`` directory, then ``fetch_openml('mnist_784')``.
    download : bool, default=True
        Use scikit-learn's fetcher when no local file is found.
    data_home : str or path-like, default=None
        Cache directory of scikit-learn's fetcher.

    Returns
    -------
    X_train : ndarray of shape (60000, 784), float64 in [0, 1]
    X_test : ndarray of shape (10000, 784), float64 in [0, 1]
    y_train : ndarray of shape (60000,), int
        Digits 0..9.
    y_test : ndarray of shape (10000,), int

    Raises
    ------
    DatasetNotFoundError
        When no local file is found and the download is off or fails.

    Examples
    --------
    >>> import os, tempfile
    >>> from skmuter.datasets import DatasetNotFoundError, load_mnist
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     try:
    ...         load_mnist(os.path.join(tmp, "absent.npz"))
    ...     except DatasetNotFoundError as exc:
    ...         print("SKMUTER_DATA" in str(exc))
    True
    """
    d, _ = _load("MNIST", path, ("mnist.npz",), _MNIST_KEYS, _fetch_mnist, download,
                 data_home)
    return _mnist_split(d)


def load_covtype_binary(path: str | os.PathLike | None = None, *, download: bool = True,
                        data_home: str | os.PathLike | None = None,
                        random_state: int = COVTYPE_SPLIT_SEED):
    """Covtype binary: class 2 vs the rest, min-max scaled, stratified 90/10 split.

    Parameters
    ----------
    path : str or path-like, default=None
        ``covtype.npz`` or a directory holding it; ``None``: the
        ``SKMUTER_DATA`` directory, then scikit-learn's ``fetch_covtype``.
    download : bool, default=True
        Use scikit-learn's fetcher when no local file is found.
    data_home : str or path-like, default=None
        Cache directory of scikit-learn's fetcher.
    random_state : int, default=0
        Seed of the stratified split (the sizes do not depend on it).

    Returns
    -------
    X_train : ndarray of shape (522910, 54), float64 in [0, 1]
    X_test : ndarray of shape (58102, 54), float64 in [0, 1]
    y_train : ndarray of shape (522910,), int
        1 for Cover_Type 2 (Lodgepole Pine), 0 otherwise.
    y_test : ndarray of shape (58102,), int

    Raises
    ------
    DatasetNotFoundError
        When no local file is found and the download is off or fails.

    Notes
    -----
    Each column is scaled by its minimum and maximum over all 581,012 rows,
    as in LIBSVM's ``covtype.binary.scale``, before the split.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from skmuter.datasets import load_covtype_binary
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 100, (50, 54)); y = np.tile([1, 2, 3, 2, 5], 10)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     np.savez_compressed(os.path.join(tmp, "covtype.npz"), X=X, y=y)
    ...     X_train, X_test, y_train, y_test = load_covtype_binary(tmp)
    >>> X_train.shape, X_test.shape, int(y_test.sum()), float(X_train.max()) <= 1.0
    ((45, 54), (5, 54), 2, True)
    """
    from sklearn.model_selection import train_test_split

    d, _ = _load("Covtype", path, ("covtype.npz",), _COVTYPE_KEYS, _fetch_covtype,
                 download, data_home)
    X = np.asarray(d["X"], dtype=np.float64)
    y = (np.asarray(d["y"]) == 2).astype(np.int64)
    low, high = X.min(axis=0), X.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    X = (X - low) / span
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.1, stratify=y, random_state=random_state
    )
    return X_train, X_test, y_train, y_test
