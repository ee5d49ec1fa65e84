"""The MUter paper's network protocol: a frozen convolutional body, an adversarial head.

The paper fine-tunes the last layer of a pre-trained, frozen network
adversarially and forgets rows from that layer (its Table 7 and Figure 9).
:func:`run_net_benchmark` does the same on data that is here:

* a small convolutional network (``ConvNet`` of ``skmuter.benchmark._conv``:
  two convolutions with ReLU and max-pooling, a feature layer, a linear head)
  is trained on rows disjoint from the head's (the way Lacuna-100 pre-trains
  the body for Lacuna-10), then frozen;
* for each attack (l_inf PGD, FGSM, inside [0, 1]) the head is trained
  adversarially on its own rows, body frozen
  (``AdversarialNet(module=<body>, train_params='forget')``), and polished;
* each repeat draws a removal order whose prefixes are the removal sets
  (1, 5, 10 rows and 0.4%, 1%, 2% of the head's rows by default); every
  forgetter forgets them one size step after another on its own copy, and
  the head retrain (:class:`~skmuter.forgetters.Retrain`: the head re-solved
  from its initialisation on the kept rows, what
  :meth:`AdversarialNet.retrain <skmuter.nn.AdversarialNet.retrain>` does) is
  timed for every size.

Effectiveness is :func:`skmuter.metrics.objective_gap_fraction`, ``(R(u) -
R(r)) / (R(0) - R(r))`` with ``R`` the robust objective of the kept rows: 0
is as good as the retrain, 1 no better than doing nothing. (Under PGD and
FGSM the worst case jumps with the head, the objective has no unique
minimiser within the solver's precision and parameter distances say little;
the records keep them too.) :class:`NetBenchmarkResult` turns the records
into the layout of the paper's Table 7 (seconds per removal count with the
speed-up over the retrain) and Figure 9 (effectiveness, clean accuracy,
robust accuracy against the removal count, one line per method).

torch is imported only when a network is built or trained.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..forgetters import Retrain
from ..metrics import parameter_distance, robust_objective
from ._protocol import DEFAULT_FORGETTERS, DO_NOTHING, RETRAIN, _check_choice, parse_removals
from ._results import BenchmarkResult, write_csv

__all__ = [
    "DEFAULT_NET_REMOVALS",
    "NET_ATTACKS",
    "NET_DATASETS",
    "NET_PROTOCOLS",
    "NetBenchmarkResult",
    "NetBenchmarkSettings",
    "NetData",
    "NetProtocol",
    "load_net_data",
    "net_attack",
    "run_net_benchmark",
]

#: datasets of the network benchmark
NET_DATASETS = ("digits", "mnist")
#: attacks the head is fine-tuned under (one block of the tables each)
NET_ATTACKS = ("pgd", "fgsm")
#: removal sizes of the paper's Table 7: counts, then fractions of the head's rows
DEFAULT_NET_REMOVALS = "1,5,10,0.4%,1%,2%"


@dataclass(frozen=True)
class NetProtocol:
    """Data sizes, network, threat model and training recipe of a network benchmark.

    Parameters
    ----------
    n_train : int
        Rows the head is trained on (and forgets).
    n_body : int
        Rows, disjoint from the head's, the body is pre-trained on.
    n_test : int
        Held-out rows for clean and robust accuracy.
    side : int
        Images are ``side x side``, given as flat rows.
    epsilon, pgd_step, pgd_steps : float, float, int
        l_inf radius, PGD step size and iterations (FGSM: one step of size
        ``epsilon``); clip [0, 1].
    channels, kernel, features, input_pool :
        The network (``ConvNet`` of ``skmuter.benchmark._conv``).
    body_epochs, head_epochs : int
        Epochs of the body's pre-training (adversarial, FGSM) and of the
        head's adversarial fine-tuning.
    body_lr : float
        Adam step of the body's pre-training.
    lr, batch_size : float, int
        SGD step of the head's fine-tuning; batch of both trainings.
    alpha : float
        Ridge penalty of the head.
    polish_max_iter : int
        L-BFGS iterations of the head's polish and of the retrain.
    repeats : int
        Default number of random removal orders.
    """

    n_train: int
    n_body: int
    n_test: int
    side: int
    epsilon: float = 0.1
    pgd_step: float = 0.025
    pgd_steps: int = 7
    channels: tuple = (4, 8)
    kernel: int = 5
    features: int = 32
    input_pool: int = 1
    body_epochs: int = 3
    head_epochs: int = 3
    body_lr: float = 0.01
    lr: float = 0.05
    batch_size: int = 64
    alpha: float = 1e-3
    polish_max_iter: int = 50
    repeats: int = 1

    def module_params(self) -> dict:
        """``module__*`` parameters of the network (for ``AdversarialNet``)."""
        return {"module__side": self.side, "module__channels": self.channels,
                "module__kernel": self.kernel, "module__features": self.features,
                "module__input_pool": self.input_pool}


#: protocols of the network datasets: ``digits`` (bundled, 8 x 8) and MNIST
NET_PROTOCOLS = {
    "digits": NetProtocol(n_train=200, n_body=897, n_test=200, side=8, epsilon=0.1,
                          pgd_step=0.04, pgd_steps=3, channels=(4, 8), kernel=3,
                          features=16, body_epochs=10, head_epochs=2, lr=0.1,
                          batch_size=32, polish_max_iter=10, repeats=1),
    "mnist": NetProtocol(n_train=1000, n_body=5000, n_test=500, side=28, epsilon=0.1,
                         pgd_step=0.04, pgd_steps=3, channels=(4, 8), kernel=5,
                         features=32, input_pool=2, body_epochs=4, head_epochs=2, lr=0.05,
                         batch_size=64, polish_max_iter=10, repeats=1),
}


@dataclass(frozen=True)
class NetData:
    """Rows of a network benchmark: the body's, the head's, the test rows (float32)."""

    X_body: np.ndarray
    y_body: np.ndarray
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def load_net_data(name: str, path=None, protocol: NetProtocol | None = None) -> NetData:
    """The body's, the head's and the test rows of a network benchmark dataset.

    Parameters
    ----------
    name : {'digits', 'mnist'}
        ``'digits'``: scikit-learn's bundled 8 x 8 digits (ten classes,
        pixels scaled to [0, 1]), split at random into the head's rows, the
        test rows and the body's (the rest). ``'mnist'``
        (:func:`skmuter.datasets.load_mnist`): the head's rows are the first
        ``n_train`` MNIST training rows, the body's the last ``n_body``
        (disjoint), the test rows the first ``n_test`` of the test set.
    path : str or path-like, default=None
        ``mnist.npz`` or a directory holding it (ignored for ``'digits'``).
    protocol : NetProtocol, default=None
        Sizes; ``None``: ``NET_PROTOCOLS[name]``.

    Returns
    -------
    data : NetData

    Raises
    ------
    ValueError
        For sizes the dataset cannot provide.

    Examples
    --------
    >>> from skmuter.benchmark import load_net_data
    >>> data = load_net_data("digits")
    >>> data.X_train.shape, data.X_body.shape, data.X_test.shape
    ((200, 64), (897, 64), (200, 64))
    """
    _check_choice("dataset", name, NET_DATASETS)
    p = protocol or NET_PROTOCOLS[name]
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        n = len(y)
        if p.n_train + p.n_test + p.n_body > n:
            raise ValueError(f"the digits have {n} rows: fewer than n_train + n_test + "
                             f"n_body = {p.n_train + p.n_test + p.n_body}.")
        order = np.random.default_rng(0).permutation(n)
        head, test = order[:p.n_train], order[p.n_train:p.n_train + p.n_test]
        body = order[p.n_train + p.n_test:p.n_train + p.n_test + p.n_body]
        Xtr, ytr, Xte, yte, Xb, yb = X[head], y[head], X[test], y[test], X[body], y[body]
    else:
        from .. import datasets

        X, Xt, y, yt = datasets.load_mnist(path)
        if p.n_train + p.n_body > len(y) or p.n_test > len(yt):
            raise ValueError(f"MNIST has {len(y)} training and {len(yt)} test rows: fewer "
                             f"than n_train + n_body = {p.n_train + p.n_body} or n_test = "
                             f"{p.n_test}.")
        Xtr, ytr = X[:p.n_train], y[:p.n_train]
        Xb, yb = X[len(y) - p.n_body:], y[len(y) - p.n_body:]
        Xte, yte = Xt[:p.n_test], yt[:p.n_test]

    def f32(a):
        return np.ascontiguousarray(a, dtype=np.float32)

    return NetData(f32(Xb), np.asarray(yb), f32(Xtr), np.asarray(ytr), f32(Xte),
                   np.asarray(yte))


def net_attack(protocol: NetProtocol, attack: str = "pgd", random_state=0):
    """The attack a head is fine-tuned under: l_inf PGD or FGSM, clip [0, 1].

    Parameters
    ----------
    protocol : NetProtocol
    attack : {'pgd', 'fgsm'}, default='pgd'
    random_state : int, default=0
        Seed of PGD's random start (FGSM starts at the input).

    Returns
    -------
    attack : PGD or FGSM

    Examples
    --------
    >>> from skmuter.benchmark import NET_PROTOCOLS, net_attack
    >>> net_attack(NET_PROTOCOLS["mnist"], "pgd").n_steps
    3
    """
    from ..attacks import FGSM, PGD

    _check_choice("attack", attack, NET_ATTACKS)
    p = protocol
    if attack == "pgd":
        return PGD(epsilon=p.epsilon, step_size=p.pgd_step, n_steps=p.pgd_steps,
                   random_start=True, clip=(0.0, 1.0), random_state=random_state)
    return FGSM(epsilon=p.epsilon, clip=(0.0, 1.0), random_start=False)


@dataclass(frozen=True)
class NetBenchmarkSettings:
    """What one network benchmark run does; the defaults are those of the command.

    Parameters
    ----------
    removals : str or sequence, default="1,5,10,0.4%,1%,2%"
        Removal sizes (see :func:`~skmuter.benchmark.parse_removals`).
    forgetters : sequence of str, default=all but 'retrain'
        Forgetter names; the head retrain always runs as the reference.
    attacks : sequence of {'pgd', 'fgsm'}, default=('pgd', 'fgsm')
        One head per attack, fine-tuned and evaluated under it.
    repeats : int, default=1
        Random removal orders; tables report medians over them.
    forget_tol : float, None or 'default', default=None
        The heads' ``forget_tol``: ``None`` times each forgetter's own step,
        unchecked (the paper's protocol); ``'default'`` keeps
        ``AdversarialNet``'s (every request checked and corrected, the times
        include the check, each check re-runs the attack on the kept rows up
        to 20 times).
    device : str, default='cpu'
        Torch device of the networks (``'cuda'`` is refused clearly where
        there is none).
    random_state : int, default=0
        Seed of the networks and of the removal draws.
    progress : bool, default=True
        Show a progress bar on stderr (drawn only when stderr is a terminal).
    """

    removals: str | Sequence = DEFAULT_NET_REMOVALS
    forgetters: Sequence[str] = DEFAULT_FORGETTERS
    attacks: Sequence[str] = NET_ATTACKS
    repeats: int = 1
    forget_tol: float | str | None = None
    device: str = "cpu"
    random_state: int = 0
    progress: bool = True

    def __post_init__(self):
        from ._runner import BenchmarkSettings

        if not isinstance(self.repeats, (int, np.integer)) or self.repeats < 1:
            raise ValueError(f"repeats must be a positive integer, got {self.repeats!r}.")
        for name in self.attacks:
            _check_choice("attack", name, NET_ATTACKS)
        if not self.attacks:
            raise ValueError("no attack given.")
        if isinstance(self.forget_tol, str) and self.forget_tol != "default":
            raise ValueError(f"forget_tol must be a number, None or 'default', got "
                             f"{self.forget_tol!r}.")
        BenchmarkSettings(forgetters=self.forgetters)  # checks the names

    def methods(self) -> list:
        """The forgetters to compare: lower-case names, without duplicates or 'retrain'."""
        from ._runner import BenchmarkSettings

        return BenchmarkSettings(forgetters=self.forgetters).methods()


# ---- the networks ---------------------------------------------------------------------
@contextlib.contextmanager
def _quiet():
    """Keep the solvers' ConvergenceWarnings (expected under PGD/FGSM) out of the output."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def fit_body(data: NetData, protocol: NetProtocol, *, device="cpu", random_state=0):
    """The body: the whole network trained adversarially (FGSM) on the body's rows.

    Returns
    -------
    net : AdversarialNet
        Fitted; ``net.module_`` is the network whose head is then re-trained
        on the head's rows with the rest frozen.
    """
    import torch

    from ..nn import AdversarialNet
    from ._conv import ConvNet

    p = protocol
    body = AdversarialNet(ConvNet, **p.module_params(), attack=net_attack(p, "fgsm"),
                          optimizer=torch.optim.Adam, max_epochs=p.body_epochs,
                          lr=p.body_lr, batch_size=p.batch_size,
                          polish=False, random_state=random_state, device=device, verbose=0)
    return body.fit(data.X_body, data.y_body)


