"""The network benchmark: a frozen conv body, an adversarial head, Table 7 and Figure 9."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("skorch")

from skmuter.benchmark import (
    NET_PROTOCOLS,
    NetBenchmarkSettings,
    load_net_data,
    run_net_benchmark,
)
from skmuter.cli import main

#: a protocol small enough for a test: 100 head rows, a body on 200 other rows
TINY = dataclasses.replace(NET_PROTOCOLS["digits"], n_train=100, n_body=200, n_test=60,
                           body_epochs=2, head_epochs=1, pgd_steps=2, pgd_step=0.05,
                           polish_max_iter=4)


@pytest.fixture(scope="module")
def result():
    import torch

    torch.set_num_threads(1)
    data = load_net_data("digits", protocol=TINY)
    return run_net_benchmark(data, TINY, removals="1,2%", forgetters=["muter", "newton"],
                             attacks=["pgd", "fgsm"], forget_tol=None, progress=False,
                             info={"dataset": "digits"})


def test_digits_rows_are_disjoint_and_sized():
    full = load_net_data("digits")
    assert (len(full.y_train), len(full.y_body), len(full.y_test)) == (200, 897, 200)
    head, body, test = ({row.tobytes() for row in X}
                        for X in (full.X_train, full.X_body, full.X_test))
    assert not (head & body) and not (head & test) and not (body & test)
    assert full.X_train.dtype == np.float32 and full.X_train.max() <= 1.0


def test_the_body_is_frozen_and_the_head_is_the_last_linear(result):
    from skmuter.benchmark._net import fit_body, head_net, net_attack

    data = load_net_data("digits", protocol=TINY)
    body = fit_body(data, dataclasses.replace(TINY, body_epochs=1))
    before = {k: v.clone() for k, v in body.module_.body.state_dict().items()}
    head = head_net(body, TINY, net_attack(TINY, "fgsm")).set_params(polish=False)
    head.fit(data.X_train, data.y_train)
    assert head.forget_names_ == ["head.weight", "head.bias"]
    after = head.module_.body.state_dict()
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)


def test_table7_layout_and_speed_up_from_the_records(result):
    table = result.table7()
    assert list(table.columns) == ["1", "2% (2)"]  # 2% of 100 rows
    assert list(dict.fromkeys(table.index.get_level_values("attack"))) == ["PGD", "FGSM"]
    assert list(table.loc["PGD"].index) == [
        "muter", "newton", "retrain", "speed-up (retrain / muter)", "speed-up excl. memory"]
    rec = result.records
    for attack in ("pgd", "fgsm"):
        mine = rec[rec["attack"] == attack].set_index(["method", "n_removed"])
        block = table.loc[attack.upper()]
        for col, count in zip(table.columns, (1, 2)):
            retrain = mine.loc[("retrain", count), "time"]
            muter = mine.loc[("muter", count), "time"]  # requests, memory included
            memory = mine.loc[("muter", count), "precompute_time"]
            assert 0 < memory < muter
            assert block.loc["muter", col] == muter
            assert block.loc["speed-up (retrain / muter)", col] == pytest.approx(
                retrain / muter)
            assert block.loc["speed-up excl. memory", col] == pytest.approx(
                retrain / (muter - memory))
        # the second size step adds requests to the same copy: times add up
        assert block.loc["muter", "2% (2)"] >= block.loc["muter", "1"]


def test_effectiveness_is_the_objective_gap_fraction(result):
    rec = result.records
    for (attack, count), group in rec.groupby(["attack", "n_removed"]):
        by = group.set_index("method")
        r_r, r_0 = by.loc["retrain", "objective"], by.loc["do-nothing", "objective"]
        for name in ("muter", "newton"):
            expected = (by.loc[name, "objective"] - r_r) / (r_0 - r_r)
            assert by.loc[name, "gap_fraction"] == pytest.approx(expected)
        assert by.loc["retrain", "gap_fraction"] == 0 and by.loc["do-nothing",
                                                                 "gap_fraction"] == 1
    # removing rows changes the kept rows' optimum: the retrain is below doing nothing
    pivot = rec.pivot_table(index=["attack", "n_removed"], columns="method",
                            values="objective")
    assert (pivot["retrain"] < pivot["do-nothing"]).all()
    panels = result.figure9_tables()["pgd"]
    assert list(panels) == ["effectiveness", "clean accuracy", "robust accuracy"]
    assert list(panels["effectiveness"].index) == ["muter", "newton", "do-nothing"]


def test_files_and_report(result, tmp_path):
    pytest.importorskip("matplotlib")
    paths = result.save(tmp_path, prefix="x_")
    names = {p.name for p in paths}
    assert {"x_records.csv", "x_table7.csv", "x_figure9.png", "x_report.txt",
            "x_pgd_effectiveness.csv", "x_fgsm_robust_accuracy.csv"} <= names
    table = pd.read_csv(tmp_path / "x_table7.csv", index_col=[0, 1])
    assert table.shape == (10, 2)
    report = result.report()
    assert "Table 7 layout" in report and "objective-gap fraction" in report


def test_settings_are_checked():
    with pytest.raises(ValueError, match="unknown attack"):
        NetBenchmarkSettings(attacks=["cw"])
    with pytest.raises(ValueError, match="unknown forgetter"):
        NetBenchmarkSettings(forgetters=["oblivion"])
    with pytest.raises(ValueError, match="forget_tol"):
        NetBenchmarkSettings(forget_tol="loose")


def test_the_command_on_digits(tmp_path, capsys, monkeypatch):
    """``skmuter bench --model net --dataset digits`` with the tiny protocol, FGSM only."""
    import skmuter.cli

    monkeypatch.setitem(skmuter.cli.NET_PROTOCOLS, "digits", TINY)
    argv = ["bench", "--model", "net", "--dataset", "digits", "--attack", "fgsm",
            "--removals", "1,1%,2%", "--forgetters", "muter", "--forget-tol", "none",
            "--n-train", "80", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Table 7 layout" in out and "speed-up (retrain / muter)" in out
    assert "FGSM: Effectiveness" in out
    assert (tmp_path / "digits_net_table7.csv").is_file()
    records = pd.read_csv(tmp_path / "digits_net_records.csv")
    assert set(records["attack"]) == {"fgsm"}
    assert sorted(set(records["n_removed"])) == [1, 2]  # 1% of 80 rows rounds to 1


@pytest.mark.parametrize("argv, words", [
    (["bench", "--model", "net", "--dataset", "mnist-b"],
     "invalid choice: 'mnist-b' (choose from 'digits', 'mnist' for --model net)"),
    (["bench", "--dataset", "mnist"], "invalid choice: 'mnist'"),
    (["bench", "--model", "net", "--dataset", "digits", "--data", "x.npz"], "--data is for"),
    (["bench", "--model", "net", "--dataset", "digits", "--sequential"], "linear models only"),
    (["bench", "--dataset", "digits", "--device", "cuda"], "for --model net only"),
    (["bench", "--model", "net", "--forget-tol", "-1"], "argument --forget-tol"),
    (["bench", "--model", "net", "--dataset", "digits", "--removals", "1,599"],
     "larger than the data"),
])
def test_bad_net_arguments_give_one_line(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("skmuter: error:") and words in err[0]


def test_cuda_is_refused_clearly_where_there_is_none(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["bench", "--model", "net", "--dataset", "digits", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "device='cpu'" in err
