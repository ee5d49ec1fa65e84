"""Property-based tests of forgetting on small random robust logistic problems.

Each example draws a problem (n in [30, 80] rows, d in [2, 5] features, an
l_inf or l_2 ball of radius epsilon in [0, 0.3], inputs in [0, 1] with
``clip=(0, 1)`` or Gaussian inputs without a box, with or without intercept),
fits ``AdversarialLogisticRegression`` exactly (``alpha=1e-2``, so that the
problem is strongly convex and the retrain is unique), and draws 1-3 rows to
forget.
"""

import copy
import pickle
import warnings

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from skmuter import AdversarialLogisticRegression
from skmuter.attacks import PGD
from skmuter.metrics import parameter_distance, residual_fraction, retrain

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# MUter takes one Newton step from the fitted point with the exact total Hessian.
# Its error against the exact retrain is second order in the parameter change while
# the change itself is first order, so the residual fraction is about C * k / n with
# k / n <= 3 / 30 here. That holds where the robust loss is smooth along the way:
# the retrain keeps the fitted zero weights (no support change), and the worst case
# is in closed form (no box, or an l_inf ball in the box). Measured on 1000 problems
# drawn uniformly from this space (4 seeds), those regular cases (627) have median
# 0.02, 99th percentile 0.15 and maximum 0.20; the tolerance is 2.5 times that
# maximum. Outside them (support changes; l_2 balls cut by the box faces) the one
# step is only piecewise valid and the fraction reached 2.0 (MUter further from the
# retrain than doing nothing); those examples are not part of this property.
RESIDUAL_TOL = 0.5


@st.composite
def problems(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(30, 80))
    d = draw(st.integers(2, 5))
    epsilon = draw(st.floats(0.0, 0.3))
    norm = draw(st.sampled_from(["inf", 2]))
    boxed = draw(st.booleans())
    fit_intercept = draw(st.booleans())
    k = draw(st.integers(1, 3))
    return seed, n, d, epsilon, norm, boxed, fit_intercept, k


def _build(seed, n, d, epsilon, norm, boxed, fit_intercept, k):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d)) if boxed else rng.normal(size=(n, d))
    score = (X - X.mean(axis=0)) @ rng.normal(size=d) + 0.5 * rng.normal(size=n)
    y = (score > np.median(score)).astype(int)  # both classes, >= 15 rows each
    attack = PGD(epsilon=epsilon, norm=norm, clip=(0, 1) if boxed else None)
    est = AdversarialLogisticRegression(alpha=1e-2, attack=attack, fit_intercept=fit_intercept)
    est.fit(X, y)
    rows = rng.choice(n, size=k + 3, replace=False)
    return est, X, y, rows


def _params(est):
    return np.concatenate([np.ravel(est.coef_), np.ravel(est.intercept_)])


def _assert_same(a, b, rtol=1e-8, atol=0.0):
    pa, pb = _params(a), _params(b)
    scale = max(np.linalg.norm(pa), np.linalg.norm(pb), 1e-12)
    assert np.linalg.norm(pa - pb) <= rtol * scale + atol, (pa, pb)


def _muter_residual_fraction(p, with_regularity=False):
    """Residual fraction of MUter; nan when the retrain equals the fitted model
    (to rounding) and MUter also stays there. With ``with_regularity``, also
    whether the example is regular (see ``RESIDUAL_TOL``)."""
    est, _, _, rows = _build(*p)
    before = copy.deepcopy(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.forget(rows[: p[-1]])
    reference = retrain(est)
    if parameter_distance(before, reference) < 1e-10:
        frac = np.nan if parameter_distance(est, reference) < 1e-10 else np.inf
    else:
        frac = residual_fraction(est, before, reference)
    if not with_regularity:
        return frac
    _, _, _, _, norm, boxed, _, _ = p
    same_support = np.array_equal(before.coef_ == 0, reference.coef_ == 0)
    return frac, same_support and not (norm == 2 and boxed)


@SETTINGS
@given(p=problems())
def test_muter_close_to_exact_retrain(p):
    frac, regular = _muter_residual_fraction(p, with_regularity=True)
    assume(regular)
    # nan: the removed rows do not move the optimum at all (do-nothing is exact)
    assert np.isnan(frac) or frac < RESIDUAL_TOL, (p, frac)


def test_muter_at_zero_weights_l2_minimal_example():
    # Found by the property above: 30 rows, 2 features in [0, 1], clip=(0, 1),
    # PGD(epsilon=0.3, norm=2), no intercept, forget one row.
    frac = _muter_residual_fraction((30, 30, 2, 0.3, 2, True, False, 1))
    assert np.isnan(frac) or frac < RESIDUAL_TOL, frac


@SETTINGS
@given(p=problems(), split=st.integers(1, 3))
def test_forget_union_equals_successive_partial_forgets(p, split):
    est, _, _, rows = _build(*p)
    a, b = rows[:split], rows[split:split + p[-1]]
    one = copy.deepcopy(est)
    two = copy.deepcopy(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one.forget(np.r_[a, b])
        two.partial_forget(a)
        two.partial_forget(b)
    # both are checked to forget_tol: they agree within their distance bounds
    bound = one.forget_log_[-1]["retrain_distance_bound"] + two.forget_log_[-1][
        "retrain_distance_bound"]
    _assert_same(one, two, rtol=1e-7, atol=bound + 1e-12)
    np.testing.assert_array_equal(one.forgotten_, two.forgotten_)


@SETTINGS
@given(p=problems(), split=st.integers(1, 3))
def test_pickle_round_trip_mid_sequence(p, split):
    est, _, _, rows = _build(*p)
    a, b = rows[:split], rows[split:split + p[-1]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_forget(a)
        restored = pickle.loads(pickle.dumps(est))
        est.partial_forget(b)
        restored.partial_forget(b)
    _assert_same(est, restored, rtol=1e-12)
    np.testing.assert_array_equal(est.forgotten_, restored.forgotten_)
    np.testing.assert_array_equal(est._X, restored._X)  # the same rows purged
    untimed = [{k: v for k, v in r.items() if not k.endswith("_time")} for r in est.forget_log_]
    assert untimed == [{k: v for k, v in r.items() if not k.endswith("_time")}
                       for r in restored.forget_log_]


@SETTINGS
@given(p=problems(), forget_first=st.booleans())
def test_prediction_never_mutates_state(p, forget_first):
    est, X, y, rows = _build(*p)
    if forget_first:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.forget(rows[:1])
    state = pickle.dumps(est)
    est.predict(X)
    est.decision_function(X)
    est.predict_proba(X)
    est.score(X, y)
    est.robust_score(X, y)
    est.robust_score(X, y, attack=PGD(epsilon=0.1, clip=(0, 1) if p[5] else None))
    assert pickle.dumps(est) == state