def head_net(body, protocol: NetProtocol, attack, *, forget_tol="default", device="cpu",
             random_state=0):
    """An unfitted ``AdversarialNet`` whose head is fine-tuned on the frozen ``body``.

    Parameters
    ----------
    body : AdversarialNet or torch.nn.Module
        The pre-trained network (copied).
    protocol : NetProtocol
    attack : PGD or FGSM
    forget_tol : float, None or 'default', default='default'

    Returns
    -------
    net : AdversarialNet
        ``train_params='forget'``: only the head trains and forgets.
    """
    from ..nn import AdversarialNet

    module = getattr(body, "module_", body)
    p = protocol
    extra = {} if forget_tol == "default" else {"forget_tol": forget_tol}
    return AdversarialNet(copy.deepcopy(module), attack=attack, train_params="forget",
                          alpha=p.alpha, max_epochs=p.head_epochs, lr=p.lr,
                          batch_size=p.batch_size, polish_max_iter=p.polish_max_iter,
                          random_state=random_state, device=device, verbose=0, **extra)


# ---- the run ----------------------------------------------------------------------------
def run_net_benchmark(data: NetData, protocol: NetProtocol,
                      settings: NetBenchmarkSettings | None = None, *,
                      info: dict | None = None, echo=None, **options):
    """Pre-train a body, fine-tune a head per attack, forget its rows with every forgetter.

    Parameters
    ----------
    data : NetData
        From :func:`load_net_data`.
    protocol : NetProtocol
        Network, threat model and training recipe.
    settings : NetBenchmarkSettings, default=None
        What the run does; ``None`` uses the defaults.
    info : dict, default=None
        Extra facts to keep with the result (dataset name, ...).
    echo : callable, default=None
        Called with a line of text after each stage (e.g. ``print``).
    **options
        Fields of :class:`NetBenchmarkSettings`, replacing those of ``settings``.

    Returns
    -------
    result : NetBenchmarkResult
        Records with an ``attack`` column; ``gap_fraction`` is the
        objective-gap fraction.

    Examples
    --------
    >>> from skmuter.benchmark import (NET_PROTOCOLS, load_net_data,  # doctest: +SKIP
    ...                                run_net_benchmark)
    >>> p = NET_PROTOCOLS["digits"]
    >>> result = run_net_benchmark(load_net_data("digits"), p, removals="1,1%",
    ...                            forgetters=["muter"], attacks=["fgsm"], progress=False)
    >>> list(result.table7().index.get_level_values("method"))
    ['muter', 'retrain', 'speed-up (retrain / muter)', 'speed-up excl. memory']
    """
    fields = {f.name for f in dataclasses.fields(NetBenchmarkSettings)}
    unknown = [name for name in options if name not in fields]
    if unknown:
        raise TypeError(f"run_net_benchmark() got an unexpected keyword argument "
                        f"{unknown[0]!r}")
    settings = dataclasses.replace(settings or NetBenchmarkSettings(), **options)
    say = echo or (lambda line: None)
    names = settings.methods()
    sizes = sorted(parse_removals(settings.removals, len(data.y_train)), key=lambda s: s[1])
    info = dict(info or {})
    import torch

    from ._runner import _progress

    t0 = time.perf_counter()
    with _quiet():
        body = fit_body(data, protocol, device=settings.device,
                        random_state=settings.random_state)
    info["body_fit_time"] = time.perf_counter() - t0
    info["body_clean_accuracy"] = float(body.score(data.X_test, data.y_test))
    n_head = sum(p.numel() for p in body.module_.head.parameters())
    n_body = sum(p.numel() for p in body.module_.parameters()) - n_head
    info.update({
        "n_train": len(data.y_train), "n_body": len(data.y_body), "n_test": len(data.y_test),
        "n_features": int(data.X_train.shape[1]), "body_params": int(n_body),
        "head_params": int(n_head), "repeats": int(settings.repeats),
        "attacks": list(settings.attacks), "device": str(settings.device),
        "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"),
        "model_repr": f"ConvNet{protocol.module_params()}",
    })
    say(f"body: {n_body} parameters, pre-trained (FGSM) on {len(data.y_body)} other rows in "
        f"{info['body_fit_time']:.1f} s, clean test accuracy "
        f"{info['body_clean_accuracy']:.4f}; frozen")
    records = []
    total = len(settings.attacks) * settings.repeats * len(sizes) * (len(names) + 1)
    bar = _progress(total, settings.progress)
    try:
        for attack_name in settings.attacks:
            records += _one_attack(attack_name, body, data, protocol, settings, names, sizes,
                                   info, bar, say)
    finally:
        bar.close()
    return NetBenchmarkResult(pd.DataFrame.from_records(records), info)


