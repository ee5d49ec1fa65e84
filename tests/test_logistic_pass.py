"""The logistic loss's l_inf fast pass (skmuter.linear._logistic) against plain
numpy references: its worst-case products, its one-pass checkpoints (value,
minimal subgradient, gradient and Hessian on the support), the certified
bound of the zeros, the purge of forgotten rows, and forgetting end to end
against the general passes."""

import copy

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from scipy.special import expit
from sklearn.datasets import load_digits

from skmuter import AdversarialLogisticRegression, metrics
from skmuter._transaction import row_entries
from skmuter.attacks import PGD, Threat
from skmuter.forgetters import Fisher, Newton
from skmuter.linear import _logistic as logistic_module
from skmuter.linear import _pass
from skmuter.linear._logistic import LogisticWorstCase

EPS = 0.1
ALPHA = 1e-2


# ---- references -------------------------------------------------------------------
def _worst_rows(X, y, eps, low=None, high=None):
    """Dense ``(M1, M2)``: the worst-case rows of the logistic loss where a
    weight is positive (M1) or negative (M2), built entry by entry."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    if low is None:
        P = np.full((n, d), eps)
        Q = np.full((n, d), eps)
    else:
        low = np.broadcast_to(np.asarray(low, dtype=np.float64), (d,))
        high = np.broadcast_to(np.asarray(high, dtype=np.float64), (d,))
        P = np.maximum(np.minimum(eps, X - low[None, :]), 0.0)
        Q = np.maximum(np.minimum(eps, high[None, :] - X), 0.0)
    s = -np.sign(y)
    up = (s > 0)[:, None]
    M1 = np.where(up, X + Q, X - P)
    M2 = np.where(up, X - P, X + Q)
    return M1, M2


def _logistic(z, y):
    """Loss, first and second derivatives of ``log(1 + exp(-y z))`` in ``z``."""
    t = y * z
    return np.logaddexp(0.0, -t), -y * expit(-t), expit(t) * expit(-t)


def _reference(X, y, theta, s, eps, alpha, fit_intercept, low=None, high=None,
               linear_term=None):
    """Everything a checkpoint holds, from scratch: ``s`` are the rows' weights
    (0 off the rows)."""
    d = X.shape[1]
    w = theta[:d]
    b = theta[d] if fit_intercept else 0.0
    M1, M2 = _worst_rows(X, y, eps, low, high)
    Xt = np.where(w[None, :] > 0, M1, M2)
    z = Xt @ w + b
    loss, d1, d2 = _logistic(z, y)
    m = s.sum()
    g1, c = s * d1, s * d2
    value = float(s @ loss) / m + 0.5 * alpha * w @ w
    support = np.flatnonzero(w)
    zeros = np.flatnonzero(w == 0)
    XA = Xt[:, support]
    if fit_intercept:
        XA = np.hstack([XA, np.ones((len(y), 1))])
    cols = np.concatenate([support, [d]]) if fit_intercept else support
    pen = np.concatenate([np.ones(len(support)), [0.0] * int(fit_intercept)])
    g = XA.T @ g1 + m * alpha * theta[cols] * pen
    H = XA.T @ (c[:, None] * XA) + np.diag(m * alpha * pen)
    gp = M1[:, zeros].T @ g1 / m
    gm = -(M2[:, zeros].T @ g1) / m
    lt = np.zeros(len(theta)) if linear_term is None else linear_term
    value += float(lt @ theta) / m
    gp, gm = gp + lt[zeros] / m, gm - lt[zeros] / m
    residual = np.zeros(len(theta))
    residual[cols] = (g + lt[cols]) / m
    # the element of least magnitude of [-gm, gp]
    residual[zeros] = np.where(gp < 0, gp, np.where(-gm > 0, -gm, 0.0))
    return {"value": value, "residual": residual, "cols": cols, "g": g, "H": H,
            "gp": gp, "gm": gm, "g1": g1, "zeros": zeros}


def _rel(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-300)


# ---- data -------------------------------------------------------------------------
def _digits(n_class=2, n=None):
    X, y = load_digits(n_class=n_class, return_X_y=True)
    if n is not None:
        X, y = X[:n], y[:n]
    return X / 16.0, y


def _est(clip=(0, 1), **kw):
    return AdversarialLogisticRegression(attack=PGD(epsilon=EPS, clip=clip), alpha=ALPHA, **kw)


def _fit_sparse(X, y, clip=(0, 1), sample_weight=None, **kw):
    """A model fitted on a CSR copy of the dense ``X`` (the dense array stays
    the untouched reference)."""
    return _est(clip, **kw).fit(sparse.csr_matrix(X), y, sample_weight=sample_weight)


def _synthetic(seed=0, n=40, d=12):
    """Sparse inputs in a per-column box, with entries on and near its faces,
    an empty row and an empty column; targets with erased rows (0)."""
    rng = np.random.default_rng(seed)
    low = np.where(rng.uniform(size=d) < 0.5, 0.0, -0.03)
    high = np.where(rng.uniform(size=d) < 0.5, 1.0, 0.97)
    X = rng.uniform(size=(n, d)) * (rng.uniform(size=(n, d)) < 0.35)
    X[7, :] = np.where(X[7] > 0, high, 0.0)  # on the top face
    X[8, :5] = high[:5] - 0.02  # within eps of the top face
    X[9, :5] = 0.04  # within eps of the bottom (0 or -0.03)
    X = np.minimum(X, high)
    X[:, 6] = 0.0  # an empty column
    X[5] = 0.0  # an empty row
    y = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    y[[2, 11, 30]] = 0.0  # erased rows
    return X, y, low, high


# ---- 1. the worst-case products ---------------------------------------------------
@pytest.mark.parametrize("full_share", [0.5, 0.2])
@pytest.mark.parametrize("boxed", [True, False])
def test_worst_case_products_match_dense_matrices(boxed, full_share, monkeypatch):
    # full_share 0.2: most columns are held dense, the others sparse
    monkeypatch.setattr(logistic_module, "_FULL_SHARE", full_share)
    X, y, low, high = _synthetic()
    n, d = X.shape
    if boxed:
        threat = Threat(EPS, "inf", clip=(low, high), n_features=d)
        M1, M2 = _worst_rows(X, y, EPS, low, high)
    else:
        threat = Threat(EPS, "inf")
        M1, M2 = _worst_rows(X, y, EPS)
    wc = LogisticWorstCase(sparse.csr_matrix(X), threat, y)
    assert (0 < len(wc.full) < d) == (full_share < 0.5)
    rng = np.random.default_rng(1)
    for _ in range(3):
        w = rng.normal(size=d) * (rng.uniform(size=d) < 0.6)
        wp, wm = np.maximum(w, 0), np.maximum(-w, 0)
        assert_allclose(wc.scores(wp, wm), M1 @ wp - M2 @ wm, rtol=1e-12, atol=1e-13)
        # both parts positive on a coordinate (a split point of a solver)
        both = rng.uniform(size=d)
        assert_allclose(wc.scores(wp + both, wm + both), M1 @ (wp + both) - M2 @ (wm + both),
                        rtol=1e-12, atol=1e-13)
        g = rng.normal(size=n)
        g[y == 0] = 0.0
        A, B = wc.sums(g)
        assert_allclose(A, M1.T @ g, rtol=1e-12, atol=1e-13)
        assert_allclose(B, M2.T @ g, rtol=1e-12, atol=1e-13)
        # the support's block of worst-case rows, one sign per weight
        support = np.flatnonzero(w)
        block = wc.block(sparse.csr_matrix(X), support, np.sign(w[support]))
        dense = np.where(w[support] > 0, M1[:, support], M2[:, support])
        assert_allclose(block.toarray(), dense, rtol=0, atol=1e-15)
        assert_allclose(block.scores(w[support]), M1 @ wp - M2 @ wm, rtol=1e-12, atol=1e-13)
        assert_allclose(block.rmatvec(g), dense.T @ g, rtol=1e-12, atol=1e-13)
    # the matrices' constant parts: an empty row is at the rooms of a zero input
    assert_allclose(M1[5], np.where(-np.sign(y[5]) > 0, wc.Q0, -wc.P0))
    # every |M_ij| is within the certified bound of its row
    assert np.all(np.abs(M1) <= wc.row_bound[:, None] + 1e-15)
    assert np.all(np.abs(M2) <= wc.row_bound[:, None] + 1e-15)


@pytest.mark.parametrize("boxed", [True, False])
def test_second_matrix_held_through_the_first(boxed):
    # mostly non-zero columns inside the box: the second matrix's dense
    # columns are the first one's plus a constant per row direction and a few
    # differences (zero inputs, inputs near a face); one column with many
    # zeros and one with many inputs at a face stay dense of their own
    rng = np.random.default_rng(7)
    n, d = 80, 6
    X = rng.uniform(0.2, 0.8, size=(n, d))
    X[rng.uniform(size=(n, d)) < 0.08] = 0.0
    X[:3, 1] = 0.97  # near the top face
    X[:, 4] = np.where(rng.uniform(size=n) < 0.33, 0.0, X[:, 4])  # many zeros
    X[:, 5] = np.where(rng.uniform(size=n) < 0.5, 1.0, X[:, 5])  # many at the face
    y = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    y[[4, 9]] = 0.0
    low, high = np.zeros(d), np.ones(d)
    threat = Threat(EPS, "inf", clip=(low, high), n_features=d) if boxed else Threat(EPS, "inf")
    M1, M2 = _worst_rows(X, y, EPS, *((low, high) if boxed else ()))
    wc = LogisticWorstCase(sparse.csr_matrix(X), threat, y)
    assert_array_equal(wc.full, np.arange(d))
    if boxed:
        assert set(wc.unpaired) == {4, 5} and len(wc.paired) == 4
        assert 0 < wc.E.nnz < 0.25 * n * d
    else:  # no box: both matrices are the inputs on their stored entries
        assert len(wc.paired) == d and not np.any(wc.c)
    g = rng.normal(size=n)
    g[y == 0] = 0.0
    A, B = wc.sums(g)
    assert_allclose(A, M1.T @ g, rtol=1e-12, atol=1e-13)
    assert_allclose(B, M2.T @ g, rtol=1e-12, atol=1e-13)
    cols = np.array([0, 2, 4, 5])
    A, B = wc.sums(g, cols, np.setdiff1d(np.arange(d), cols))
    assert_allclose(A, M1[:, cols].T @ g, rtol=1e-12, atol=1e-13)
    assert_allclose(B, M2[:, cols].T @ g, rtol=1e-12, atol=1e-13)
    wp, wm = np.maximum(rng.normal(size=d), 0), np.maximum(rng.normal(size=d), 0)
    kept = y != 0
    assert_allclose(wc.scores(wp, wm)[kept], (M1 @ wp - M2 @ wm)[kept], rtol=1e-12, atol=1e-13)
    # erased rows: nothing of them left in either dense part or the differences
    rows = np.array([0, 1, 30])
    wc.purge(rows, _pass._zero_csr_rows)
    assert_array_equal(wc.W1[rows], 0.0)
    assert_array_equal(wc.W2[rows], 0.0)
    _assert_rows_erased(wc.E, rows)
    g[rows] = 0.0
    A, B = wc.sums(g)
    assert_allclose(B, M2.T @ g, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("full_share", [0.5, 0.3])
def test_column_sums_cached_and_whole_paths(full_share, monkeypatch):
    monkeypatch.setattr(logistic_module, "_FULL_SHARE", full_share)
    X, y, low, high = _synthetic(seed=2, n=60, d=16)
    d = X.shape[1]
    threat = Threat(EPS, "inf", clip=(low, high), n_features=d)
    M1, M2 = _worst_rows(X, y, EPS, low, high)
    wc = LogisticWorstCase(sparse.csr_matrix(X), threat, y)
    order = np.argsort(wc.counts)
    g = np.random.default_rng(3).normal(size=len(y))
    # few entries: the columns with the fewest stored entries (cached copies)
    few = np.sort(order[: d // 4])
    rest = np.setdiff1d(np.arange(d), few)
    assert wc.counts[few].sum() < 0.5 * wc.counts.sum()
    for _ in range(2):  # built, then read from the cache
        A, B = wc.sums(g, few, rest)
        assert few.tobytes() in wc._zero_columns
        assert_allclose(A, M1[:, few].T @ g, rtol=1e-12, atol=1e-13)
        assert_allclose(B, M2[:, few].T @ g, rtol=1e-12, atol=1e-13)
    # most entries: the whole matrices are read (nothing is copied)
    most = np.sort(order[d // 4 :])
    others = np.setdiff1d(np.arange(d), most)
    assert wc.counts[most].sum() > 0.5 * wc.counts.sum()
    A, B = wc.sums(g, most, others)
    assert wc._zero_columns == {}
    assert_allclose(A, M1[:, most].T @ g, rtol=1e-12, atol=1e-13)
    assert_allclose(B, M2[:, most].T @ g, rtol=1e-12, atol=1e-13)
    # unordered columns
    cols = np.array([9, 0, 4])
    A, B = wc.sums(g, cols, np.setdiff1d(np.arange(d), cols))
    assert_allclose(A, M1[:, cols].T @ g, rtol=1e-12, atol=1e-13)
    assert_allclose(B, M2[:, cols].T @ g, rtol=1e-12, atol=1e-13)


def test_counts_and_row_bound_from_scratch():
    X, y, low, high = _synthetic(seed=4)
    d = X.shape[1]
    threat = Threat(EPS, "inf", clip=(low, high), n_features=d)
    M1, M2 = _worst_rows(X, y, EPS, low, high)
    wc = LogisticWorstCase(sparse.csr_matrix(X), threat, y)
    # the sparse parts hold M minus its per-direction constants, no stored zeros
    pos = (-np.sign(y) > 0)[:, None]
    C1 = np.where(pos, wc.Q0[None, :], -wc.P0[None, :])
    C2 = np.where(pos, -wc.P0[None, :], wc.Q0[None, :])
    assert_allclose(wc.S1.toarray(), M1 - C1, atol=1e-15)
    assert_allclose(wc.S2.toarray(), M2 - C2, atol=1e-15)
    assert np.all(wc.S1.data != 0) and np.all(wc.S2.data != 0)
    # (exactly: an input on the box's face leaves a zero, one near it a rounding)
    expected = np.count_nonzero(M1 - C1, axis=0) + np.count_nonzero(M2 - C2, axis=0)
    assert expected[6] == 0
    assert_array_equal(wc.counts, expected)
    assert_allclose(wc.row_bound, np.abs(X).max(axis=1) + EPS)



@pytest.mark.parametrize("products", [True, False])
@pytest.mark.parametrize("boxed", [True, False])
@pytest.mark.parametrize("dense_share", [0.0, 0.3, 2.0])
def test_support_block_products_and_gram(boxed, dense_share, products, monkeypatch):
    # every column held dense (share 0), a mix, or every column thin (2: none
    # reaches it): the products and the weighted Gram matrix are the dense
    # block's, with and without the intercept, for weights of either sign
    # and a zero weight (the room below on every row); the thin columns'
    # Gram matrix from the rows' products of entries, or (too many of them)
    # from a sparse product
    monkeypatch.setattr(logistic_module, "_DENSE_SHARE", dense_share)
    if not products:
        monkeypatch.setattr(logistic_module, "_PRODUCTS_PER_ENTRY", 0)
    X, y, low, high = _synthetic(seed=4, n=70, d=14)
    X[:, 3] = np.where(X[:, 3] > 0, X[:, 3], 0.5)  # a column without zeros
    d = X.shape[1]
    threat = (Threat(EPS, "inf", clip=(low, high), n_features=d) if boxed
              else Threat(EPS, "inf"))
    M1, M2 = _worst_rows(X, y, EPS, *((low, high) if boxed else ()))
    wc = LogisticWorstCase(sparse.csr_matrix(X), threat, y)
    support = np.array([0, 2, 3, 5, 6, 9, 13])
    signs = np.array([1.0, -1.0, 1.0, 0.0, -1.0, 1.0, -1.0])
    below = np.where(wc.pos[:, None], M2, M1)  # the room below on every row
    dense = np.where(signs > 0, M1[:, support],
                     np.where(signs < 0, M2[:, support], below[:, support]))
    block = wc.block(sparse.csr_matrix(X), support, signs)
    kinds = (len(block.dense), len(block.thin))
    assert (block.products is not None) == (products and kinds[1] > 0)
    assert kinds == {0.0: (7, 0), 2.0: (0, 7)}.get(dense_share, kinds)
    assert 0 < kinds[0] < 7 or dense_share != 0.3
    assert_allclose(block.toarray(), dense, rtol=0, atol=1e-15)
    rng = np.random.default_rng(5)
    w = rng.normal(size=len(support))
    g = rng.normal(size=len(y))
    c = rng.uniform(size=len(y))
    assert_allclose(block.scores(w), dense @ w, rtol=1e-12, atol=1e-13)
    assert_allclose(block.rmatvec(g), dense.T @ g, rtol=1e-12, atol=1e-13)
    assert_allclose(block.gram(c), dense.T @ (c[:, None] * dense), rtol=1e-12, atol=1e-13)
    XA = np.hstack([dense, np.ones((len(y), 1))])
    assert_allclose(block.gram(c, intercept=True), XA.T @ (c[:, None] * XA),
                    rtol=1e-12, atol=1e-13)
    c[::3] *= -1.0  # weights of either sign (the dense part's other branch)
    assert_allclose(block.gram(c), dense.T @ (c[:, None] * dense), rtol=1e-12, atol=1e-13)
    # erased rows: nothing of them is left, and the kept rows are unchanged
    rows = np.array([0, 7, 8, 40])
    block.purge(rows, _pass._zero_csr_rows)
    _assert_block_rows_erased(block, rows)
    kept = np.setdiff1d(np.arange(len(y)), rows)
    assert_array_equal(block.toarray()[kept], np.asarray(
        wc.block(sparse.csr_matrix(X), support, signs).toarray())[kept])
    c[rows] = 0.0
    assert_allclose(block.gram(c)[:, :], dense[kept].T @ (c[kept, None] * dense[kept]),
                    rtol=1e-12, atol=1e-13)

# ---- 2. checkpoints against the reference ---------------------------------------
def _high_box():
    """Per-column upper limits: the digits' column maxima (many inputs on the
    box), at least 0.5."""
    X, _ = _digits()
    return np.zeros(X.shape[1]), np.maximum(X.max(axis=0), 0.5)


CHECKPOINT_CASES = {
    "intercept": {},
    "no-intercept": {"fit_intercept": False},
    "sample-weight": {"weighted": True},
    "per-column-box": {"box": True},
    "linear-term": {"linear": True},
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
@pytest.mark.parametrize("shrink", [1.0, 0.4])
def test_checkpoint_matches_the_reference(case, shrink):
    opts = dict(CHECKPOINT_CASES[case])
    X, y = _digits()
    n, d = X.shape
    sw = (np.random.default_rng(0).uniform(0.2, 3.0, n) if opts.pop("weighted", False)
          else None)
    low, high = _high_box() if opts.pop("box", False) else (0.0, 1.0)
    linear = opts.pop("linear", False)
    est = _fit_sparse(X, y, clip=(low, high), sample_weight=sw, **opts)
    obj = est._objectives[0]
    if linear:
        obj.linear_term = np.random.default_rng(5).normal(size=obj.n_params) * 0.05
    theta = est._get_thetas()[0]
    # the same support and signs, away from the optimum (shrink < 1: zeros
    # whose conditions fail)
    theta[:d] *= shrink
    rows = np.delete(np.arange(n), [0, 5, 17, 200])
    s = np.zeros(n)
    s[rows] = 1.0 if sw is None else sw[rows]
    ref = _reference(X, obj.y, theta, s, EPS, ALPHA, est.fit_intercept, low, high,
                     obj.linear_term)
    point = obj.checkpoint(theta, rows, fresh=True)
    assert point is not None
    assert point.value == pytest.approx(ref["value"], rel=1e-12)
    assert_array_equal(point.cols, ref["cols"])
    assert_allclose(point.residual, ref["residual"], rtol=1e-9, atol=1e-13)
    assert_allclose(point.g, ref["g"], rtol=1e-9, atol=1e-11)
    assert_allclose(point.H, ref["H"], rtol=1e-10, atol=1e-11)
    assert_allclose(point.g1, ref["g1"], rtol=1e-12, atol=1e-15)
    # a full pass: the zeros' one-sided derivatives exactly
    assert_allclose(point.zero_up, ref["gp"], rtol=1e-9, atol=1e-13)
    assert_allclose(point.zero_down, ref["gm"], rtol=1e-9, atol=1e-13)
    # the residual is the library's optimality residual too
    assert np.linalg.norm(point.residual) == pytest.approx(
        obj.gradient_residual(theta, rows), rel=1e-9)
    if shrink < 1:  # the test sees zeros that must wake
        assert np.any(ref["residual"][ref["zeros"]] != 0)


def test_checkpoint_over_all_rows_without_weights():
    X, y = _digits()
    est = _fit_sparse(X, y)
    obj = est._objectives[0]
    theta = est._get_thetas()[0]
    theta[:-1] *= 0.7
    rows = np.arange(len(y))
    ref = _reference(X, obj.y, theta, np.ones(len(y)), EPS, ALPHA, True, 0.0, 1.0)
    point = obj.checkpoint(theta, rows, fresh=True)
    assert point.value == pytest.approx(ref["value"], rel=1e-12)
    assert_allclose(point.residual, ref["residual"], rtol=1e-9, atol=1e-13)
    assert_allclose(point.H, ref["H"], rtol=1e-10, atol=1e-11)


# ---- 3. the certified bound of the zeros ----------------------------------------
@pytest.fixture(scope="module")
def binary_model():
    X, y = _digits()
    sw = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    return X, _fit_sparse(X, y, sample_weight=sw)


def _count_sums(monkeypatch):
    calls = []
    original = LogisticWorstCase.sums

    def counted(self, g, cols=None, others=None, only=None):
        calls.append(cols if only is None else (only, cols))
        return original(self, g, cols, others, only)

    monkeypatch.setattr(LogisticWorstCase, "sums", counted)
    return calls


def _fitted_point(binary_model):
    """A copy of the model, its objective, the fitted theta, all rows but three
    and the full checkpoint there."""
    X, est = binary_model
    est = copy.deepcopy(est)
    obj = est._objectives[0]
    theta = est._get_thetas()[0]
    rows = np.delete(np.arange(len(X)), [3, 4, 100])
    return X, est, obj, obj.n_features, theta, rows, obj.checkpoint(theta, rows, fresh=True)


def test_a_small_step_is_certified_without_summing_the_zeros(binary_model, monkeypatch):
    X, est, obj, d, theta, rows, point = _fitted_point(binary_model)
    assert np.all(point.zero_up > 0) and np.all(point.zero_down > 0)  # slack at the zeros
    step = np.random.default_rng(2).uniform(-1, 1, len(theta)) * 1e-6
    theta2 = theta + step * np.abs(theta)  # same support, same signs
    assert_array_equal(np.sign(theta2), np.sign(theta))
    calls = _count_sums(monkeypatch)
    certified = obj.checkpoint(theta2, rows, reference=point)
    assert calls == []  # the zeros were certified, not summed
    full = obj.checkpoint(theta2, rows, fresh=True)
    assert len(calls) == 1
    zeros = np.flatnonzero(theta2[:d] == 0)
    assert_array_equal(full.residual[zeros], 0.0)
    assert_allclose(certified.residual, full.residual, rtol=1e-14, atol=0)
    assert certified.value == full.value
    assert_allclose(certified.H, full.H, rtol=1e-14)
    # the certified values are lower bounds of the exact ones, and close
    assert np.all(certified.zero_up <= full.zero_up)
    assert np.all(certified.zero_down <= full.zero_down)
    assert np.all(certified.zero_up >= 0) and np.all(certified.zero_down >= 0)
    # and a chain of certified steps stays sound
    theta3 = theta2 + step * np.abs(theta)
    again = obj.checkpoint(theta3, rows, reference=certified)
    assert len(calls) == 1
    exact = obj.checkpoint(theta3, rows, fresh=True)
    assert np.all(again.zero_up <= exact.zero_up)
    assert np.all(again.zero_down <= exact.zero_down)
    # against the reference of the summed pass
    s = np.zeros(len(X))
    s[rows] = est._objectives[0].sample_weight[rows]
    ref = _reference(X, obj.y, theta3, s, EPS, ALPHA, True, 0.0, 1.0)
    assert_allclose(again.residual, ref["residual"], rtol=1e-9, atol=1e-13)


def _falls_back(obj, theta2, rows, reference, calls):
    before = len(calls)
    out = obj.checkpoint(theta2, rows, reference=reference)
    assert len(calls) == before + 1  # summed
    full = obj.checkpoint(theta2, rows, fresh=True)
    assert_allclose(out.residual, full.residual, rtol=1e-14, atol=0)
    assert_allclose(out.zero_up, full.zero_up, rtol=1e-14, atol=0)
    assert_allclose(out.zero_down, full.zero_down, rtol=1e-14, atol=0)
    return out


def test_the_certified_bound_falls_back_to_summing(binary_model, monkeypatch):
    X, _est, obj, d, theta, rows, point = _fitted_point(binary_model)
    # (the within-request reference alone, not the published model's sums)
    monkeypatch.setattr(logistic_module, "_ACROSS_REQUESTS", False)
    calls = _count_sums(monkeypatch)
    step = np.random.default_rng(3).uniform(-1, 1, len(theta)) * 1e-6 * np.abs(theta)
    # zeros barely optimal at the reference: the bound cannot certify them
    barely = copy.copy(point)
    barely.zero_up = np.where(np.arange(len(point.zero_up)) == 0, 1e-300, point.zero_up)
    _falls_back(obj, theta + step, rows, barely, calls)
    # a step too large for the bound, same signs
    big = theta.copy()
    big[:d] *= 1.5
    big[:d][np.argmax(np.abs(theta[:d]))] *= 3.0
    out = _falls_back(obj, big, rows, point, calls)
    # a reference of another support
    other = theta.copy()
    other[np.flatnonzero(theta[:d])[0]] = 0.0
    ref_other = obj.checkpoint(other, rows, fresh=True)
    before = len(calls)
    _falls_back(obj, theta + step, rows, ref_other, calls)
    assert len(calls) == before + 2
    # at the large step some zeros may fail: the summed result is the reference's
    s = np.zeros(len(X))
    s[rows] = obj.sample_weight[rows]
    ref = _reference(X, obj.y, big, s, EPS, ALPHA, True, 0.0, 1.0)
    assert_allclose(out.residual, ref["residual"], rtol=1e-9, atol=1e-13)


# ---- 4. the purge of forgotten rows ----------------------------------------------
def _assert_rows_erased(S, rows):
    for r in rows:
        a, b = S.indptr[r], S.indptr[r + 1]
        assert_array_equal(S.data[a:b], 0.0)
        assert_array_equal(S.indices[a:b], np.arange(b - a))


def _assert_block_rows_erased(B, rows):
    """A support block keeps nothing of the erased rows: no stored entry, and
    dense entries that are one constant per column (a zero input's)."""
    _assert_rows_erased(B.S, rows)
    if B.products is not None:
        _assert_rows_erased(B.products, rows)
    assert_array_equal(B.D[rows], np.broadcast_to(B._dense_other, (len(rows), len(B.dense))))
    assert_array_equal(B._up_rows[rows], 0.0)


def _kept_counts(wc, erased):
    """Stored entries per column of the rows not erased, both parts; and the
    same from the non-zero values alone."""
    d = len(wc.counts)
    n = wc.S1.shape[0]
    kept = np.setdiff1d(np.arange(n), erased)
    by_rows = sum(np.bincount(S.indices[row_entries(S.indptr, kept)[0]], minlength=d)
                  for S in (wc.S1, wc.S2))
    by_values = sum(np.bincount(S.indices[S.data != 0], minlength=d) for S in (wc.S1, wc.S2))
    return by_rows, by_values


def test_forget_purges_the_worst_cases():
    X, y = _digits()
    est = _fit_sparse(X, y)
    obj = est._objectives[0]
    rp = obj.row_pass()
    wc = rp._worst
    assert wc is not None  # the fit took the fast pass
    before = wc.counts.copy()
    rows = [4, 9, 123]
    est.forget([4])
    est.forget([9, 123])
    assert rp is obj.row_pass() and rp._worst is wc  # purged, not rebuilt
    for S in (wc.S1, wc.S2):
        _assert_rows_erased(S, rows)
    assert_array_equal(wc.row_bound[rows], 0.0)
    by_rows, by_values = _kept_counts(wc, rows)
    assert_array_equal(wc.counts, by_rows)
    assert_array_equal(wc.counts, by_values)
    assert np.all(wc.counts <= before) and wc.counts.sum() < before.sum()
    # the same as prepared afresh from the purged inputs
    assert len(wc.full)  # (digits: some columns are held dense)
    fresh = LogisticWorstCase(est._X, obj.threat, obj.y, full=wc.full)
    assert_array_equal(wc.counts, fresh.counts)
    assert (wc.S1 != fresh.S1).nnz == 0 and (wc.S2 != fresh.S2).nnz == 0
    assert_array_equal(wc.W1, fresh.W1)
    kept = np.setdiff1d(np.arange(len(y)), rows)
    assert_allclose(wc.second_dense()[kept], fresh.second_dense()[kept], rtol=0, atol=1e-15)
    assert_array_equal(wc.W1[rows], 0.0)
    assert_array_equal(wc.W2[rows], 0.0)
    _assert_rows_erased(wc.E, rows)
    _assert_rows_erased(wc.E, rows)
    assert wc._block  # a support block was cached by the requests' checks
    for B in wc._block.values():
        _assert_block_rows_erased(B, rows)
    for parts in wc._zero_columns.values():
        for S in parts:
            _assert_rows_erased(S, rows)
    assert rp.checkpoint is None


@pytest.mark.parametrize("full_share", [2.0, 0.5])
def test_purge_of_every_cache(full_share, monkeypatch):
    # 2: no column held dense (the zeros' columns then hold few entries)
    monkeypatch.setattr(logistic_module, "_FULL_SHARE", full_share)
    X, y = _digits()
    est = _fit_sparse(X, y)
    obj = est._objectives[0]
    rp = copy.deepcopy(obj.row_pass())
    wc = rp._worst
    d = obj.n_features
    theta = est._get_thetas()[0]
    support = np.flatnonzero(theta[:d])
    zeros = np.flatnonzero(theta[:d] == 0)
    # the zeros' columns cached apart (fewer entries than the support's)
    wc.sums(np.ones(len(y)), zeros, support)
    assert bool(wc._zero_columns) == (full_share > 1)
    assert bool(len(wc.full)) == (full_share < 1)
    B = wc.block(rp.X, support, np.sign(theta[support]))
    kept_before = B.toarray()
    rp.checkpoint = (obj, obj.checkpoint(theta, np.arange(len(y)), fresh=True))
    rows = np.array([0, 50, 51, 359])
    rp.purge(rows)  # outside a transaction: not undoable, in place
    assert rp.checkpoint is None  # computed with the rows
    for S in (wc.S1, wc.S2):  # (rp.X is the estimator's, purged by the estimator)
        _assert_rows_erased(S, rows)
    assert_array_equal(wc.W1[rows], 0.0)
    assert_array_equal(wc.W2[rows], 0.0)
    _assert_rows_erased(wc.E, rows)
    _assert_block_rows_erased(B, rows)
    kept = np.setdiff1d(np.arange(len(y)), rows)
    assert_array_equal(B.toarray()[kept], kept_before[kept])
    for parts in wc._zero_columns.values():
        for S in parts:
            _assert_rows_erased(S, rows)
            assert S.count_nonzero() > 0
    assert_array_equal(wc.row_bound[rows], 0.0)
    by_rows, by_values = _kept_counts(wc, rows)
    assert_array_equal(wc.counts, by_rows)
    assert_array_equal(wc.counts, by_values)
    # the cached zero columns agree with the whole matrices
    g = np.random.default_rng(0).normal(size=len(y))
    g[rows] = 0.0
    A, Bs = wc.sums(g, zeros, support)
    A0, B0 = wc.sums(g)
    assert_allclose(A, A0[zeros], rtol=1e-12, atol=1e-13)
    assert_allclose(Bs, B0[zeros], rtol=1e-12, atol=1e-13)


def test_purge_keeps_nothing_of_the_forgotten_labels():
    X, y = _digits()
    est = _fit_sparse(X, y)
    obj = est._objectives[0]
    wc = obj.row_pass()._worst
    rows = np.array([1, 2, 3, 4, 5, 6])
    assert len(set(obj.y[rows])) == 2
    est.forget(rows)
    assert_array_equal(obj.y[rows], 0.0)  # the estimator erases the labels
    fresh = LogisticWorstCase(est._X, obj.threat, obj.y)
    support = np.flatnonzero(est.coef_.ravel())
    signs = np.sign(est.coef_.ravel()[support])
    wc._block.clear()  # a new support's block, built after the purge
    B = wc.block(est._X, support, signs)
    assert_array_equal(B.toarray()[rows], fresh.block(est._X, support, signs).toarray()[rows])
    assert_array_equal(wc.pos[rows], fresh.pos[rows])


# ---- 5. forgetting end to end --------------------------------------------------------
def _slow_copy(est):
    """A copy that forgets through the general passes: its prepared passes are
    dropped (rebuilt without the logistic worst cases while the fast path is
    disabled)."""
    other = copy.deepcopy(est)
    other._objectives[0].pass_cache.clear()
    return other


def _without_fast_path(monkeypatch):
    monkeypatch.setattr(_pass.RowPass, "logistic_worst_case", lambda self, obj, y: None)


def _memory_reference(X, est, k):
    """The kept rows' total Hessian on the support (and intercept) at the
    published parameters, regulariser included."""
    obj = est._objectives[k]
    kept = np.setdiff1d(np.arange(X.shape[0]), est.forgotten_)
    theta = est._get_thetas()[k]
    s = np.ones(len(kept)) if obj.sample_weight is None else obj.sample_weight[kept]
    y = obj.y[kept]
    ref = _reference(X[kept], y, theta, s, EPS, ALPHA, est.fit_intercept, 0.0, 1.0)
    return ref["cols"], ref["H"]


E2E_CASES = [
    # (classes, options, forget_tol, relative agreement of the two paths)
    pytest.param(2, {}, 1e-11, 1e-9, id="binary"),
    pytest.param(2, {"weighted": True}, 1e-11, 1e-9, id="binary-weighted"),
    pytest.param(2, {"fit_intercept": False}, 1e-11, 1e-9, id="binary-no-intercept"),
    # (the general passes' refine stalls near 2.5e-10 on one class here)
    pytest.param(3, {"weighted": True}, 1e-9, 1e-8, id="3-class-weighted"),
]


@pytest.mark.parametrize(("n_class", "opts", "tol", "agree"), E2E_CASES)
def test_forgetting_matches_the_general_passes(n_class, opts, tol, agree, monkeypatch):
    opts = dict(opts)
    X, y = _digits(n_class, n=300 if n_class > 2 else None)
    sw = (np.random.default_rng(4).uniform(0.5, 2.0, len(y)) if opts.pop("weighted", False)
          else None)
    fast = _fit_sparse(X, y, sample_weight=sw, forget_tol=tol, **opts)
    assert fast._objectives[0].row_pass()._worst is not None
    slow = _slow_copy(fast)
    for req in ([5], [11], [20, 40, 60, 80, 81, 150]):
        fast.forget(req)
        with monkeypatch.context() as m:
            _without_fast_path(m)
            slow.forget(req)
            assert slow._objectives[0].row_pass()._worst is None
        assert _rel(fast.coef_, slow.coef_) < agree
        if fast.fit_intercept:
            assert _rel(fast.intercept_, slow.intercept_) < agree
        # both within their distance bounds of the same retrain
        gap = np.sqrt(sum(np.sum((a - b) ** 2)
                          for a, b in zip(fast._get_thetas(), slow._get_thetas())))
        assert gap <= (fast.forget_log_[-1]["retrain_distance_bound"]
                       + slow.forget_log_[-1]["retrain_distance_bound"]) * (1 + 1e-6) + 1e-13
        rec = fast.forget_log_[-1]
        assert rec["checked"] and rec["optimality_residual"] <= fast.forget_tol
        assert_allclose(rec["optimality_residual"], metrics.gradient_residual(fast),
                        rtol=1e-6, atol=1e-14)
        for k, state in enumerate(fast._forgetter_states):
            cols, H = _memory_reference(X, fast, k)
            assert_array_equal(state.cols_, cols)
            assert_allclose(state.memory_, H, rtol=1e-8)
    # the fast pass was used by the checks (the first class's problem)
    assert fast._objectives[0].row_pass()._worst is not None


def _spy_takes(monkeypatch, obj):
    """A list that records, at each call of ``_take_checkpoint``, whether it
    served a kept point."""
    taken = []
    original = type(obj)._take_checkpoint

    def spy(self, *args):
        out = original(self, *args)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(type(obj), "_take_checkpoint", spy)
    return taken


def test_the_checks_take_the_checkpoints(binary_model, monkeypatch):
    X, est = binary_model
    est = copy.deepcopy(est)
    obj = est._objectives[0]
    taken = _spy_takes(monkeypatch, obj)
    est.forget([7])
    assert taken and taken[-1]  # the memory came from the check's last point
    cols, H = _memory_reference(X, est, 0)
    assert_array_equal(est._forgetter_states[0].cols_, cols)
    assert_allclose(est._forgetter_states[0].memory_, H, rtol=1e-8)
    assert est.forget_log_[-1]["optimality_residual"] <= est.forget_tol


def test_the_fit_keeps_its_last_point_for_the_first_request(monkeypatch):
    X, y = _digits()
    est = _fit_sparse(X, y)
    obj = est._objectives[0]
    kept_obj, point = obj.row_pass().checkpoint
    assert kept_obj is obj
    assert_array_equal(point.theta, est._get_thetas()[0])
    # the fit's residual is that point's, and that of the general pass
    assert est.optimality_residual_ == float(np.linalg.norm(point.residual))
    assert_allclose(est.optimality_residual_, metrics.gradient_residual(est),
                    rtol=1e-6, atol=1e-15)
    plain = copy.deepcopy(est)
    plain._objectives[0].row_pass().checkpoint = None  # the memory from a sweep
    taken = _spy_takes(monkeypatch, obj)
    est.forget([7])
    assert taken[0]  # the first request's memory at the fitted model: the fit's point
    plain.forget([7])
    assert_allclose(est.coef_, plain.coef_, rtol=1e-9, atol=1e-12)


def test_a_kept_checkpoint_serves_one_matching_sweep(binary_model):
    X, est = binary_model
    est = copy.deepcopy(est)
    obj = est._objectives[0]
    rp = obj.row_pass()
    theta = est._get_thetas()[0]
    rows = np.delete(np.arange(len(X)), [8, 9])
    s = np.zeros(len(X))
    s[rows] = obj.sample_weight[rows]
    point = obj.checkpoint(theta, rows, fresh=True)
    ref = _reference(X, obj.y, theta, s, EPS, ALPHA, True, 0.0, 1.0)
    # at the kept point: its gradient and Hessian, once
    obj.keep_checkpoint(point)
    g, H = obj.grad_hessian_sum(theta, rows, kind="total", cols=point.cols)
    assert rp.checkpoint is None
    assert_allclose(g, ref["g"], rtol=1e-9, atol=1e-11)
    assert_allclose(H, ref["H"], rtol=1e-10, atol=1e-11)
    g[:] = 0.0  # a copy: the point is not changed through it
    assert_allclose(point.g, ref["g"], rtol=1e-9, atol=1e-11)
    g2, H2 = obj.grad_hessian_sum(theta, rows, kind="total", cols=point.cols)  # a sweep
    assert_allclose(g2, ref["g"], rtol=1e-9, atol=1e-11)
    assert_allclose(H2, ref["H"], rtol=1e-10, atol=1e-11)
    # anywhere else: never the kept point's values
    theta2 = theta.copy()
    theta2[point.cols] *= 1.01
    ref2 = _reference(X, obj.y, theta2, s, EPS, ALPHA, True, 0.0, 1.0)
    obj.keep_checkpoint(point)
    g, H = obj.grad_hessian_sum(theta2, rows, kind="total", cols=point.cols)
    assert_allclose(g, ref2["g"], rtol=1e-9, atol=1e-11)
    assert_allclose(H, ref2["H"], rtol=1e-10, atol=1e-11)
    obj.keep_checkpoint(point)
    other = np.delete(np.arange(len(X)), [8, 9, 10])
    s3 = np.zeros(len(X))
    s3[other] = obj.sample_weight[other]
    g, H = obj.grad_hessian_sum(theta, other, kind="total", cols=point.cols)
    ref3 = _reference(X, obj.y, theta, s3, EPS, ALPHA, True, 0.0, 1.0)
    assert_allclose(g, ref3["g"], rtol=1e-9, atol=1e-11)
    assert_allclose(H, ref3["H"], rtol=1e-10, atol=1e-11)


# ---- 6. a failed transaction -------------------------------------------------------
def _fail_index(monkeypatch, est):
    def broken(self, rows):
        raise RuntimeError("injected")

    monkeypatch.setattr(type(est), "_purge_index", broken)


def _fail_pass_purge(monkeypatch, est):
    original = _pass.RowPass.purge

    def broken(self, rows):
        original(self, rows)
        raise RuntimeError("injected")

    monkeypatch.setattr(_pass.RowPass, "purge", broken)


@pytest.mark.parametrize("inject", [
    pytest.param(_fail_index, id="after-the-purge"),
    pytest.param(_fail_pass_purge, id="in-the-pass-purge"),
])
def test_a_failed_forget_leaves_the_worst_cases_intact(binary_model, monkeypatch, inject):
    X, est = binary_model
    est = copy.deepcopy(est)
    est.forget([1])  # the prepared pass and its worst cases exist
    untouched = copy.deepcopy(est)
    with monkeypatch.context() as m:
        inject(m, est)
        with pytest.raises(RuntimeError, match="injected"):
            est.forget([2, 3, 250])
    assert_array_equal(est.coef_, untouched.coef_)
    assert_array_equal(est._X.toarray(), untouched._X.toarray())
    assert_array_equal(est.forgotten_, [1])
    # the passes see the rows as before the failed call (the failed request's
    # rows included)
    obj, ref_obj = est._objectives[0], untouched._objectives[0]
    rows = np.delete(np.arange(len(X)), [1])
    theta = est._get_thetas()[0] * 0.9
    p, q = obj.checkpoint(theta, rows, fresh=True), ref_obj.checkpoint(theta, rows, fresh=True)
    assert_allclose(p.residual, q.residual, rtol=1e-12, atol=1e-15)
    assert_allclose(p.H, q.H, rtol=1e-12)
    wc, ref_wc = obj.row_pass()._worst, ref_obj.row_pass()._worst
    assert_array_equal(wc.counts, ref_wc.counts)
    # (a rebuilt pass bounds the erased row 1 by eps, the purged one by 0)
    assert_array_equal(wc.row_bound[rows], ref_wc.row_bound[rows])
    # another request, then the retry, give what the untouched copy gives
    for req in ([7], [2, 3, 250]):
        est.forget(req)
        untouched.forget(req)
        assert _rel(est.coef_, untouched.coef_) < 1e-12
        assert_allclose(est.intercept_, untouched.intercept_, rtol=1e-12)
        assert_allclose(est._forgetter_states[0].memory_,
                        untouched._forgetter_states[0].memory_, rtol=1e-10)
        assert est.forget_log_[-1]["optimality_residual"] <= est.forget_tol
    assert_array_equal(obj.row_pass()._worst.counts,
                       untouched._objectives[0].row_pass()._worst.counts)


def test_a_memory_on_other_coordinates_is_not_used_for_the_first_step(binary_model):
    # a forgetter whose memory spans every coordinate (Newton, Fisher without
    # support restriction): the first correction step takes the exact Hessian
    from skmuter.linear._solvers import _checked_newton

    _, _, obj, _, theta, rows, _ = _fitted_point(binary_model)
    moved = theta * (1 + 1e-3 * np.random.default_rng(5).uniform(-1, 1, len(theta)))
    assert obj.gradient_residual(moved, rows) > 1e-9
    memory = np.eye(obj.n_params) * obj.weight_sum(rows)
    out, residual, steps = _checked_newton(obj, moved, rows, 1e-9, 6, start=theta,
                                           memory=memory)
    assert residual is not None and residual <= 1e-9 and steps >= 1
    assert_allclose(residual, obj.gradient_residual(out, rows), rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize("forgetter", [Fisher(), Newton()], ids=["fisher", "newton"])
def test_checked_batches_of_forgetters_whose_memory_spans_every_coordinate(forgetter):
    X, y = load_digits(n_class=2, return_X_y=True)
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.1, clip=(0, 1)), alpha=1e-3,
                                        forgetter=forgetter)
    est.fit(sparse.csr_matrix(X / 16), y)
    est.forget(np.arange(40))
    last = est.forget_log_[-1]
    assert last["optimality_residual"] <= est.forget_tol
    # (the same sums in another order: equal to their rounding)
    assert_allclose(last["optimality_residual"], metrics.gradient_residual(est), rtol=1e-6,
                    atol=1e-15)


