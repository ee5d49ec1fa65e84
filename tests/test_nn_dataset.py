"""AdversarialNet on real bodies (ResNet-like, WideResNet-like, Sequential) and torch Datasets."""

import copy
import pickle
import warnings
from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skorch")

from sklearn.datasets import load_digits
from skorch.dataset import ValidSplit
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from skmuter import AdversarialNet
from skmuter.attacks import PGD
from skmuter.forgetters import ForgetWarning
from skmuter.nn._inputs import DatasetRows
from skmuter.nn._params import FlatParams, find_head, resolve_names

torch.set_num_threads(1)
N = 120


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:N] / 16).astype(np.float32), y[:N]


class Rows(Dataset):
    """A map-style dataset over tensors (no ``X``/``y`` attributes: read item by item)."""

    def __init__(self, X, y):
        self.inputs = torch.as_tensor(X)
        self.targets = torch.as_tensor(y)

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, i):
        return self.inputs[i], self.targets[i]


class Frozen(nn.Module):
    """A body and a linear head (what the head sees: 24 features, not the 64 inputs)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 24), nn.Tanh())
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        return self.fc(self.body(x))


def make_net(**kw):
    params = {"attack": PGD(epsilon=0.05, n_steps=2, clip=(0, 1)), "alpha": 1e-2,
              "max_epochs": 2, "lr": 0.1, "batch_size": 32, "random_state": 0, "verbose": 0,
              "train_params": "forget", "polish_max_iter": 20, "forget_tol": None}
    params.update(kw)
    return AdversarialNet(Frozen, **params)


def quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


class _Reads:
    """Largest number of rows read from a dataset at once (``DatasetRows[rows]``)."""

    def __init__(self):
        self.most = 0
        self._get = DatasetRows.__getitem__

    def __enter__(self):
        reads = self

        def getitem(rows_obj, rows):
            out = reads._get(rows_obj, rows)
            reads.most = max(reads.most, len(out))
            return out

        self._patch = mock.patch.object(DatasetRows, "__getitem__", getitem)
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        self._patch.__exit__(*exc)


@pytest.fixture(scope="module")
def pair(digits):
    X, y = digits
    on_arrays = quiet(make_net().fit, X, y)
    with _Reads() as reads:
        on_dataset = quiet(make_net().fit, Rows(X, y))
    on_dataset.reads_at_fit_ = reads.most
    return on_arrays, on_dataset


# ---- datasets ------------------------------------------------------------------------
def test_fit_on_a_dataset_equals_fit_on_the_arrays(pair, digits):
    X, y = digits
    a, b = pair
    assert isinstance(b._train_X, DatasetRows)  # kept by reference, not copied to an array
    np.testing.assert_allclose(b.forgetting_params(), a.forgetting_params(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(b.classes_, a.classes_)
    ds = Rows(X, y)
    np.testing.assert_array_equal(b.predict(ds), a.predict(X))
    assert b.score(ds) == a.score(X, y)
    assert b.robust_score(ds) == a.robust_score(X, y)
    assert b.gradient_residual() == pytest.approx(a.gradient_residual(), rel=1e-6)


def test_a_data_loader_trains_on_its_dataset(pair, digits):
    X, y = digits
    b = pair[1]
    c = quiet(make_net().fit, DataLoader(Rows(X, y), batch_size=50))
    np.testing.assert_array_equal(c.forgetting_params(), b.forgetting_params())
    assert c.score(DataLoader(Rows(X, y), batch_size=7)) == b.score(Rows(X, y))


def test_a_validation_split_of_a_dataset_scores_epochs(digits):
    X, y = digits
    net = quiet(make_net(train_split=ValidSplit(4, stratified=True), max_epochs=1,
                         polish=False).fit, Rows(X, y))
    assert 0 <= net.history[-1, "valid_acc"] <= 1
    assert net.n_train_ == N  # every row of the dataset can be forgotten


def test_forget_by_dataset_positions_equals_forget_on_arrays(pair):
    a, b = (copy.deepcopy(n) for n in pair)  # the copy of b shares its dataset
    assert b._train_X.dataset is pair[1]._train_X.dataset
    quiet(a.forget, [3, 7, 50])
    with _Reads() as reads:
        quiet(b.forget, [3, 7, 50])
        residual = b.gradient_residual()
    np.testing.assert_array_equal(b.forgotten_, [3, 7, 50])
    np.testing.assert_allclose(b.forgetting_params(), a.forgetting_params(), rtol=1e-5,
                               atol=1e-6)
    assert residual == pytest.approx(a.gradient_residual(), rel=1e-5)
    # streamed: rows read a batch at a time, the head's features cached, never the inputs
    assert 0 < reads.most <= 256
    assert pair[1].reads_at_fit_ <= 256
    points = b._objective().attack_points
    cached = [v for store, _ in points._adv_cache.values() for v in store.values()]
    assert cached and all(v.shape == (24,) for v in cached)
    assert not set(points._clean_features) & {3, 7, 50}
    assert np.all(b._train_X.purged[[3, 7, 50]]) and b._train_X.purged.sum() == 3
    assert not np.any(b._train_X[[3, 7, 50]])  # purged rows read as zeros, never fetched


def test_the_pickle_holds_no_dataset_rows_and_attach_dataset_restores_forgetting(pair, digits):
    X, y = digits
    b = copy.deepcopy(pair[1])
    quiet(b.forget, [5])
    blob = pickle.dumps(b)
    for row in (5, 6):  # the forgotten row, and any other: the dataset is not pickled
        assert X[row].tobytes() not in blob
    c = pickle.loads(blob)
    np.testing.assert_array_equal(c.predict(X), b.predict(X))
    with pytest.raises(ValueError, match="attach_dataset"):
        quiet(c.forget, [9])
    with pytest.raises(ValueError, match="120"):
        c.attach_dataset(Rows(X[:50], y[:50]))
    with pytest.raises(ValueError, match="labels differ"):
        c.attach_dataset(Rows(X, (y + 1) % 10))
    with pytest.raises(ValueError, match="fitted on a torch Dataset"):
        pair[0].attach_dataset(Rows(X, y))
    c.attach_dataset(Rows(X, y))
    quiet(c.forget, [9])
    quiet(b.forget, [9])
    np.testing.assert_array_equal(c.forgetting_params(), b.forgetting_params())
    np.testing.assert_array_equal(c.forgotten_, [5, 9])


class _Stream(IterableDataset):
    def __iter__(self):
        yield from ()


@pytest.mark.parametrize("bad, error, match", [
    (lambda X, y: TensorDataset(torch.as_tensor(X)), TypeError, r"\(x, y\) pairs"),
    (lambda X, y: _Text(X, y), TypeError, "numeric"),
    (lambda X, y: _Ragged(X, y), ValueError, "shape"),
    (lambda X, y: Rows(X * 2, y), ValueError, "clip"),
    (lambda X, y: _Stream(), TypeError, "map-style"),
    (lambda X, y: _Labels(X, y), TypeError, "scalar"),
])
def test_unusable_datasets_are_refused_clearly(digits, bad, error, match):
    X, y = digits
    with pytest.raises(error, match=match):
        make_net().fit(bad(X, y))


def test_labels_given_beside_a_dataset_are_refused(digits):
    X, y = digits
    with pytest.raises(TypeError, match="y=None"):
        make_net().fit(Rows(X, y), y)


class _Ragged(Rows):
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return (x[:32] if i == 5 else x), y


class _Text(Rows):
    def __getitem__(self, i):
        return np.array(["a"] * 64), int(self.targets[i])


class _Labels(Rows):
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x, torch.stack([y, y])


# ---- bodies and heads ------------------------------------------------------------------
class Block(nn.Module):
    """A ResNet basic block (conv-bn-relu-conv-bn, identity or 1x1 shortcut)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """torchvision's layout (``fc`` the head), with a Linear registered after it that the
    body uses (a squeeze-excitation gate): the last registered Linear is not the output."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = Block(4, 6)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 10)
        self.gate = nn.Linear(6, 6)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x.reshape(-1, 1, 8, 8))))
        h = self.avgpool(self.layer1(h)).flatten(1)
        return self.fc(h * torch.sigmoid(self.gate(h)))


class WideBlock(nn.Module):
    """A WideResNet block: pre-activation bn-relu-conv twice, dropout between."""

    def __init__(self, cin, cout):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.drop = nn.Dropout(0.3)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        o = torch.relu(self.bn1(x))
        h = self.conv2(self.drop(torch.relu(self.bn2(self.conv1(o)))))
        return h + self.shortcut(o)


class TinyWideResNet(nn.Module):
    """A WideResNet-28-10-shaped module, tiny: the head is ``linear``, registered before
    an auxiliary Linear that is never called on the way to the output."""

    def __init__(self):
        super().__init__()
        self.aux = nn.Linear(8, 3)  # registered first, unused by forward
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.block = WideBlock(4, 8)
        self.bn = nn.BatchNorm2d(8)
        self.linear = nn.Linear(8, 10)
        self.probe = nn.Linear(8, 2)  # registered last, not the output

    def forward(self, x):
        h = self.block(self.conv1(x.reshape(-1, 1, 8, 8)))
        h = torch.relu(self.bn(h)).mean(dim=(2, 3))
        return self.linear(h)


class Unnamed(nn.Module):
    """The output layer has no telling name and is registered before another Linear."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 3)
        self.b = nn.Linear(64, 5)

    def forward(self, x):
        return self.a(torch.tanh(self.b(x)))


