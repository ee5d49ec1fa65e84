"""Analytic gradients and Hessians of the robust objective against finite
differences and torch autograd."""

import numpy as np
import pytest

from skmuter._losses import LogisticLoss, SquaredLoss
from skmuter.attacks import Threat
from skmuter.linear import LinearObjective


def _objective(loss, norm, clip, seed=0, n=30, d=5, alpha=1e-2):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.05, 0.95, size=(n, d))
    if loss == "logistic":
        y = np.where(rng.uniform(size=n) > 0.5, 1.0, -1.0)
    else:
        y = X @ rng.normal(size=d) + rng.normal(size=n)
    eps = 0.1 if norm == "inf" else 0.3
    threat = Threat(eps, norm, clip, d)
    obj = LinearObjective(X, y, loss, threat, alpha, True)
    theta = rng.normal(size=d + 1)
    return obj, theta


def _smooth_rows(obj, theta, rows, h=1e-5):
    """Rows whose worst-case branch does not change within +-h (finite differences
    across a kink would compare two branches)."""
    if obj.loss.name != "squared":
        return rows
    gap, _ = obj.tie_gaps(theta, rows)
    return rows[np.abs(gap) > 1e-2]


@pytest.mark.parametrize("loss", ["logistic", "squared"])
@pytest.mark.parametrize("norm, clip", [("inf", None), ("inf", (0, 1)), (2, None), (2, (0, 1))])
def test_gradient_and_total_hessian_match_finite_differences(loss, norm, clip):
    obj, theta = _objective(loss, norm, clip)
    rows = _smooth_rows(obj, theta, np.arange(30))
    m = len(rows)
    h = 1e-6
    g = obj.grad_sum(theta, rows) / m
    fd = np.array([(obj.value(theta + h * e, rows) - obj.value(theta - h * e, rows)) / (2 * h)
                   for e in np.eye(len(theta))])
    # the regulariser appears once in value() and once per row in grad_sum()/m: same
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)
    H = obj.hessian_sum(theta, rows, "total") / m
    fdH = np.array([(obj.grad_sum(theta + h * e, rows) - obj.grad_sum(theta - h * e, rows))
                    / (2 * h * m) for e in np.eye(len(theta))])
    np.testing.assert_allclose(H, fdH, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(H, H.T, atol=1e-12)


def test_logistic_derivatives_match_torch_autograd():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    z = rng.normal(size=7) * 3
    y = np.where(rng.uniform(size=7) > 0.5, 1.0, -1.0)
    for loss, fn in ((LogisticLoss, lambda t, yy: torch.nn.functional.softplus(-yy * t)),
                     (SquaredLoss, lambda t, yy: 0.5 * (t - yy) ** 2)):
        zt = torch.tensor(z, requires_grad=True, dtype=torch.float64)
        yt = torch.tensor(y, dtype=torch.float64)
        val = fn(zt, yt)
        (g,) = torch.autograd.grad(val.sum(), zt, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), zt)
        np.testing.assert_allclose(loss.value(z, y), val.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(loss.d1(z, y), g.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(loss.d2(z, y), h.numpy(), rtol=1e-10)


def test_per_sample_gradients_sum_to_grad_sum_and_fisher():
    obj, theta = _objective("logistic", 2, None)
    rows = np.arange(12)
    G = obj.per_sample_grads(theta, rows)
    np.testing.assert_allclose(G.sum(axis=0), obj.grad_sum(theta, rows), rtol=1e-12)
    np.testing.assert_allclose(G.T @ G, obj.hessian_sum(theta, rows, "fisher"), rtol=1e-10)
    cols = np.array([0, 3, 5])
    np.testing.assert_allclose(obj.hessian_sum(theta, rows, "total", cols=cols),
                               obj.hessian_sum(theta, rows, "total")[np.ix_(cols, cols)],
                               rtol=1e-10)


def test_paper_total_hessian_matches_its_dense_per_sample_formula():
    """The closed form of the paper's Neumann-series total Hessian equals the
    per-sample d x d formula (built densely here, in the test only)."""
    obj, theta = _objective("logistic", "inf", None, n=6, d=3)
    k = 3
    rows = np.arange(6)
    w, _ = obj.split(theta)
    z, x, _, _ = obj.points(theta, rows)
    c = obj.loss.d2(z, obj.y)
    g1 = obj.loss.d1(z, obj.y)
    total = np.zeros((4, 4))
    for i in rows:
        xt = np.append(x[i], 1.0)
        dww = c[i] * np.outer(xt, xt)
        dwd = c[i] * np.outer(xt, w) + g1[i] * np.vstack([np.eye(3), np.zeros((1, 3))])
        ddd = c[i] * np.outer(w, w)
        N = sum(np.linalg.matrix_power(np.eye(3) - ddd, j) for j in range(k + 1))
        total += dww - dwd @ N @ dwd.T
        total[:3, :3] += obj.alpha * np.eye(3)
    np.testing.assert_allclose(obj.hessian_sum(theta, rows, "paper", neumann_order=k), total,
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("block", [None, 7, "split"])
@pytest.mark.parametrize("loss", [LogisticLoss, SquaredLoss])
def test_loss_terms_at_once_equal_the_separate_ones(loss, block, monkeypatch):
    from skmuter import _losses

    if block is not None:  # rows a block at a time, the last one shorter
        monkeypatch.setattr(_losses, "_TERMS_BLOCK", 7)
    if block == "split":  # and the rows in two halves, on two threads
        monkeypatch.setattr(_losses, "_TERMS_SPLIT", 8)
        monkeypatch.setenv("SKMUTER_THREADS", "2")
    rng = np.random.default_rng(2)
    z = np.concatenate([rng.normal(size=50) * 3, [-800.0, -40.0, 0.0, 40.0, 800.0]])
    y = np.where(rng.uniform(size=len(z)) > 0.5, 1.0, -1.0)
    y[-3] = 0.0  # an erased row's target
    value, d1, d2 = loss.terms(z, y)
    weights = rng.uniform(size=len(z))
    weights[3] = 0.0
    for weighted, plain in zip(loss.terms(z, y, weights), (value, d1, d2)):
        np.testing.assert_array_equal(weighted, plain * weights)
    np.testing.assert_allclose(value, loss.value(z, y), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(d1, loss.d1(z, y), rtol=1e-14, atol=1e-300)
    # ``d2`` as p (1 - p) loses the tails (1 - p rounds to 0 past |t| ~ 37);
    # at once it keeps them: sigmoid(t) sigmoid(-t), each factor accurate
    np.testing.assert_allclose(d2, loss.d2(z, y), rtol=1e-13, atol=1e-16)
    if loss is LogisticLoss:
        from scipy.special import expit

        np.testing.assert_allclose(d2, expit(y * z) * expit(-y * z), rtol=1e-13, atol=1e-300)
