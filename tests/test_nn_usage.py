"""AdversarialNet used as a PyTorch / skorch user uses it: callbacks, validation splits,
datasets and tensors, devices, input checks, grid searches."""

import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
skorch = pytest.importorskip("skorch")

from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import EpochScoring
from skorch.dataset import Dataset, ValidSplit

from skmuter import AdversarialNet
from skmuter.attacks import PGD
from skmuter.forgetters import ForgetWarning

torch.set_num_threads(1)


class TinyMLP(torch.nn.Sequential):
    def __init__(self, n_in=64, n_out=2):
        super().__init__(torch.nn.Linear(n_in, 8), torch.nn.ReLU(), torch.nn.Linear(8, n_out))


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(n_class=2, return_X_y=True)
    return (X[:120] / 16).astype(np.float32), y[:120]


def make_net(module=TinyMLP, **kw):
    params = {"attack": PGD(epsilon=0.05, n_steps=2, clip=(0, 1)), "max_epochs": 2,
              "lr": 0.1, "random_state": 0, "verbose": 0, "polish_max_iter": 20}
    params.update(kw)
    return AdversarialNet(module, **params)


@pytest.fixture(scope="module")
def fitted(data):
    return make_net().fit(*data)


# ---- skorch's data paths: validation splits, callbacks, datasets ------------------------
def test_valid_split_and_epoch_scoring_fit(data):
    X, y = data
    net = make_net(train_split=ValidSplit(5),
                   callbacks=[EpochScoring("accuracy", name="train_acc", on_train=True)])
    net.fit(X, y)
    hist = net.history
    assert len(hist) == 2
    for key in ("valid_acc", "train_acc", "valid_loss"):
        assert all(0 <= h[key] for h in hist)
    assert all(0 <= h["valid_acc"] <= 1 for h in hist)
    assert net.predict(X).shape == (len(X),)


def test_epoch_scoring_sees_class_indices_with_any_labels(data):
    # skorch's loop trains on class indices; its scorers compare the predictions with
    # them, so inside the loop predict speaks indices and after fit the labels.
    X, y = data
    letters = np.array(["no", "yes"])[y]
    a = make_net(train_split=ValidSplit(5)).fit(X, letters)
    b = make_net(train_split=ValidSplit(5)).fit(X, y)
    np.testing.assert_allclose(a.history[:, "valid_acc"], b.history[:, "valid_acc"])
    assert set(a.predict(X)) <= {"no", "yes"}
    np.testing.assert_array_equal(a.predict(X), np.array(["no", "yes"])[b.predict(X)])


def test_predict_on_a_dataset_equals_predict_on_the_array(fitted, data):
    X, y = data
    ds = Dataset(X, y)
    np.testing.assert_array_equal(fitted.predict(ds), fitted.predict(X))
    np.testing.assert_allclose(fitted.predict_proba(ds), fitted.predict_proba(X))
    sub = torch.utils.data.Subset(ds, np.arange(10, 30))
    np.testing.assert_array_equal(fitted.predict(sub), fitted.predict(X[10:30]))
    assert fitted.score(ds) == fitted.score(X, y)
    assert fitted.robust_score(ds) == fitted.robust_score(X, y)
    tensor = torch.as_tensor(X)
    np.testing.assert_array_equal(fitted.predict(tensor), fitted.predict(X))
    torch.testing.assert_close(fitted.forward(X), fitted.forward(ds))


def test_fit_on_a_skorch_dataset_equals_fit_on_arrays(data):
    X, y = data
    a = make_net().fit(Dataset(X, y))
    b = make_net().fit(X, y)
    np.testing.assert_array_equal(a.forgetting_params(), b.forgetting_params())
    with pytest.raises(TypeError, match="skorch Dataset"):
        make_net().fit(torch.utils.data.TensorDataset(torch.as_tensor(X)), y)


# ---- devices -------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_says_what_to_pass(data):
    X, y = data
    with pytest.raises(ValueError, match=r"CUDA is not available.*device='cpu'"):
        make_net(device="cuda").fit(X, y)
    with pytest.raises(ValueError, match=r"CUDA is not available.*device='cpu'"):
        make_net(device="cuda:0").initialize()


def test_bad_device_string_is_named(data):
    with pytest.raises(ValueError, match="not a torch device"):
        make_net(device="gpu").fit(*data)


