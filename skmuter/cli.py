"""The ``skmuter`` command line: ``skmuter demo`` and ``skmuter bench``.

``skmuter demo``
    Offline, on scikit-learn's bundled digits (1 vs 7): adversarial fit,
    clean and robust accuracy, then forgetting 1% of the training rows with
    every forgetter beside an exact retrain; prints a table and writes a PNG
    (when matplotlib, the ``plot`` extra, is installed; a note otherwise).
``skmuter bench``
    The MUter paper's linear experiments (see :mod:`skmuter.benchmark`):
    prints the efficiency table (Table 6 layout) and the effectiveness,
    accuracy and robustness tables, and writes CSV files and PNG figures
    (the figures with matplotlib only). ``--model net`` runs the paper's
    network protocol instead (:func:`skmuter.benchmark.run_net_benchmark`: a
    frozen convolutional body, a head fine-tuned under PGD and FGSM; Table 7
    and Figure 9) on ``--dataset digits`` or ``mnist``.

Bad arguments (an unknown choice, a removal size that does not parse, a
data file that cannot be read, an output folder that cannot be written) end
with one line ``skmuter: error: ...`` on stderr and exit status 2, checked
before the long computation starts. Progress bars are drawn only when stderr
is a terminal.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

# The parser needs only choices and defaults here; each command imports what it runs.
from . import __version__
from .benchmark import (
    ATTACKS,
    DATASETS,
    DEFAULT_FORGETTERS,
    DEFAULT_NET_REMOVALS,
    DEFAULT_REMOVALS,
    MODELS,
    NET_DATASETS,
    NET_PROTOCOLS,
    PROTOCOLS,
    RETRAIN,
)
from .datasets import DATA_ENV, DatasetNotFoundError
from .forgetters import FORGETTER_NAMES

__all__ = ["main"]


class UsageError(Exception):
    """A bad command-line argument, reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """Errors raise :class:`UsageError`; help texts are plain text, a ``%`` in them prints as is."""

    def error(self, message):
        raise UsageError(message)

    def add_argument(self, *args, **kwargs):
        if isinstance(kwargs.get("help"), str):
            kwargs["help"] = _literal(kwargs["help"])
        return super().add_argument(*args, **kwargs)


def _literal(text):
    # argparse %-formats help texts (for "%(default)s"); these use none.
    return text.replace("%", "%%")


def _add_command(sub, name, *, help, description):
    return sub.add_parser(name, help=_literal(help), description=description)


def _forgetter_list(text):
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("no forgetter given")
    unknown = [n for n in names if n not in FORGETTER_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown forgetter {unknown[0]!r} (choose from {', '.join(FORGETTER_NAMES)})"
        )
    return [n for n in names if n != RETRAIN]


