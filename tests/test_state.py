"""State never ends up half-changed: atomic forget and fit, read-only (memory-mapped)
models, concurrent forgets, parameters changed after fit, index validation, forgetting
by pandas label, and fault injection in every stage of a forget."""

import copy
import pickle
import threading

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

from skmuter import AdversarialLogisticRegression, AdversarialRidgeClassifier
from skmuter._forgetting import ForgetMixin
from skmuter.attacks import PGD
from skmuter.certified import CertifiedRemoval
from skmuter.forgetters._newton import _NewtonType
from skmuter.linear._base import BaseAdversarialLinear
from skmuter.metrics import retrain


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(n_class=2, return_X_y=True)
    return X[:120] / 16.0, y[:120]


def _logistic():
    return AdversarialLogisticRegression(attack=PGD(0.1, clip=(0, 1)), alpha=1e-2)


def _certified():
    return AdversarialLogisticRegression(attack=PGD(norm=2, epsilon=0.5), alpha=1e-2,
                                         random_state=0,
                                         certified=CertifiedRemoval(noise=1.0))


MAKERS = {
    "logistic": _logistic,
    "ridge": lambda: AdversarialRidgeClassifier(attack=PGD(0.1, clip=(0, 1)), alpha=1e-2),
    "certified": _certified,
}


@pytest.fixture(scope="module", params=list(MAKERS))
def fitted(request, data):
    return request.param, MAKERS[request.param]().fit(*data)


def _same_result(a, b):
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-10)
    np.testing.assert_array_equal(a.forgotten_, b.forgotten_)
    assert len(a.forget_log_) == len(b.forget_log_)


# ---- 7. fault injection ---------------------------------------------------------------
class Injected(RuntimeError):
    pass


def _raise(*args, **kwargs):
    raise Injected("injected")


def _after(original):
    def wrapper(*args, **kwargs):
        original(*args, **kwargs)
        raise Injected("injected")
    return wrapper


STAGES = {
    # memory build (fresh estimators only: a cached memory is not rebuilt)
    "prepare": (_NewtonType, "prepare", lambda f: _raise),
    "solve": (_NewtonType, "_solve", lambda f: _raise),
    # the forgetter updated its memory, then fails
    "update": (_NewtonType, "forget", _after),
    "certify": (CertifiedRemoval, "residuals", lambda f: _raise),
    # the parameters are published, then the commit fails
    "commit": (BaseAdversarialLinear, "_set_thetas", _after),
    "purge": (BaseAdversarialLinear, "_purge", _after),
    "purge_index": (ForgetMixin, "_purge_index", _after),
    # everything committed, then a failure
    "end": (ForgetMixin, "_commit", _after),
}


