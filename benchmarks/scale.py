"""Large-data benchmark: fit and forget on chunked files read through Dask.

Synthetic Covtype-like data (54 features in [0, 1]: 10 continuous features
drawn from beta distributions, 4 one-hot "wilderness" columns and 40 one-hot
"soil" columns, as in Covtype; binary labels from a noisy linear rule, about
half positive) are written by the script as chunked on-disk arrays: one
``.npy`` file per chunk of rows (float64 inputs, int64 labels), generated chunk
by chunk so that writing never holds the whole set. The sizes share one set of
files (a size of ``n`` rows reads the first ``n`` rows). The files are read
back as a Dask array whose chunks each load one file with ``np.load`` (no
memory map): the process holds one or a few chunks at a time, never the whole
set.

The model is the paper's Covtype setting: logistic regression, no intercept,
``alpha = 1e-4``, l_inf threat of radius 4/255 inside [0, 1]
(``PGD(epsilon=4/255, clip=(0, 1))``; the exact solver computes the worst
cases in closed form).

Every measurement runs in a fresh subprocess, so that the peak resident memory
of the process (``ru_maxrss``) is that of one size only. Per size (Dask on the
active scheduler, threads by default):

- ``fit s``: the fit on the Dask array; ``passes``: passes over the data it
  took (``n_passes_``);
- ``peak RSS GB``: the peak resident memory of the whole process (Python,
  libraries and every chunk in flight);
- ``first s``: the first forget request (one row, ``forget_tol=None``), which
  builds the forgetting memory;
- ``forget ms``: a one-row request without a pass (``forget_tol=None``), median
  of ``--requests`` requests (the whole ``forget`` call, wall clock);
- ``row read ms``: reading one row from the Dask array alone (its chunk's
  file is read whole), median over the same rows: the part of a request that
  is the storage's;
- ``pass s``: one verification pass (``gradient_residual()``);
- ``checked ms``: a one-row request at the default ``forget_tol`` (its check
  runs passes over the kept rows; their number is printed).

In memory (``--in-memory`` rows, default 1M): the same data loaded into one
array, fitted as a NumPy array and as ``da.from_array(X, chunks=...)``. And
``--in-memory-sizes`` (default 250k, 1M, 4M): the NumPy path's peak memory
against the size of the data, and its one-row request time against n.

The targets of the large-data work are printed with the figures: peak RSS at
16M rows <= 1.5 GB; fit time at most linear in n (fit time per million rows,
per size); a one-row forget without a pass <= 50 ms at every size; on 1M rows
in memory the Dask path at most 2x slower than the NumPy path; in memory,
peak memory at most 2x the data and a one-row request independent of n.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/scale.py
    python benchmarks/scale.py --sizes 1M,4M --in-memory-sizes none
    python benchmarks/scale.py --dir /data/scale --keep   # keep the files for a rerun

A measurement stopped by ``--timeout`` (or killed) keeps the figures it had
measured, marked ``*``. The files take ``rows x 54 x 8`` bytes (6.9 GB at 16M rows) in ``--dir``
(default: a temporary directory); they are deleted at the end unless
``--keep``. Needs Dask (``pip install skmuter[dask]``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

N_CONTINUOUS = 10
N_WILDERNESS = 4
N_SOIL = 40
N_FEATURES = N_CONTINUOUS + N_WILDERNESS + N_SOIL
#: shapes of the beta draws of the continuous features (elevation, aspect,
#: slope, distances, hillshades: centred, flat, skewed low, skewed high)
BETA = ((5.0, 5.0), (1.0, 1.0), (2.0, 5.0), (1.5, 6.0), (2.0, 8.0),
        (1.5, 5.0), (8.0, 2.0), (9.0, 3.0), (5.0, 4.0), (1.5, 6.0))
FORMAT = 1  # version of the file layout, in the manifest
EPSILON = 4 / 255
ALPHA = 1e-4
#: rows of the held-out set (generated in memory) for the accuracies
N_TEST = 100_000


# ---- sizes -----------------------------------------------------------------
def parse_size(text):
    """``'250k'``, ``'1M'``, ``'16M'`` or ``'1000'`` -> number of rows."""
    s = text.strip()
    factor = {"k": 1_000, "m": 1_000_000}.get(s[-1:].lower(), 1)
    if factor != 1:
        s = s[:-1]
    try:
        value = float(s) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 250k, 1M, 16M)") from None
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"not a positive whole number of rows: {text!r}")
    return int(value)


def parse_sizes(text):
    """A comma-separated list of sizes; ``'none'`` or ``''``: no size."""
    if text.strip().lower() in ("", "none", "0"):
        return []
    return [parse_size(t) for t in text.split(",") if t.strip()]


def label(n):
    """``16000000`` -> ``'16M'``, ``250000`` -> ``'250k'``."""
    if n >= 1_000_000:
        return f"{n / 1e6:.3g}M"
    if n >= 1_000:
        return f"{n / 1e3:.3g}k"
    return str(n)


def data_gb(n):
    return n * N_FEATURES * 8 / 1e9


# ---- the synthetic data --------------------------------------------------------
def _rule(seed):
    """The fixed parts of the generator: category probabilities and the
    linear rule of the labels (weights, threshold, noise scale)."""
    rng = np.random.default_rng([seed, 0])
    p_wild = np.array([0.45, 0.05, 0.44, 0.06])
    p_soil = rng.dirichlet(np.full(N_SOIL, 0.5))
    w = np.concatenate([rng.normal(0.0, 3.0, N_CONTINUOUS),
                        rng.normal(0.0, 1.0, N_WILDERNESS),
                        rng.normal(0.0, 1.5, N_SOIL)])
    rule = {"p_wild": p_wild, "p_soil": p_soil, "w": w, "threshold": 0.0, "noise": 1.0}
    X, _ = _draw(rule, np.random.default_rng([seed, 1]), 200_000, labels=False)
    score = X @ w
    rule["threshold"] = float(np.median(score))
    rule["noise"] = 0.25 * float(np.std(score))  # logistic noise: about 80-85% separable
    return rule


def _draw(rule, rng, m, labels=True):
    """``m`` rows (float64 inputs in [0, 1]) and their 0/1 labels."""
    X = np.zeros((m, N_FEATURES))
    for j, (a, b) in enumerate(BETA):
        X[:, j] = rng.beta(a, b, m)
    rows = np.arange(m)
    X[rows, N_CONTINUOUS + rng.choice(N_WILDERNESS, m, p=rule["p_wild"])] = 1.0
    X[rows, N_CONTINUOUS + N_WILDERNESS + rng.choice(N_SOIL, m, p=rule["p_soil"])] = 1.0
    if not labels:
        return X, None
    noise = rng.logistic(0.0, rule["noise"], m)
    y = (X @ rule["w"] + noise > rule["threshold"]).astype(np.int64)
    return X, y


def chunk_bounds(n, chunk_rows):
    return [(a, min(a + chunk_rows, n)) for a in range(0, n, chunk_rows)]


def _paths(directory, i):
    return (os.path.join(directory, f"X_{i:05d}.npy"), os.path.join(directory, f"y_{i:05d}.npy"))


def _manifest_path(directory):
    return os.path.join(directory, "scale_manifest.json")


def write_data(directory, n, chunk_rows, seed):
    """Write ``n`` rows as chunk files in ``directory`` (reused when a
    manifest of the same seed and chunking covers them). Returns seconds spent."""
    wanted = {"format": FORMAT, "seed": seed, "chunk_rows": chunk_rows,
              "n_features": N_FEATURES}
    path = _manifest_path(directory)
    if os.path.exists(path):
        with open(path) as f:
            have = json.load(f)
        if {k: have.get(k) for k in wanted} == wanted and have.get("n_rows", 0) >= n:
            print(f"reusing {have['n_rows']:,} rows in {directory}", flush=True)
            return 0.0
    need = data_gb(n) * 1e9 * 1.02 + 8 * n + 2**28
    free = shutil.disk_usage(directory).free
    if free < need:
        raise SystemExit(f"not enough disk in {directory}: the data need {need / 1e9:.1f} GB, "
                         f"{free / 1e9:.1f} GB free (choose another --dir, or smaller --sizes)")
    rule = _rule(seed)
    t0 = time.perf_counter()
    bounds = chunk_bounds(n, chunk_rows)
    for i, (a, b) in enumerate(bounds):
        X, y = _draw(rule, np.random.default_rng([seed, 2, i]), chunk_rows)
        # every chunk file holds chunk_rows rows: a larger n reuses them unchanged
        px, py = _paths(directory, i)
        np.save(px, X)
        np.save(py, y)
        if (i + 1) % 16 == 0 or i + 1 == len(bounds):
            print(f"  wrote {b:,} of {n:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
    with open(path, "w") as f:
        json.dump({**wanted, "n_rows": len(bounds) * chunk_rows}, f)
    return time.perf_counter() - t0


def remove_data(directory):
    """Delete the files this script writes, and ``directory`` if then empty."""
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        if (name.startswith(("X_", "y_")) and name.endswith(".npy")) \
                or name == "scale_manifest.json":
            os.remove(os.path.join(directory, name))
    if not os.listdir(directory):
        os.rmdir(directory)


def _load_chunk(path, m):
    """One chunk file, read whole into memory (no memory map), first ``m`` rows."""
    a = np.load(path, mmap_mode=None)
    return a if a.shape[0] == m else a[:m].copy()


def dask_arrays(directory, n, chunk_rows):
    """The first ``n`` rows as lazy Dask arrays, one chunk per file."""
    import dask
    import dask.array as da

    xs, ys = [], []
    for i, (a, b) in enumerate(chunk_bounds(n, chunk_rows)):
        px, py = _paths(directory, i)
        xs.append(da.from_delayed(dask.delayed(_load_chunk, pure=True)(px, b - a),
                                  shape=(b - a, N_FEATURES), dtype=np.float64))
        ys.append(da.from_delayed(dask.delayed(_load_chunk, pure=True)(py, b - a),
                                  shape=(b - a,), dtype=np.int64))
    return da.concatenate(xs, axis=0), da.concatenate(ys, axis=0)


def memory_arrays(directory, n, chunk_rows):
    """The first ``n`` rows in one in-memory array (filled chunk by chunk)."""
    X = np.empty((n, N_FEATURES))
    y = np.empty(n, dtype=np.int64)
    for i, (a, b) in enumerate(chunk_bounds(n, chunk_rows)):
        px, py = _paths(directory, i)
        X[a:b] = _load_chunk(px, b - a)
        y[a:b] = _load_chunk(py, b - a)
    return X, y


# ---- one measurement (in a fresh process) -----------------------------------
def _peak_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def measure(mode, directory, n, chunk_rows, seed, requests, checked, emit=None):
    """Fit and forget ``n`` rows; ``mode``: 'files' (Dask on the chunk files),
    'memory' (the rows in memory, as a NumPy array) or 'memory-dask' (the
    in-memory array wrapped by ``da.from_array``). ``emit(out)`` is called with
    the figures so far after each stage."""
    emit = emit or (lambda out: None)
    from skmuter import AdversarialLogisticRegression
    from skmuter.attacks import PGD

    out = {"mode": mode, "n": n, "baseline_gb": _peak_gb()}
    if mode == "files":
        X, y = dask_arrays(directory, n, chunk_rows)
    else:
        X, y = memory_arrays(directory, n, chunk_rows)
        if mode == "memory-dask":
            import dask.array as da

            X = da.from_array(X, chunks=(chunk_rows, N_FEATURES))
            y = da.from_array(y, chunks=chunk_rows)
    out["loaded_gb"] = _peak_gb()
    est = AdversarialLogisticRegression(attack=PGD(epsilon=EPSILON, clip=(0, 1)), alpha=ALPHA,
                                        fit_intercept=False)
    default_tol = est.forget_tol
    t0 = time.perf_counter()
    est.fit(X, y)
    out["fit_s"] = time.perf_counter() - t0
    out["passes"] = getattr(est, "n_passes_", None)
    out["n_iter"] = int(np.sum(est.n_iter_))
    out["residual"] = float(est.optimality_residual_)
    out["nnz"] = int(np.count_nonzero(est.coef_))
    out["fit_peak_gb"] = out["peak_gb"] = _peak_gb()
    emit(out)
    X_test, y_test = _draw(_rule(seed), np.random.default_rng([seed, 3]), N_TEST)
    out["clean_acc"] = float(est.score(X_test, y_test))
    out["robust_acc"] = float(est.robust_score(X_test, y_test))
    del X_test, y_test
    if requests:
        rows = np.random.default_rng([seed, 4]).choice(n, requests + 2, replace=False)
        est.set_params(forget_tol=None)
        t0 = time.perf_counter()
        est.forget([rows[0]])
        out["first_s"] = time.perf_counter() - t0
        times = []
        for r in rows[1:requests + 1]:
            t0 = time.perf_counter()
            est.forget([r])
            times.append(time.perf_counter() - t0)
        out["forget_ms"] = 1e3 * float(np.median(times))
        out["forget_ms_all"] = [1e3 * t for t in times]
        out["forget_passes"] = est.forget_log_[-1].get("n_passes")
        if mode == "files":  # reading one row from the files: its chunk's file, whole
            fetch = []
            for r in rows[1:requests + 1]:
                t0 = time.perf_counter()
                X[[int(r)]].compute()
                fetch.append(time.perf_counter() - t0)
            out["fetch_ms"] = 1e3 * float(np.median(fetch))
        out["peak_gb"] = _peak_gb()
        emit(out)
        if mode == "files":
            t0 = time.perf_counter()
            est.gradient_residual()
            out["pass_s"] = time.perf_counter() - t0
            out["peak_gb"] = _peak_gb()
            emit(out)
        if checked:
            est.set_params(forget_tol=default_tol)
            t0 = time.perf_counter()
            est.forget([rows[-1]])
            out["checked_ms"] = 1e3 * (time.perf_counter() - t0)
            record = est.forget_log_[-1]
            out["checked_check_ms"] = 1e3 * record["check_time"]
            out["checked_passes"] = record.get("n_passes")
            out["checked_residual"] = record.get("optimality_residual")
    out["peak_gb"] = _peak_gb()
    return out


def _child(args):
    spec = json.loads(args.child)
    if spec.get("threads"):
        import dask

        dask.config.set(scheduler="threads", num_workers=spec["threads"])
    def emit(out):
        print("PARTIAL " + json.dumps(out), flush=True)

    result = measure(spec["mode"], spec["dir"], spec["n"], spec["chunk_rows"], spec["seed"],
                     spec["requests"], spec["checked"], emit)
    print("RESULT " + json.dumps(result), flush=True)


def run_child(spec, timeout):
    """Run one measurement in a fresh interpreter; its result, or None (said why)."""
    import skmuter

    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    # the child imports the skmuter this process sees
    root = os.path.dirname(os.path.dirname(os.path.abspath(skmuter.__file__)))
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    what = f"{spec['mode']} {label(spec['n'])}"
    print(f"-- {what} ...", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env=env)
        stdout, stderr, why = proc.stdout, proc.stderr, f"exit status {proc.returncode}"
    except subprocess.TimeoutExpired as exc:
        stdout, stderr = _text(exc.stdout), _text(exc.stderr)
        why = f"no result within --timeout {timeout:.0f} s"
    result = partial = None
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
        elif line.startswith("PARTIAL "):
            partial = json.loads(line[len("PARTIAL "):])
    if result is None:
        tail = "\n".join((stderr or stdout).strip().splitlines()[-15:])
        print(f"   {what} failed ({why}):\n{tail}", flush=True)
        if partial is None:
            return None
        print("   (the figures measured before are kept)", flush=True)
        result = {**partial, "incomplete": True}
    print(f"   {time.perf_counter() - t0:.0f} s: " + ", ".join(
        f"{k}={_fmt(v)}" for k, v in result.items() if k != "forget_ms_all"), flush=True)
    return result


def _text(data):
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _fmt(v, spec=".3g"):
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


# ---- report --------------------------------------------------------------------
def _table(header, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def _verdict(ok):
    return "-" if ok is None else ("met" if ok else "NOT met")


def report(files, memory, compare):
    if files:
        print()
        print("Dask on the chunk files")
    header = ["size", "rows", "data GB", "fit s", "s/M rows", "passes", "peak RSS GB",
              "first s", "forget ms", "row read ms", "pass s", "checked ms", "check passes"]
    rows = []
    for n, r in files:
        if r is None:
            rows.append([label(n), f"{n:,}", f"{data_gb(n):.2f}"] + ["failed"] + [""] * 9)
            continue
        rows.append([label(n) + ("*" if r.get("incomplete") else ""), f"{n:,}",
                     f"{data_gb(n):.2f}", f"{r['fit_s']:.1f}",
                     f"{r['fit_s'] / (n / 1e6):.1f}", _fmt(r["passes"]),
                     f"{r['peak_gb']:.2f}", _fmt(r.get("first_s"), ".2f"),
                     _fmt(r.get("forget_ms"), ".1f"), _fmt(r.get("fetch_ms"), ".1f"),
                     _fmt(r.get("pass_s"), ".2f"),
                     _fmt(r.get("checked_ms"), ".0f"), _fmt(r.get("checked_passes"))])
    if rows:
        print(_table(header, rows))
        if any(r and r.get("incomplete") for _, r in files):
            print("*: stopped before the end; the figures measured until then")
        ok = [r for _, r in files if r is not None]
        if ok:
            print("model: " + "; ".join(
                f"{label(r['n'])}: {r['nnz']} non-zero weights, test accuracy clean "
                f"{r['clean_acc']:.3f} robust {r['robust_acc']:.3f}" for r in ok))
    if memory:
        print()
        print("In memory (NumPy arrays)")
        header = ["rows", "data GB", "fit s", "passes", "peak RSS GB", "RSS / data",
                  "above libs / data", "first s", "forget ms"]
        rows = [[f"{n:,}", f"{data_gb(n):.2f}"] + (
            ["failed"] + [""] * 6 if r is None else
            [f"{r['fit_s']:.1f}", _fmt(r["passes"]), f"{r['peak_gb']:.2f}",
             f"{r['peak_gb'] / data_gb(n):.2f}",
             f"{(r['peak_gb'] - r['baseline_gb']) / data_gb(n):.2f}",
             _fmt(r.get("first_s"), ".2f"), _fmt(r.get("forget_ms"), ".2f")])
            for n, r in memory]
        print(_table(header, rows))
        print("(above libs: the peak minus the process's resident memory before the data "
              "were loaded, Python and the libraries)")
    if compare:
        n, numpy_r, dask_r = compare
        print()
        print(f"{n:,} rows in memory: NumPy array vs da.from_array")
        rows = [[name, _fmt(r and r["fit_s"], ".1f"), _fmt(r and r["passes"]),
                 _fmt(r and r["peak_gb"], ".2f")]
                for name, r in (("numpy", numpy_r), ("dask", dask_r))]
        print(_table(["input", "fit s", "passes", "peak RSS GB"], rows))

    print()
    print("Targets")
    done = {n: r for n, r in files if r is not None}
    if done:
        big = max(done)
        ok = done[big]["peak_gb"] <= 1.5
        print(f"  peak RSS at the largest size ({label(big)}) <= 1.5 GB: "
              f"{done[big]['peak_gb']:.2f} GB: "
              f"{_verdict(ok) if big >= 16_000_000 else _verdict(ok) + ' (16M not run)'}")
    if len(done) >= 2:
        small = min(done)
        per = {n: r["fit_s"] / n for n, r in done.items()}
        ratio = max(per[n] for n in done if n != small) / per[small]
        print("  fit time at most linear in n: s per million rows "
              + ", ".join(f"{label(n)} {1e6 * per[n]:.1f}" for n in sorted(done))
              + f"; largest / smallest {ratio:.2f}: {_verdict(ratio <= 1.2)}"
              " (met: at most 1.2, timing noise)")
    elif done:
        print("  fit time at most linear in n: needs two sizes")
    fms = {n: r.get("forget_ms") for n, r in done.items() if r.get("forget_ms") is not None}
    if fms:
        print("  one-row forget without a pass <= 50 ms at every size: "
              + ", ".join(f"{label(n)} {v:.1f} ms" for n, v in sorted(fms.items()))
              + f": {_verdict(max(fms.values()) <= 50)}")
    if compare and compare[1] and compare[2]:
        ratio = compare[2]["fit_s"] / compare[1]["fit_s"]
        print(f"  {label(compare[0])} rows in memory, Dask at most 2x slower than NumPy: "
              f"{compare[2]['fit_s']:.1f} s / {compare[1]['fit_s']:.1f} s = {ratio:.2f}: "
              f"{_verdict(ratio <= 2)}")
    mem = [(n, r) for n, r in memory if r is not None]
    if mem:
        n, r = mem[-1]
        whole, above = r["peak_gb"] / data_gb(n), (r["peak_gb"] - r["baseline_gb"]) / data_gb(n)
        print(f"  in memory, peak RSS at most 2x the data (at {label(n)}): whole process "
              f"{whole:.2f}x: {_verdict(whole <= 2)}; above the libraries {above:.2f}x: "
              f"{_verdict(above <= 2)}")
        times = [(n, r["forget_ms"]) for n, r in mem if r.get("forget_ms") is not None]
        if len(times) >= 2:
            spread = times[-1][1] / times[0][1]
            print("  in memory, one-row request independent of n: "
                  + ", ".join(f"{label(n)} {t:.2f} ms" for n, t in times)
                  + f"; largest n / smallest n {spread:.2f}: {_verdict(spread <= 2)}"
                  " (met: at most 2x over the range)")


# ---- main ----------------------------------------------------------------------
def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,4M,16M",
                        help="rows of the Dask runs on the chunk files (default 1M,4M,16M)")
    parser.add_argument("--chunk-rows", type=parse_size, default=125_000,
                        help="rows per chunk file and Dask chunk (default 125k: 54 MB)")
    parser.add_argument("--dir", default=None,
                        help="folder of the chunk files (default: a temporary one)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the chunk files (a later run with the same --dir, --seed "
                             "and --chunk-rows reuses them)")
    parser.add_argument("--in-memory", default="1M",
                        help="rows of the NumPy vs da.from_array fit comparison (none: skip)")
    parser.add_argument("--in-memory-sizes", default="250k,1M,4M",
                        help="rows of the in-memory NumPy runs (memory, one-row request "
                             "time against n; none: skip)")
    parser.add_argument("--requests", type=int, default=5,
                        help="one-row requests without a pass, per size (median)")
    parser.add_argument("--no-checked", action="store_true",
                        help="skip the one-row request at the default forget_tol")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of Dask's threaded scheduler (default: Dask's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=4 * 3600,
                        help="seconds allowed to one measurement (default 4 h)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)

    try:
        import skmuter  # noqa: F401
    except ImportError:
        parser.error("skmuter is not importable: install it, or run with PYTHONPATH=<repository>")
    try:
        import dask.array  # noqa: F401
    except ImportError:
        parser.error("this benchmark needs Dask: pip install 'skmuter[dask]' "
                     "(or dask[array] and distributed)")
    try:
        sizes = parse_sizes(args.sizes)
        compare_n = (parse_sizes(args.in_memory) or [None])[0]
        memory_sizes = parse_sizes(args.in_memory_sizes)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.chunk_rows < 1 or args.requests < 0:
        parser.error("--chunk-rows must be positive and --requests non-negative")
    total = max([*sizes, *memory_sizes, compare_n or 0], default=0)
    if not total:
        parser.error("nothing to run: give --sizes, --in-memory or --in-memory-sizes")

    signal.signal(signal.SIGTERM, _raise_exit)  # clean up on kill too
    created = args.dir is None
    directory = tempfile.mkdtemp(prefix="skmuter-scale-") if created else args.dir
    if not created:
        os.makedirs(directory, exist_ok=True)
    print(f"d={N_FEATURES} logistic, no intercept, alpha={ALPHA:g}, PGD(epsilon=4/255, "
          f"clip=(0, 1)); chunks of {args.chunk_rows:,} rows in {directory}; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
          f"{os.cpu_count()} CPUs", flush=True)
    try:
        print(f"writing {total:,} rows ({data_gb(total):.2f} GB) ...", flush=True)
        write_s = write_data(directory, total, args.chunk_rows, args.seed)
        if write_s:
            print(f"written in {write_s:.0f} s", flush=True)
        base = {"dir": directory, "chunk_rows": args.chunk_rows, "seed": args.seed,
                "requests": args.requests, "threads": args.threads}
        files = [(n, run_child({**base, "mode": "files", "n": n,
                                "checked": not args.no_checked}, args.timeout))
                 for n in sizes]
        memory = [(n, run_child({**base, "mode": "memory", "n": n, "checked": False},
                                args.timeout))
                  for n in memory_sizes]
        compare = None
        if compare_n:
            numpy_r = dict(memory).get(compare_n) or run_child(
                {**base, "mode": "memory", "n": compare_n, "requests": 0, "checked": False},
                args.timeout)
            dask_r = run_child({**base, "mode": "memory-dask", "n": compare_n, "requests": 0,
                                "checked": False}, args.timeout)
            compare = (compare_n, numpy_r, dask_r)
        report(files, memory, compare)
    finally:
        if args.keep:
            print(f"kept the chunk files in {directory}")
        else:
            remove_data(directory)
    return None


if __name__ == "__main__":
    main()
