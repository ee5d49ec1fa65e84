"""The outcome of a benchmark run: its records and the paper's tables made from them.

:class:`BenchmarkResult` keeps one record per (removal size, repeat, method)
and turns them into medians over the repeats: efficiency (Table 6 layout),
time per stage, effectiveness, accuracy and robustness tables, a text report
and CSV files. Its figures are drawn by :mod:`skmuter.benchmark._plotting`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import _plotting
from ._protocol import DO_NOTHING, RETRAIN, removal_label

_METRICS = ("time", "precompute_time", "solve_time", "update_time", "wall_time", "distance",
            "residual_fraction", "gradient_residual", "clean_accuracy", "robust_accuracy",
            "attack_accuracy")


def write_csv(out_dir, prefix, frames, tables):
    """Write ``frames`` (``{name: DataFrame}``, without their index) and
    ``tables`` (with it) as ``<prefix><name>.csv`` in ``out_dir`` (created
    when missing); returns ``(folder, paths)``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in frames.items():
        paths.append(out / f"{prefix}{name}.csv")
        frame.to_csv(paths[-1], index=False)
    for name, table in tables.items():
        paths.append(out / f"{prefix}{name}.csv")
        table.to_csv(paths[-1])
    return out, paths


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
        return [removal_label(r.removal, r.n_removed) for r in sizes.itertuples()]

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
    def save(self, out_dir, prefix: str = "", figures: bool = True) -> list:
        """Write the records, summary and tables as CSV and the figures as PNG.

        Parameters
        ----------
        out_dir : str or path-like
            Created when missing.
        prefix : str, default=''
            Prepended to every file name (e.g. ``'mnist-b_logistic_'``).
        figures : bool, default=True
            Also draw the figures of :meth:`plot` (needs matplotlib, the
            ``plot`` extra); ``False`` writes the CSV files only.

        Returns
        -------
        paths : list of Path
        """
        out, paths = write_csv(out_dir, prefix, {"records": self.records,
                                                 "summary": self.summary()}, self.tables())
        if figures:
            paths += self.plot(out, prefix=prefix)
        return paths

    # ---- figures (matplotlib, imported when drawing) ---------------------------------
    def plot(self, out_dir, prefix: str = "") -> list:
        """Draw the paper's figures against the removal size, as PNG files.

        ``efficiency.png`` (seconds, log scale), ``effectiveness.png``
        (distance to the retrain and residual fraction, Figure 6),
        ``accuracy.png`` (clean test accuracy, Figure 7) and
        ``robustness.png`` (robust test accuracy, Figure 8). Needs
        matplotlib (``pip install 'skmuter[plot]'``).

        Returns
        -------
        paths : list of Path

        Raises
        ------
        ImportError
            When matplotlib is not installed.
        """
        return _plotting.plot(self, out_dir, prefix=prefix)

    def plot_overview(self, path) -> Path:
        """One figure for a single removal size: time and distance to retrain per method.

        Needs matplotlib (``pip install 'skmuter[plot]'``).

        Parameters
        ----------
        path : str or path-like
            PNG file to write.

        Returns
        -------
        path : Path

        Raises
        ------
        ImportError
            When matplotlib is not installed.
        """
        return _plotting.plot_overview(self, path)
