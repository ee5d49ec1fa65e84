"""Linear models on Dask collections: chunked passes on a real cluster.

The references are the same estimators fitted in memory (their own exact
solver on a numpy array); the cluster is a ``dask.distributed.LocalCluster``
of two worker processes, so every chunk's sums are computed in another process.
"""

import pickle

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import skmuter.linear._solvers as solvers
from skmuter import (
    AdversarialLogisticRegression,
    AdversarialRidge,
    AdversarialRidgeClassifier,
    metrics,
)
from skmuter.attacks import PGD


def _data(n=600, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    w = rng.normal(size=d)
    s = X @ w - np.median(X @ w)
    return X, (s + 0.3 * rng.normal(size=n) > 0).astype(int), s + 0.1 * rng.normal(size=n)


def _dask(X, y, rows=150):
    return da.from_array(X, chunks=(rows, X.shape[1])), da.from_array(y, chunks=rows)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture()
def small_subsample(monkeypatch):
    # the chunked fit starts from the optimum of a subsample: make it a small
    # one, so that the Newton steps over the chunks do the work
    monkeypatch.setattr(solvers, "_SUBSAMPLE_ROWS", 60)


def _rel(a, b):
    return float(np.linalg.norm(np.ravel(a.coef_) - np.ravel(b.coef_))
                 / np.linalg.norm(np.ravel(a.coef_)))


CASES = [
    (AdversarialLogisticRegression, 1),
    (AdversarialRidgeClassifier, 1),
    (AdversarialRidge, 2),
]


@pytest.mark.parametrize(("cls", "target"), CASES, ids=["logistic", "ridge-classifier", "ridge"])
def test_fit_and_forget_on_a_cluster_equal_in_memory(client, small_subsample, cls, target):
    X, yb, yr = _data(400)
    y = {1: yb, 2: yr}[target]
    kw = {"attack": PGD(epsilon=0.05, clip=(0, 1)), "alpha": 1e-2}
    mem = cls(**kw).fit(X, y)
    chunked = cls(**kw).fit(*_dask(X, y))
    assert client.run(lambda: 1)  # the cluster's workers are up
    assert chunked.n_passes_ > 1
    assert _rel(mem, chunked) <= 1e-8
    np.testing.assert_allclose(chunked.intercept_, mem.intercept_, rtol=1e-8, atol=1e-10)
    assert chunked.optimality_residual_ <= 1e-9
    mem.forget([3, 9, 151, 300])
    chunked.forget([3, 9, 151, 300])
    assert _rel(mem, chunked) <= 1e-8
    record = chunked.forget_log_[-1]
    assert record["checked"] and record["n_passes"] > 0
    mem.partial_forget([5, 250])
    chunked.partial_forget([5, 250])
    assert _rel(mem, chunked) <= 1e-8
    np.testing.assert_array_equal(chunked.forgotten_, mem.forgotten_)
    assert abs(chunked.gradient_residual() - mem.gradient_residual()) <= 1e-10


def test_threads_scheduler_request_without_a_pass(small_subsample):
    X, y, _ = _data(400)
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.05, clip=(0, 1)), alpha=1e-2,
                                        forget_tol=None).fit(*_dask(X, y, 100))
    mem = AdversarialLogisticRegression(attack=PGD(epsilon=0.05, clip=(0, 1)), alpha=1e-2,
                                        forget_tol=None).fit(X, y)
    est.forget([7])
    mem.forget([7])
    # the memory is built at the first request (a pass); the next needs none
    est.forget([11])
    mem.forget([11])
    assert est.forget_log_[-1]["n_passes"] == 0
    assert not est.forget_log_[-1]["checked"]
    assert _rel(mem, est) <= 1e-8