def _forgets(est, rows, across, monkeypatch):
    monkeypatch.setattr(logistic_module, "_ACROSS_REQUESTS", across)
    est = copy.deepcopy(est)
    for r in rows:
        est.forget([r])
    return est


def test_requests_start_from_the_published_models_zero_sums(binary_model, monkeypatch):
    # Each request's first check bounds the part of the zeros summed at the
    # published model and sums the other part: the same forgets to the last
    # bit as summing every zero at every check, reading about half as much.
    X, est = binary_model
    wc = est._objectives[0].row_pass().logistic_worst_case(est._objectives[0],
                                                           est._objectives[0].y)
    dense = wc.part_of(np.arange(X.shape[1]))
    assert dense.any() and (~dense).any()  # both parts hold columns here
    rows = [5, 17, 60, 61, 200]  # (the support stays)
    calls = _count_sums(monkeypatch)
    plain = _forgets(est, rows, False, monkeypatch)
    summed_plain = [c for c in calls if not isinstance(c, tuple)]
    del calls[:]
    kept = _forgets(est, rows, True, monkeypatch)
    assert_array_equal(kept.coef_, plain.coef_)
    assert_array_equal(kept.intercept_, plain.intercept_)
    assert ([r["optimality_residual"] for r in kept.forget_log_]
            == [r["optimality_residual"] for r in plain.forget_log_])
    # never the whole sums while the support stays (only where it changes,
    # or where a bound does not certify): one part per request, at the point
    # it publishes (a point that a correction step leaves takes no zeros),
    # the sparse and the dense columns in turn
    parts = [c for c in calls if isinstance(c, tuple)]
    assert any(r["refine_steps"] for r in kept.forget_log_)
    assert len(summed_plain) >= len(rows)
    assert len(calls) == len(parts) == len(rows)
    assert [p[0] for p in parts] == ["thin", "dense", "thin", "dense", "thin"]


