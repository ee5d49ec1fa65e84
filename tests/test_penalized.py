"""Tests of the penalised attack: a unique worst case, an exact reference, exact MUter."""

import copy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skorch")

from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skmuter import AdversarialLogisticRegression, AdversarialNet
from skmuter.attacks import Penalized
from skmuter.forgetters import ForgetWarning
from skmuter.metrics import residual_fraction
from skmuter.nn import paper_muter
from skmuter.nn._attacks import TorchThreat, perturb
from skmuter.nn._head import cg_head_factors, head_factors, jacobian_features

torch.set_num_threads(1)
N = 200


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:N] / 16).astype(np.float32), y[:N]


class TanhMLP(torch.nn.Sequential):
    def __init__(self, hidden=16):
        super().__init__(torch.nn.Linear(64, hidden), torch.nn.Tanh(),
                         torch.nn.Linear(hidden, 10))


def make_net(**kw):
    params = {"attack": Penalized(gamma=2.0), "alpha": 1e-2, "max_epochs": 5, "lr": 0.1,
              "random_state": 0, "verbose": 0}
    params.update(kw)
    module = params.pop("module", TanhMLP)
    return AdversarialNet(module, **params)


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return make_net().fit(X, y)


def quiet_forget(net, rows):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForgetWarning)
        return net.forget(rows)


# ---- the attack --------------------------------------------------------------------
def test_numpy_and_torch_ascent_agree_with_the_closed_form_on_a_linear_loss():
    # loss = s * w . x: the maximiser of s w.(x + d) - gamma/2 |d|^2 is s w / gamma,
    # then clipped coordinate-wise into the box (the problem is separable).
    rng = np.random.default_rng(0)
    X = rng.uniform(0.2, 0.8, size=(5, 4))
    w = np.array([1.0, -2.0, 0.5, 0.0])
    s = np.array([1.0, -1.0, 1.0, 1.0, -1.0])
    for clip in (None, (0, 1)):
        attack = Penalized(gamma=2.5, clip=clip)
        expected = X + s[:, None] * w / 2.5
        if clip is not None:
            expected = np.clip(expected, 0, 1)
        got = attack.perturb(X, s, lambda Xa, ya: ya[:, None] * w)
        np.testing.assert_allclose(got, expected, atol=1e-12)
        threat = TorchThreat(attack, (4,), dtype=torch.float64)
        got_t = perturb(threat, torch.as_tensor(X),
                        lambda Xa: torch.as_tensor(s)[:, None] * torch.as_tensor(w))
        np.testing.assert_allclose(got_t.numpy(), expected, atol=1e-12)


def test_torch_ascent_reaches_the_stationary_point_of_a_network(fitted):
    obj = fitted.training_objective()[0]
    theta = fitted.forgetting_params()
    rows = np.arange(30)
    xa = obj.attack_points.attack(obj._t(theta), rows)
    x = obj._x(rows)
    g = obj._delta_grad(obj._t(theta), xa, obj._y(rows))
    # first-order condition of the unconstrained inner problem: grad = gamma * delta
    np.testing.assert_allclose(g.numpy(), 2.0 * (xa - x).numpy(), atol=1e-8)
    assert float((xa - x).abs().max()) > 1e-3


@pytest.mark.parametrize("bad, match", [
    ({"gamma": 0.0}, "gamma"),
    ({"gamma": -1.0}, "gamma"),
    ({"gamma": float("inf")}, "gamma"),
    ({"n_steps": 0}, "n_steps"),
    ({"tol": 0.0}, "tol"),
    ({"step_size": -0.1}, "step_size"),
    ({"clip": (0, 1, 2)}, "clip"),
])
def test_bad_settings_raise_a_named_error(digits, bad, match):
    X, y = digits
    with pytest.raises(ValueError, match=match):
        make_net(max_epochs=1, attack=Penalized(**bad)).fit(X, y)


def test_linear_estimators_refuse_the_penalised_attack(digits):
    X, y = digits
    with pytest.raises(ValueError, match="networks"):
        AdversarialLogisticRegression(attack=Penalized()).fit(X, y % 2)


def test_nested_params_and_clone():
    net = make_net()
    net.set_params(attack__gamma=5.0)
    assert net.attack.gamma == 5.0
    assert clone(net).attack.gamma == 5.0


def test_unconverged_ascent_warns(digits):
    X, y = digits
    net = make_net(max_epochs=1, polish=False, attack=Penalized(gamma=2.0, n_steps=2))
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        net.fit(X[:50], y[:50])