def _evaluate(model, data):
    return {"clean_accuracy": float(model.score(data.X_test, data.y_test)),
            "robust_accuracy": float(model.robust_score(data.X_test, data.y_test))}


def _one_attack(attack_name, body, data, protocol, settings, names, sizes, info, bar, say):
    from ._runner import _add, _draw
    from ._runner import _forget_timed as _requests_timed

    def _forget_timed(model, rows, sequential):
        # Table 7 counts a forgetter's memory in its time
        timing = _requests_timed(model, rows, sequential)
        return dict(timing, time=timing["time"] + timing["precompute_time"])

    attack = net_attack(protocol, attack_name, random_state=settings.random_state)
    t0 = time.perf_counter()
    with _quiet():
        head = head_net(body, protocol, attack, forget_tol=settings.forget_tol,
                        device=settings.device, random_state=settings.random_state)
        head.fit(data.X_train, data.y_train)
    fit_time = time.perf_counter() - t0
    original = _evaluate(head, data)
    key = attack_name
    info[f"{key}_fit_time"] = fit_time
    info[f"{key}_converged"] = bool(head.converged_)
    info[f"{key}_gradient_norm"] = float(head.polish_info_["gradient_norm"])
    info[f"{key}_forget_tol"] = head.forget_tol
    info[f"{key}_model_repr"] = " ".join(repr(head.attack_).split())
    for k, v in original.items():
        info[f"{key}_original_{k}"] = v
    say(f"{attack_name}: head of {len(head.forgetting_params())} parameters fine-tuned on "
        f"{len(data.y_train)} rows in {fit_time:.1f} s (polish gradient "
        f"{info[f'{key}_gradient_norm']:.1e}); clean {original['clean_accuracy']:.4f}, "
        f"robust {original['robust_accuracy']:.4f}")
    rng = np.random.default_rng(settings.random_state)
    out = []
    largest = sizes[-1][1]
    for rep in range(settings.repeats):
        order = _draw(rng, data.y_train, largest)
        refs = {}
        for label, count in sizes:
            bar.set_postfix_str(f"{attack_name} #{rep + 1} {label} retrain", refresh=False)
            ref = copy.deepcopy(head).set_params(forgetter=Retrain(), forget_tol=None)
            with _quiet():
                timing = _forget_timed(ref, order[:count], sequential=False)
            r_r = robust_objective(ref)
            r_0 = robust_objective(ref, head)
            refs[count] = (ref, r_r, r_0)
            base = {"attack": attack_name, "removal": label, "n_removed": count,
                    "repeat": rep}
            out.append({**base, "method": RETRAIN, **timing, "objective": r_r,
                        "gap_fraction": 0.0, "distance": 0.0, "residual_fraction": 0.0,
                        **_evaluate(ref, data)})
            out.append({**base, "method": DO_NOTHING, "time": 0.0, "objective": r_0,
                        "gap_fraction": 1.0, "distance": parameter_distance(head, ref),
                        "residual_fraction": 1.0, **original})
            bar.update(1)
        for name in names:
            unlearned = copy.deepcopy(head).set_params(forgetter=name)
            done, total = 0, {}
            for label, count in sizes:
                bar.set_postfix_str(f"{attack_name} #{rep + 1} {label} {name}", refresh=False)
                with _quiet():
                    total = _add(total, _forget_timed(unlearned, order[done:count], False))
                done = count
                ref, r_r, r_0 = refs[count]
                r_u = robust_objective(unlearned)
                dist, nothing = parameter_distance(unlearned, ref), parameter_distance(head, ref)
                out.append({
                    "attack": attack_name, "removal": label, "n_removed": count,
                    "repeat": rep, "method": name, **total, "objective": r_u,
                    "gap_fraction": (r_u - r_r) / (r_0 - r_r) if r_0 != r_r else float("nan"),
                    "distance": dist,
                    "residual_fraction": dist / nothing if nothing > 0 else float("nan"),
                    **_evaluate(unlearned, data),
                })
                bar.update(1)
        del refs
    return out


