import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.base import clone

from skmuter._losses import LogisticLoss, SquaredLoss
from skmuter.attacks import FGSM, PGD, Threat, resolve_attack
from skmuter.linear._worst_case import bind


def _problem(seed=0, n=40, d=6, box=True):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, size=(n, d)) if box else rng.normal(size=(n, d))
    w = rng.normal(size=d)
    w[1] = 0.0
    b = 0.3
    y = np.where(rng.uniform(size=n) > 0.5, 1.0, -1.0)
    return X, y, w, b


@pytest.mark.parametrize("norm", ["inf", 2])
@pytest.mark.parametrize("clip", [None, (0.0, 1.0)])
@pytest.mark.parametrize("loss", [LogisticLoss, SquaredLoss])
def test_pgd_never_beats_exact_worst_case(norm, clip, loss):
    X, y, w, b = _problem(box=True)
    eps = 0.3 if norm == "inf" else 0.6
    threat = Threat(eps, norm, clip, X.shape[1])
    bound = bind(threat, X)
    z = X @ w + b
    up, down = bound.shifts(w)
    s = loss.direction(z, y, up, down)
    exact = loss.value(z + s * np.where(s > 0, up, down), y)
    for attack in (PGD(eps, norm=norm, clip=clip, n_steps=30, random_state=0),
                   FGSM(eps, norm=norm, clip=clip, random_start=True, random_state=1)):
        X_adv = attack.perturb(X, y, lambda Xa, ya: loss.d1(Xa @ w + b, ya)[:, None] * w)
        found = loss.value(X_adv @ w + b, y)
        assert np.all(found <= exact + 1e-12)
        delta = X_adv - X
        if norm == "inf":
            assert np.abs(delta).max() <= eps + 1e-12
        else:
            assert np.linalg.norm(delta, axis=1).max() <= eps + 1e-12
        if clip is not None:
            assert X_adv.min() >= 0 and X_adv.max() <= 1
    # PGD with enough steps reaches the exact answer on a linear model (logistic:
    # the direction never changes, so l_inf sign steps end at the corner).
    if loss is LogisticLoss and norm == "inf":
        X_adv = PGD(eps, norm=norm, clip=clip, n_steps=50, step_size=eps / 10,
                    random_start=False).perturb(
            X, y, lambda Xa, ya: loss.d1(Xa @ w + b, ya)[:, None] * w)
        np.testing.assert_allclose(loss.value(X_adv @ w + b, y), exact, rtol=1e-10)


def test_l2_box_worst_case_matches_constrained_optimiser():
    X, _, w, _ = _problem(seed=3, n=8, d=5)
    eps = 0.4
    bound = bind(Threat(eps, 2, (0, 1), 5), X)
    s = np.where(np.arange(8) % 2, 1.0, -1.0)
    delta = bound.delta(w, s)
    for i in range(8):
        u = s[i] * w
        res = minimize(lambda d, u=u: -u @ d, np.zeros(5), method="SLSQP",
                       bounds=list(zip(-X[i], 1 - X[i])),
                       constraints=[{"type": "ineq", "fun": lambda d: eps**2 - d @ d}],
                       options={"ftol": 1e-14, "maxiter": 500})
        assert u @ delta[i] == pytest.approx(-res.fun, abs=1e-7)
        assert np.linalg.norm(delta[i]) <= eps + 1e-12
        assert np.all(X[i] + delta[i] >= -1e-12) and np.all(X[i] + delta[i] <= 1 + 1e-12)


def test_linf_exact_delta_without_box_is_signed_epsilon():
    X, y, w, _ = _problem(box=False)
    bound = bind(Threat(0.2, "inf"), X)
    delta = bound.delta(w, -y)
    expected = -0.2 * y[:, None] * np.sign(w)[None, :]
    np.testing.assert_allclose(delta, expected)
    up, _ = bound.shifts(w)
    np.testing.assert_allclose(up, 0.2 * np.abs(w).sum())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epsilon": -0.1}, "epsilon"),
        ({"epsilon": float("nan")}, "epsilon"),
        ({"epsilon": 0.1, "norm": 3}, "norm"),
        ({"epsilon": 0.1, "step_size": 0.2}, "step_size"),
        ({"epsilon": 0.1, "clip": (1, 0)}, "inverted"),
        ({"epsilon": 0.1, "clip": (np.zeros(3), np.ones(4))}, "clip"),
        ({"epsilon": 0.1, "clip": 5}, "clip"),
        ({"epsilon": 0.1, "n_steps": 0}, "n_steps"),
    ],
)
def test_attack_validation_errors(kwargs, match):
    X = np.full((2, 4), 0.5)
    with pytest.raises((ValueError, TypeError), match=match):
        PGD(**kwargs).perturb(X, np.ones(2), lambda Xa, ya: np.ones_like(Xa))


