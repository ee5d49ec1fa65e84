"""Tests of skmuter.nn: adversarial training and forgetting of PyTorch networks."""

import copy
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skorch")

from sklearn.base import clone
from sklearn.datasets import load_digits

from skmuter import AdversarialNet
from skmuter.attacks import FGSM, PGD
from skmuter.forgetters import (
    FORGETTER_NAMES,
    Fisher,
    ForgetWarning,
    MUter,
    Newton,
    Retrain,
)
from skmuter.metrics import forget_report, residual_fraction
from skmuter.nn import paper_muter
from skmuter.nn._attacks import TorchThreat, perturb

torch.set_num_threads(1)
N = 300


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:N] / 16).astype(np.float32), y[:N]


class MLP(torch.nn.Sequential):
    def __init__(self, act=torch.nn.ReLU):
        super().__init__(torch.nn.Linear(64, 24), act(), torch.nn.Linear(24, 10))


def mlp(act=torch.nn.ReLU):
    return MLP(act)


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        h = self.pool(torch.relu(self.conv(x.reshape(-1, 1, 8, 8))))
        return self.fc(h.flatten(1))


def make_net(module=None, **kw):
    params = {"attack": PGD(epsilon=0.05, n_steps=3, clip=(0, 1)), "alpha": 1e-2, "max_epochs": 15,
                  "lr": 0.1, "random_state": 0, "verbose": 0}
    params.update(kw)
    return AdversarialNet(MLP if module is None else module, **params)


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return make_net().fit(X, y)


def quiet_forget(net, rows, method="forget"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForgetWarning)
        return getattr(net, method)(rows)


# ---- attacks -------------------------------------------------------------------------
def test_torch_pgd_matches_numpy_pgd_on_a_linear_score():
    rng = np.random.default_rng(0)
    X = rng.uniform(0.2, 0.8, size=(5, 4))
    w = np.array([1.0, -2.0, 0.5, 0.0])
    s = np.array([1.0, -1.0, 1.0, 1.0, -1.0])
    for attack in (PGD(epsilon=0.1, norm="inf", clip=(0, 1), random_start=False),
                   PGD(epsilon=0.3, norm=2, random_start=False, n_steps=4),
                   FGSM(epsilon=0.1)):
        ref = attack.perturb(X, s, lambda Xa, ya: ya[:, None] * w)
        threat = TorchThreat(attack, (4,), dtype=torch.float64)
        Xt = torch.as_tensor(X)
        got = perturb(threat, Xt, lambda Xa: torch.as_tensor(s)[:, None] * torch.as_tensor(w))
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)


def test_torch_attack_respects_ball_and_box():
    X = torch.rand(20, 6, dtype=torch.float64)
    for norm in ("inf", 2):
        threat = TorchThreat(PGD(epsilon=0.2, norm=norm, clip=(0, 1)), (6,), dtype=torch.float64)
        noise = torch.rand(20, 6, dtype=torch.float64)
        Xa = perturb(threat, X, lambda Xa: torch.randn(Xa.shape, dtype=torch.float64), noise)
        d = (Xa - X).flatten(1)
        size = d.abs().amax(1) if norm == "inf" else d.norm(dim=1)
        assert float(size.max()) <= 0.2 + 1e-12
        assert float(Xa.min()) >= 0 and float(Xa.max()) <= 1


# ---- fitting ----------------------------------------------------------------------------
def test_fit_accuracy_and_robustness(fitted, digits):
    X, y = digits
    clean = fitted.score(X, y)
    robust = fitted.robust_score(X, y)
    assert clean > 0.8
    assert 0.3 < robust < clean
    assert fitted.robust_score(X, y, attack=PGD(epsilon=0.0, n_steps=1)) == pytest.approx(clean)
    assert fitted.optimality_residual_ < 5e-3
    assert fitted.forget_names_ == ["2.weight", "2.bias"]
    assert fitted.forgetting_params().shape == (24 * 10 + 10,)