# ---- the objective and its curvature ---------------------------------------------------
def test_fit_converges_and_the_value_has_danskins_gradient(fitted, digits):
    assert fitted.polish_info_["gradient_norm"] < 1e-7
    assert fitted.optimality_residual_ < 1e-7
    obj = fitted.training_objective()[0]
    rows = np.arange(N)
    rng = np.random.default_rng(1)
    theta = fitted.forgetting_params() + 0.3 * rng.standard_normal(obj.n_params)
    v = rng.standard_normal(obj.n_params)
    v /= np.linalg.norm(v)
    h = 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fd = (obj.value(theta + h * v, rows) - obj.value(theta - h * v, rows)) / (2 * h)
        analytic = obj.grad_sum(theta, rows) @ v / N
    assert abs(analytic) > 1e-4
    assert abs(fd - analytic) < 1e-7 * max(1.0, abs(analytic))


@pytest.mark.parametrize("clip", [None, (0, 1)])
def test_total_hessian_is_the_hessian_of_the_robust_objective(digits, clip):
    X, y = digits
    net = make_net(attack=Penalized(gamma=2.0, clip=clip)).fit(X, y)
    obj = net.training_objective()[0]
    theta = net.forgetting_params()
    rows = np.arange(N)
    total = obj.hessian_sum(theta, rows, kind="total")
    plain = obj.hessian_sum(theta, rows, kind="hessian")
    rng = np.random.default_rng(0)
    for _ in range(2):
        v = rng.standard_normal(obj.n_params)
        h = 1e-5
        fd = (obj.grad_sum(theta + h * v, rows) - obj.grad_sum(theta - h * v, rows)) / (2 * h)
        assert np.linalg.norm(fd - total @ v) < 1e-6 * np.linalg.norm(fd)
        assert np.linalg.norm(fd - plain @ v) > 1e-2 * np.linalg.norm(fd)
    # the feature-space factorisation equals the generic per-row factor
    obj._factor_cache.clear()
    head, obj.head = obj.head, None
    try:
        generic = obj.hessian_sum(theta, rows[:40], kind="total")
    finally:
        obj.head = head
    np.testing.assert_allclose(generic, obj.hessian_sum(theta, rows[:40], kind="total"),
                               rtol=1e-9, atol=1e-10)


def test_matrix_free_total_hessian_equals_dense(fitted):
    obj = fitted.training_objective()[0]
    theta = fitted.forgetting_params()
    rows = np.arange(50)
    dense = obj.hessian_sum(theta, rows, kind="total")
    obj.dense_max = 0
    try:
        op = obj.hessian_sum(theta, rows, kind="total")
    finally:
        obj.dense_max = fitted.max_dense_params
    v = np.random.default_rng(0).standard_normal(obj.n_params)
    np.testing.assert_allclose(op.matvec(v), dense @ v, rtol=1e-9, atol=1e-9)


# ---- forgetting against an exact reference ------------------------------------------------
def test_muter_lands_on_the_exact_retrain_and_beats_the_hessian_only_step(fitted):
    rows = [3, 17, 40, 41, 99, 150]
    before = copy.deepcopy(fitted)
    net = quiet_forget(copy.deepcopy(fitted), rows)
    ref = net.retrain(start=before.forgetting_params())
    assert ref.retrain_info_["gradient_norm"] < 1e-7
    spread = np.linalg.norm(net.retrain(start="init").forgetting_params()
                            - ref.forgetting_params())
    nothing = np.linalg.norm(before.forgetting_params() - ref.forgetting_params())
    assert spread < 1e-4 * nothing  # the reference is unique and solved
    frac = residual_fraction(net, before, ref)
    newton = quiet_forget(copy.deepcopy(fitted).set_params(forgetter="newton-delta"), rows)
    assert frac < 0.05
    assert frac < 0.5 * residual_fraction(newton, before, ref)


def test_successive_requests_and_the_paper_form_run(fitted):
    net = copy.deepcopy(fitted)
    quiet_forget(net, [5])
    quiet_forget(net, [6, 7])
    batch = quiet_forget(copy.deepcopy(fitted), [5, 6, 7])
    ref = batch.retrain(start=fitted.forgetting_params())
    assert residual_fraction(net, fitted, ref) < 0.1
    paper = quiet_forget(copy.deepcopy(fitted).set_params(forgetter=paper_muter(neumann_order=3)),
                         [5, 6, 7])
    assert np.all(np.isfinite(paper.forgetting_params()))
    assert not np.allclose(paper.forgetting_params(), fitted.forgetting_params())


def test_robust_score_uses_the_penalised_worst_case(fitted, digits):
    X, y = digits
    assert fitted.robust_score(X, y) < fitted.score(X, y)


class DeepTanh(torch.nn.Sequential):
    def __init__(self):
        super().__init__(torch.nn.Linear(64, 40), torch.nn.Tanh(), torch.nn.Linear(40, 12),
                         torch.nn.Tanh(), torch.nn.Linear(12, 10))


