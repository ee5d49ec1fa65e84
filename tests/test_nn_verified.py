"""Verified forgetting of networks: every forget is checked on the kept rows'
robust objective, corrected, logged, and keeps nothing of the model before it."""

import copy
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skorch")

from scipy.optimize import minimize
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skmuter import AdversarialLogisticRegression, AdversarialNet, metrics
from skmuter.attacks import FGSM, PGD, Penalized
from skmuter.forgetters import ForgetWarning

torch.set_num_threads(1)
N = 300


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:N] / 16).astype(np.float32), y[:N]


class ReluMLP(torch.nn.Sequential):
    def __init__(self):
        super().__init__(torch.nn.Linear(64, 24), torch.nn.ReLU(), torch.nn.Linear(24, 10))


class TanhMLP(torch.nn.Sequential):
    def __init__(self, hidden=16):
        super().__init__(torch.nn.Linear(64, hidden), torch.nn.Tanh(),
                         torch.nn.Linear(hidden, 10))


def quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForgetWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args)


@pytest.fixture(scope="module")
def body(digits):
    X, y = digits
    return AdversarialNet(ReluMLP, attack=PGD(epsilon=0.05, n_steps=3, clip=(0, 1)),
                          max_epochs=15, lr=0.1, polish=False, random_state=0,
                          verbose=0).fit(X, y)


def head(body, digits, attack):
    """The last layer on a frozen ReLU body (the paper's setting)."""
    X, y = digits
    net = AdversarialNet(copy.deepcopy(body.module_), attack=attack, alpha=1e-2,
                         train_params="forget", max_epochs=10, lr=0.1, random_state=0,
                         verbose=0)
    return quiet(net.fit, X, y)


ATTACKS = {"pgd": PGD(epsilon=0.05, n_steps=3, clip=(0, 1)), "fgsm": FGSM(epsilon=0.05)}


@pytest.fixture(scope="module")
def heads(body, digits):
    return {name: head(body, digits, attack) for name, attack in ATTACKS.items()}


@pytest.fixture(scope="module")
def penalized(digits):
    X, y = digits
    net = AdversarialNet(TanhMLP, attack=Penalized(gamma=2.0), alpha=1e-2, max_epochs=5,
                         lr=0.1, random_state=0, verbose=0)
    return quiet(net.fit, X, y)


def kept_value(net, theta, removed):
    obj = net.training_objective()[0]
    return obj.value(obj.published(theta), np.setdiff1d(np.arange(N), removed))


# ---- the check never makes the kept rows worse than doing nothing -------------------------
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_refine_never_raises_the_kept_objective_above_the_start(heads, name):
    net = heads[name]
    obj = net.training_objective()[0]
    start = net.forgetting_params()
    rng = np.random.default_rng(0)
    removed = rng.choice(N, 5, replace=False)
    rows = np.setdiff1d(np.arange(N), removed)
    f0 = obj.value(start, rows)
    # proposals far worse than the start (and the forgetter's own, unchecked step)
    raw = quiet(copy.deepcopy(net).set_params(forget_tol=None).forget, removed)
    proposals = [start + 0.5 * rng.standard_normal(obj.n_params), raw.forgetting_params()]
    assert obj.value(obj.published(proposals[0]), rows) > f0 + 1e-2  # a harmful step
    for theta in proposals:
        out, residual, steps = obj.refine(theta, rows, 1e-6, start=start)
        assert obj.value(out, rows) <= f0
        assert steps > 0
        assert residual == pytest.approx(obj.gradient_residual(out, rows), rel=1e-12)
        np.testing.assert_array_equal(out, obj.published(out))
    # and through forget, request after request
    u = copy.deepcopy(net)
    for req in ([3], [10, 11, 12, 13, 14], list(range(100, 130))):
        before = u.forgetting_params()
        quiet(u.forget, req)
        gone = u.forgotten_
        assert kept_value(u, u.forgetting_params(), gone) <= kept_value(u, before, gone)


