"""The skmuter command line: demo, bench on the bundled digits, bad arguments."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from skmuter.cli import main

FAST = ["--repeats", "1", "--no-progress"]


def _one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skmuter: error:")
    return lines[0]


def test_demo_prints_the_table_and_writes_a_figure(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--forgetters", "muter,newton", *FAST]) == 0
    out = capsys.readouterr().out
    assert "robust" in out and "clean" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for method in ("muter", "newton", "retrain", "do-nothing"):
        assert method in rows
    # residual fraction column: MUter close to the retrain, doing nothing is 1
    assert float(rows["muter"][4]) < 0.5
    assert float(rows["do-nothing"][4]) == 1.0
    assert (tmp_path / "demo.png").stat().st_size > 1000


def test_bench_on_digits_writes_csv_and_png(tmp_path, capsys):
    argv = ["bench", "--dataset", "digits", "--removals", "1,3,2%", "--forgetters",
            "muter,newton-delta,retrain", "--out", str(tmp_path), *FAST]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Efficiency" in out and "speed-up (retrain / muter)" in out
    assert "Effectiveness" in out and "do-nothing" in out and "Robust test accuracy" in out
    prefix = "digits_logistic_fgsm_"
    for stem in ("efficiency", "effectiveness", "accuracy", "robustness"):
        assert (tmp_path / f"{prefix}{stem}.png").stat().st_size > 1000
        assert (tmp_path / f"{prefix}{stem}.csv").is_file()
    eff = pd.read_csv(tmp_path / f"{prefix}efficiency.csv", index_col=0)
    assert list(eff.columns) == ["1", "3", "2% (5)"]
    assert {"muter", "newton-delta", "retrain"} <= set(eff.index)
    records = pd.read_csv(tmp_path / f"{prefix}records.csv")
    assert set(records["method"]) == {"muter", "newton-delta", "retrain", "do-nothing"}
    retrain = records[records["method"] == "retrain"]
    assert (retrain["time"] > 0).all() and np.allclose(retrain["distance"], 0)
    effect = pd.read_csv(tmp_path / f"{prefix}effectiveness.csv", index_col=0)
    assert (effect.loc["muter"] < effect.loc["do-nothing"]).all()


def test_bench_ridge_pgd_sequential(tmp_path, capsys):
    argv = ["bench", "--dataset", "digits", "--model", "ridge", "--attack", "pgd",
            "--removals", "2", "--forgetters", "muter", "--sequential", "--out",
            str(tmp_path), *FAST]
    assert main(argv) == 0
    records = pd.read_csv(tmp_path / "digits_ridge_pgd_records.csv")
    assert records.loc[records["method"] == "muter", "n_requests"].tolist() == [2]
    assert "PGD" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["bench", "--dataset", "imagenet"], "invalid choice: 'imagenet'"),
    (["bench", "--dataset", "digits", "--removals", "1,5000"], "larger than the data"),
    (["bench", "--dataset", "digits", "--removals", "1,x"], "bad removal size 'x'"),
    (["bench", "--dataset", "digits", "--forgetters", "muter,oblivion"], "unknown forgetter"),
    (["bench", "--dataset", "digits", "--repeats", "0"], "positive integer"),
    (["demo", "--removal", "100%"], "larger than the data"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_give_one_line_and_status_2(capsys, argv, words):
    assert words in _one_line_error(capsys, argv)


def test_missing_data_file_gives_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SKMUTER_DATA", raising=False)
    line = _one_line_error(capsys, ["bench", "--dataset", "covtype", "--data",
                                    str(tmp_path / "nowhere")])
    assert "Covtype data not found" in line and "SKMUTER_DATA" in line


def test_without_matplotlib_the_demo_and_bench_run_and_say_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # "import matplotlib" now fails
    assert main(["demo", "--out", str(tmp_path), "--forgetters", "muter", *FAST]) == 0
    out = capsys.readouterr().out
    assert "muter" in out and "no figure: plotting needs matplotlib" in out
    assert "skmuter[plot]" in out and not (tmp_path / "demo.png").exists()
    argv = ["bench", "--dataset", "digits", "--removals", "1", "--forgetters", "muter",
            "--out", str(tmp_path), *FAST]
    assert main(argv) == 0
    assert "no figures: plotting needs matplotlib" in capsys.readouterr().out
    assert (tmp_path / "digits_logistic_fgsm_efficiency.csv").is_file()
    assert not list(tmp_path.glob("*.png"))


def test_the_command_and_the_benchmark_import_neither_matplotlib_nor_torch():
    code = ("import sys, skmuter.cli, skmuter.benchmark; "
            "print([m for m in ('matplotlib', 'torch', 'skorch') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == "[]"


def test_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "skmuter", "bench", "--dataset", "nope"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        ("skmuter: error: argument --dataset: invalid choice: 'nope' (choose from "
        "'digits', 'mnist-b', 'covtype')")
    ]


def _run_example(name, argv, monkeypatch):
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "examples" / name
    monkeypatch.setattr(sys, "argv", [str(script), *argv])
    runpy.run_path(str(script), run_name="__main__")


def test_quickstart_example(monkeypatch, capsys):
    _run_example("quickstart.py", [], monkeypatch)
    assert "residual_fraction" in capsys.readouterr().out


def test_network_example_forgets_close_to_the_exact_retrain(monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("skorch")
    _run_example("network.py", [], monkeypatch)
    out = capsys.readouterr().out
    fractions = [float(line.split()[-1]) for line in out.splitlines()
                 if line.strip().startswith("residual_fraction")]
    assert len(fractions) == 2  # muter, then newton-delta
    assert fractions[0] < 0.05
    assert fractions[0] < fractions[1]


def test_mnist_b_example_on_a_tiny_fake_file(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    y = np.tile([1, 7, 3], 20).astype(np.uint8)
    X = (rng.random((60, 784)) * 120 + np.where(y == 7, 100, 0)[:, None]).astype(np.uint8)
    np.savez_compressed(tmp_path / "mnist.npz", X_train=X, y_train=y, X_test=X[:12],
                        y_test=y[:12])
    out = tmp_path / "results"
    _run_example("mnist_b.py", ["--data", str(tmp_path), "--out", str(out), "--removals",
                                "1,2", "--repeats", "1"], monkeypatch)
    assert "Efficiency" in capsys.readouterr().out
    assert (out / "mnist-b_logistic_effectiveness.png").is_file()


def test_network_benchmark_example(monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("skorch")
    _run_example("network_benchmark.py", [], monkeypatch)
    out = capsys.readouterr().out
    assert "speed-up (retrain / muter)" in out and "objective-gap fraction" in out
    fractions = [float(v) for line in out.splitlines() if line.startswith("do-nothing")
                 for v in line.split()[1:]]
    assert fractions == [1.0, 1.0]


def test_certified_removal_example(monkeypatch, capsys):
    _run_example("certified_removal.py", [], monkeypatch)
    out = capsys.readouterr().out
    assert "budget spent" in out
    assert "re-solved exactly" in out  # the small noise runs out of budget


# ---- every help text, user errors as one line, progress bars off in log files -------
@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["bench", "--help"]])
def test_every_help_text_prints_and_reads_right(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: skmuter") and "%%" not in out
    if argv[0] == "demo":
        assert "forget 1% of its training rows" in out and "(default: 1%)" in out
    if argv[0] == "bench":
        assert "(default: 1,5,10,1%,2%)" in " ".join(out.split())


def test_every_subcommand_has_a_working_help():
    from skmuter.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # all of them, new ones too
    assert set(commands) >= {"demo", "bench"}
    for name, sub in commands.items():
        assert sub.format_help().startswith(f"usage: skmuter {name}")


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_unwritable_out_is_one_line_before_any_work(tmp_path, capsys, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    argv = [command, "--out", str(blocker / "sub"), *FAST]
    if command == "bench":
        argv += ["--dataset", "digits", "--removals", "1", "--forgetters", "muter"]
    line = _one_line_error(capsys, argv)
    assert "argument --out: cannot write to" in line and "Not a directory" in line
    line = _one_line_error(capsys, [*argv[:2], str(blocker), *argv[3:]])
    assert "is a file, not a folder" in line
    assert capsys.readouterr().out == ""  # refused before the benchmark ran


@pytest.mark.parametrize("argv, words", [
    (["bench", "--dataset", "digits", "--alpha", "nan"], "argument --alpha: expected a finite"),
    (["bench", "--dataset", "digits", "--alpha", "-1"], "argument --alpha: expected a finite"),
    (["bench", "--dataset", "digits", "--seed", "-1"], "argument --seed: expected an integer"),
    (["demo", "--seed", "x"], "argument --seed: expected an integer"),
    (["demo", "--removal", "1.5"], "a count must be a whole number"),
    (["bench", "--dataset", "digits", "--removals", ",,"], "bad removal size"),
    (["bench", "--dataset", "digits", "--data", "x.npz"], "--data is for mnist-b and covtype"),
])
def test_more_bad_arguments_give_one_line(capsys, argv, words):
    assert words in _one_line_error(capsys, argv)


def test_unreadable_data_file_gives_one_line(tmp_path, capsys):
    bad = tmp_path / "mnist.npz"
    bad.write_text("x,y\n1,2\n")
    line = _one_line_error(capsys, ["bench", "--dataset", "mnist-b", "--data", str(bad),
                                    "--out", str(tmp_path / "out")])
    assert str(bad) in line


def test_progress_bar_writes_no_carriage_return_into_a_log_file(tmp_path):
    log = tmp_path / "stderr.log"
    argv = [sys.executable, "-m", "skmuter", "bench", "--dataset", "digits", "--removals", "1",
            "--forgetters", "muter", "--repeats", "1", "--out", str(tmp_path)]
    with open(log, "w") as stderr:  # progress bars not turned off by --no-progress
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=stderr, text=True,
                              timeout=300, check=False)
    assert done.returncode == 0, log.read_text()
    assert "\r" not in log.read_text() and "\r" not in done.stdout


class _Terminal:
    def __init__(self):
        self.text = []

    def isatty(self):
        return True

    def write(self, text):
        self.text.append(text)

    def flush(self):
        pass


def test_progress_draws_on_a_terminal_only(monkeypatch):
    from skmuter._progress import progress, shows_progress

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert shows_progress()
    assert sum(progress(range(3), desc="x", file=terminal)) == 3
    assert "".join(terminal.text)  # drawn
    bar = progress(range(3), enabled=False)
    assert bar.disable
    monkeypatch.setattr(sys, "stderr", tmp := _Terminal())
    tmp.isatty = lambda: False
    assert not shows_progress() and progress(range(3)).disable
