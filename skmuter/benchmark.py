"""The unlearning benchmark: the MUter paper's experiments, re-measured.

One run fits a model once. Each repeat draws a random removal order; the
removal sets of the requested sizes are its prefixes, forgotten one after
another (as in the paper) by every forgetter, each starting from its own copy
of the fitted model, beside an exact retrain from scratch on the remaining
rows, timed in the same run, for every size. The outcome, a :class:`BenchmarkResult`, holds one record per
(removal size, repeat, method) and turns them into the paper's views:

* :meth:`~BenchmarkResult.efficiency_table`: seconds per removal size with
  Retrain and the speed-up ratio (the layout of the paper's Table 6);
* :meth:`~BenchmarkResult.timing_table`: pre-computation, per-request solve
  and memory update, separately;
* :meth:`~BenchmarkResult.effectiveness_table`,
  :meth:`~BenchmarkResult.accuracy_table`,
  :meth:`~BenchmarkResult.robustness_table`: distance to the retrain, clean
  and robust test accuracy, with the do-nothing row (Figures 6-8);
* :meth:`~BenchmarkResult.save`: CSV files and PNG figures.

Every figure is a median over the repeats. :func:`paper_estimator` and
:func:`paper_attack` build the models of the paper's protocol (no intercept,
``alpha=1e-4``, l_inf threat inside [0, 1]).
"""

from __future__ import annotations

import copy
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .attacks import FGSM, PGD
from .forgetters import FORGETTER_NAMES, Retrain
from .metrics import gradient_residual, parameter_distance, robust_accuracy

__all__ = [
    "ATTACKS",
    "DATASETS",
    "DEFAULT_FORGETTERS",
    "DEFAULT_REMOVALS",
    "MODELS",
    "PROTOCOLS",
    "BenchmarkResult",
    "Protocol",
    "load_dataset",
    "paper_attack",
    "paper_estimator",
    "parse_removals",
    "run_benchmark",
]

#: the forgetters compared by default (the exact retrain is always the reference)
DEFAULT_FORGETTERS = tuple(name for name in FORGETTER_NAMES if name != "retrain")
#: removal sizes of a default run: counts, or percentages of the training rows
DEFAULT_REMOVALS = "1,5,10,1%,2%"
DATASETS = ("digits", "mnist-b", "covtype")
MODELS = ("logistic", "ridge")
ATTACKS = ("fgsm", "pgd")

# Method names of the two reference rows.
RETRAIN = "retrain"
DO_NOTHING = "do-nothing"


@dataclass(frozen=True)
class Protocol:
    """Threat model and attack recipe of one dataset (the MUter paper's Section 5).

    Parameters
    ----------
    epsilon : float
        Radius of the l_inf ball.
    pgd_step : float
        PGD step size.
    pgd_steps : int
        PGD iterations.
    clip : tuple of float
        Input domain.
    repeats : int
        Default number of repeats of a benchmark run, chosen so that the
        default run fits its time budget on a 2-core CPU machine (5 minutes
        for MNIST-b, 15 for Covtype).
    """

    epsilon: float
    pgd_step: float
    pgd_steps: int
    clip: tuple = (0.0, 1.0)
    repeats: int = 3


#: protocols of the datasets; ``digits`` is an offline stand-in for MNIST-b
PROTOCOLS = {
    "digits": Protocol(epsilon=64 / 255, pgd_step=8 / 255, pgd_steps=15, repeats=5),
    "mnist-b": Protocol(epsilon=64 / 255, pgd_step=8 / 255, pgd_steps=15, repeats=2),
    "covtype": Protocol(epsilon=4 / 255, pgd_step=0.004, pgd_steps=7, repeats=2),
}


def _check_choice(kind, value, choices):
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(choices)}.")


# ---- the paper's set-up -------------------------------------------------------------
def load_dataset(name: str, path=None):
    """Return ``X_train, X_test, y_train, y_test`` of a benchmark dataset.

    Parameters
    ----------
    name : {'digits', 'mnist-b', 'covtype'}
        ``'digits'``: scikit-learn's bundled 8x8 digits, 1 vs 7, scaled to
        [0, 1], a stratified 75/25 split (offline, a few hundred rows).
        The others: :func:`skmuter.datasets.load_mnist_b` and
        :func:`skmuter.datasets.load_covtype_binary`.
    path : str or path-like, default=None
        Local data file or directory (ignored for ``'digits'``).

    Returns
    -------
    X_train, X_test, y_train, y_test : ndarray

    Examples
    --------
    >>> from skmuter.benchmark import load_dataset
    >>> X_train, X_test, y_train, y_test = load_dataset("digits")
    >>> X_train.shape, sorted(set(y_train.tolist()))
    ((270, 64), [1, 7])
    """
    _check_choice("dataset", name, DATASETS)
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        X, y = load_digits(return_X_y=True)
        keep = np.isin(y, (1, 7))
        return train_test_split(X[keep] / 16.0, y[keep], test_size=0.25, stratify=y[keep],
                                random_state=0)
    from . import datasets

    if name == "mnist-b":
        return datasets.load_mnist_b(path)
    return datasets.load_covtype_binary(path)


