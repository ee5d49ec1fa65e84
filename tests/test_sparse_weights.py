"""Sparse input and sample weights of the linear estimators, against references:
sparse equals dense, a weight of 2 equals a duplicated row."""

import copy
import pickle

import numpy as np
import pytest
from scipy import sparse
from sklearn.datasets import load_digits

from skmuter import AdversarialLogisticRegression, AdversarialRidge, AdversarialRidgeClassifier
from skmuter.attacks import PGD
from skmuter.certified import CertifiedRemoval


def _data(n=120):
    X, y = load_digits(n_class=2, return_X_y=True)
    X = X[:n] / 16
    return X, y[:n]


def _targets(cls, X, y):
    return 3 * X[:, 20] - X[:, 30] + y if cls is AdversarialRidge else y


CASES = [
    (cls, norm)
    for cls in (AdversarialLogisticRegression, AdversarialRidgeClassifier, AdversarialRidge)
    for norm in ("inf", 2)
]


def _est(cls, norm, **kw):
    return cls(attack=PGD(epsilon=0.1, norm=norm, clip=(0, 1)), alpha=1e-2, **kw)


def _rel(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-300)


@pytest.mark.parametrize(("cls", "norm", "fmt"), [
    (cls, norm, fmt) for (cls, norm), fmt in zip(
        CASES, [sparse.csr_matrix, sparse.csc_matrix, sparse.csr_array] * 2)])
def test_sparse_equals_dense(cls, norm, fmt):
    X, y = _data()
    t = _targets(cls, X, y)
    dense = _est(cls, norm).fit(X, t)
    sp = _est(cls, norm).fit(fmt(X), t)
    assert sparse.issparse(sp._X)  # kept sparse
    # both fits stop at an optimality residual below tol=1e-10: with alpha=1e-2
    # they are within 1e-8 of the optimum
    assert _rel(sp.coef_, dense.coef_) < 1e-8
    Xs = fmt(X)
    np.testing.assert_allclose(sp.predict(Xs), dense.predict(X), atol=1e-8)
    assert sp.score(Xs, t) == pytest.approx(dense.score(X, t), abs=1e-10)
    assert sp.robust_score(Xs, t) == pytest.approx(dense.robust_score(X, t), abs=1e-10)
    pgd = PGD(epsilon=0.1, norm=norm, clip=(0, 1), random_state=0)
    assert sp.robust_score(Xs, t, attack=pgd) == pytest.approx(
        dense.robust_score(X, t, attack=pgd), abs=1e-10)
    if cls is not AdversarialRidge:
        np.testing.assert_allclose(sp.decision_function(Xs), dense.decision_function(X),
                                   atol=1e-8)
    if cls is AdversarialLogisticRegression:
        np.testing.assert_allclose(sp.predict_proba(Xs), dense.predict_proba(X), atol=1e-9)
    d2, s2 = copy.deepcopy(dense), copy.deepcopy(sp)
    dense.forget([0, 3, 7])
    sp.forget([0, 3, 7])
    assert _rel(sp.coef_, dense.coef_) < 1e-8
    d2.partial_forget([5, 1])
    s2.partial_forget([5, 1])
    assert _rel(s2.coef_, d2.coef_) < 1e-8
    # the forgotten rows' values and column positions are gone from the stored
    # matrix (their entries sit zeroed in the first columns), and from a pickle
    gone = sp._X[[0, 3, 7]]
    assert gone.count_nonzero() == 0
    for k, row in enumerate([0, 3, 7]):
        np.testing.assert_array_equal(gone[k].indices, np.arange(gone[k].nnz))
        assert gone[k].nnz == Xs[row].nnz  # in memory only (the cost is the request's)
    assert pickle.loads(pickle.dumps(sp))._X[[0, 3, 7]].nnz == 0
    Xr, yr = sp.remaining_training_data()
    Xd, yd = dense.remaining_training_data()
    np.testing.assert_array_equal(Xr.toarray(), Xd)
    np.testing.assert_array_equal(yr, yd)
    rs, rd = sp.retrain(), dense.retrain()
    if max(rs.optimality_residual_, rd.optimality_residual_) < 1e-8:
        # (the exact solver's Newton polish can stall on the squared loss's kinks
        # from some L-BFGS-B end points, dense or sparse alike)
        assert _rel(rs.coef_, rd.coef_) < 1e-9


def test_sparse_multiclass_and_tags():
    X, y = load_digits(n_class=3, return_X_y=True)
    X, y = X[:150] / 16, y[:150]
    est = _est(AdversarialLogisticRegression, "inf")
    dense = est.fit(X, y)
    coef = dense.coef_.copy()
    sp = _est(AdversarialLogisticRegression, "inf").fit(sparse.csr_matrix(X), y)
    assert _rel(sp.coef_, coef) < 1e-9
    assert sp.robust_score(sparse.csr_matrix(X), y) == pytest.approx(dense.robust_score(X, y))
    assert sp.__sklearn_tags__().input_tags.sparse