def test_tol_none_only_measures(heads):
    net = heads["pgd"]
    obj = net.training_objective()[0]
    theta = net.forgetting_params() + 0.1
    out, residual, steps = obj.refine(theta, np.arange(1, N), None, start=theta - 0.1)
    np.testing.assert_array_equal(out, obj.published(theta))
    assert steps == 0 and residual == obj.gradient_residual(out, np.arange(1, N))


# ---- the log -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pgd", "penalized"])
def test_logged_residual_is_the_published_models(heads, penalized, name):
    net = copy.deepcopy(penalized if name == "penalized" else heads[name])
    assert net.forget_tol == 1e-6
    quiet(net.forget, [3, 40])
    quiet(net.partial_forget, [7, 11])
    for rec in net.forget_log_:
        assert rec["checked"] is True and rec["forget_tol"] == net.forget_tol
        assert rec["total_time"] >= rec["check_time"] > 0
    last = net.forget_log_[-1]
    assert last["optimality_residual"] == pytest.approx(metrics.gradient_residual(net),
                                                        rel=1e-12)
    assert net.optimality_residual_ == last["optimality_residual"]
    loaded = pickle.loads(pickle.dumps(net))  # recomputed from scratch: the same
    assert metrics.gradient_residual(loaded) == pytest.approx(last["optimality_residual"],
                                                              rel=1e-12)
    if name == "penalized":  # smooth: the tolerance is reached, and the bound is finite
        assert last["optimality_residual"] <= net.forget_tol
        assert 0 < last["retrain_distance_bound"] < np.inf
    else:  # a kink: no tolerance is reached and no bound exists
        assert last["optimality_residual"] > net.forget_tol
        assert last["retrain_distance_bound"] == np.inf


@pytest.mark.filterwarnings("ignore::skmuter.forgetters.ForgetWarning")
def test_unreached_tolerance_warns_and_none_skips_the_check(heads):
    net = copy.deepcopy(heads["pgd"])
    with pytest.warns(ConvergenceWarning, match="forget_tol"):
        net.forget([5])
    net = quiet(copy.deepcopy(heads["pgd"]).set_params(forget_tol=None).forget, [5])
    rec = net.forget_log_[-1]
    assert rec["checked"] is False and rec["optimality_residual"] is None


def test_bad_forget_tol_is_refused(digits):
    X, y = digits
    for bad in (0.0, -1.0, True, "1e-6"):
        with pytest.raises(ValueError, match="forget_tol"):
            AdversarialNet(ReluMLP, forget_tol=bad, max_epochs=1).fit(X, y)


# ---- the objective-gap fraction ------------------------------------------------------------
def test_objective_gap_fraction_follows_its_definition(heads):
    net = heads["pgd"]
    removed = list(range(0, N, 10))
    u = quiet(copy.deepcopy(net).forget, removed)
    ref = quiet(metrics.retrain, u)
    nothing = copy.deepcopy(u)
    nothing._write_theta(net.forgetting_params())  # the kept rows, the old parameters
    R = {k: kept_value(u, m.forgetting_params(), u.forgotten_)
         for k, m in {"u": u, "0": net, "r": ref}.items()}
    assert R["r"] < R["0"]  # the retrain lowers the kept rows' objective
    expected = (R["u"] - R["r"]) / (R["0"] - R["r"])
    assert metrics.objective_gap_fraction(u, net, ref) == pytest.approx(expected, rel=1e-12)
    assert metrics.objective_gap_fraction(ref, net, ref) == 0.0
    assert metrics.objective_gap_fraction(nothing, net, ref) == 1.0
    assert metrics.robust_objective(u) == R["u"]
    assert metrics.robust_objective(u, ref) == R["r"]
    assert np.isnan(metrics.objective_gap_fraction(u, ref, ref))