@pytest.mark.filterwarnings("ignore::skmuter.forgetters.ForgetWarning")
@pytest.mark.parametrize("history", ["fresh", "after_one_forget"])
@pytest.mark.parametrize("method", ["forget", "partial_forget"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_a_fault_in_any_stage_changes_nothing(fitted, stage, method, history, monkeypatch):
    name, est = fitted
    if stage == "certify" and name != "certified":
        pytest.skip("no certificate to check")
    if stage == "prepare" and history != "fresh":
        pytest.skip("the memory is cached")
    est = copy.deepcopy(est)
    if history != "fresh":
        est.forget([5])
    reference = getattr(copy.deepcopy(est), method)([10, 20])
    before = pickle.dumps(est)
    cls, attr, make = STAGES[stage]
    with monkeypatch.context() as m:
        m.setattr(cls, attr, make(getattr(cls, attr)))
        with pytest.raises(Injected):
            getattr(est, method)([10, 20])
    assert pickle.dumps(est) == before
    # a retry removes the rows once, as a clean call does
    _same_result(getattr(est, method)([10, 20]), reference)


# ---- 1. read-only (memory-mapped) models --------------------------------------------
@pytest.mark.parametrize("name", ["logistic", "certified"])
def test_a_memory_mapped_model_forgets_by_copy_on_write(data, tmp_path, name):
    est = MAKERS[name]().fit(*data).forget([1])
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    loaded = joblib.load(path, mmap_mode="r")
    assert not loaded._X.flags.writeable  # really memory-mapped
    expected = copy.deepcopy(est).forget([3, 4])
    _same_result(loaded.forget([3, 4]), expected)
    assert not np.any(loaded._X[[3, 4]])  # purged in the private copy
    assert pickle.loads(pickle.dumps(loaded)).forgotten_.tolist() == [1, 3, 4]
    # the file is untouched: loading again gives the state before the forget
    again = joblib.load(path, mmap_mode="r")
    assert again.forgotten_.tolist() == [1]
    _same_result(again.forget([3, 4]), expected)


def test_a_failed_purge_then_a_retry_removes_the_row_once(data, monkeypatch):
    est = _logistic().fit(*data)
    reference = copy.deepcopy(est).forget([7])
    with monkeypatch.context() as m:
        m.setattr(BaseAdversarialLinear, "_purge", _raise)
        with pytest.raises(Injected):
            est.forget([7])
    assert est.forgotten_.size == 0 and est.forget_log_ == []
    _same_result(est.forget([7]), reference)


# ---- 2. atomic fit ------------------------------------------------------------------
def _fail_solver(monkeypatch):
    import skmuter.linear._base as base

    monkeypatch.setattr(base, "solve_exact", _raise)


def test_a_failed_refit_keeps_the_previous_fit(data, monkeypatch):
    X, y = data
    est = _logistic().fit(X, y)
    before = pickle.dumps(est)
    y3 = np.arange(len(y)) % 3  # classes_ of the failed call would have 3 entries
    _fail_solver(monkeypatch)
    with pytest.raises(Injected):
        est.fit(X, y3)
    assert pickle.dumps(est) == before
    assert est.classes_.tolist() == [0, 1]
    est.predict(X)  # no IndexError


def test_a_failed_first_fit_leaves_the_estimator_unfitted(data, monkeypatch):
    est = _logistic()
    before = pickle.dumps(est)
    _fail_solver(monkeypatch)
    with pytest.raises(Injected):
        est.fit(*data)
    assert pickle.dumps(est) == before
    with pytest.raises(NotFittedError):
        est.predict(data[0])


def test_a_certified_fit_that_fails_certification_leaves_the_previous_state(data):
    X, y = data
    unfitted = _certified().set_params(solver="sgd", max_iter=1,
                                       certified=CertifiedRemoval(noise=1e-6))
    with pytest.raises(ValueError, match="budget"):
        unfitted.fit(X, y)
    with pytest.raises(NotFittedError):
        unfitted.forget([0])
    est = _certified().fit(X, y)
    certificate = copy.deepcopy(est.certificate_)
    est.set_params(solver="sgd", max_iter=1, certified=CertifiedRemoval(noise=1e-6))
    before = pickle.dumps(est)
    with pytest.raises(ValueError, match="budget"):
        est.fit(X, y)
    assert pickle.dumps(est) == before
    assert est.certificate_ == certificate
    est.set_params(solver="exact", max_iter=None, certified=CertifiedRemoval(noise=1.0))
    assert est.forget([0]).certificate_["spent"] <= 1


def test_a_failed_net_fit_keeps_the_previous_fit(monkeypatch):
    torch = pytest.importorskip("torch")
    from skmuter import AdversarialNet

    X, y = load_digits(n_class=3, return_X_y=True)
    X = (X[:90] / 16).astype("float32")
    y = y[:90]
    module = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.Tanh(),
                                 torch.nn.Linear(8, 3))
    net = AdversarialNet(module, attack=PGD(0.05, n_steps=2, clip=(0, 1)), max_epochs=2,
                         lr=0.05, random_state=0, polish_max_iter=20, verbose=0)
    with monkeypatch.context() as m:  # unfitted stays unfitted
        m.setattr(AdversarialNet, "_finish_training", _raise)
        with pytest.raises(Injected):
            net.fit(X, y)
    assert not hasattr(net, "n_train_")
    net.fit(X, y)
    theta = net.forgetting_params().copy()
    weights = {k: v.clone() for k, v in net.module_.state_dict().items()}
    proba = net.predict_proba(X)
    with monkeypatch.context() as m:
        m.setattr(AdversarialNet, "_finish_training", _raise)
        with pytest.raises(Injected):
            net.fit(X, (y + 1) % 3)  # trains (in place) then fails
    np.testing.assert_array_equal(net.forgetting_params(), theta)
    for k, v in net.module_.state_dict().items():
        assert torch.equal(v, weights[k]), k
    np.testing.assert_array_equal(net.predict_proba(X), proba)
    assert net.classes_.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"\['alpha'\] changed since fit"):
        net.set_params(alpha=1e-2).forget([0])


