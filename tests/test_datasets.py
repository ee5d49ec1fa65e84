"""Loaders of skmuter.datasets, on tiny fake files and monkeypatched fetchers."""

import numpy as np
import pytest

from skmuter import datasets
from skmuter.datasets import DatasetNotFoundError, load_covtype_binary, load_mnist, load_mnist_b


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(datasets.DATA_ENV, raising=False)


def _fake_mnist(rng, n_train=40, n_test=12):
    return {
        "X_train": rng.integers(0, 256, (n_train, 784), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.uint8) % 10,
        "X_test": rng.integers(0, 256, (n_test, 784), dtype=np.uint8),
        "y_test": np.arange(n_test, dtype=np.uint8) % 10,
    }


def _fake_covtype(rng, n=200):
    X = rng.integers(-50, 500, (n, 54)).astype(np.int32)
    X[:, 10:] = rng.integers(0, 2, (n, 44))
    y = (np.arange(n) % 7 + 1).astype(np.int8)
    return {"X": X, "y": y}


@pytest.fixture
def data_dir(tmp_path):
    rng = np.random.default_rng(0)
    full = _fake_mnist(rng)
    np.savez_compressed(tmp_path / "mnist.npz", **full)
    np.savez_compressed(tmp_path / "covtype.npz", **_fake_covtype(rng))
    return tmp_path, full


def test_mnist_b_from_full_mnist_keeps_digits_1_and_7(data_dir):
    path, full = data_dir
    X_train, X_test, y_train, y_test = load_mnist_b(path)
    keep = np.isin(full["y_train"], (1, 7))
    assert set(np.unique(y_train)) == {1, 7}
    assert set(np.unique(y_test)) == {1, 7}
    assert X_train.dtype == np.float64 and X_train.shape == (keep.sum(), 784)
    np.testing.assert_allclose(X_train, full["X_train"][keep] / 255.0)
    np.testing.assert_array_equal(y_train, full["y_train"][keep])
    assert 0.0 <= X_test.min() and X_test.max() <= 1.0


def test_mnist_b_prefers_the_subset_file(data_dir):
    path, _ = data_dir
    rng = np.random.default_rng(1)
    sub = {"X_train": rng.integers(0, 256, (5, 784), dtype=np.uint8),
           "y_train": np.array([1, 7, 7, 1, 1], dtype=np.uint8),
           "X_test": rng.integers(0, 256, (3, 784), dtype=np.uint8),
           "y_test": np.array([7, 1, 7], dtype=np.uint8)}
    np.savez_compressed(path / "mnist_1_7.npz", **sub)
    _X_train, X_test, y_train, _y_test = load_mnist_b(path)
    np.testing.assert_array_equal(y_train, [1, 7, 7, 1, 1])
    np.testing.assert_allclose(X_test, sub["X_test"] / 255.0)


def test_mnist_ten_classes_from_file_and_from_environment(data_dir, monkeypatch):
    path, full = data_dir
    direct = load_mnist(path / "mnist.npz")
    monkeypatch.setenv(datasets.DATA_ENV, str(path))
    via_env = load_mnist()
    for a, b in zip(direct, via_env):
        np.testing.assert_array_equal(a, b)
    assert direct[0].shape == (40, 784) and direct[1].shape == (12, 784)
    np.testing.assert_array_equal(direct[2], full["y_train"])


def test_covtype_binary_labels_scaling_and_stratified_split(data_dir):
    path, _ = data_dir
    raw = np.load(path / "covtype.npz")
    X_train, X_test, y_train, y_test = load_covtype_binary(path)
    assert X_train.shape == (180, 54) and X_test.shape == (20, 54)
    # min-max over all rows: every column spans exactly [0, 1] across train and test
    X_all = np.vstack([X_train, X_test])
    np.testing.assert_allclose(X_all.min(axis=0), 0.0)
    np.testing.assert_allclose(X_all.max(axis=0), 1.0)
    # label 1 is Cover_Type 2; stratification keeps its share in both parts
    positives = int((raw["y"] == 2).sum())
    assert int(y_train.sum() + y_test.sum()) == positives
    assert abs(y_test.mean() - positives / 200) < 0.06
    again = load_covtype_binary(path)
    np.testing.assert_array_equal(again[1], X_test)


def test_covtype_split_sizes_match_the_paper(tmp_path):
    n = 581012
    y = np.where(np.arange(n) % 100 < 49, 2, 1).astype(np.int8)
    X = (np.arange(n) % 3).astype(np.int32)[:, None]  # one column keeps the test light
    np.savez(tmp_path / "covtype.npz", X=X, y=y)
    _X_train, _X_test, y_train, y_test = load_covtype_binary(tmp_path)
    assert (len(y_train), len(y_test)) == (522910, 58102)


def test_explicit_missing_path_never_downloads(tmp_path, monkeypatch):
    def fail(*args, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("downloaded although a path was given")

    monkeypatch.setattr("sklearn.datasets.fetch_covtype", fail)
    with pytest.raises(DatasetNotFoundError, match="no such file") as info:
        load_covtype_binary(tmp_path / "absent.npz")
    message = str(info.value)
    assert "SKMUTER_DATA" in message and "download" in message and "\n" not in message


def test_online_branch_uses_sklearn_fetchers(monkeypatch):
    rng = np.random.default_rng(0)
    X = np.tile(np.arange(70000, dtype=np.float64)[:, None] % 256, (1, 3))  # 3 "pixels"
    y = (np.arange(70000) % 10).astype(str).astype(object)
    calls = []

    def fake_openml(name, **kwargs):
        calls.append((name, kwargs))
        return X, y

    monkeypatch.setattr("sklearn.datasets.fetch_openml", fake_openml)
    X_train, X_test, y_train, y_test = load_mnist()
    assert calls[0][0] == "mnist_784" and calls[0][1]["as_frame"] is False
    assert X_train.shape == (60000, 3) and X_test.shape == (10000, 3)
    np.testing.assert_allclose(X_test[0], X[60000] / 255.0)
    assert y_train.dtype.kind == "i" and y_test[0] == 60000 % 10
    _Xb, _, yb, _ = load_mnist_b()
    assert set(np.unique(yb)) == {1, 7} and len(yb) == 12000

    cov = {"X": rng.integers(0, 9, (100, 54)).astype(float), "y": np.arange(100) % 7 + 1}
    monkeypatch.setattr("sklearn.datasets.fetch_covtype",
                        lambda **kw: (cov["X"], cov["y"]))
    X_train, X_test, y_train, y_test = load_covtype_binary()
    assert len(y_train) + len(y_test) == 100 and set(np.unique(y_train)) == {0, 1}


def test_offline_without_files_gives_one_clear_error(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr("sklearn.datasets.fetch_openml", offline)
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist_b()
    message = str(info.value)
    assert "no network" in message and str(tmp_path) in message
    assert "--data" in message and "SKMUTER_DATA" in message and "\n" not in message
    with pytest.raises(DatasetNotFoundError):
        load_mnist(download=False)


def test_bad_file_names_the_missing_keys(tmp_path):
    np.savez(tmp_path / "covtype.npz", X=np.zeros((3, 54)))
    with pytest.raises(ValueError, match=r"keys \['y'\] are missing"):
        load_covtype_binary(tmp_path)
    (tmp_path / "mnist.npz").write_text("not a zip file")
    with pytest.raises(ValueError, match="cannot read"):
        load_mnist(tmp_path)