def test_same_seed_same_model_and_other_seed_differs(digits):
    X, y = digits
    a = make_net(max_epochs=2, polish=False).fit(X, y).forgetting_params()
    b = make_net(max_epochs=2, polish=False).fit(X, y).forgetting_params()
    c = make_net(max_epochs=2, polish=False, random_state=1).fit(X, y).forgetting_params()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_labels_are_kept(digits):
    X, y = digits
    letters = np.array(list("abcdefghij"))
    a = make_net(max_epochs=2, polish=False).fit(X, letters[y])
    b = make_net(max_epochs=2, polish=False).fit(X, y)
    np.testing.assert_array_equal(a.classes_, letters)
    np.testing.assert_array_equal(a.predict(X), letters[b.predict(X)])
    assert a.score(X, letters[y]) == b.score(X, y)
    with pytest.raises(ValueError, match="not seen"):
        a.robust_score(X[:5], np.array(list("zzzzz")))


def test_clone_and_nested_attack_params():
    net = make_net()
    net.set_params(attack__epsilon=0.2)
    assert net.attack.epsilon == 0.2
    assert clone(net).attack.epsilon == 0.2


@pytest.mark.parametrize("bad, match", [
    ({"attack": "cw"}, "attack"),
    ({"alpha": -1.0}, "alpha"),
    ({"train_params": "some"}, "train_params"),
    ({"forget_params": ["nope"]}, "nope"),
    ({"attack": PGD(epsilon=0.1, step_size=0.5)}, "step_size"),
    ({"criterion": torch.nn.NLLLoss}, "CrossEntropyLoss"),
    ({"polish_max_iter": 0}, "polish_max_iter"),
    ({"polish_max_iter": True}, "polish_max_iter"),
])
def test_bad_settings_raise(digits, bad, match):
    X, y = digits
    with pytest.raises((ValueError, TypeError), match=match):
        make_net(max_epochs=1, **bad).fit(X, y)


def test_polish_iterations_are_capped(digits):
    X, y = digits
    net = make_net(max_epochs=1, polish_max_iter=3).fit(X, y)
    assert 1 <= net.polish_info_["n_iter"] <= 3
    assert net.retrain().retrain_info_["n_iter"] <= 3


def test_inputs_outside_the_box_raise(digits):
    X, y = digits
    with pytest.raises(ValueError, match="outside clip"):
        make_net(max_epochs=1).fit(X * 2, y)


# ---- forgetting ---------------------------------------------------------------------------
def test_without_attack_muter_equals_the_exact_retrain(digits):
    # With epsilon=0 the objective is smooth: the refit converges to 1e-8 and the
    # Newton-type step must land on it up to second order.
    X, y = digits
    net = make_net(attack=PGD(epsilon=0.0, n_steps=1)).fit(X, y)
    assert net.optimality_residual_ < 1e-6
    before = copy.deepcopy(net)
    quiet_forget(net, [1, 5, 9, 40, 77])
    ref = net.retrain(start=before.forgetting_params())
    assert ref.retrain_info_["gradient_norm"] < 1e-6
    assert residual_fraction(net, before, ref) < 0.05


def test_default_muter_beats_doing_nothing_and_clean_newton(fitted):
    # With an attack the robust objective has kinks (the worst case switches
    # vertex), which bounds how exactly the reference can be solved: a looser bound.
    before = copy.deepcopy(fitted)
    rows = list(range(0, N, 10))
    net = quiet_forget(copy.deepcopy(fitted), rows)
    ref = net.retrain(start=before.forgetting_params())
    assert ref.retrain_info_["gradient_norm"] < 5e-3
    nothing = np.linalg.norm(before.forgetting_params() - ref.forgetting_params())
    assert nothing > 0.1
    frac = residual_fraction(net, before, ref)
    newton = quiet_forget(copy.deepcopy(fitted).set_params(forgetter="newton"), rows)
    assert frac < 0.6
    assert frac < residual_fraction(newton, before, ref)


def test_forget_warns_when_body_saw_the_rows(fitted):
    with pytest.warns(ForgetWarning, match="information about the rows remains"):
        copy.deepcopy(fitted).forget([2])


@pytest.mark.parametrize("name", FORGETTER_NAMES)
def test_every_forgetter_runs_and_moves(fitted, name, digits):
    X, y = digits
    net = copy.deepcopy(fitted).set_params(forgetter=name)
    if name == "muter-paper":
        net.set_params(forgetter=paper_muter(neumann_order=2, cg_iter=5))
    before = net.forgetting_params()
    quiet_forget(net, [3, 8])
    after = net.forgetting_params()
    assert np.all(np.isfinite(after))
    assert np.linalg.norm(after - before) > 1e-6
    assert net.forget_log_[-1]["n_removed"] == 2
    assert net.score(X, y) > 0.6