@pytest.mark.parametrize("module", [TanhMLP, DeepTanh])
def test_low_rank_and_matrix_free_factors_equal_the_dense_system(digits, module):
    # DeepTanh: the input curvature has rank up to 40 > the first sketch (12 + 16),
    # so rows must be detected as unfinished and retried with a wider sketch.
    X, y = digits
    net = make_net(module=module, max_epochs=2, polish=False,
                   attack=Penalized(gamma=2.0, clip=(0, 1))).fit(X[:40], y[:40])
    obj = net.training_objective()[0]
    theta = obj._t(net.forgetting_params())
    rows = np.arange(40)
    xa = obj.adversarial(net.forgetting_params(), rows)
    free = obj.threat.free_mask(obj._x(rows), xa - obj._x(rows))
    assert 0 < float(free.double().mean()) < 1  # the box pins some coordinates
    fast = head_factors(obj, theta, xa, obj._y(rows), free)
    matrix_free = cg_head_factors(obj, theta, xa, obj._y(rows), free)
    dense = _dense_reference(obj, theta, xa, obj._y(rows), free)
    for a, c, Rb in zip(fast, matrix_free, dense):
        for got in (a, c):
            Ra = got.L @ got.L.T
            assert float((Ra - Rb).abs().max()) < 1e-9 * float(Rb.abs().max())


def _dense_reference(obj, theta, xa, y, free):
    """``J (gamma I - G)^-1 J^T`` on the free coordinates, with dense d x d matrices."""
    from torch.func import hessian

    out = []
    for x1, y1, f1 in zip(xa, y, free):
        G = hessian(lambda x, y1=y1: torch.nn.functional.cross_entropy(
            obj.logits(theta, x[None]), y1[None]))(x1)
        idx = torch.nonzero(f1.flatten()).flatten()
        J = jacobian_features(obj, theta, x1[None])[0][:, idx]
        N = obj.threat.gamma * torch.eye(len(idx), dtype=G.dtype) - G[idx][:, idx]
        out.append(J @ torch.linalg.solve(N, J.T))
    return out


@pytest.mark.parametrize("bias", [True, False])
def test_kronecker_indirect_sum_equals_the_expanded_factors(digits, bias):
    X, y = digits

    class Head(torch.nn.Sequential):
        def __init__(self):
            super().__init__(torch.nn.Linear(64, 16), torch.nn.Tanh(),
                             torch.nn.Linear(16, 10, bias=bias))

    net = make_net(module=Head, max_epochs=2, attack=Penalized(gamma=2.0, clip=(0, 1)))
    net.fit(X, y)
    obj = net.training_objective()[0]
    theta = net.forgetting_params()
    rows = np.arange(N)
    indirect = (obj.hessian_sum(theta, rows, kind="total")
                - obj.hessian_sum(theta, rows, kind="hessian"))
    expanded = sum(C @ C.T for C in obj._factors(theta, rows)).numpy()
    assert np.abs(expanded).max() > 1e-3
    np.testing.assert_allclose(indirect, expanded, rtol=1e-10, atol=1e-12)
    cols = np.array([3, 50, 7, obj.n_params - 1])
    np.testing.assert_allclose(obj.hessian_sum(theta, rows, kind="total", cols=cols),
                               obj.hessian_sum(theta, rows, kind="total")[np.ix_(cols, cols)],
                               rtol=1e-12, atol=1e-12)


def test_pickle_round_trip_keeps_forgetting_and_drops_the_rows(fitted):
    import pickle

    net = quiet_forget(copy.deepcopy(fitted), [8])
    assert not np.any(net._train_X[8])
    loaded = pickle.loads(pickle.dumps(net))
    quiet_forget(loaded, [9])
    quiet_forget(net, [9])
    np.testing.assert_allclose(loaded.forgetting_params(), net.forgetting_params(),
                               rtol=1e-10, atol=1e-12)
    store = net.training_objective()[0]._factor_cache
    assert all(8 not in rows and 9 not in rows for rows in store.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_penalised_forget_matches_cpu(fitted):
    gpu = copy.deepcopy(fitted)
    gpu.set_params(device="cuda")
    gpu.module_.to("cuda")
    gpu._objective_ = None
    cpu = quiet_forget(copy.deepcopy(fitted), [4, 5])
    quiet_forget(gpu, [4, 5])
    np.testing.assert_allclose(gpu.forgetting_params(), cpu.forgetting_params(),
                               rtol=1e-6, atol=1e-8)


def test_matrix_free_path_warns_and_drops_rows_that_are_no_strict_maximum(fitted):
    obj = fitted.training_objective()[0]
    theta = obj._t(fitted.forgetting_params())
    rows = np.arange(6)
    xa = obj.adversarial(fitted.forgetting_params(), rows)
    free = torch.ones_like(xa, dtype=torch.bool)
    gamma = obj.threat.gamma
    obj.threat.gamma = 1e-6  # far below the curvature: gamma I - G is indefinite
    try:
        with pytest.warns(ConvergenceWarning, match="no strict local maximum"):
            out = cg_head_factors(obj, theta, xa, obj._y(rows), free)
    finally:
        obj.threat.gamma = gamma
    assert out == [None] * len(rows)
