"""The matrix-free curvature of a large head (Kronecker factors, preconditioned CG)."""

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skmuter import AdversarialNet
from skmuter.attacks import PGD, Penalized
from skmuter.forgetters import ForgetWarning, MUter, Newton
from skmuter.nn._kron import HeadCurvature

torch.set_num_threads(1)
N, D, FEAT, K = 120, 8, 20, 5


class TanhBody(torch.nn.Sequential):
    def __init__(self):
        super().__init__(torch.nn.Linear(D, FEAT), torch.nn.Tanh(), torch.nn.Linear(FEAT, K))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (N, D)).astype(np.float32), rng.integers(0, K, N)


def make(attack, **kw):
    params = {"attack": attack, "alpha": 1e-2, "max_epochs": 5, "lr": 0.1, "random_state": 0,
              "verbose": 0, "forget_tol": None}
    params.update(kw)
    return AdversarialNet(TanhBody, **params)


@pytest.fixture(scope="module")
def pgd_net(data):
    return make(PGD(epsilon=0.05, n_steps=3, clip=(0, 1))).fit(*data)


@pytest.fixture(scope="module")
def penalized_net(data):
    return make(Penalized(gamma=2.0)).fit(*data)


def operator(net, rows, kind, points="adversarial"):
    obj = net.training_objective()[0]
    obj.dense_max = 0
    try:
        return obj.hessian_sum(net.forgetting_params(), rows, kind=kind, points=points)
    finally:
        obj.dense_max = net.max_dense_params


def test_head_hessian_products_equal_autograd_hessian(pgd_net, data):
    X, y = data
    rows = np.arange(N)
    op = operator(pgd_net, rows, "hessian", points="clean")
    assert isinstance(op, HeadCurvature)
    # reference: autograd's dense Hessian of the head's loss on the body's features
    module = copy.deepcopy(pgd_net.module_).double()
    with torch.no_grad():
        phi = torch.tanh(module[0](torch.as_tensor(X, dtype=torch.float64)))
    yt = torch.as_tensor(y)
    theta = torch.as_tensor(pgd_net.forgetting_params())  # (weight, bias) in theta order

    def loss(t):
        W, b = t[:K * FEAT].reshape(K, FEAT), t[K * FEAT:]
        return (F.cross_entropy(phi @ W.T + b, yt, reduction="sum")
                + 0.5 * N * pgd_net.alpha * (t @ t))

    H = torch.autograd.functional.hessian(loss, theta).numpy()
    V = np.random.default_rng(1).normal(size=(4, len(theta)))
    for v in V:
        np.testing.assert_allclose(op @ v, H @ v, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("which", ["pgd", "penalized"])
def test_total_hessian_and_downdate_equal_the_dense_memory(which, pgd_net, penalized_net):
    net = pgd_net if which == "pgd" else penalized_net
    obj = net.training_objective()[0]
    theta = net.forgetting_params()
    rows = np.arange(N)
    dense = obj.hessian_sum(theta, rows, kind="total")
    op = operator(net, rows, "total")
    # the indirect term is there (tanh body: curvature in the input) and matches
    assert (op.extra if which == "pgd" else op.head is not None)
    assert np.abs(dense - obj.hessian_sum(theta, rows, kind="hessian")).max() > 1e-3
    eye = np.eye(obj.n_params)
    np.testing.assert_allclose(op @ eye, dense, atol=1e-11)
    removed = np.array([2, 7, 40, 41])
    kept = np.setdiff1d(rows, removed)
    after = op.without(removed)
    assert after.n_rows == N - 4 and not np.isin(removed, after.rows).any()
    np.testing.assert_allclose(after @ eye, obj.hessian_sum(theta, kept, kind="total"),
                               atol=1e-11)
    assert copy.deepcopy(op) is op


@pytest.mark.parametrize("which,forgetter", [("pgd", MUter()), ("penalized", MUter()),
                                             ("pgd", Newton(adversarial=True, damping=1e-3))])
def test_matrix_free_forget_equals_dense_forget(which, forgetter, pgd_net, penalized_net):
    base = pgd_net if which == "pgd" else penalized_net
    out = []
    for max_dense in (2048, 0):
        net = copy.deepcopy(base).set_params(max_dense_params=max_dense, forgetter=forgetter)
        net._objective_ = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ForgetWarning)
            net.forget([3, 9, 20])
        out.append(net.forgetting_params())
        state = net._forgetter_states[0]
        if max_dense == 0:
            assert isinstance(state.memory_, HeadCurvature)
            info = state.solve_info_
            assert info["converged"] and info["preconditioner"] == "kronecker"
            assert info["residual"] <= info["rtol"] and info["iterations"] > 0
        else:
            assert isinstance(state.memory_, np.ndarray)
    assert np.abs(out[0] - base.forgetting_params()).max() > 1e-4  # the forget moved
    np.testing.assert_allclose(out[1], out[0], atol=1e-8)


def test_memory_is_built_once_and_downdated(pgd_net):
    net = copy.deepcopy(pgd_net).set_params(max_dense_params=0)
    net._objective_ = None
    theta = net.forgetting_params()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForgetWarning)
        net.forget([3, 9])
        first = net._forgetter_states[0].memory_
        net.forget([20, 50, 51])
    memory = net._forgetter_states[0].memory_
    kept = np.setdiff1d(np.arange(N), [3, 9, 20, 50, 51])
    np.testing.assert_array_equal(memory.rows, kept)
    assert memory.U.data_ptr() != first.U.data_ptr()  # the rows are gone, not masked
    # exactly the kept rows' terms at the fitted model (no rebuild in between)
    reference = pgd_net.training_objective()[0].hessian_sum(theta, kept, kind="total")
    assert isinstance(reference, np.ndarray)
    np.testing.assert_allclose(memory @ np.eye(len(theta)), reference, atol=1e-10)


def test_kronecker_preconditioner_lowers_cg_iterations(pgd_net):
    op = operator(pgd_net, np.arange(N), "hessian")
    b = np.random.default_rng(2).normal(size=op.shape[0])
    x_plain, plain = op.solve(b, precondition=False)
    x_pre, pre = op.solve(b, precondition=True)
    assert plain["converged"] and pre["converged"]
    # reference solve without the library: numpy on the dense product matrix
    A = op @ np.eye(op.shape[0])
    ref = np.linalg.solve(A, b)
    np.testing.assert_allclose(x_pre, ref, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(x_plain, ref, rtol=1e-7, atol=1e-9)
    assert plain["iterations"] >= 20
    assert pre["iterations"] <= 12
