"""`rs-trl passk`: the pre-registered GRPO vs RS-GRPO protocol's whole pipeline on SmolLM2 at a tiny budget (--quick):
disjoint dev/test problems, one result per method x seed, a rerun that skips finished runs and says so, and the
seed x problem summary with the decision rule."""

import json

import pytest

from rs_trl.data import split_of
from rs_trl.experiments import passk


def test_dev_and_test_problems_are_disjoint_held_out_problems():
    dev, test = passk.split_problems(quick=False, max_operand=99)
    assert (len(dev), len(test)) == (passk.DEV_PROBLEMS, passk.TEST_PROBLEMS)
    assert not set(dev["problem"]) & set(test["problem"])
    assert {split_of(problem) for problem in [*dev["problem"], *test["problem"]]} == {"test"}  # never trained on
    assert max(int(x) for problem in test["problem"] for x in problem[8:-1].split(" ")[::2]) > 10  # two digits


@pytest.mark.slow
def test_quick_protocol_trains_evaluates_resumes_and_decides(tmp_path, capsys):
    argv = ["--quick", "--out", str(tmp_path), "--seeds", "0", "1"]
    assert passk.main(argv) == 0
    runs = {path.parent.name for path in (tmp_path / "results").glob("*/pass_at_k.json")}
    assert runs == {"base_dev_max99", "base", "grpo_seed0", "grpo_seed1", "rs_grpo_b2_seed0", "rs_grpo_b2_seed1"}
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())  # weights removed
    training = json.loads((tmp_path / "results" / "rs_grpo_b2_seed1" / "training.json").read_text())
    assert [entry["step"] for entry in training["log_history"] if "loss" in entry] == [1, 2]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and set(summary["differences"]) == {"rs_grpo_b2"}
    assert set(summary["decision"]) >= {"holds", "rule"}
    facts = summary["per_seed"]["grpo"]["1"]
    result = json.loads((tmp_path / "results" / "grpo_seed1" / "pass_at_k.json").read_text())
    assert facts["pass@4"] == result["benchmarks"]["test"]["pass_at_k"]["4"] and facts["train_minutes"] > 0
    assert "Decision rule (fixed in advance)" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "pass_at_k.png").stat().st_size > 0

    capsys.readouterr()
    assert passk.main(argv) == 0  # everything finished: nothing is trained again
    out = capsys.readouterr().out
    for run in ("grpo seed 0", "grpo seed 1", "rs_grpo_b2 seed 0", "rs_grpo_b2 seed 1"):
        assert f"skipping {run}: finished" in out
