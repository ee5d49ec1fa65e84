"""Running the benchmark: one fit, random removal orders, timed forgets beside retrains.

:class:`BenchmarkSettings` holds what a run does (removal sizes, forgetters,
repeats, evaluation attack, ...); :func:`run_benchmark` fits once, then for
every repeat draws a removal order whose prefixes are the removal sets, times
an exact retrain for every size and every forgetter's requests, and evaluates
each model on the test rows.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..forgetters import FORGETTER_NAMES, ForgetWarning, Retrain
from ..metrics import gradient_residual, parameter_distance, robust_accuracy
from ._protocol import (
    DEFAULT_FORGETTERS,
    DEFAULT_REMOVALS,
    DO_NOTHING,
    RETRAIN,
    _check_choice,
    parse_removals,
)
from ._results import BenchmarkResult

_GRADIENT_RESIDUALS = ("all", "largest", "none")


@dataclass(frozen=True)
class BenchmarkSettings:
    """What one benchmark run does; the defaults are those of :func:`run_benchmark`.

    Parameters
    ----------
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
    forget_tol : float or None, default=None
        The estimators' ``forget_tol`` during the run. None (default): each
        forgetter's own step is timed and measured, unchecked, as in the
        paper's protocol; a number: every request is checked and corrected
        to it (all forgetters then land near the retrain; the times include
        the check).
    random_state : int, default=0
        Seed of the removal draws.
    progress : bool, default=True
        Show a progress bar on stderr, drawn only when stderr is a terminal
        (never ``\\r`` fragments in a log file).

    Raises
    ------
    ValueError
        For a non-positive ``repeats``, an unknown ``gradient_residuals`` or
        an unknown forgetter name.

    Examples
    --------
    >>> from skmuter.benchmark import BenchmarkSettings
    >>> BenchmarkSettings(forgetters=["MUter", "retrain", "newton"]).methods()
    ['muter', 'newton']
    """

    removals: str | Sequence = DEFAULT_REMOVALS
    forgetters: Sequence[str] = DEFAULT_FORGETTERS
    repeats: int = 3
    attack: object = None
    sequential: bool = False
    gradient_residuals: str = "all"
    forget_tol: float | None = None
    random_state: int | None = 0
    progress: bool = True

    def __post_init__(self):
        repeats = self.repeats
        if not isinstance(repeats, (int, np.integer)) or repeats < 1:
            raise ValueError(f"repeats must be a positive integer, got {repeats!r}.")
        _check_choice("gradient_residuals", self.gradient_residuals, _GRADIENT_RESIDUALS)
        self.methods()

    def methods(self) -> list:
        """The forgetters to compare: lower-case names, without duplicates or 'retrain'."""
        names = []
        for name in self.forgetters:
            key = str(name).strip().lower()
            if key not in FORGETTER_NAMES:
                raise ValueError(f"unknown forgetter {name!r}; choose from "
                                 f"{', '.join(FORGETTER_NAMES)}.")
            if key != RETRAIN and key not in names:
                names.append(key)
        return names


_SETTINGS = tuple(f.name for f in dataclasses.fields(BenchmarkSettings))


def run_benchmark(estimator, X_train, y_train, X_test, y_test,
                  settings: BenchmarkSettings | None = None, *, info: dict | None = None,
                  **options) -> BenchmarkResult:
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
    settings : BenchmarkSettings, default=None
        What the run does; ``None`` uses the defaults of
        :class:`BenchmarkSettings`.
    info : dict, default=None
        Extra facts to keep with the result (dataset name, ...).
    **options
        Fields of :class:`BenchmarkSettings` (``removals``, ``forgetters``,
        ``repeats``, ``attack``, ``sequential``, ``gradient_residuals``,
        ``random_state``, ``progress``), replacing those of ``settings``.

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
    unknown = [name for name in options if name not in _SETTINGS]
    if unknown:
        raise TypeError(f"run_benchmark() got an unexpected keyword argument {unknown[0]!r}")
    settings = dataclasses.replace(settings or BenchmarkSettings(), **options)
    names = settings.methods()
    y_train = np.asarray(y_train)
    sizes = sorted(parse_removals(settings.removals, len(y_train)), key=lambda item: item[1])
    model, info = _fitted(estimator, X_train, y_train, dict(info or {}))
    info.update({
        "estimator": type(model).__name__,
        "model_repr": repr(model),
        "eval_attack": type(settings.attack).__name__ if settings.attack is not None else None,
        "n_train": len(y_train),
        "n_test": len(y_test),
        "n_features": int(np.shape(X_train)[1]),
        "repeats": int(settings.repeats),
        "sequential": bool(settings.sequential),
        "optimality_residual": float(getattr(model, "optimality_residual_", float("nan"))),
        "n_nonzero_coef": int(np.count_nonzero(getattr(model, "coef_", []))),
        "date": time.strftime("%Y-%m-%d"),
    })
    original = _evaluate(model, X_test, y_test, settings.attack)
    info.update({f"original_{k}": v for k, v in original.items()})

    run = _Run(model, X_test, y_test, settings, original, largest=sizes[-1][1])
    rng = np.random.default_rng(settings.random_state)
    bar = _progress(settings.repeats * len(sizes) * (len(names) + 1), settings.progress)
    try:
        for rep in range(settings.repeats):
            order = _draw(rng, y_train, run.largest)
            refs = run.references(order, sizes, rep, bar)
            for name in names:
                run.forgetter(name, order, sizes, rep, refs, bar)
            del refs
    finally:
        bar.close()
    return BenchmarkResult(pd.DataFrame.from_records(run.records), info)


def _fitted(estimator, X_train, y_train, info):
    """The estimator fitted on the training rows (timed when it is fitted here)."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
        model = estimator
        info.setdefault("fit_time", float("nan"))
    except NotFittedError:
        t0 = time.perf_counter()
        model = estimator.fit(X_train, y_train)
        info["fit_time"] = time.perf_counter() - t0
    return model, info


