"""The unlearning benchmark: the MUter paper's experiments, re-measured.

One run fits a model once. Each repeat draws a random removal order; the
removal sets of the requested sizes are its prefixes, forgotten one after
another (as in the paper) by every forgetter, each starting from its own copy
of the fitted model, beside an exact retrain from scratch on the remaining
rows, timed in the same run, for every size. The outcome, a
:class:`BenchmarkResult`, holds one record per (removal size, repeat, method)
and turns them into the paper's views:

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
``alpha=1e-4``, l_inf threat inside [0, 1]); :class:`BenchmarkSettings` holds
what a run of :func:`run_benchmark` does.

The network protocol of the paper (a frozen convolutional body, a head
fine-tuned adversarially under PGD and FGSM; Table 7 and Figure 9) is
:func:`run_net_benchmark` with :class:`NetBenchmarkResult` (``_net``; torch is
imported only when it runs).

The figures need matplotlib, an optional extra (``pip install 'skmuter[plot]'``),
imported only when a figure is drawn. Layout: ``_protocol`` (datasets, threat
models, removal sizes), ``_runner`` (:func:`run_benchmark`), ``_results``
(tables, text report, CSV files) and ``_plotting`` (the figures).
"""

from ._net import (
    DEFAULT_NET_REMOVALS,
    NET_ATTACKS,
    NET_DATASETS,
    NET_PROTOCOLS,
    NetBenchmarkResult,
    NetBenchmarkSettings,
    NetData,
    NetProtocol,
    load_net_data,
    net_attack,
    run_net_benchmark,
)
from ._protocol import (
    ATTACKS,
    DATASETS,
    DEFAULT_FORGETTERS,
    DEFAULT_REMOVALS,
    DO_NOTHING,
    MODELS,
    PROTOCOLS,
    RETRAIN,
    Protocol,
    load_dataset,
    paper_attack,
    paper_estimator,
    parse_removals,
)
from ._results import BenchmarkResult
from ._runner import BenchmarkSettings, run_benchmark

__all__ = [
    "ATTACKS",
    "DATASETS",
    "DEFAULT_FORGETTERS",
    "DEFAULT_NET_REMOVALS",
    "DEFAULT_REMOVALS",
    "DO_NOTHING",
    "MODELS",
    "NET_ATTACKS",
    "NET_DATASETS",
    "NET_PROTOCOLS",
    "PROTOCOLS",
    "RETRAIN",
    "BenchmarkResult",
    "BenchmarkSettings",
    "NetBenchmarkResult",
    "NetBenchmarkSettings",
    "NetData",
    "NetProtocol",
    "Protocol",
    "load_dataset",
    "load_net_data",
    "net_attack",
    "paper_attack",
    "paper_estimator",
    "parse_removals",
    "run_benchmark",
    "run_net_benchmark",
]