def _nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 0 to 2**32 - 1, got {text!r}")
    return value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _forget_tol(text):
    key = text.strip().lower()
    if key in ("default", "none"):
        return None if key == "none" else "default"
    value = _nonnegative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected 'default', 'none' or a number > 0, got "
                                         f"{text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skmuter`` command."""
    parser = _Parser(
        prog="skmuter",
        description="Adversarially trained models that forget training rows (MUter).",
    )
    parser.add_argument("--version", action="version", version=f"skmuter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,bench}", parser_class=_Parser)

    demo = _add_command(
        sub, "demo", help="offline demo on scikit-learn's digits (1 vs 7)",
        description="Fit an adversarially trained logistic regression on scikit-learn's "
                    "digits 1 vs 7, forget 1% of its training rows with every forgetter "
                    "and compare with an exact retrain. Needs no network.",
    )
    demo.add_argument("--out", metavar="DIR", help="folder for the figure (default: a new "
                      "temporary folder)")
    demo.add_argument("--removal", default="1%", help="rows to forget, a count or a "
                      "percentage (default: 1%)")
    demo.add_argument("--repeats", type=_positive_int, default=5,
                      help="random removal sets, medians reported (default: 5)")
    demo.add_argument("--forgetters", type=_forgetter_list, default=list(DEFAULT_FORGETTERS),
                      help="comma-separated forgetter names (default: all)")
    demo.add_argument("--seed", type=_seed, default=0, help="seed of the removal draws")
    demo.add_argument("--no-progress", action="store_true",
                      help="hide the progress bar (shown only when stderr is a terminal)")

    bench = _add_command(
        sub, "bench", help="the MUter paper's linear experiments",
        description="Fit once, forget random training rows with every forgetter, compare "
                    "with an exact retrain timed in the same run. Prints the efficiency "
                    "table (the paper's Table 6 layout) and the effectiveness, accuracy and "
                    "robustness tables; writes CSV files and PNG figures.",
    )
    bench.add_argument("--dataset", default=None, metavar="{" + ",".join(DATASETS) + "}",
                       help="digits (offline, bundled), mnist-b or covtype (default: mnist-b); "
                            "with --model net: digits (the ten classes) or mnist "
                            "(default: mnist)")
    bench.add_argument("--model", default="logistic", choices=(*MODELS, "net"),
                       help="logistic regression, ridge classifier, or net: the paper's "
                            "network protocol, a frozen conv body and an adversarially "
                            "fine-tuned head (default: logistic)")
    bench.add_argument("--attack", default=None, choices=ATTACKS,
                       help="attack of the threat model and of the evaluation; fgsm is the "
                            "paper's random start plus one step (default: fgsm); with --model "
                            "net: the attack the head is fine-tuned under (default: both, "
                            "pgd then fgsm)")
    bench.add_argument("--removals", default=None,
                       help=f"removal sizes, counts or percentages (default: {DEFAULT_REMOVALS})"
                            f"; with --model net: {DEFAULT_NET_REMOVALS}")
    bench.add_argument("--forgetters", type=_forgetter_list, default=list(DEFAULT_FORGETTERS),
                       help="comma-separated forgetter names (default: all); the exact "
                            "retrain always runs")
    bench.add_argument("--repeats", type=_positive_int, default=None,
                       help="random removal orders, medians reported (default: "
                            + ", ".join(f"{k} {p.repeats}" for k, p in PROTOCOLS.items())
                            + "; net: "
                            + ", ".join(f"{k} {p.repeats}" for k, p in NET_PROTOCOLS.items())
                            + ")")
    bench.add_argument("--gradient-residuals", default="largest",
                       choices=("all", "largest", "none"),
                       help="where to compute the gradient residual, a pass over the "
                            "training data per model (default: at the largest size, "
                            "first repeat; linear models only)")
    bench.add_argument("--sequential", action="store_true",
                       help="forget one row per request (the paper's Algorithm 1) instead "
                            "of one request per removal-size step (linear models only)")
    bench.add_argument("--alpha", type=_nonnegative_float, default=None,
                       help="L2 penalty, the paper's lambda (default: 1e-4; net: "
                            + ", ".join(f"{k} {p.alpha:g}" for k, p in NET_PROTOCOLS.items())
                            + ")")
    bench.add_argument("--n-train", type=_positive_int, default=None,
                       help="--model net: rows the head is trained on and forgets (default: "
                            + ", ".join(f"{k} {p.n_train}" for k, p in NET_PROTOCOLS.items())
                            + ")")
    bench.add_argument("--forget-tol", type=_forget_tol, default=None,
                       help="--model net: the heads' forget_tol, 'none' (each forgetter's own "
                            "step, unchecked, as in the paper), 'default' (AdversarialNet's: "
                            "every request checked and corrected, timed with the check) or "
                            "a number (default: none)")
    bench.add_argument("--device", default="cpu",
                       help="--model net: torch device, cpu or cuda (default: cpu)")
    bench.add_argument("--data", metavar="PATH",
                       help=f"data file or folder of mnist-b, covtype or mnist (default: "
                            f"${DATA_ENV}, then download)")
    bench.add_argument("--out", metavar="DIR", default="skmuter-bench",
                       help="folder for CSV and PNG files (default: ./skmuter-bench)")
    bench.add_argument("--seed", type=_seed, default=0, help="seed of the removal draws")
    bench.add_argument("--no-progress", action="store_true",
                       help="hide the progress bar (shown only when stderr is a terminal)")
    return parser


# ---- printing ---------------------------------------------------------------------
def _g3(x):
    return f"{x:.3g}"


def _e2(x):
    return f"{x:.2e}"


def _f4(x):
    return f"{x:.4f}"


# ---- commands ---------------------------------------------------------------------
def _checked(func, *args):
    """Call ``func``; a ValueError there comes from the user's arguments or files."""
    try:
        return func(*args)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _os_message(exc):
    """One line for an OSError: what failed, on which path."""
    what = exc.strerror or str(exc)
    return f"{what}: {exc.filename}" if exc.filename else what