# ---- 3. threads -----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["forget", "partial_forget"])
def test_concurrent_forgets_equal_sequential_ones(data, method):
    est = _logistic().fit(*data)
    sequential = copy.deepcopy(est)
    rows = [3, 11, 19, 27, 35, 43]
    for r in rows:
        getattr(sequential, method)([r])
    barrier = threading.Barrier(len(rows))
    errors = []

    def work(r):
        barrier.wait()
        try:
            getattr(est, method)([r])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in rows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    np.testing.assert_allclose(est.coef_, sequential.coef_, atol=1e-8)
    np.testing.assert_array_equal(est.forgotten_, sequential.forgotten_)
    assert len(est.forget_log_) == len(sequential.forget_log_) == len(rows)
    assert [r["request"] for r in est.forget_log_] == list(range(len(rows)))
    # the lock is not part of the state
    assert pickle.loads(pickle.dumps(est)).forget([50]).forgotten_.size == len(rows) + 1


# ---- 4. parameters take effect at the next fit ----------------------------------------
@pytest.mark.parametrize("params", [
    {"alpha": 1.0}, {"attack": PGD(0.3, clip=(0, 1))}, {"fit_intercept": False},
    {"tol": 1e-4}, {"attack": "fgsm"},
])
def test_forget_refuses_after_a_parameter_changed(data, params):
    est = _logistic().fit(*data)
    fitted = dict(est.get_params(deep=False))
    est.set_params(**params)
    before = pickle.dumps(est)
    name = next(iter(params))
    for call in (est.forget, est.partial_forget, est.check_forget_request):
        with pytest.raises(ValueError, match=rf"\['{name}'\] changed since fit; refit first"):
            call([0])
    assert pickle.dumps(est) == before
    est.set_params(**{name: fitted[name]})  # set back: forgetting works again
    est.forget([0])


def test_nested_and_in_place_attack_changes_are_seen(data):
    est = _logistic().fit(*data)
    est.attack.set_params(epsilon=0.3)  # the user's object, changed in place
    with pytest.raises(ValueError, match="attack"):
        est.forget([0])
    est.attack.set_params(epsilon=0.1)
    est.forget([0])


def test_free_parameters_and_equal_values_do_not_refuse(data):
    est = AdversarialLogisticRegression(alpha=1e-2).fit(*data)  # attack='pgd'
    est.set_params(verbose=1, forgetter="newton", attack=PGD(), alpha=np.float64(1e-2))
    est.forget([0])
    assert est.forgetter_.label() == "newton"


def test_retrain_uses_the_fitted_parameters(data):
    est = _logistic().fit(*data).forget([1, 2])
    reference = retrain(est)
    est.set_params(alpha=1.0, attack=PGD(0.3, clip=(0, 1)))
    again = retrain(est)
    np.testing.assert_allclose(again.coef_, reference.coef_, atol=1e-10)
    assert again.alpha == 1e-2 and again.attack.epsilon == 0.1