def test_objective_gap_fraction_of_a_one_vs_rest_linear_model():
    X, y = load_digits(n_class=3, return_X_y=True)
    est = AdversarialLogisticRegression(attack=PGD(epsilon=0.1, clip=(0, 16)),
                                        alpha=1e-2, forget_tol=None).fit(X, y)
    before = copy.deepcopy(est)
    removed = np.arange(0, 60, 2)
    est.forget(removed)
    ref = metrics.retrain(est)
    kept = np.setdiff1d(np.arange(len(X)), removed)

    def R(model):
        W = np.atleast_2d(model.coef_)
        return sum(o.value(np.append(W[k], model.intercept_[k]), kept)
                   for k, o in enumerate(est.training_objective()))

    assert len(est.training_objective()) == 3
    expected = (R(est) - R(ref)) / (R(before) - R(ref))
    assert metrics.objective_gap_fraction(est, before, ref) == pytest.approx(expected,
                                                                             rel=1e-9)
    assert abs(metrics.objective_gap_fraction(ref, before, ref)) < 1e-12


# ---- the retrain under a hard-ball attack --------------------------------------------------
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_retrain_reaches_the_fitted_models_value_on_the_kept_rows(heads, name):
    net = heads[name]
    assert net.converged_ is True
    removed = [1, 2, 3]
    probe = quiet(copy.deepcopy(net).set_params(forget_tol=None).forget, removed)
    ref = quiet(metrics.retrain, probe)  # from the initialisation, on the kept rows
    info = ref.retrain_info_
    assert info["converged"] and info["polish_steps"] > 0
    assert kept_value(net, ref.forgetting_params(), removed) <= kept_value(
        net, net.forgetting_params(), removed)
    assert info["value"] == kept_value(net, ref.forgetting_params(), removed)


# ---- the penalised attack against a retrain written without the library -------------------
def _reference_head(net, rows, theta0):
    """The penalised head objective in plain torch, minimised with scipy."""
    gamma, alpha = net.attack_.gamma, net.alpha
    first, second = net.module_[0], net.module_[2]
    A = first.weight.detach().double()
    c = first.bias.detach().double()
    X = torch.as_tensor(net._train_X[rows], dtype=torch.float64)
    y = torch.as_tensor(net._train_y[rows], dtype=torch.long)
    K, F = second.weight.shape
    warm = {"delta": torch.zeros_like(X)}

    def loss_rows(W, b, Z):
        return torch.nn.functional.cross_entropy(torch.tanh(Z @ A.T + c) @ W.T + b, y,
                                                 reduction="none")

    def objective(theta):
        th = torch.as_tensor(theta)
        W, b = th[:K * F].reshape(K, F), th[K * F:]
        delta = warm["delta"]
        for _ in range(500):  # fixed point of the inner maximum: grad = gamma delta
            d = delta.clone().requires_grad_(True)
            g, = torch.autograd.grad(loss_rows(W, b, X + d).sum(), d)
            new = g / gamma
            done = float((new - delta).abs().max()) < 1e-13
            delta = new
            if done:
                break
        warm["delta"] = delta
        th = th.clone().requires_grad_(True)
        W, b = th[:K * F].reshape(K, F), th[K * F:]
        value = (loss_rows(W, b, X + delta) - 0.5 * gamma * (delta ** 2).sum(1)).mean() \
            + 0.5 * alpha * (th ** 2).sum()
        grad, = torch.autograd.grad(value, th)
        return float(value), grad.numpy()

    res = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": 500, "gtol": 1e-11, "ftol": 0.0})
    assert np.linalg.norm(res.jac) < 1e-7
    return res.x


@pytest.mark.parametrize("n_removed", [1, 5, 30])
def test_penalized_forget_lands_on_an_independent_retrain(penalized, n_removed):
    net = penalized
    assert net.forget_names_ == ["2.weight", "2.bias"] and net.converged_
    removed = np.random.default_rng(n_removed).choice(N, n_removed, replace=False)
    kept = np.setdiff1d(np.arange(N), removed)
    before = net.forgetting_params()
    reference = _reference_head(net, kept, before)
    u = quiet(copy.deepcopy(net).forget, removed)
    nothing = np.linalg.norm(before - reference)
    assert nothing > 1e-3
    assert np.linalg.norm(u.forgetting_params() - reference) <= 0.01 * nothing
    # the library's own retrain agrees with the independent one
    ref = quiet(metrics.retrain, u)
    assert np.linalg.norm(ref.forgetting_params() - reference) <= 1e-3 * nothing