def _output_folder(path, option="--out"):
    """Create ``path`` and check that files can be written there, before any work."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"argument {option}: {str(path)!r} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".skmuter-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"argument {option}: cannot write to {str(path)!r} "
                         f"({_os_message(exc)})") from exc
    return folder


def _demo(args):
    from .benchmark import (
        BenchmarkSettings,
        load_dataset,
        paper_attack,
        paper_estimator,
        parse_removals,
        run_benchmark,
    )

    X_train, X_test, y_train, y_test = load_dataset("digits")
    removals = _checked(parse_removals, args.removal, len(y_train))
    out = _output_folder(args.out) if args.out else None
    attack = paper_attack("digits", "fgsm", random_state=args.seed)
    estimator = paper_estimator("logistic", attack)
    print("skmuter demo: scikit-learn digits 1 vs 7, adversarial logistic regression")
    settings = BenchmarkSettings(
        removals=[removals[0][0]], forgetters=args.forgetters, repeats=args.repeats,
        attack=attack, gradient_residuals="none", random_state=args.seed,
        progress=not args.no_progress,
    )
    result = run_benchmark(
        estimator, X_train, y_train, X_test, y_test, settings,
        info={"dataset": "digits 1 vs 7", "model": "logistic", "attack": "FGSM"},
    )
    print(result.report(tables=False))
    summary = result.summary().set_index("method")
    label, count = removals[0]
    table = summary[["time", "precompute_time", "distance", "residual_fraction",
                     "clean_accuracy", "robust_accuracy"]].rename(columns={
                         "time": "time (s)", "precompute_time": "pre-comp. (s)",
                         "distance": "dist. to retrain", "residual_fraction": "residual frac.",
                         "clean_accuracy": "clean acc.", "robust_accuracy": "robust acc."})
    table.index.name = None
    print(f"\nforgetting {count} of {len(y_train)} training rows ({label}), median of "
          f"{args.repeats} random draws; residual fraction 0 = exact retrain, 1 = do nothing")
    print(table.to_string(na_rep="-", formatters={
        "time (s)": _g3, "pre-comp. (s)": _g3, "dist. to retrain": _e2,
        "residual frac.": _g3, "clean acc.": _f4, "robust acc.": _f4}))
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="skmuter-demo-"))
    try:
        path = result.plot_overview(out / "demo.png")
    except ImportError as exc:  # matplotlib, an optional extra, is missing
        if not args.out:
            out.rmdir()
        print(f"\nno figure: {exc}")
    else:
        print(f"\nfigure: {path}")
    return 0


def _choices(values):
    return ", ".join(repr(v) for v in values)


def _bench(args):
    net = args.model == "net"
    allowed = NET_DATASETS if net else DATASETS
    if args.dataset is None:
        args.dataset = "mnist" if net else "mnist-b"
    if args.dataset not in allowed:
        tail = " for --model net" if net else ""
        raise UsageError(f"argument --dataset: invalid choice: {args.dataset!r} (choose from "
                         f"{_choices(allowed)}{tail})")
    if net:
        return _bench_net(args)
    for option, value, empty in (("--n-train", args.n_train, None),
                                 ("--forget-tol", args.forget_tol, None),
                                 ("--device", args.device, "cpu")):
        if value != empty:
            raise UsageError(f"argument {option}: for --model net only")
    args.attack = args.attack or "fgsm"
    args.removals = args.removals or DEFAULT_REMOVALS
    args.alpha = 1e-4 if args.alpha is None else args.alpha
    return _bench_linear(args)


def _bench_net(args):
    import dataclasses
    import types

    from .benchmark import (
        NetBenchmarkSettings,
        load_net_data,
        parse_removals,
        run_net_benchmark,
    )
    from .nn._inputs import check_device_available

    t_start = time.perf_counter()
    _no_data_for_digits(args, "mnist")
    if args.sequential:
        raise UsageError("argument --sequential: for the linear models only")
    _checked(check_device_available, types.SimpleNamespace(device=args.device))
    protocol = NET_PROTOCOLS[args.dataset]
    changes = {"n_train": args.n_train, "alpha": args.alpha, "repeats": args.repeats}
    protocol = dataclasses.replace(protocol, **{k: v for k, v in changes.items()
                                                if v is not None})
    data = _checked(load_net_data, args.dataset, args.data, protocol)
    removals = _checked(parse_removals, args.removals or DEFAULT_NET_REMOVALS,
                        len(data.y_train))
    out = _output_folder(args.out)
    attacks = [args.attack] if args.attack else ["pgd", "fgsm"]
    print(f"skmuter bench: {args.dataset}, net (frozen conv body, adversarial head), "
          f"{' and '.join(a.upper() for a in attacks)}, removals "
          f"{', '.join(f'{lab}={n}' if lab.endswith('%') else lab for lab, n in removals)}, "
          f"{protocol.repeats} repeat(s), forget_tol={args.forget_tol}, device {args.device}",
          flush=True)
    settings = NetBenchmarkSettings(
        removals=[lab for lab, _ in removals], forgetters=args.forgetters, attacks=attacks,
        repeats=protocol.repeats, forget_tol=args.forget_tol, device=args.device,
        random_state=args.seed, progress=not args.no_progress)
    result = run_net_benchmark(data, protocol, settings, info={"dataset": args.dataset},
                               echo=lambda line: print(line, flush=True))
    print()
    print(result.report())
    prefix = f"{args.dataset}_net_"
    return _write_results(result, out, prefix, f"{prefix}*.csv, {prefix}report.txt",
                          f"{prefix}figure9.png", t_start)


def _no_data_for_digits(args, datasets):
    """Refuse ``--data`` with the bundled digits (it names the files of ``datasets``)."""
    if args.data is not None and args.dataset == "digits":
        raise UsageError("argument --data: the digits are bundled with scikit-learn; "
                         f"--data is for {datasets}")


def _write_results(result, out, prefix, files, figures, t_start):
    """Save a benchmark's files and figures (when matplotlib is there), say what
    was written and how long the command took; the command's exit status."""
    paths = result.save(out, prefix=prefix, figures=False)
    try:
        paths += result.plot(out, prefix=prefix)
    except ImportError as exc:  # matplotlib, an optional extra, is missing
        print(f"\nno figures: {exc}")
    else:
        files = f"{files}, {figures}"
    print(f"\nwrote {len(paths)} files to {out}/ ({files})")
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


