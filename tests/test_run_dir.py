"""`rs-trl train` and its output directory: no silent overwrite of a previous run, no resume of another run."""

import json

import pytest

from rs_trl.rewards import completion_text
from rs_trl.train import main


def length_reward(completions, **kwargs) -> list[float]:
    return [len(completion_text(c)) / 10 for c in completions]


def _argv(model, out, *extra):
    return [
        "--model_name_or_path", model, "--output_dir", str(out), "--reward_funcs", f"{__name__}.length_reward",
        "--dataset_limit", "8", "--eval_limit", "0", "--max_completion_length", "8", "--num_generations", "4",
        "--per_device_train_batch_size", "4", "--save_strategy", "steps", "--save_steps", "1", "--max_steps", "1",
        "--use_cpu", "true", "--bf16", "false", "--gradient_checkpointing", "false", "--report_to", "none",
        "--logging_steps", "1",
        *extra,
    ]  # fmt: skip


def test_a_run_directory_is_never_silently_reused(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_argv(tiny_model_dir, out, "--risk_beta", "0")) == 0
    assert json.loads((out / "checkpoint-1" / "rs_trl_run.json").read_text())["risk_beta"] == 0.0

    # A new run in the same directory: refused, naming what it would overwrite.
    with pytest.raises(
        ValueError, match=r"holds a previous run \(checkpoint-1, metrics.json\).*--overwrite_output_dir"
    ):
        main(_argv(tiny_model_dir, out, "--risk_beta", "4"))
    # Resuming it with another risk_beta: refused, naming the field (`true` is accepted as on TRL's command line).
    with pytest.raises(ValueError, match=r"checkpoint-1 belongs to a different run \(risk_beta=0.0 there, 4.0 now\)"):
        main(_argv(tiny_model_dir, out, "--risk_beta", "4", "--resume_from_checkpoint", "true"))

    # Resuming with the same settings continues it, and says from where.
    resume = ["--resume_from_checkpoint", "true", "--max_steps", "2"]
    assert main(_argv(tiny_model_dir, out, "--risk_beta", "0", *resume)) == 0
    assert f"Resuming from {out / 'checkpoint-1'}." in capsys.readouterr().out
    steps = [h["step"] for h in json.loads((out / "metrics.json").read_text())["log_history"] if "loss" in h]
    assert steps == [1, 2]

    # Overwriting on request removes the old run's checkpoints, so no later resume can pick one up.
    assert main(_argv(tiny_model_dir, out, "--risk_beta", "4", "--overwrite_output_dir", "true")) == 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert json.loads((out / "checkpoint-1" / "rs_trl_run.json").read_text())["risk_beta"] == 4.0


def test_resume_false_is_a_fresh_run(tiny_model_dir, tmp_path):
    assert main(_argv(tiny_model_dir, tmp_path / "run", "--resume_from_checkpoint", "false")) == 0
