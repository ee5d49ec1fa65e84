"""The benchmark's figures, drawn with matplotlib (the optional ``plot`` extra).

matplotlib is imported only when a figure is drawn, so that the library and
the rest of the benchmark work without it; a missing matplotlib raises an
:class:`ImportError` that names the extra to install.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._protocol import DO_NOTHING, RETRAIN, removal_label

#: the message of the ImportError raised when matplotlib is missing
MISSING_MATPLOTLIB = "plotting needs matplotlib: pip install 'skmuter[plot]'"

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


def _pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or the ImportError naming the extra."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(MISSING_MATPLOTLIB) from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(result, out_dir, prefix: str = "") -> list:
    """Draw the figures of :meth:`BenchmarkResult.plot` into ``out_dir``; their paths."""
    plt = _pyplot()

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = _title(result.info)
    paths = []

    def finish(fig, name):
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path = out / f"{prefix}{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)

    methods = result._methods()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _lines(ax, result.efficiency_table().loc[[*methods, RETRAIN]], log=True)
    ax.set_ylabel("seconds to forget (median)")
    finish(fig, "efficiency")

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    _lines(axes[0], result.effectiveness_table(), log=True)
    axes[0].set_ylabel(r"$\|w_u - w_{retrain}\|_2$ (median)")
    axes[0].set_title("effectiveness: distance to the exact retrain", fontsize=10)
    _lines(axes[1], result.effectiveness_table("residual_fraction"), log=True)
    axes[1].set_ylabel("residual fraction (1 = do nothing)")
    axes[1].set_title("distance / do-nothing distance", fontsize=10)
    finish(fig, "effectiveness")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    _lines(ax, result.accuracy_table())
    ax.set_ylabel("clean test accuracy (median)")
    finish(fig, "accuracy")

    attack_table = result.robustness_table(attack=True)
    fig, axes = plt.subplots(1, 2 if attack_table is not None else 1,
                             figsize=(12 if attack_table is not None else 7, 4.5),
                             squeeze=False)
    _lines(axes[0, 0], result.robustness_table())
    axes[0, 0].set_ylabel("robust test accuracy (median)")
    axes[0, 0].set_title("exact worst case", fontsize=10)
    if attack_table is not None:
        _lines(axes[0, 1], attack_table)
        axes[0, 1].set_ylabel("test accuracy under attack (median)")
        axes[0, 1].set_title(f"{result.info.get('attack', 'evaluation attack')}", fontsize=10)
    finish(fig, "robustness")
    return paths


def plot_overview(result, path) -> Path:
    """Draw the figure of :meth:`BenchmarkResult.plot_overview` into ``path``."""
    plt = _pyplot()

    summary = result.summary()
    last = summary[summary["n_removed"] == summary["n_removed"].max()]
    last = last.set_index("method")
    methods = result._methods()
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
    label = removal_label(last["removal"].iloc[0], int(last["n_removed"].iloc[0]))
    fig.suptitle(f"{_title(result.info)}: forgetting {label} rows", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- drawing helpers ----------------------------------------------------------------
def _title(info):
    bits = [info.get("dataset"), info.get("model"), info.get("attack")]
    head = ", ".join(str(b) for b in bits if b)
    n = info.get("n_train")
    tail = f"{n} training rows, median of {info.get('repeats', '?')} repeats"
    return f"{head} ({tail})" if head else tail


def _lines(ax, table, log=False):
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


def _colors(methods):
    return [_STYLE.get(m, {}).get("color", "tab:gray") for m in methods]


def plot_figure9(result, out_dir, prefix: str = "") -> list:
    """Draw ``figure9.png`` of a network benchmark (:class:`NetBenchmarkResult`).

    One row of three panels per attack, against the removal count, one line
    per method: effectiveness (the objective-gap fraction: 0 = the head
    retrain, 1 = do nothing), clean test accuracy and robust test accuracy
    (the layout of the MUter paper's Figure 9).
    """
    plt = _pyplot()

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    panels = result.figure9_tables()
    info = result.info
    fig, axes = plt.subplots(len(panels), 3, figsize=(15, 4.2 * len(panels)), squeeze=False)
    labels = {"effectiveness": "objective-gap fraction (0 = retrain, 1 = do nothing)",
              "clean accuracy": "clean test accuracy (median)",
              "robust accuracy": "robust test accuracy (median)"}
    for row, (attack, tables) in enumerate(panels.items()):
        for col, (panel, table) in enumerate(tables.items()):
            ax = axes[row, col]
            _lines(ax, table)
            ax.set_ylabel(labels[panel])
            ax.set_title(f"{attack.upper()}: {panel}", fontsize=10)
            if panel == "effectiveness":  # linear within [-1, 1], logarithmic beyond
                ax.set_yscale("symlog", linthresh=1.0)
                ax.axhline(0.0, color="black", linewidth=0.8)
    fig.suptitle(f"{info.get('dataset', '')}: frozen conv body, adversarial head "
                 f"({info.get('n_train', '?')} rows, median of {info.get('repeats', '?')} "
                 "repeats)", fontsize=10)
    fig.tight_layout()
    path = out / f"{prefix}figure9.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