def test_metrics_and_scores_on_dask():
    X, _, s = _data(400)
    y = np.digitize(s, np.quantile(s, [0.33, 0.66]))  # three classes
    kw = {"attack": PGD(epsilon=0.05, clip=(0, 1)), "alpha": 1e-2}
    Xd, yd = _dask(X, y, 100)
    est = AdversarialLogisticRegression(**kw).fit(Xd, yd).forget([0, 1, 2])
    mem = AdversarialLogisticRegression(**kw).fit(X, y).forget([0, 1, 2])
    ref = metrics.retrain(est)
    assert ref._chunked()  # the retrain ran on the remaining rows of the collection
    assert _rel(metrics.retrain(mem), ref) <= 1e-8
    assert est.robust_score(Xd, yd) == mem.robust_score(X, y)
    np.testing.assert_array_equal(np.asarray(est.predict(Xd)), mem.predict(X))
    np.testing.assert_allclose(np.asarray(est.predict_proba(Xd)), mem.predict_proba(X),
                               rtol=1e-7)
    assert est.score(Xd, yd) == mem.score(X, y)
    r = AdversarialRidge(**kw).fit(Xd, yd.astype(float))
    r_mem = AdversarialRidge(**kw).fit(X, y.astype(float))
    assert abs(r.robust_score(Xd, yd.astype(float)) - r_mem.robust_score(X, y.astype(float))) \
        <= 1e-9


def test_bad_dask_input():
    X, y, _ = _data(200)
    Xd, yd = _dask(X, y, 50)
    with pytest.raises(ValueError, match="solver='exact'"):
        AdversarialLogisticRegression(solver="sgd").fit(Xd, yd)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        AdversarialLogisticRegression().fit(da.from_array(bad, chunks=50), yd)
    with pytest.raises(ValueError, match="outside clip"):
        AdversarialLogisticRegression(attack=PGD(clip=(0, 1))).fit(Xd * 2, yd)
    with pytest.raises(ValueError, match="rows"):
        AdversarialLogisticRegression().fit(Xd, yd[:-1])
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        AdversarialLogisticRegression().fit(Xd[Xd[:, 0] > -1], yd)
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.05, clip=(0, 1))).fit(Xd, yd)
    with pytest.raises(ValueError, match="keeps its training rows"):
        est.forget([1], X=X[[1]], y=y[[1]])
    with pytest.raises(ValueError, match="every remaining row of a class"):
        est.forget(np.flatnonzero(y == 1))
    assert est.forgotten_.size == 0


def test_dask_dataframe_input():
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y, _ = _data(200, d=4)
    frame = pd.DataFrame(X, columns=list("abcd"))
    ddf = dd.from_pandas(frame, npartitions=4)
    est = AdversarialLogisticRegression(alpha=1e-2).fit(ddf, dd.from_pandas(
        pd.Series(y), npartitions=4))
    mem = AdversarialLogisticRegression(alpha=1e-2).fit(frame, y)
    assert list(est.feature_names_in_) == list("abcd")
    assert _rel(mem, est) <= 1e-8


def test_pickle_holds_no_rows_and_forgets_with_given_rows(small_subsample):
    X, y, _ = _data(400)
    planted = 0.123456789012345
    X[5, 2] = planted
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.05, clip=(0, 1)), alpha=1e-2,
                                        forget_tol=None).fit(*_dask(X, y, 100))
    blob = pickle.dumps(est)
    assert np.float64(planted).tobytes() not in blob
    assert X[17].tobytes() not in blob and X[:, 0].tobytes() not in blob
    assert len(blob) < 20 * X.shape[1] ** 2 * 8 + 20_000
    est.forget([5])
    assert np.float64(planted).tobytes() not in pickle.dumps(est)
    loaded = pickle.loads(pickle.dumps(est))
    with pytest.raises(ValueError, match="keeps no training rows"):
        loaded.forget([8])
    with pytest.raises(ValueError, match="keeps no training rows"):
        loaded.gradient_residual()
    loaded.forget([8], X=X[[8]], y=y[[8]])
    assert loaded.forget_log_[-1]["check_skipped"]
    est.forget([8])
    assert _rel(est, loaded) <= 1e-12