# ---- 5. index messages ----------------------------------------------------------------
BAD = {
    "huge_int": ([2**70], IndexError, r"out of range.*1180591620717411303424"),
    "huge_scalar": (2**70, IndexError, "out of range"),
    "uint64": (np.array([2**64 - 1], dtype=np.uint64), IndexError,
               r"out of range.*18446744073709551615"),
    "negative": ([-3], IndexError, "negative positions"),
    "fraction": ([1.5, 2.0], TypeError, r"non-integer values \[1.5\]"),
    "whole_floats": (np.array([1.0, 2.0]), TypeError, "floats.*dtype=int"),
    "nan": ([np.nan], TypeError, "non-integer"),
    "strings": (["a", "b"], TypeError, "by='label'"),
    "string": ("abc", TypeError, "the string 'abc'"),
    "mixed_int_str": ([1, "a"], TypeError, r"\['a'\]"),
    "mixed_bool_int": ([True, 2], TypeError, "mixes booleans and integers"),
    "single_bool": (True, TypeError, "single boolean"),
    "none": (None, TypeError, "got None"),
    "none_in_list": ([1, None], TypeError, "None"),
    "set": ({1, 2}, TypeError, "unordered"),
    "ragged": ([[1], [2, 3]], ValueError, "1-D"),
    "short_mask": (np.ones(5, dtype=bool), ValueError, "one entry per training row"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_each_bad_request_says_what_is_wrong(data, case):
    est = _logistic().fit(*data)
    before = pickle.dumps(est)
    request, exc, match = BAD[case]
    with pytest.raises(exc, match=match):
        est.forget(request)
    assert pickle.dumps(est) == before


@pytest.mark.parametrize("request_", [
    np.array([3, 8], dtype=np.uint64), np.array([3, 8], dtype=np.int8), [np.int16(3), 8],
    np.uint8(3), (3, 8), [False] * 3 + [True] + [False] * 116,
])
def test_integers_of_any_type_are_accepted(data, request_):
    est = _logistic().fit(*data)
    expected = [3, 8] if np.size(request_) == 2 else [3]
    assert est.forget(request_).forgotten_.tolist() == expected


# ---- 6. forget by pandas index label ------------------------------------------------
@pytest.fixture(scope="module")
def frame(data):
    X, y = data
    labels = [f"secret-user-{i:03d}" for i in range(len(X))][::-1]
    return pd.DataFrame(X, index=labels), pd.Series(y, index=labels)


def test_forget_by_label_removes_the_labelled_row(data, frame):
    Xf, yf = frame
    est = _logistic().fit(Xf, yf)
    label = "secret-user-003"  # at position len - 4
    pos = Xf.index.get_loc(label)
    assert pos == len(Xf) - 4
    by_pos = copy.deepcopy(est).forget([pos])
    _same_result(est.forget([label], by="label"), by_pos)
    # the default stays by position
    assert _logistic().fit(Xf, yf).forget([3]).forgotten_.tolist() == [3]
    # a reversed integer index: label 0 is the last row
    Xi = pd.DataFrame(data[0], index=np.arange(len(Xf))[::-1])
    est_i = _logistic().fit(Xi, data[1])
    assert est_i.forget([0], by="label").forgotten_.tolist() == [len(Xf) - 1]
    assert est_i.partial_forget(np.int64(5), by="label").forgotten_.tolist() == \
        [len(Xf) - 6, len(Xf) - 1]


@pytest.mark.parametrize("make_index", [
    lambda n: pd.MultiIndex.from_tuples([(f"shop-{i % 3}", i) for i in range(n)]),
    lambda n: pd.to_datetime(np.arange(n), unit="D"),
    lambda n: pd.Index(np.arange(n) * 0.5),
])
def test_labels_of_any_index_kind_name_their_row(data, make_index):
    # a MultiIndex's labels are its tuples (kept whole, one per row), dates and
    # floats are labels too; a label names its row, once
    X, y = data
    index = make_index(len(X))
    est = _logistic().fit(pd.DataFrame(X, index=index), pd.Series(y, index=index))
    est.forget([index[7], index[2]], by="label")
    assert est.forgotten_.tolist() == [2, 7]
    with pytest.raises(KeyError, match="not among the remaining"):
        est.forget([index[7]], by="label")


def test_the_forgotten_labels_leave_the_state(frame):
    Xf, yf = frame
    est = _logistic().fit(Xf, yf).partial_forget(["secret-user-017", "secret-user-042"],
                                                 by="label")
    blob = pickle.dumps(est)
    assert b"secret-user-017" not in blob and b"secret-user-042" not in blob
    assert b"secret-user-018" in blob
    est = pickle.loads(blob)
    with pytest.raises(KeyError, match="secret-user-017"):
        est.forget(["secret-user-017"], by="label")


def test_bad_label_requests(data, frame):
    Xf, yf = frame
    est = _logistic().fit(Xf, yf)
    before = pickle.dumps(est)
    with pytest.raises(KeyError, match="'nobody'"):
        est.forget(["secret-user-001", "nobody"], by="label")
    with pytest.raises(ValueError, match="duplicate labels"):
        est.forget(["secret-user-001", "secret-user-001"], by="label")
    with pytest.raises(ValueError, match="empty"):
        est.forget([], by="label")
    with pytest.raises(ValueError, match="by must be"):
        est.forget([1], by="name")
    assert pickle.dumps(est) == before
    plain = _logistic().fit(*data)
    with pytest.raises(ValueError, match="fitted on a pandas DataFrame"):
        plain.forget([1], by="label")
    # a refit on an array forgets the old index
    with pytest.raises(ValueError, match="fitted on a pandas DataFrame"):
        copy.deepcopy(est).fit(*data).forget(["secret-user-001"], by="label")
    dup = pd.DataFrame(data[0], index=[i // 2 for i in range(len(data[0]))])
    with pytest.raises(ValueError, match="several training rows"):
        _logistic().fit(dup, data[1]).forget([3], by="label")