def test_device_none_keeps_the_module_where_it_is(data):
    X, y = data
    net = make_net(device=None).fit(X, y)
    np.testing.assert_array_equal(net.forgetting_params(), make_net().fit(X, y)
                                  .forgetting_params())


def test_a_net_pickled_on_cuda_loads_and_forgets_on_cpu(fitted, data):
    # skorch maps a CUDA pickle to the CPU when CUDA is missing; the caches follow it.
    X, _ = data
    state = fitted.__getstate__()
    state["device"] = "cuda"
    loaded = AdversarialNet.__new__(AdversarialNet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded.__setstate__(state)
        if not torch.cuda.is_available():
            assert str(loaded.device) == "cpu"
        np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
        loaded.forget([3])
    assert loaded.forgotten_.tolist() == [3]


# ---- input checks of every inference method -----------------------------------------
INFERENCE = {
    "predict": lambda net, X, y: net.predict(X),
    "predict_proba": lambda net, X, y: net.predict_proba(X),
    "forward": lambda net, X, y: net.forward(X),
    "score": lambda net, X, y: net.score(X, y),
    "robust_score": lambda net, X, y: net.robust_score(X, y),
}


@pytest.mark.parametrize("method", list(INFERENCE))
def test_nan_and_infinity_are_refused(fitted, data, method):
    X, y = data
    bad = X.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        INFERENCE[method](fitted, bad, y)
    bad[3, 5] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        INFERENCE[method](fitted, bad, y)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        INFERENCE[method](fitted, Dataset(np.where(np.isinf(bad), np.nan, bad), y), y)


@pytest.mark.parametrize("method", list(INFERENCE))
def test_wrong_feature_count_is_named(fitted, data, method):
    X, y = data
    with pytest.raises(ValueError, match="X has 10 features, but AdversarialNet is "
                                         "expecting 64 features"):
        INFERENCE[method](fitted, X[:, :10], y)
    with pytest.raises(ValueError, match="Expected 2D array"):
        INFERENCE[method](fitted, X[0], y[:1])


@pytest.mark.parametrize("method", list(INFERENCE))
def test_numeric_dtypes_are_cast_to_the_net_dtype(fitted, data, method):
    X, y = data
    Xi = (X > 0.5).astype(np.int64)  # binarised pixels: integers inside clip=(0, 1)
    ref = INFERENCE[method](fitted, Xi.astype(np.float32), y)
    for dtype in (np.int64, np.int32, np.float64, np.uint8):
        got = INFERENCE[method](fitted, Xi.astype(dtype), y)
        if isinstance(ref, torch.Tensor):
            torch.testing.assert_close(got, ref)
        else:
            np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_non_numeric_and_empty_inputs_are_refused(fitted, data):
    X, _ = data
    with pytest.raises(ValueError, match="convert"):
        fitted.predict(np.full((2, 64), "a"))
    with pytest.raises(ValueError, match="0 sample"):
        fitted.predict_proba(X[:0])
    with pytest.raises(TypeError, match="dense data is required"):
        import scipy.sparse as sp

        fitted.predict(sp.csr_matrix(X))


def test_row_shape_of_image_inputs_is_checked(data):
    X, y = data

    class Conv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
            self.fc = torch.nn.Linear(2 * 8 * 8, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    images = X.reshape(-1, 1, 8, 8)
    net = make_net(module=Conv, max_epochs=1).fit(images, y)
    assert net.predict(images.astype(np.float64)).shape == (len(X),)
    with pytest.raises(ValueError, match=r"rows of shape \(1, 4, 16\).*\(1, 8, 8\)"):
        net.predict(X.reshape(-1, 1, 4, 16))
    with pytest.raises(ValueError, match=r"rows of shape \(64,\)"):
        net.predict(X)


def test_inference_before_fit_raises_not_fitted(data):
    X, _ = data
    for net in (make_net(), make_net().initialize()):
        with pytest.raises(NotFittedError):
            net.predict(X)
        with pytest.raises(NotFittedError):
            net.predict_proba(X)


def test_fit_validates_like_inference(data):
    X, y = data
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        make_net().fit(bad, y)
    # integer pixels in the box are cast, as in inference
    net = make_net(attack=PGD(epsilon=1.0, n_steps=2, clip=(0, 16))).fit(
        (X * 16).round().astype(np.int64), y)
    assert net._train_X.dtype == np.float32


def test_a_float64_module_trains_predicts_and_forgets(data):
    X, y = data
    net = make_net(module=TinyMLP().double()).fit(X, y)
    assert net._train_X.dtype == np.float64
    assert net.predict_proba(X).dtype == np.float64
    assert 0 <= net.robust_score(X, y) <= 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForgetWarning)
        net.forget([0])
    assert net.forgotten_.tolist() == [0]


# ---- grid searches, partial_fit, pickling ---------------------------------------------
def test_grid_search_over_the_epsilon_of_a_string_attack(data):
    X, y = data
    net = make_net(attack="pgd", max_epochs=1, polish=False)
    net.set_params(attack__epsilon=0.2)
    assert net.attack.epsilon == 0.2
    grid = GridSearchCV(make_net(attack="pgd", max_epochs=1, polish=False),
                        {"attack__epsilon": [0.01, 0.05]}, cv=2).fit(X, y)
    assert grid.best_params_["attack__epsilon"] in (0.01, 0.05)
    assert grid.best_estimator_.attack_.epsilon == grid.best_params_["attack__epsilon"]
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))