class _Run:
    """The records of one run as they are measured, one row per (size, repeat, method)."""

    def __init__(self, model, X_test, y_test, settings, original, largest):
        self.model, self.X_test, self.y_test = model, X_test, y_test
        self.settings, self.original, self.largest = settings, original, largest
        self.records = []

    def _evaluate(self, est):
        return _evaluate(est, self.X_test, self.y_test, self.settings.attack)

    def _copy(self, forgetter, forget_tol):
        """A copy of the fitted model with ``forgetter`` (and ``forget_tol``
        where the model has one)."""
        est = copy.deepcopy(self.model)
        params = {"forgetter": forgetter}
        if "forget_tol" in est.get_params(deep=False):
            params["forget_tol"] = forget_tol
        return est.set_params(**params)

    def _residual(self, est, count, rep):
        where = self.settings.gradient_residuals
        if where == "all" or (where == "largest" and count == self.largest and rep == 0):
            return gradient_residual(est)
        return float("nan")

    def references(self, order, sizes, rep, bar):
        """Exact retrain and do-nothing rows of every size; the retrained models by size."""
        refs = {}
        for label, count in sizes:
            base = {"removal": label, "n_removed": count, "repeat": rep}
            bar.set_postfix_str(f"#{rep + 1} {label} retrain", refresh=False)
            ref = self._copy(Retrain(), None)
            timing = _forget_timed(ref, order[:count], sequential=False)
            refs[count] = ref
            self.records.append({**base, "method": RETRAIN, **timing,
                                 "distance": 0.0, "residual_fraction": 0.0,
                                 "gradient_residual": self._residual(ref, count, rep),
                                 **self._evaluate(ref)})
            self.records.append({**base, "method": DO_NOTHING, "time": 0.0,
                                 "distance": parameter_distance(self.model, ref),
                                 "residual_fraction": 1.0, **self.original})
            bar.update(1)
        return refs

    def forgetter(self, name, order, sizes, rep, refs, bar):
        """One forgetter's rows: its requests, size step after size step, on one copy."""
        unlearned = self._copy(name, self.settings.forget_tol)
        done, total = 0, {}
        for label, count in sizes:
            bar.set_postfix_str(f"#{rep + 1} {label} {name}", refresh=False)
            total = _add(total, _forget_timed(unlearned, order[done:count],
                                              self.settings.sequential))
            done = count
            ref = refs[count]
            dist = parameter_distance(unlearned, ref)
            nothing = parameter_distance(self.model, ref)
            self.records.append({
                "removal": label, "n_removed": count, "repeat": rep, "method": name,
                **total, "distance": dist,
                "residual_fraction": dist / nothing if nothing > 0 else float("nan"),
                "gradient_residual": self._residual(unlearned, count, rep),
                **self._evaluate(unlearned),
            })
            bar.update(1)


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


def _forget_timed(model, rows, sequential):
    """Forget ``rows``; the seconds of the new requests, their count and ForgetWarnings."""
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
        # a record's total_time includes the pre-computation: "time" excludes it
        "time": float(sum(r["total_time"] - r["precompute_time"] for r in log)),
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


def _progress(total, enabled):
    from .._progress import progress

    return progress(total=total, enabled=enabled, desc="unlearning", unit="forget",
                    leave=False, dynamic_ncols=True, mininterval=1.0)