def _bench_linear(args):
    from .benchmark import (
        BenchmarkSettings,
        load_dataset,
        paper_attack,
        paper_estimator,
        parse_removals,
        run_benchmark,
    )

    t_start = time.perf_counter()
    _no_data_for_digits(args, "mnist-b and covtype")
    X_train, X_test, y_train, y_test = _checked(load_dataset, args.dataset, args.data)
    removals = _checked(parse_removals, args.removals, len(y_train))
    out = _output_folder(args.out)
    attack = paper_attack(args.dataset, args.attack, random_state=args.seed)
    estimator = paper_estimator(args.model, attack, alpha=args.alpha)
    repeats = args.repeats or PROTOCOLS[args.dataset].repeats
    print(f"skmuter bench: {args.dataset}, {args.model}, {args.attack}, removals "
          f"{', '.join(f'{lab}={n}' if lab.endswith('%') else lab for lab, n in removals)}, "
          f"{repeats} repeats, "
          f"{'one row per request' if args.sequential else 'one request per size step'}"
          , flush=True)
    settings = BenchmarkSettings(
        removals=[lab for lab, _ in removals], forgetters=args.forgetters, repeats=repeats,
        attack=attack, sequential=args.sequential,
        gradient_residuals=args.gradient_residuals, random_state=args.seed,
        progress=not args.no_progress,
    )
    result = run_benchmark(
        estimator, X_train, y_train, X_test, y_test, settings,
        info={"dataset": args.dataset, "model": args.model, "attack": args.attack.upper(),
              "alpha": args.alpha},
    )
    print(result.report())
    prefix = f"{args.dataset}_{args.model}_{args.attack}_"
    return _write_results(result, out, prefix, f"{prefix}*.csv", f"{prefix}*.png", t_start)


def main(argv=None) -> int:
    """Run the ``skmuter`` command; return its exit status.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 2 for bad arguments, missing or unreadable data, or an
        output folder that cannot be written (one line on stderr), 130 when
        interrupted.

    Examples
    --------
    >>> from skmuter.cli import main
    >>> main(["bench", "--dataset", "digits", "--removals", "100000"])
    2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return _demo(args) if args.command == "demo" else _bench(args)
    except (UsageError, DatasetNotFoundError) as exc:
        print(f"skmuter: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be read or written mid-way
        print(f"skmuter: error: {_os_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("skmuter: interrupted", file=sys.stderr)
        return 130