def _with_kept_sums(binary_model, monkeypatch):
    """A copy of the model, its objective and its worst cases, kept sums on."""
    monkeypatch.setattr(logistic_module, "_ACROSS_REQUESTS", True)
    est = copy.deepcopy(binary_model[1])
    obj = est._objectives[0]
    return est, obj, obj.row_pass().logistic_worst_case(obj, obj.y)


def test_kept_zero_sums_are_those_of_the_published_model(binary_model, monkeypatch):
    est, obj, wc = _with_kept_sums(binary_model, monkeypatch)
    for r in (9, 33, 34, 250):
        est.forget([r])
        kept = wc.zero_sums
        theta = est._get_thetas()[0]
        rows = np.flatnonzero(est._kept_mask())
        assert_array_equal(kept.theta, theta)
        assert kept.exact.any() and not kept.exact.all()  # one part of the zeros
        fresh = obj.checkpoint(theta, rows, fresh=True)
        assert_array_equal(kept.zeros, fresh.zeros)
        assert_allclose(kept.g1, fresh.g1, rtol=1e-13, atol=1e-300)
        assert not np.any(kept.g1[est.forgotten_])  # nothing of the forgotten rows
        A, B = fresh.zero_sums
        assert_allclose(kept.A[kept.exact], A[kept.exact], rtol=1e-12, atol=1e-12)
        assert_allclose(kept.B[kept.exact], B[kept.exact], rtol=1e-12, atol=1e-12)
        # a check nearby starts from them: lower bounds of the exact values
        step = np.random.default_rng(r).uniform(-1, 1, len(theta)) * 1e-5 * np.abs(theta)
        near = obj.checkpoint(theta + step, rows)
        exact = obj.checkpoint(theta + step, rows, fresh=True)
        assert near.zero_exact is not None and not near.zero_exact.all()
        assert np.all(near.zero_up <= exact.zero_up + 1e-15)
        assert np.all(near.zero_down <= exact.zero_down + 1e-15)
        assert_allclose(near.zero_up[near.zero_exact], exact.zero_up[near.zero_exact],
                        rtol=1e-13, atol=1e-16)
        assert_allclose(near.residual, exact.residual, rtol=1e-14, atol=0)


def test_zero_sums_of_an_unchecked_model_are_dropped(binary_model, monkeypatch):
    # taken at a model fitted on a row that a later unchecked request removes:
    # the purge drops them
    est, _, wc = _with_kept_sums(binary_model, monkeypatch)
    assert wc.zero_sums is not None  # the fit's
    est.set_params(forget_tol=None).forget([12])
    assert wc.zero_sums is None
    est.set_params(forget_tol=1e-9).forget([13])
    assert wc.zero_sums is not None
    assert_array_equal(wc.zero_sums.theta, est._get_thetas()[0])