def _sample(n=4):
    return torch.rand((n, 64), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("module, head", [
    (TinyResNet, "fc"),
    (TinyWideResNet, "linear"),
    (lambda: nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)), "2"),
    (Unnamed, "a"),
])
def test_the_output_layer_is_found_by_running_the_module(module, head):
    torch.manual_seed(0)
    m = module()
    names = resolve_names(m, "last", _sample())
    assert names == [f"{head}.weight", f"{head}.bias"]
    params = FlatParams(m, names, "cpu")
    found = find_head(params, _sample().double())
    assert found is not None and found.name == head  # derivatives on the head alone
    # named explicitly: the same parameters
    assert resolve_names(m, [head]) == names


def test_without_a_sample_a_head_name_or_the_last_linear_is_taken():
    assert resolve_names(TinyResNet(), "last") == ["fc.weight", "fc.bias"]
    assert resolve_names(TinyWideResNet(), "last") == ["linear.weight", "linear.bias"]
    assert resolve_names(Unnamed(), "last") == ["b.weight", "b.bias"]


def test_a_resnet_like_body_trains_and_forgets_its_fc_head(digits):
    X, y = digits
    net = quiet(AdversarialNet(TinyResNet, attack=PGD(epsilon=0.05, n_steps=2, clip=(0, 1)),
                               alpha=1e-2, max_epochs=1, lr=0.1, random_state=0, verbose=0,
                               train_params="forget", polish=False,
                               forget_tol=None).fit, X[:60], y[:60])
    assert net.forget_names_ == ["fc.weight", "fc.bias"]
    assert net._objective().head is not None and net._objective().head.name == "fc"
    before = {n: p.detach().clone() for n, p in net.module_.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForgetWarning)
        quiet(net.forget, [4])
    after = dict(net.module_.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == {"fc.weight", "fc.bias"}  # the gate registered after fc stays frozen


def test_torchvision_resnet18_head_is_fc():
    models = pytest.importorskip("torchvision.models")
    m = models.resnet18(num_classes=10)
    x = torch.rand((1, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    assert resolve_names(m, "last", x) == ["fc.weight", "fc.bias"]