# ---- the result -------------------------------------------------------------------------
@dataclass
class NetBenchmarkResult:
    """Records of a network benchmark run; the paper's Table 7 and Figure 9 from them.

    Parameters
    ----------
    records : DataFrame
        One row per (attack, removal size, repeat, method): the columns of
        :class:`~skmuter.benchmark.BenchmarkResult` plus ``attack``,
        ``objective`` (robust objective of the kept rows) and
        ``gap_fraction`` (the objective-gap fraction: 0 as good as the head
        retrain, 1 do-nothing).
    info : dict
        Facts about the run (sizes, fit times, accuracies of the fitted heads, ...).
    """

    records: pd.DataFrame
    info: dict = dataclasses.field(default_factory=dict)

    def attacks(self) -> list:
        """The attacks of the run, in order."""
        return list(dict.fromkeys(self.records["attack"]))

    def by_attack(self, attack: str) -> BenchmarkResult:
        """The records of one attack as a :class:`~skmuter.benchmark.BenchmarkResult`."""
        rec = self.records[self.records["attack"] == attack].drop(columns="attack")
        return BenchmarkResult(rec.reset_index(drop=True), dict(self.info))

    def table7(self, reference: str | None = None) -> pd.DataFrame:
        """Seconds to forget per removal count, per attack (the paper's Table 7 layout).

        Rows ``(attack, method)``: each forgetter (all its requests up to
        that count, its one-off memory, the pre-computation, included),
        ``retrain`` (the head re-solved from its initialisation on the kept
        rows), ``speed-up (retrain / <reference>)`` and ``speed-up excl.
        memory`` (the reference forgetter's requests alone).

        Parameters
        ----------
        reference : str, default=None
            The forgetter of the speed-up rows: ``'muter'`` when it ran, else
            the first.

        Returns
        -------
        table : DataFrame
        """
        parts = {}
        for attack in self.attacks():
            res = self.by_attack(attack)
            methods = res._methods()
            table = res._pivot("time", [*methods, RETRAIN])
            if methods:
                ref = reference or ("muter" if "muter" in methods else methods[0])
                memory = res._pivot("precompute_time", [ref]).loc[ref]
                table.loc[f"speed-up (retrain / {ref})"] = table.loc[RETRAIN] / table.loc[ref]
                table.loc["speed-up excl. memory"] = (
                    table.loc[RETRAIN] / (table.loc[ref] - memory))
            parts[attack.upper()] = table
        out = pd.concat(parts, names=["attack", "method"])
        out.columns.name = "removed"
        return out

    def figure9_tables(self) -> dict:
        """The three panels of Figure 9, per attack: ``{attack: {panel: DataFrame}}``.

        Panels ``effectiveness`` (objective-gap fraction, forgetters and
        do-nothing), ``clean accuracy`` and ``robust accuracy`` (forgetters,
        retrain, do-nothing), medians over the repeats.
        """
        out = {}
        for attack in self.attacks():
            res = self.by_attack(attack)
            methods = res._methods()
            out[attack] = {
                "effectiveness": res._pivot("gap_fraction", [*methods, DO_NOTHING]),
                "clean accuracy": res.accuracy_table(),
                "robust accuracy": res.robustness_table(),
            }
        return out

    def tables(self) -> dict:
        """Every table, by file stem."""
        out = {"table7": self.table7()}
        for attack, panels in self.figure9_tables().items():
            for panel, table in panels.items():
                out[f"{attack}_{panel.replace(' ', '_')}"] = table
            out[f"{attack}_timing"] = self.by_attack(attack).timing_table()
        return out

    def report(self) -> str:
        """The run as text: set-up, heads, Table 7 and the Figure 9 panels."""
        info = self.info
        lines = [
            (f"data: {info.get('dataset', '?')}, head {info['n_train']} training rows, body "
             f"{info['n_body']} other rows, {info['n_test']} test rows"),
            (f"network: {info.get('model_repr', '?')}; body {info['body_params']} "
             f"parameters (frozen), head {info['head_params']}; device {info['device']}, "
             f"{info['torch_threads']} torch thread(s)"),
            (f"body pre-training: {info['body_fit_time']:.1f} s, clean test accuracy "
             f"{info['body_clean_accuracy']:.4f}"),
        ]
        for attack in self.attacks():
            tol = info.get(f"{attack}_forget_tol")
            lines.append(
                f"{attack.upper()} head: {info.get(f'{attack}_model_repr', '')}; fit "
                f"{info[f'{attack}_fit_time']:.1f} s (polish gradient "
                f"{info[f'{attack}_gradient_norm']:.1e}); test accuracy clean "
                f"{info[f'{attack}_original_clean_accuracy']:.4f}, robust "
                f"{info[f'{attack}_original_robust_accuracy']:.4f}; forget_tol={tol}")
        n = info.get("repeats", "?")
        lines += ["", (f"Table 7 layout: seconds to forget, median of {n} repeat(s), memory "
                       "(the one-off pre-computation) included; retrain = head re-solved "
                       "from its initialisation on the kept rows"),
                  self.table7().to_string(float_format="{:.3g}".format, na_rep="-")]
        gap = ("Effectiveness: objective-gap fraction (R(u) - R(r)) / (R(0) - R(r)) of the "
               "kept rows (0 = retrain, 1 = do nothing)")
        titles = {"effectiveness": (gap, "{:+.3f}"),
                  "clean accuracy": ("Clean test accuracy", "{:.4f}"),
                  "robust accuracy": ("Robust test accuracy (the head's attack)", "{:.4f}")}
        for attack, panels in self.figure9_tables().items():
            for panel, table in panels.items():
                title, fmt = titles[panel]
                lines += ["", f"{attack.upper()}: {title} (median)",
                          table.to_string(float_format=fmt.format, na_rep="-")]
        return "\n".join(lines)

    def save(self, out_dir, prefix: str = "", figures: bool = True) -> list:
        """Write the records, Table 7 and the panels as CSV, and Figure 9 as PNG.

        Parameters
        ----------
        out_dir : str or path-like
            Created when missing.
        prefix : str, default=''
            Prepended to every file name.
        figures : bool, default=True
            Also draw :meth:`plot` (needs matplotlib).

        Returns
        -------
        paths : list of Path
        """
        out, paths = write_csv(out_dir, prefix, {"records": self.records}, self.tables())
        path = out / f"{prefix}report.txt"
        path.write_text(self.report() + "\n")
        paths.append(path)
        if figures:
            paths += self.plot(out, prefix=prefix)
        return paths

    def plot(self, out_dir, prefix: str = "") -> list:
        """Draw ``figure9.png``: one row per attack, three panels (Figure 9 layout).

        Needs matplotlib (``pip install 'skmuter[plot]'``).

        Returns
        -------
        paths : list of Path

        Raises
        ------
        ImportError
            When matplotlib is not installed.
        """
        from . import _plotting

        return _plotting.plot_figure9(self, out_dir, prefix=prefix)