def paper_attack(dataset: str, attack: str = "fgsm", random_state=0):
    """The attack of the paper's protocol for ``dataset``.

    Parameters
    ----------
    dataset : {'digits', 'mnist-b', 'covtype'}
    attack : {'fgsm', 'pgd'}, default='fgsm'
        ``'fgsm'`` is the paper's variant: a random start then one step of
        size epsilon.
    random_state : int, default=0
        Seed of the random start.

    Returns
    -------
    attack : PGD or FGSM

    Examples
    --------
    >>> from skmuter.benchmark import paper_attack
    >>> paper_attack("covtype", "pgd").n_steps
    7
    """
    _check_choice("dataset", dataset, DATASETS)
    _check_choice("attack", attack, ATTACKS)
    p = PROTOCOLS[dataset]
    if attack == "pgd":
        return PGD(epsilon=p.epsilon, step_size=p.pgd_step, n_steps=p.pgd_steps,
                   random_start=True, clip=p.clip, random_state=random_state)
    return FGSM(epsilon=p.epsilon, clip=p.clip, random_start=True, random_state=random_state)


def paper_estimator(model: str = "logistic", attack=None, alpha: float = 1e-4):
    """An unfitted linear model of the paper's protocol (no intercept, exact solver).

    Parameters
    ----------
    model : {'logistic', 'ridge'}, default='logistic'
        ``'ridge'`` is the ridge classifier (the paper's "RR" rows).
    attack : attack object, default=None
        Threat model; ``None`` uses the MNIST-b one.
    alpha : float, default=1e-4
        L2 penalty (the paper's lambda).

    Returns
    -------
    estimator : AdversarialLogisticRegression or AdversarialRidgeClassifier

    Examples
    --------
    >>> from skmuter.benchmark import paper_estimator
    >>> paper_estimator("ridge").get_params()["fit_intercept"]
    False
    """
    from .linear import AdversarialLogisticRegression, AdversarialRidgeClassifier

    _check_choice("model", model, MODELS)
    cls = AdversarialLogisticRegression if model == "logistic" else AdversarialRidgeClassifier
    if attack is None:
        attack = paper_attack("mnist-b")
    return cls(attack=attack, alpha=alpha, fit_intercept=False, solver="exact")


_REMOVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