def test_sparse_clip_checked():
    X, _ = _data()
    y = _data()[1]
    Xs = sparse.csr_matrix(X * 2)  # outside clip=(0, 1)
    with pytest.raises(ValueError, match="outside clip"):
        _est(AdversarialLogisticRegression, "inf").fit(Xs, y)
    # implicit zeros outside a box that excludes 0
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.1, clip=(0.5, 1)))
    with pytest.raises(ValueError, match="outside clip"):
        est.fit(sparse.csr_matrix(X), y)


@pytest.mark.parametrize(("cls", "norm"), CASES)
def test_weight_two_equals_duplicate(cls, norm):
    X, y = _data(100)
    t = _targets(cls, X, y)
    dup = [2, 11, 40]
    w = np.ones(len(X))
    w[dup] = 2.0
    weighted = _est(cls, norm).fit(X, t, sample_weight=w)
    Xd = np.vstack([X, X[dup]])
    td = np.concatenate([t, t[dup]])
    duplicated = _est(cls, norm).fit(Xd, td)
    assert _rel(weighted.coef_, duplicated.coef_) < 1e-8
    # forgetting the weight-2 row = forgetting both copies
    weighted.forget([11, 5])
    duplicated.forget([11, 5, 101])
    assert _rel(weighted.coef_, duplicated.coef_) < 1e-7
    assert weighted._sample_weight[11] == 0.0  # its weight is purged
    ref = weighted.retrain()
    ref_dup = duplicated.retrain()
    assert _rel(ref.coef_, ref_dup.coef_) < 1e-8
    # the forget is as close to the (weighted) retrain as the duplicate's is
    assert _rel(weighted.coef_, ref.coef_) < 2 * _rel(duplicated.coef_, ref_dup.coef_) + 1e-8


def test_weights_sparse_sgd_fisher():
    X, y = _data(100)
    w = np.linspace(0.5, 2.0, len(X))
    dense = _est(AdversarialLogisticRegression, "inf").fit(X, y, sample_weight=w)
    sp = _est(AdversarialLogisticRegression, "inf").fit(sparse.csr_matrix(X), y,
                                                        sample_weight=w)
    assert _rel(sp.coef_, dense.coef_) < 1e-9
    for est in (dense, sp):
        est.set_params(forgetter="fisher").forget([1, 2])
    assert _rel(sp.coef_, dense.coef_) < 1e-8
    sgd = AdversarialLogisticRegression(attack=PGD(epsilon=0.1, clip=(0, 1)), alpha=1e-2,
                                        solver="sgd", max_iter=3, random_state=0)
    a = sgd.fit(sparse.csr_matrix(X), y, sample_weight=w).coef_
    b = clone_fit(sgd, X, y, w)
    np.testing.assert_allclose(a, b, atol=1e-12)


def clone_fit(est, X, y, w):
    from sklearn.base import clone

    return clone(est).fit(X, y, sample_weight=w).coef_


@pytest.mark.parametrize(("cls", "norm"), CASES)
def test_no_weights_unchanged(cls, norm):
    X, y = _data(80)
    t = _targets(cls, X, y)
    a = _est(cls, norm).fit(X, t)
    b = _est(cls, norm).fit(X, t, sample_weight=None)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    a.forget([1, 4])
    b.forget([1, 4])
    np.testing.assert_array_equal(a.coef_, b.coef_)
    # unit weights: the same optimum
    c = _est(cls, norm).fit(X, t, sample_weight=np.ones(len(X)))
    assert _rel(c.coef_, _est(cls, norm).fit(X, t).coef_) < 1e-9


def test_zero_weights_drop_rows():
    X, y = _data(100)
    w = np.ones(len(X))
    w[:10] = 0.0
    est = _est(AdversarialLogisticRegression, "inf").fit(X, y, sample_weight=w)
    ref = _est(AdversarialLogisticRegression, "inf").fit(X[10:], y[10:])
    assert _rel(est.coef_, ref.coef_) < 1e-8
    before = est.coef_.copy()
    est.forget([3])  # a row of weight 0: nothing moves
    np.testing.assert_allclose(est.coef_, before, atol=1e-12)


@pytest.mark.parametrize("bad", [-1.0, np.nan])
def test_bad_weights_rejected(bad):
    X, y = _data(60)
    w = np.ones(len(X))
    w[4] = bad
    with pytest.raises(ValueError, match="sample_weight|Negative"):
        AdversarialLogisticRegression().fit(X, y, sample_weight=w)
    with pytest.raises(ValueError, match="shape"):
        AdversarialLogisticRegression().fit(X, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="zero"):
        AdversarialLogisticRegression().fit(X, y, sample_weight=np.zeros(len(X)))