def test_batch_equals_successive_requests(fitted):
    # linearised once at the fitted point (Algorithm 1), the order does not matter
    fitted = copy.deepcopy(fitted).set_params(forgetter=MUter(linearization="fitted"),
                                              forget_tol=None)
    a = quiet_forget(copy.deepcopy(fitted), [4, 11, 30])
    b = quiet_forget(copy.deepcopy(fitted), [4, 11, 30], method="partial_forget")
    c = quiet_forget(quiet_forget(copy.deepcopy(fitted), [11]), [4, 30])
    np.testing.assert_allclose(a.forgetting_params(), b.forgetting_params(), atol=1e-8)
    np.testing.assert_allclose(a.forgetting_params(), c.forgetting_params(), atol=1e-8)
    assert len(b.forget_log_) == 3 and len(c.forget_log_) == 2
    np.testing.assert_array_equal(c.forgotten_, [4, 11, 30])


def test_matrix_free_path_equals_dense_path(fitted):
    dense = quiet_forget(copy.deepcopy(fitted), [6, 12])
    op = copy.deepcopy(fitted).set_params(max_dense_params=0)
    op._objective_ = None
    quiet_forget(op, [6, 12])
    np.testing.assert_allclose(op.forgetting_params(), dense.forgetting_params(), atol=1e-6)


def test_retrain_forgetter_solves_the_remaining_problem(fitted):
    net = copy.deepcopy(fitted).set_params(forgetter=Retrain(warm_start=True))
    quiet_forget(net, [0, 2])
    assert net.gradient_residual() < 5e-3
    # Forgetting changed the optimum: the fitted parameters are not stationary there.
    before = copy.deepcopy(fitted)
    before.forgotten_ = np.array([0, 2])
    assert before.gradient_residual() > 2 * net.gradient_residual()


@pytest.mark.parametrize("bad, err", [
    ([], ValueError), ([N], IndexError), ([-1], IndexError), ([1, 1], ValueError),
    ([0.5], TypeError), (np.ones(3, bool), ValueError),
])
def test_bad_requests_raise_and_change_nothing(fitted, bad, err):
    net = copy.deepcopy(fitted)
    theta = net.forgetting_params()
    with pytest.raises(err):
        net.forget(bad)
    np.testing.assert_array_equal(net.forgetting_params(), theta)
    assert net.forgotten_.size == 0 and net.forget_log_ == []


def test_forgetting_a_row_twice_or_a_whole_class_raises(fitted, digits):
    _, y = digits
    net = quiet_forget(copy.deepcopy(fitted), [0])
    theta = net.forgetting_params()
    with pytest.raises(ValueError, match="already forgotten"):
        net.forget([0, 1])
    with pytest.raises(ValueError, match="class"):
        net.forget(np.flatnonzero((y == 3) & (np.arange(N) != 0)))
    np.testing.assert_array_equal(net.forgetting_params(), theta)
    np.testing.assert_array_equal(net.forgotten_, [0])


def test_switching_forgetter_after_forgetting(fitted):
    # a forgetter based at the published model may take over; one linearised at
    # the fitted point may not
    net = quiet_forget(copy.deepcopy(fitted), [0])
    quiet_forget(net.set_params(forgetter="newton"), [1])
    assert net.forget_log_[-1]["forgetter"] == "newton"
    net.set_params(forgetter="muter-paper")
    with pytest.raises(ValueError, match="linearised at the fitted model"):
        net.forget([2])


def test_optimizer_state_is_reset_and_rows_purged(digits):
    X, y = digits
    X = X.copy()
    planted = np.float32(0.7316284)
    X[17, 5] = planted
    net = make_net(max_epochs=2, optimizer=torch.optim.Adam, lr=0.01).fit(X, y)
    assert len(net.optimizer_.state) > 0
    assert planted.tobytes() in pickle.dumps(net)
    quiet_forget(net, [17])
    assert len(net.optimizer_.state) == 0
    blob = pickle.dumps(net)
    assert planted.tobytes() not in blob
    assert np.float64(planted).tobytes() not in blob
    loaded = pickle.loads(blob)
    np.testing.assert_array_equal(loaded.predict(X[:30]), net.predict(X[:30]))
    np.testing.assert_array_equal(loaded.forgotten_, [17])
    quiet_forget(loaded, [3])  # the unpickled model keeps forgetting