# ---- a fit that did not converge says so -----------------------------------------------------
@pytest.mark.filterwarnings("ignore::skmuter.forgetters.ForgetWarning")
def test_a_fit_that_stops_short_warns_and_so_does_forgetting_from_it():
    X, y = load_digits(return_X_y=True)
    X, y = (X[:200] / 16).astype(np.float32), y[:200]
    # gamma just above the input curvature of the loss: the ascent converges at the
    # solution, but the objective is too curved around it for the polish
    net = AdversarialNet(TanhMLP, attack=Penalized(gamma=10.0), alpha=1e-3, max_epochs=40,
                         lr=0.5, random_state=0, verbose=0)
    with pytest.warns(ConvergenceWarning, match="stopped at a gradient norm") as caught:
        net.fit(X, y)
    assert any("raise gamma" in str(w.message) for w in caught)
    assert net.polish_info_["attack_converged"] is True
    assert net.polish_info_["gradient_norm"] > 1e-3
    assert net.converged_ is False and net.polish_info_["converged"] is False
    with pytest.warns(ConvergenceWarning, match="no exact reference") as caught:
        net.forget([0])
    message = next(str(w.message) for w in caught if "no exact reference" in str(w.message))
    assert "gamma" in message and "alpha" in message


def test_a_converged_fit_forgets_without_that_warning(penalized):
    assert penalized.converged_ is True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForgetWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        copy.deepcopy(penalized).forget([0])


# ---- nothing of the model before the forget stays ----------------------------------------
def _arrays(obj, seen=None):
    """Every numpy array and torch tensor reachable from ``obj``."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f":
            yield obj
        elif obj.dtype == object:
            for item in obj.ravel():
                yield from _arrays(item, seen)
        return
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point():
            yield obj.detach().cpu().double().numpy()
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _arrays(key, seen)
            yield from _arrays(value, seen)
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            yield from _arrays(item, seen)
        return
    if isinstance(obj, (str, bytes, int, float, complex, type(None))):
        return
    if isinstance(obj, torch.nn.Module):
        for tensor in obj.state_dict().values():
            yield from _arrays(tensor, seen)
    for name in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, name):
            yield from _arrays(getattr(obj, name), seen)
    if hasattr(obj, "__dict__"):
        yield from _arrays(vars(obj), seen)


def _holds(arrays, targets):
    def close(a, t):
        return a.size == t.size and np.allclose(a.ravel(), t.ravel(), rtol=1e-6,
                                                atol=1e-7 * np.abs(t).max())
    return [t_name for a in arrays for t_name, t in targets.items() if close(a, t)]


@pytest.mark.parametrize("name", ["pgd", "penalized"])
def test_no_copy_of_the_model_before_the_forget_stays(heads, penalized, name):
    net = copy.deepcopy(penalized if name == "penalized" else heads[name])
    before = net.forgetting_params()
    obj = net.training_objective()[0]
    removed = np.arange(0, 60)
    grads = obj.per_sample_grads(before, removed)
    K = net.module_[2].weight.shape[0]
    F = net.module_[2].weight.shape[1]
    targets = {"theta": before, "weight": before[:K * F], "bias": before[K * F:],
               "removed gradient sum": grads.sum(0)}
    targets.update({f"gradient of row {r}": g for r, g in zip(removed[:10], grads)})
    targets.update({f"weight gradient of row {r}": g[:K * F]
                    for r, g in zip(removed[:10], grads)})
    quiet(net.forget, removed)
    assert np.linalg.norm(net.forgetting_params() - before) > 1e-3 * np.linalg.norm(before)
    assert not _holds(list(_arrays(pickle.loads(pickle.dumps(net)))), targets)
    assert not _holds(list(_arrays(net.__dict__)), targets)  # the live caches too
    # the forgotten rows' inputs and cached worst cases are gone
    assert not np.any(net._train_X[removed])
    live = net._objective_.attack_points._adv_cache
    assert len(live) == 1 and not any(int(r) in store for store, _ in live.values()
                                      for r in removed)