def test_inputs_outside_clip_are_refused():
    X = np.array([[0.5, 1.5]])
    with pytest.raises(ValueError, match="outside clip"):
        PGD(0.1, clip=(0, 1)).perturb(X, np.ones(1), lambda Xa, ya: np.ones_like(Xa))


def test_attacks_are_cloneable_parameter_objects():
    attack = PGD(epsilon=0.3, clip=(0, 1), random_state=0)
    twin = clone(attack)
    assert twin.get_params() == attack.get_params() and twin is not attack
    assert isinstance(resolve_attack("fgsm"), FGSM)
    with pytest.raises(ValueError, match="attack"):
        resolve_attack("cw")
    with pytest.raises(TypeError, match="attack"):
        resolve_attack(0.3)


def test_seeded_random_start_is_reproducible():
    X = np.full((3, 4), 0.5)
    grad = lambda Xa, ya: np.ones_like(Xa)
    a = PGD(0.1, n_steps=1, random_state=7).perturb(X, np.ones(3), grad)
    b = PGD(0.1, n_steps=1, random_state=7).perturb(X, np.ones(3), grad)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", [PGD, FGSM])
@pytest.mark.parametrize("value", [0, 0.0, -0.05, float("nan"), float("inf"), True])
def test_step_size_must_be_positive(cls, value):
    # a zero step leaves every input where it is: robust accuracy would be clean accuracy
    X = np.full((2, 4), 0.5)
    with pytest.raises(ValueError, match="'step_size' parameter of"):
        cls(epsilon=0.1, step_size=value).perturb(X, np.ones(2), lambda Xa, ya: np.ones_like(Xa))


@pytest.mark.parametrize("kwargs", [{"n_steps": True}, {"n_steps": 0}, {"epsilon": float("inf")}])
def test_degenerate_attack_parameters_are_refused(kwargs):
    X = np.full((2, 4), 0.5)
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"'{name}' parameter of PGD"):
        PGD(**kwargs).perturb(X, np.ones(2), lambda Xa, ya: np.ones_like(Xa))


@pytest.mark.parametrize("cls", [PGD, FGSM])
def test_zero_epsilon_is_no_attack(cls):
    X = np.full((2, 4), 0.5)
    out = cls(epsilon=0.0).perturb(X, np.ones(2), lambda Xa, ya: np.ones_like(Xa))
    np.testing.assert_array_equal(out, X)


def test_fit_refuses_a_zero_step():
    from skmuter import AdversarialLogisticRegression

    X = np.random.default_rng(0).random((20, 3))
    y = np.r_[np.zeros(10, int), np.ones(10, int)]
    with pytest.raises(ValueError, match="step_size"):
        AdversarialLogisticRegression(attack=FGSM(0.1, step_size=0), solver="sgd").fit(X, y)


def test_sparse_inputs_checked_against_clip():
    from scipy import sparse

    threat = Threat(0.1, "inf", ([0.1, -1.0, 0.0], [1.0, 1.0, 1.0]), 3)
    inside = np.array([[0.5, 0.0, 1.0], [0.5, 0.0, 0.0]])
    threat.check_inside(sparse.csr_matrix(inside))
    # an implicit zero in column 0 lies below its lower bound 0.1
    for bad in (np.array([[0.5, 0.0, 1.0], [0.0, 0.0, 1.0]]), inside + [0, 0, 0.5]):
        with pytest.raises(ValueError, match="outside clip"):
            threat.check_inside(sparse.csr_matrix(bad))
        with pytest.raises(ValueError, match="outside clip"):
            threat.check_inside(bad)