def test_certified_with_weights():
    X, y = _data(100)
    w = np.ones(len(X))
    w[[2, 11]] = 2.0
    est = AdversarialLogisticRegression(
        attack=PGD(epsilon=0.1, clip=(0, 1)), alpha=1e-2, random_state=0,
        certified=CertifiedRemoval(noise=1.0)).fit(X, y, sample_weight=w)
    est.forget([11, 5])
    # the certified residual is that of the weighted summed objective
    rows = np.flatnonzero(est._kept_mask())
    obj = est._objectives[0]
    expected = obj.weight_sum(rows) * obj.gradient_residual(est._get_thetas()[0], rows)
    assert est.certificate_["residual"][0] == pytest.approx(expected)
    assert est.certificate_["spent"] <= 1
    ref = est.retrain()
    assert _rel(est.coef_, ref.coef_) < 1e-2


def test_purge_does_not_touch_callers_arrays():
    # forgetting used to zero the caller's y (AdversarialRidge kept it uncopied)
    X, y = _data(80)
    t = _targets(AdversarialRidge, X, y)
    w = np.ones(len(X))
    t0, w0 = t.copy(), w.copy()
    _est(AdversarialRidge, 2).fit(X, t, sample_weight=w).forget([0, 3])
    np.testing.assert_array_equal(t, t0)
    np.testing.assert_array_equal(w, w0)


def test_pickle_keeps_weights_shared():
    import pickle

    X, y = _data(80)
    w = np.ones(len(X))
    w[5] = 3.0
    est = _est(AdversarialLogisticRegression, "inf").fit(sparse.csr_matrix(X), y,
                                                         sample_weight=w)
    new = pickle.loads(pickle.dumps(est))
    assert new._objectives[0].sample_weight is new._sample_weight
    assert new._objectives[0].X is new._X
    new.forget([5])
    est.forget([5])
    np.testing.assert_array_equal(new.coef_, est.coef_)
    assert new._objectives[0].sample_weight[5] == 0.0


@pytest.fixture
def small_thresholds(monkeypatch):
    """The large-data code paths on small data: dense inputs stored compressed,
    support sweeps a block of rows at a time, l_inf rooms never stored."""
    from skmuter.linear import _pass, _worst_case

    def apply():
        monkeypatch.setattr(_pass, "_STORE_COMPRESSED", 1)
        monkeypatch.setattr(_pass, "_CACHE_ENTRIES", 1000)
        monkeypatch.setattr(_pass, "_SWEEP_ENTRIES", 4000)
        monkeypatch.setattr(_worst_case, "_LAZY_NNZ", 1)
        monkeypatch.setattr(_worst_case, "_LAZY_BLOCK_NNZ", 2500)

    return apply


@pytest.mark.parametrize("cls, kind", [(AdversarialLogisticRegression, "binary"),
                                       (AdversarialLogisticRegression, "multi"),
                                       (AdversarialRidgeClassifier, "binary"),
                                       (AdversarialRidge, "reg")])
def test_large_mostly_zero_input_is_stored_compressed(cls, kind, small_thresholds):
    # A large dense input that is mostly zero is kept as a CSR copy built a block of
    # rows at a time; passes then read it a block at a time. The fit and the forgets
    # equal those of the dense storage, the model hands back dense rows, and a
    # forgotten row's values and column positions are gone.
    X, y = load_digits(return_X_y=True)
    X = np.where(X / 16 > 0.6, X / 16, 0.0)  # about 27% non-zero
    t = {"binary": y % 2, "multi": y % 3, "reg": y.astype(float)}[kind]
    kw = {"alpha": 1e-2} if cls is AdversarialRidge else {}

    def make():
        return cls(attack=PGD(epsilon=0.1, clip=(0, 1)), **kw)

    dense = make().fit(X, t)
    small_thresholds()
    comp = make().fit(X, t)
    assert sparse.issparse(comp._X) and not sparse.issparse(dense._X)
    assert _rel(comp.coef_, dense.coef_) < 1e-9
    for est in (dense, comp):
        est.forget([3, 10, 50])
        est.partial_forget([7, 8])
    assert _rel(comp.coef_, dense.coef_) < 1e-8
    Xr, yr = comp.remaining_training_data()
    assert isinstance(Xr, np.ndarray)
    np.testing.assert_array_equal(Xr, dense.remaining_training_data()[0])
    np.testing.assert_array_equal(yr, dense.remaining_training_data()[1])
    gone = comp._X[[3, 10, 50, 7, 8]]
    assert gone.count_nonzero() == 0
    assert all(np.array_equal(gone[k].indices, np.arange(gone[k].nnz)) for k in range(5))
    loaded = pickle.loads(pickle.dumps(comp))
    assert loaded._X[[3, 10, 50, 7, 8]].nnz == 0
    loaded.forget([20])
    dense.forget([20])
    assert _rel(loaded.coef_, dense.coef_) < 1e-8
    assert isinstance(comp.retrain().remaining_training_data()[0], np.ndarray)