# ---- other parameter sets and threats ---------------------------------------------------------
def test_head_only_training_forgets_without_warning(digits):
    X, y = digits
    body = mlp()
    body_before = [p.detach().clone() for p in body[0].parameters()]
    net = make_net(body, train_params="forget").fit(X, y)
    for p, q in zip(net.module_[0].parameters(), body_before):
        torch.testing.assert_close(p.detach(), q)
    before = copy.deepcopy(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ForgetWarning)
        net.forget([2, 9])
    assert np.linalg.norm(net.forgetting_params() - before.forgetting_params()) > 0
    for p, q in zip(net.module_[0].parameters(), body_before):
        torch.testing.assert_close(p.detach(), q)


def test_cnn_forget_all_parameters_matrix_free(digits):
    X, y = digits
    net = make_net(SmallCNN, forget_params="all", max_epochs=4, alpha=1e-1, max_dense_params=100,
                   forgetter=Newton(adversarial=True, damping=1e-3)).fit(X[:150], y[:150])
    assert len(net.forget_names_) == 4
    assert net.training_objective()[0].n_params > net.max_dense_params
    before = copy.deepcopy(net)
    quiet_forget(net, [5])
    assert net.forget_log_[0]["n_removed"] == 1
    assert np.linalg.norm(net.forgetting_params() - before.forgetting_params()) > 0


def test_named_module_forget_params_and_cnn_head(digits):
    X, y = digits
    net = make_net(SmallCNN, forget_params=["fc"], max_epochs=3).fit(X[:150], y[:150])
    assert net.forget_names_ == ["fc.weight", "fc.bias"]
    assert net.training_objective()[0].head is not None
    quiet_forget(net, [1], method="partial_forget")
    assert net.score(X[:150], y[:150]) > 0.5


def test_indirect_term_vanishes_for_relu_linf_and_not_for_smooth_l2(digits):
    X, y = digits
    relu = make_net(max_epochs=2, polish=False).fit(X[:60], y[:60])
    obj = relu.training_objective()[0]
    theta = relu.forgetting_params()
    rows = np.arange(60)
    assert list(obj._factors(theta, rows)) == []
    H = obj.hessian_sum(theta, rows, kind="hessian")
    np.testing.assert_allclose(obj.hessian_sum(theta, rows, kind="total"), H)

    smooth = make_net(MLP, module__act=torch.nn.Tanh, attack=PGD(epsilon=0.3, norm=2, n_steps=3),
                      max_epochs=2, polish=False).fit(X[:20], y[:20])
    obj = smooth.training_objective()[0]
    theta = smooth.forgetting_params()
    rows = np.arange(20)
    extra = obj.hessian_sum(theta, rows, kind="total") - obj.hessian_sum(theta, rows,
                                                                        kind="hessian")
    assert np.linalg.eigvalsh(extra).min() > -1e-8  # PSD: the max moves with theta
    assert np.abs(extra).max() > 1e-6
    op = obj.hessian_sum(theta, rows, kind="total", cols=np.arange(obj.n_params))
    v = np.random.default_rng(0).standard_normal(obj.n_params)
    obj.dense_max = 0
    op = obj.hessian_sum(theta, rows, kind="total")
    obj.dense_max = 2048
    np.testing.assert_allclose(op.matvec(v), obj.hessian_sum(theta, rows, kind="total") @ v,
                               rtol=1e-8, atol=1e-8)


def test_hessian_vector_products_match_finite_differences(fitted):
    obj = fitted.training_objective()[0]
    theta = fitted.forgetting_params()
    rows = np.arange(40)
    v = np.random.default_rng(1).standard_normal(obj.n_params) * 1e-3
    H = obj.hessian_sum(theta, rows, kind="hessian", points="clean")
    fd = (obj.grad_sum(theta + v, rows, "clean") - obj.grad_sum(theta - v, rows, "clean")) / 2
    np.testing.assert_allclose(H @ v, fd, rtol=1e-5, atol=1e-9)
    G = obj.per_sample_grads(theta, rows[:5], "clean")
    np.testing.assert_allclose(G.sum(0), obj.grad_sum(theta, rows[:5], "clean"), atol=1e-10)
    F = obj.hessian_sum(theta, rows[:5], kind="fisher", points="clean")
    np.testing.assert_allclose(F, G.T @ G, atol=1e-10)