def parse_removals(spec, n_train: int):
    """Turn a removal specification into ``(label, count)`` pairs.

    Parameters
    ----------
    spec : str or sequence
        Comma-separated counts and percentages of the training rows, e.g.
        ``"1,5,10,1%,2%"``, or a sequence of such items (ints allowed).
    n_train : int
        Number of training rows.

    Returns
    -------
    removals : list of (str, int)
        Label (``'1%'`` stays ``'1%'``) and row count, in the given order,
        duplicates of the same count dropped.

    Raises
    ------
    ValueError
        For an item that is not a positive count or percentage, and for a
        count that would leave fewer than 2 training rows.

    Examples
    --------
    >>> from skmuter.benchmark import parse_removals
    >>> parse_removals("1,5,1%", 13007)
    [('1', 1), ('5', 5), ('1%', 130)]
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out, seen = [], set()
    for item in items:
        text = str(item).strip()
        m = _REMOVAL.match(text)
        if not m:
            raise ValueError(f"bad removal size {text!r}: use counts and percentages such as "
                             "1,5,10,1%,2%.")
        value, percent = float(m.group(1)), m.group(2) == "%"
        if percent:
            count = round(value / 100.0 * n_train)
        elif value != int(value):
            raise ValueError(f"bad removal size {text!r}: a count must be a whole number.")
        else:
            count = int(value)
        if count < 1:
            raise ValueError(f"removal size {text!r} is less than one row of {n_train}.")
        if count > n_train - 2:
            raise ValueError(f"removal size {text!r} ({count} rows) is larger than the data "
                             f"allows: {n_train} training rows.")
        if count not in seen:
            seen.add(count)
            out.append((text, count))
    if not out:
        raise ValueError("no removal sizes given.")
    return out


# ---- running ----------------------------------------------------------------------
def _draw(rng, y, count):
    """A random removal order of ``count`` rows that leaves every class some rows."""
    n = len(y)
    classes = np.unique(y)
    for _ in range(100):
        rows = rng.choice(n, size=count, replace=False)
        kept = np.ones(n, dtype=bool)
        kept[rows] = False
        if len(np.unique(y[kept])) == len(classes):
            return rows
    raise ValueError(f"cannot remove {count} rows and keep every class.")


_TIMES = ("precompute_time", "solve_time", "update_time", "time", "wall_time")


def _forget_timed(model, rows, sequential):
    from .forgetters import ForgetWarning

    start = len(model.forget_log_)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ForgetWarning)
        t0 = time.perf_counter()
        if sequential:
            model.partial_forget(rows)
        else:
            model.forget(rows)
        wall = time.perf_counter() - t0
    for w in caught:
        if not issubclass(w.category, ForgetWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    log = model.forget_log_[start:]
    return {
        "precompute_time": float(sum(r["precompute_time"] for r in log)),
        "solve_time": float(sum(r["solve_time"] for r in log)),
        "update_time": float(sum(r["update_time"] for r in log)),
        "time": float(sum(r["total_time"] for r in log)),
        "wall_time": wall,
        "n_requests": len(log),
        "n_warnings": sum(issubclass(w.category, ForgetWarning) for w in caught),
    }


def _add(total, timing):
    return {k: total.get(k, 0) + v for k, v in timing.items()}


def _evaluate(model, X_test, y_test, attack):
    out = {
        "clean_accuracy": float(model.score(X_test, y_test)),
        "robust_accuracy": robust_accuracy(model, X_test, y_test),
    }
    if attack is not None:
        out["attack_accuracy"] = robust_accuracy(model, X_test, y_test, attack=attack)
    return out


def run_benchmark(estimator, X_train, y_train, X_test, y_test, *,
                  removals=DEFAULT_REMOVALS, forgetters=DEFAULT_FORGETTERS, repeats: int = 3,
                  attack=None, sequential: bool = False, gradient_residuals: str = "all",
                  random_state=0, progress: bool = True,
                  info: dict | None = None) -> BenchmarkResult:
    """Fit once, forget random rows with every forgetter, compare with exact retrains.

    Each repeat draws one random removal order. The removal sets of the
    different sizes are its prefixes, removed one after another as in the
    paper: a forgetter starts from a copy of the fitted model, builds its
    memory once (pre-computation) and receives one request per size step
    (the first ``k1`` rows, then the next ``k2 - k1``, ...). Its time for a
    size is the sum of its requests so far. For every size an exact retrain
    from scratch on the remaining rows is timed and is the reference.

    Parameters
    ----------
    estimator : skmuter estimator
        Unfitted (it is fitted here, timed) or already fitted on ``X_train``.
    X_train, y_train : array-like
        Training data (row positions are what gets forgotten).
    X_test, y_test : array-like
        Held-out data for clean and robust accuracy.
    removals : str or sequence, default="1,5,10,1%,2%"
        Removal sizes (see :func:`parse_removals`); run in increasing order.
    forgetters : sequence of str, default=all but 'retrain'
        Forgetter names (:data:`skmuter.forgetters.FORGETTER_NAMES`); the
        exact retrain always runs as the reference, ``'retrain'`` in the list
        is ignored.
    repeats : int, default=3
        Random removal orders; tables report medians over them.
    attack : attack object, default=None
        Extra evaluation attack (column ``attack_accuracy``), e.g. the paper's
        FGSM; robust accuracy under the exact worst case is always reported.
    sequential : bool, default=False
        Send one request per row (``partial_forget``, the paper's Algorithm 1)
        instead of one request per size step.
    gradient_residuals : {'all', 'largest', 'none'}, default='all'
        Where to compute :func:`skmuter.metrics.gradient_residual` (a pass over
        the training data per model): at every size of every repeat, at the
        largest size of the first repeat only, or nowhere.
    random_state : int, default=0
        Seed of the removal draws.
    progress : bool, default=True
        Show a progress bar on stderr.
    info : dict, default=None
        Extra facts to keep with the result (dataset name, ...).

    Returns
    -------
    result : BenchmarkResult

    Examples
    --------
    >>> from skmuter.benchmark import (load_dataset, paper_attack, paper_estimator,
    ...                                run_benchmark)
    >>> X_train, X_test, y_train, y_test = load_dataset("digits")
    >>> est = paper_estimator("logistic", paper_attack("digits"))
    >>> result = run_benchmark(est, X_train, y_train, X_test, y_test, removals="1,2",
    ...                        forgetters=["muter", "newton"], repeats=1, progress=False)
    >>> list(result.effectiveness_table().index)
    ['muter', 'newton', 'do-nothing']
    >>> table = result.effectiveness_table("residual_fraction")
    >>> bool((table.loc["muter"] < table.loc["newton"]).all())
    True
    """
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}.")
    _check_choice("gradient_residuals", gradient_residuals, ("all", "largest", "none"))
    names = []
    for name in forgetters:
        key = str(name).strip().lower()
        if key not in FORGETTER_NAMES:
            raise ValueError(f"unknown forgetter {name!r}; choose from {', '.join(FORGETTER_NAMES)}.")
        if key != RETRAIN and key not in names:
            names.append(key)
    y_train = np.asarray(y_train)
    sizes = sorted(parse_removals(removals, len(y_train)), key=lambda item: item[1])
    info = dict(info or {})

    try:
        check_is_fitted(estimator)
        model = estimator
        info.setdefault("fit_time", float("nan"))
    except NotFittedError:
        t0 = time.perf_counter()
        model = estimator.fit(X_train, y_train)
        info["fit_time"] = time.perf_counter() - t0
    info.update({
        "estimator": type(model).__name__,
        "model_repr": repr(model),
        "eval_attack": type(attack).__name__ if attack is not None else None,
        "n_train": len(y_train),
        "n_test": len(y_test),
        "n_features": int(np.shape(X_train)[1]),
        "repeats": int(repeats),
        "sequential": bool(sequential),
        "optimality_residual": float(getattr(model, "optimality_residual_", float("nan"))),
        "n_nonzero_coef": int(np.count_nonzero(getattr(model, "coef_", []))),
        "date": time.strftime("%Y-%m-%d"),
    })
    original = _evaluate(model, X_test, y_test, attack)
    info.update({f"original_{k}": v for k, v in original.items()})

    largest = sizes[-1][1]

    def residual(est, count, rep):
        if gradient_residuals == "all" or (
                gradient_residuals == "largest" and count == largest and rep == 0):
            return gradient_residual(est)
        return float("nan")

    rng = np.random.default_rng(random_state)
    records = []
    bar = _progress(repeats * len(sizes) * (len(names) + 1), progress)
    try:
        for rep in range(repeats):
            order = _draw(rng, y_train, largest)
            refs = {}
            for label, count in sizes:
                base = {"removal": label, "n_removed": count, "repeat": rep}
                bar.set_postfix_str(f"#{rep + 1} {label} retrain", refresh=False)
                ref = copy.deepcopy(model).set_params(forgetter=Retrain())
                timing = _forget_timed(ref, order[:count], sequential=False)
                refs[count] = ref
                records.append({**base, "method": RETRAIN, **timing,
                                "distance": 0.0, "residual_fraction": 0.0,
                                "gradient_residual": residual(ref, count, rep),
                                **_evaluate(ref, X_test, y_test, attack)})
                records.append({**base, "method": DO_NOTHING, "time": 0.0,
                                "distance": parameter_distance(model, ref),
                                "residual_fraction": 1.0, **original})
                bar.update(1)
            for name in names:
                unlearned = copy.deepcopy(model).set_params(forgetter=name)
                done, total = 0, {}
                for label, count in sizes:
                    bar.set_postfix_str(f"#{rep + 1} {label} {name}", refresh=False)
                    total = _add(total, _forget_timed(unlearned, order[done:count], sequential))
                    done = count
                    ref = refs[count]
                    dist = parameter_distance(unlearned, ref)
                    nothing = parameter_distance(model, ref)
                    records.append({
                        "removal": label, "n_removed": count, "repeat": rep, "method": name,
                        **total, "distance": dist,
                        "residual_fraction": dist / nothing if nothing > 0 else float("nan"),
                        "gradient_residual": residual(unlearned, count, rep),
                        **_evaluate(unlearned, X_test, y_test, attack),
                    })
                    bar.update(1)
                del unlearned
            del refs
    finally:
        bar.close()
    return BenchmarkResult(pd.DataFrame.from_records(records), info)


def _progress(total, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc="unlearning", unit="forget",
                leave=False, dynamic_ncols=True, mininterval=1.0)


# ---- results ------------------------------------------------------------------------
_METRICS = ("time", "precompute_time", "solve_time", "update_time", "wall_time", "distance",
            "residual_fraction", "gradient_residual", "clean_accuracy", "robust_accuracy",
            "attack_accuracy")


@dataclass
class BenchmarkResult:
    """Records of one benchmark run and the paper's tables and figures made from them.

    Parameters
    ----------
    records : DataFrame
        One row per (removal size, repeat, method); ``method`` is a forgetter
        name, ``'retrain'`` or ``'do-nothing'``. Columns: ``removal``
        (label), ``n_removed``, ``repeat``, ``time`` (seconds of the forget
        requests, pre-computation excluded), ``precompute_time``,
        ``solve_time``, ``update_time``, ``wall_time`` (the whole call),
        ``distance`` (to the retrain), ``residual_fraction``,
        ``gradient_residual``, ``clean_accuracy``, ``robust_accuracy``
        (exact worst case), ``attack_accuracy`` (the evaluation attack),
        ``n_requests`` and ``n_warnings`` (requests whose system was not
        positive definite, see :class:`skmuter.forgetters.ForgetWarning`).
        Times, requests and warnings of a forgetter add up over the size steps.
    info : dict
        Facts about the run (sizes, fit time, date, accuracies of the fitted
        model, ...).

    Examples
    --------
    >>> import tempfile
    >>> from skmuter.benchmark import (load_dataset, paper_attack, paper_estimator,
    ...                                run_benchmark)
    >>> X_train, X_test, y_train, y_test = load_dataset("digits")
    >>> est = paper_estimator("ridge", paper_attack("digits"))
    >>> result = run_benchmark(est, X_train, y_train, X_test, y_test, removals="1,2%",
    ...                        forgetters=["muter"], repeats=1, progress=False)
    >>> list(result.efficiency_table().index)[:2]
    ['muter', 'retrain']
    >>> result.accuracy_table().columns.tolist()
    ['1', '2% (5)']
    >>> with tempfile.TemporaryDirectory() as out:
    ...     names = sorted(p.name for p in result.save(out) if p.suffix == ".png")
    >>> names
    ['accuracy.png', 'effectiveness.png', 'efficiency.png', 'robustness.png']
    """

    records: pd.DataFrame
    info: dict = field(default_factory=dict)

    # ---- tables ---------------------------------------------------------------------
    def _methods(self):
        seen = list(dict.fromkeys(self.records["method"]))
        forgetters = [m for m in seen if m not in (RETRAIN, DO_NOTHING)]
        return forgetters

    def _columns(self):
        sizes = (self.records.drop_duplicates("n_removed")[["removal", "n_removed"]]
                 .sort_values("n_removed"))
        return [_column_label(r.removal, r.n_removed) for r in sizes.itertuples()]

    def _pivot(self, metric, methods):
        df = self.records[self.records["method"].isin(methods)]
        if metric not in df or df[metric].isna().all():
            return None
        table = df.pivot_table(index="method", columns="n_removed", values=metric,
                               aggfunc="median", dropna=False)
        table = table.reindex(index=methods)
        table.columns = self._columns()
        table.columns.name = "removed"
        table.index.name = None
        return table

    def summary(self) -> pd.DataFrame:
        """Medians over repeats of every metric, one row per (removal size, method)."""
        cols = [c for c in _METRICS if c in self.records]
        order = {m: i for i, m in enumerate([*self._methods(), RETRAIN, DO_NOTHING])}
        out = (self.records.groupby(["n_removed", "removal", "method"], sort=False)[cols]
               .median().reset_index())
        out["_order"] = out["method"].map(order)
        return out.sort_values(["n_removed", "_order"]).drop(columns="_order").reset_index(
            drop=True)

    def efficiency_table(self, reference: str | None = None) -> pd.DataFrame:
        """Seconds to forget, per removal size (the layout of the paper's Table 6).

        Rows: each forgetter (time of its requests, pre-computation excluded),
        ``retrain``, then ``speed-up`` (retrain time over the ``reference``
        forgetter's, default ``'muter'`` or the first) and ``speed-up incl.
        pre-computation``.

        Returns
        -------
        table : DataFrame
        """
        methods = self._methods()
        table = self._pivot("time", [*methods, RETRAIN])
        if methods:
            ref = reference or ("muter" if "muter" in methods else methods[0])
            pre = self._pivot("precompute_time", [ref]).loc[ref]
            table.loc[f"speed-up (retrain / {ref})"] = table.loc[RETRAIN] / table.loc[ref]
            table.loc["speed-up incl. pre-computation"] = (
                table.loc[RETRAIN] / (table.loc[ref] + pre))
        return table

    def timing_table(self) -> pd.DataFrame:
        """Median seconds of each stage: pre-computation, solve, memory update, wall.

        Returns
        -------
        table : DataFrame
            Rows ``(method, stage)``, columns the removal sizes.
        """
        methods = [*self._methods(), RETRAIN]
        parts = {}
        for stage, col in (("pre-computation", "precompute_time"), ("solve", "solve_time"),
                           ("update", "update_time"), ("whole call", "wall_time")):
            parts[stage] = self._pivot(col, methods)
        table = pd.concat(parts, names=["stage", "method"]).swaplevel().sort_index(
            level=0, sort_remaining=False)
        return table.reindex(methods, level=0)

    def effectiveness_table(self, metric: str = "distance") -> pd.DataFrame:
        """Median ``||w_u - w_retrain||_2`` per removal size, with the do-nothing row.

        Parameters
        ----------
        metric : {'distance', 'residual_fraction', 'gradient_residual'}
            ``'residual_fraction'`` divides by the do-nothing distance;
            ``'gradient_residual'`` is the norm of the minimal subgradient of the
            remaining objective (shown with the retrain row instead of do-nothing).

        Returns
        -------
        table : DataFrame
        """
        if metric == "gradient_residual":
            return self._pivot(metric, [*self._methods(), RETRAIN])
        return self._pivot(metric, [*self._methods(), DO_NOTHING])

    def accuracy_table(self) -> pd.DataFrame:
        """Median clean test accuracy per removal size (forgetters, retrain, do-nothing)."""
        return self._pivot("clean_accuracy", [*self._methods(), RETRAIN, DO_NOTHING])

    def robustness_table(self, attack: bool = False) -> pd.DataFrame:
        """Median robust test accuracy per removal size.

        Parameters
        ----------
        attack : bool, default=False
            ``False``: under the exact worst case of the threat model;
            ``True``: under the evaluation attack given to :func:`run_benchmark`.

        Returns
        -------
        table : DataFrame or None
            None when no evaluation attack was run and ``attack=True``.
        """
        metric = "attack_accuracy" if attack else "robust_accuracy"
        return self._pivot(metric, [*self._methods(), RETRAIN, DO_NOTHING])

    def tables(self) -> dict:
        """Every table, by file stem."""
        out = {
            "efficiency": self.efficiency_table(),
            "timing": self.timing_table(),
            "effectiveness": self.effectiveness_table(),
            "residual_fraction": self.effectiveness_table("residual_fraction"),
            "gradient_residual": self.effectiveness_table("gradient_residual"),
            "accuracy": self.accuracy_table(),
            "robustness": self.robustness_table(),
            "robustness_attack": self.robustness_table(attack=True),
        }
        return {k: v for k, v in out.items() if v is not None}

    def report(self, tables: bool = True) -> str:
        """The run as text: set-up, fitted model, then every table.

        Parameters
        ----------
        tables : bool, default=True
            ``False`` gives the header only.

        Returns
        -------
        text : str
        """
        info = self.info
        attack = info.get("eval_attack") or "attack"
        lines = [
            (f"data: {info.get('dataset', '?')}, {info['n_train']} training / {info['n_test']} "
            f"test rows, {info['n_features']} features"),
            f"model: {' '.join(info.get('model_repr', info['estimator']).split())}",
            (f"fit: {info['fit_time']:.2f} s, optimality residual "
            f"{info['optimality_residual']:.1e}, {info['n_nonzero_coef']} of "
            f"{info['n_features']} weights non-zero"),
            f"test accuracy: clean {info['original_clean_accuracy']:.4f}, robust "
            f"{info['original_robust_accuracy']:.4f} (exact worst case)"
            + (f", {info['original_attack_accuracy']:.4f} ({attack})"
               if "original_attack_accuracy" in info else ""),
        ]
        if not tables:
            return "\n".join(lines)
        n = info.get("repeats", "?")
        steps = "one row per request" if info.get("sequential") else "one request per size step"
        parts = [
            ((f"Efficiency: seconds to forget, median of {n} repeats, pre-computation excluded "
             f"({steps}; the paper's Table 6 layout)"), self.efficiency_table(), "{:.3g}"),
            ("Time per stage (seconds, median)", self.timing_table(), "{:.3g}"),
            ((f"Effectiveness: ||w_u - w_retrain||_2, median of {n} "
             "(do-nothing: ||w* - w_retrain||_2)"), self.effectiveness_table(), "{:.2e}"),
            (("Residual fraction: distance / do-nothing distance (0 = exact retrain, 1 = no "
             "better than doing nothing)"), self.effectiveness_table("residual_fraction"),
             "{:.3g}"),
            ("Gradient residual of the remaining robust objective (0 at its optimum)",
             self.effectiveness_table("gradient_residual"), "{:.2e}"),
            ("Clean test accuracy (median)", self.accuracy_table(), "{:.4f}"),
            ("Robust test accuracy, exact worst case (median)", self.robustness_table(),
             "{:.4f}"),
            (f"Test accuracy under {attack} (median)", self.robustness_table(attack=True),
             "{:.4f}"),
        ]
        for title, table, fmt in parts:
            if table is not None:
                lines += ["", title, table.to_string(float_format=fmt.format, na_rep="-")]
        warned = self._warned()
        if warned:
            lines += ["", ("note: forget requests whose matrix was not positive definite "
                      f"(solved as indefinite or least squares, see ForgetWarning): {warned}")]
        return "\n".join(lines)

    def _warned(self):
        rec = self.records
        if "n_warnings" not in rec:
            return ""
        last = rec[rec["n_removed"] == rec["n_removed"].max()]
        counts = last.groupby("method", sort=False)[["n_warnings", "n_requests"]].max()
        counts = counts[counts["n_warnings"] > 0]
        return ", ".join(f"{m} ({int(r.n_warnings)} of {int(r.n_requests)} requests)"
                         for m, r in counts.iterrows())

    # ---- files ----------------------------------------------------------------------
    def save(self, out_dir, prefix: str = "") -> list:
        """Write the records, summary and tables as CSV and the figures as PNG.

        Parameters
        ----------
        out_dir : str or path-like
            Created when missing.
        prefix : str, default=''
            Prepended to every file name (e.g. ``'mnist-b_logistic_'``).

        Returns
        -------
        paths : list of Path
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        self.records.to_csv(out / f"{prefix}records.csv", index=False)
        self.summary().to_csv(out / f"{prefix}summary.csv", index=False)
        paths += [out / f"{prefix}records.csv", out / f"{prefix}summary.csv"]
        for name, table in self.tables().items():
            path = out / f"{prefix}{name}.csv"
            table.to_csv(path)
            paths.append(path)
        paths += self.plot(out, prefix=prefix)
        return paths

    def plot(self, out_dir, prefix: str = "") -> list:
        """Draw the paper's figures against the removal size, as PNG files.

        ``efficiency.png`` (seconds, log scale), ``effectiveness.png``
        (distance to the retrain and residual fraction, Figure 6),
        ``accuracy.png`` (clean test accuracy, Figure 7) and
        ``robustness.png`` (robust test accuracy, Figure 8).

        Returns
        -------
        paths : list of Path
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        title = self._title()
        paths = []

        def finish(fig, name):
            fig.suptitle(title, fontsize=10)
            fig.tight_layout()
            path = out / f"{prefix}{name}.png"
            fig.savefig(path, dpi=120)
            plt.close(fig)
            paths.append(path)

        fig, ax = plt.subplots(figsize=(7, 4.5))
        self._lines(ax, self.efficiency_table().loc[[*self._methods(), RETRAIN]], log=True)
        ax.set_ylabel("seconds to forget (median)")
        finish(fig, "efficiency")

        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        self._lines(axes[0], self.effectiveness_table(), log=True)
        axes[0].set_ylabel(r"$\|w_u - w_{retrain}\|_2$ (median)")
        axes[0].set_title("effectiveness: distance to the exact retrain", fontsize=10)
        self._lines(axes[1], self.effectiveness_table("residual_fraction"), log=True)
        axes[1].set_ylabel("residual fraction (1 = do nothing)")
        axes[1].set_title("distance / do-nothing distance", fontsize=10)
        finish(fig, "effectiveness")

        fig, ax = plt.subplots(figsize=(7, 4.5))
        self._lines(ax, self.accuracy_table())
        ax.set_ylabel("clean test accuracy (median)")
        finish(fig, "accuracy")

        attack_table = self.robustness_table(attack=True)
        fig, axes = plt.subplots(1, 2 if attack_table is not None else 1,
                                 figsize=(12 if attack_table is not None else 7, 4.5),
                                 squeeze=False)
        self._lines(axes[0, 0], self.robustness_table())
        axes[0, 0].set_ylabel("robust test accuracy (median)")
        axes[0, 0].set_title("exact worst case", fontsize=10)
        if attack_table is not None:
            self._lines(axes[0, 1], attack_table)
            axes[0, 1].set_ylabel("test accuracy under attack (median)")
            axes[0, 1].set_title(f"{self.info.get('attack', 'evaluation attack')}",
                                 fontsize=10)
        finish(fig, "robustness")
        return paths

    def plot_overview(self, path) -> Path:
        """One figure for a single removal size: time and distance to retrain per method.

        Parameters
        ----------
        path : str or path-like
            PNG file to write.

        Returns
        -------
        path : Path
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        summary = self.summary()
        last = summary[summary["n_removed"] == summary["n_removed"].max()]
        last = last.set_index("method")
        methods = self._methods()
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        times = last.loc[[*methods, RETRAIN], "time"]
        axes[0].barh(times.index, np.maximum(times.to_numpy(), 1e-6), color=_colors(times.index))
        axes[0].set_xscale("log")
        axes[0].set_xlabel("seconds to forget (pre-computation excluded)")
        dist = last.loc[[*methods, DO_NOTHING], "distance"]
        axes[1].barh(dist.index, np.maximum(dist.to_numpy(), _FLOOR), color=_colors(dist.index))
        axes[1].set_xscale("log")
        axes[1].axvline(dist.loc[DO_NOTHING], color="gray", linestyle=":", linewidth=1)
        axes[1].set_xlabel(r"$\|w_u - w_{retrain}\|_2$ (left is better; dotted: do nothing)")
        for ax in axes:
            ax.invert_yaxis()
            ax.grid(axis="x", alpha=0.3)
        label = _column_label(last["removal"].iloc[0], int(last["n_removed"].iloc[0]))
        fig.suptitle(f"{self._title()}: forgetting {label} rows", fontsize=10)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path

    # ---- drawing helpers ------------------------------------------------------------
    def _title(self):
        bits = [self.info.get("dataset"), self.info.get("model"), self.info.get("attack")]
        head = ", ".join(str(b) for b in bits if b)
        n = self.info.get("n_train")
        tail = f"{n} training rows, median of {self.info.get('repeats', '?')} repeats"
        return f"{head} ({tail})" if head else tail

    def _lines(self, ax, table, log=False):
        x = np.arange(table.shape[1])
        for method, row in table.iterrows():
            y = row.to_numpy(dtype=float)
            if log:
                y = np.maximum(y, _FLOOR)
            style = _STYLE.get(method, {})
            # The references go underneath: forgetters that match them stay visible.
            reference = method in (RETRAIN, DO_NOTHING)
            ax.plot(x, y, marker=style.get("marker", "o"), linestyle=style.get("ls", "-"),
                    color=style.get("color"), label=method, linewidth=2.5 if reference else 1.5,
                    markersize=5, zorder=1 if reference else 2)
        ax.set_xticks(x, table.columns, rotation=0)
        ax.set_xlabel("rows removed")
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)


# Distances below this are drawn at it (log axes cannot show exact zeros).
_FLOOR = 1e-15

_STYLE = {
    "muter": {"color": "tab:red", "marker": "*"},
    "muter-paper": {"color": "tab:pink", "marker": "x"},
    "newton": {"color": "tab:blue", "marker": "o"},
    "newton-delta": {"color": "tab:cyan", "marker": "o", "ls": "--"},
    "influence": {"color": "tab:green", "marker": "s"},
    "influence-delta": {"color": "tab:olive", "marker": "s", "ls": "--"},
    "fisher": {"color": "tab:purple", "marker": "^"},
    "fisher-delta": {"color": "tab:brown", "marker": "^", "ls": "--"},
    RETRAIN: {"color": "black", "marker": "D"},
    DO_NOTHING: {"color": "gray", "marker": "", "ls": ":"},
}


def _colors(methods):
    return [_STYLE.get(m, {}).get("color", "tab:gray") for m in methods]


def _column_label(label, count):
    return label if not label.endswith("%") else f"{label} ({count})"