def test_partial_fit_after_initialize_trains(data):
    X, y = data
    net = make_net().initialize()
    net.partial_fit(X, y)
    assert net.n_train_ == len(X)
    net.partial_fit(X[:60], y[:60])
    assert net.n_train_ == 60
    np.testing.assert_array_equal(net.classes_, [0, 1])


def test_pickle_round_trip_predicts_and_forgets_the_same(fitted, data):
    X, _ = data
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    assert not hasattr(loaded, "_loop_n_classes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForgetWarning)
        a = pickle.loads(pickle.dumps(fitted)).forget([5])
        b = loaded.forget([5])
    np.testing.assert_array_equal(a.forgetting_params(), b.forgetting_params())


def test_dataframes_keep_feature_names_and_callbacks_stay_quiet(data):
    pd = pytest.importorskip("pandas")
    X, y = data
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        net = make_net(callbacks=[EpochScoring("accuracy", name="train_acc", on_train=True)])
        net.fit(df, y)
        pred = net.predict(df)
    np.testing.assert_array_equal(net.feature_names_in_, df.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_array_equal(pred, net.predict(X))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        net.predict(X)
    with pytest.raises(ValueError, match="feature names should match"):
        net.predict(df.iloc[:, ::-1])


def test_read_only_inputs_are_accepted_without_torch_warnings(fitted, data):
    X, y = data
    ro = X.copy()
    ro.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(fitted.predict(ro), fitted.predict(X))
        assert fitted.robust_score(ro, y) == fitted.robust_score(X, y)


def test_skorch_classes_parameter_orders_the_outputs(data):
    X, y = data
    a = make_net(classes=[1, 0]).fit(X, y)
    np.testing.assert_array_equal(a.classes_, [1, 0])
    assert a.score(X, y) > 0.8
    assert a.predict(X).tolist() == np.array([1, 0])[a.predict_proba(X).argmax(1)].tolist()
    with pytest.raises(ValueError, match="must list each label of y once"):
        make_net(classes=["a", "b"]).fit(X, y)


def test_a_module_with_more_outputs_than_classes_is_refused_clearly(data):
    # Ten logits for two classes: predict would name classes that do not exist.
    X, y = data
    net = make_net(module=TinyMLP, module__n_out=10)
    with pytest.raises(ValueError, match=r"returns 10 outputs .* but there are 2 classes"):
        net.fit(X, y)
    assert not hasattr(net, "n_train_")  # the failed fit left nothing behind


def test_classes_may_name_labels_without_training_rows(data):
    # skorch's ``classes`` lists the labels of the outputs; some may have no row.
    X, y = data
    net = make_net(module=TinyMLP, module__n_out=3, classes=[0, 1, 2], forget_tol=None)
    net.fit(X, y)
    np.testing.assert_array_equal(net.classes_, [0, 1, 2])
    assert net.predict_proba(X).shape == (len(X), 3)
    assert set(net.predict(X)) <= {0, 1, 2}
    net.forget([0, 1])  # the empty class does not block a forget
    only = np.flatnonzero(y == 1)
    with pytest.raises(ValueError, match="every remaining row of a class"):
        net.forget(only[~np.isin(only, [0, 1])])
    with pytest.raises(ValueError, match="must list each label of y once"):
        make_net(module=TinyMLP, module__n_out=3, classes=[0, 2, 3]).fit(X, y)