class NoBiasHead(torch.nn.Sequential):
    def __init__(self):
        super().__init__(torch.nn.Linear(64, 24), torch.nn.ReLU(),
                         torch.nn.Linear(24, 10, bias=False))


@pytest.mark.parametrize("bias", [True, False])
def test_closed_form_head_hessian_equals_autograd_products(fitted, digits, bias):
    net = fitted if bias else make_net(NoBiasHead, max_epochs=2).fit(*digits)
    obj = net.training_objective()[0]
    theta = net.forgetting_params()
    rows = np.arange(70)
    cols = np.arange(1, obj.n_params, 3)
    closed = obj.hessian_sum(theta, rows, kind="hessian", cols=cols)
    generic = copy.copy(obj)
    generic.head = None  # Hessian-vector products through the whole network
    products = generic.hessian_sum(theta, rows, kind="hessian", cols=cols)
    np.testing.assert_allclose(closed, products, rtol=1e-9, atol=1e-9)


def test_forget_report_runs(fitted, digits):
    X, y = digits
    before = copy.deepcopy(fitted)
    net = quiet_forget(copy.deepcopy(fitted), [10])
    report = forget_report(net, before, X[:50], y[:50])
    assert report["do_nothing_distance"] > 0
    assert 0 <= report["robust_accuracy"] <= report["clean_accuracy"] + 0.1


def test_fisher_forgetter_with_support_false_works(fitted):
    net = copy.deepcopy(fitted).set_params(forgetter=Fisher(adversarial=True, damping=1e-3))
    quiet_forget(net, [1, 2])
    assert np.all(np.isfinite(net.forgetting_params()))


# ---- GPU --------------------------------------------------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_cuda_fit_forget_and_pickle_to_cpu(digits):
    X, y = digits
    net = make_net(device="cuda").fit(X, y)
    before = copy.deepcopy(net)
    quiet_forget(net, [1, 2, 3])
    assert next(net.module_.parameters()).is_cuda
    ref = net.retrain(start=before.forgetting_params())
    assert residual_fraction(net, before, ref) < 0.8
    blob = pickle.dumps(net)
    cpu = CpuUnpickler(blob)
    assert str(cpu.device) == "cpu"  # skorch sets a torch.device
    np.testing.assert_allclose(cpu.forgetting_params(), net.forgetting_params(), atol=1e-6)


def CpuUnpickler(blob):
    """Unpickle ``blob`` as a machine without CUDA would: skorch must map the
    net's CUDA state to the CPU, and says so with a DeviceWarning."""
    from skorch.exceptions import DeviceWarning

    real = torch.cuda.is_available
    try:
        torch.cuda.is_available = lambda: False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            net = pickle.loads(blob)
    finally:
        torch.cuda.is_available = real
    assert any(issubclass(w.category, DeviceWarning) for w in caught), "nothing was mapped"
    assert not any(p.is_cuda for p in net.module_.parameters())
    return net


def test_cpu_unpickler_maps_a_cuda_net_to_the_cpu(fitted):
    # Runs without a GPU: a net that says it lives on CUDA (its tensors are on the
    # CPU here) must come back on the CPU, with the same parameters.
    net = copy.deepcopy(fitted)
    net.device = "cuda"
    cpu = CpuUnpickler(pickle.dumps(net))
    assert str(cpu.device) == "cpu"  # skorch sets a torch.device
    np.testing.assert_array_equal(cpu.forgetting_params(), fitted.forgetting_params())
    with pytest.raises(AssertionError, match="nothing was mapped"):
        CpuUnpickler(pickle.dumps(fitted))  # a CPU net: nothing to map


@cuda
def test_cuda_matches_cpu_forget(digits):
    X, y = digits
    cpu = make_net().fit(X, y)
    gpu = copy.deepcopy(cpu)
    gpu.set_params(device="cuda")
    gpu.module_.to("cuda")
    gpu._objective_ = None
    quiet_forget(cpu, [4, 5])
    quiet_forget(gpu, [4, 5])
    np.testing.assert_allclose(gpu.forgetting_params(), cpu.forgetting_params(), atol=1e-4)
