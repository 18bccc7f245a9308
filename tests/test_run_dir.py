"""`rs-trl train` and its output directory: no silent overwrite of a previous run, no resume of another run."""

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rs_trl.cli import main as cli_main
from rs_trl.rewards import completion_text
from rs_trl.run_dir import LOCK_FILE
from rs_trl.train import main

ROOT = Path(__file__).resolve().parents[1]


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


def test_output_dir_equal_to_the_base_model_is_refused_before_loading(tiny_model_dir):
    weights = {p.name: p.stat().st_mtime_ns for p in Path(tiny_model_dir).iterdir()}
    with pytest.raises(
        ValueError, match=r"is the base model's directory \(model_name_or_path\).*overwrite its weights"
    ):
        main(_argv(tiny_model_dir, tiny_model_dir, "--overwrite_output_dir", "true"))
    assert {p.name: p.stat().st_mtime_ns for p in Path(tiny_model_dir).iterdir()} == weights


def test_foreign_files_are_kept_unless_asked(tiny_model_dir, tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    (out / "notes.txt").write_text("someone's work")
    with pytest.raises(ValueError, match=r"holds files that are not a run's \(notes.txt\).*--overwrite_output_dir"):
        main(_argv(tiny_model_dir, out))
    assert main(_argv(tiny_model_dir, out, "--overwrite_output_dir", "true")) == 0
    assert (out / "notes.txt").read_text() == "someone's work"


def test_a_missing_local_model_is_one_line(tmp_path, capsys):
    assert cli_main(["train", *_argv(str(tmp_path / "no-such-model"), tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rs-trl train: error: model_name_or_path ") and "no such directory" in err, err
    assert "Traceback" not in err


def test_resume_with_changed_optimisation_settings_is_refused_naming_them(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert main(_argv(tiny_model_dir, out)) == 0
    resume = ["--resume_from_checkpoint", "true", "--max_steps", "2"]  # a longer run of the same settings: fine
    changed = ["--learning_rate", "1e-4", "--num_generations", "2", "--per_device_train_batch_size", "2"]
    with pytest.raises(ValueError, match=r"belongs to a different run") as refused:
        main(_argv(tiny_model_dir, out, *resume, *changed))
    for change in ("learning_rate=1e-06 there, 0.0001 now", "num_generations=4 there, 2 now"):
        assert change in str(refused.value)
    with pytest.raises(ValueError, match=r"dataset_limit=8 there, 16 now"):
        main(_argv(tiny_model_dir, out, *resume, "--dataset_limit", "16"))
    assert main(_argv(tiny_model_dir, out, *resume, *changed, "--resume_allow_config_change", "true")) == 0


def test_no_complete_checkpoint_advice_is_a_command_that_then_works(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoint-3").mkdir(parents=True)  # what a kill during the first save leaves
    with pytest.raises(ValueError, match=r"no complete checkpoint; start a new run with --overwrite_output_dir true"):
        main(_argv(tiny_model_dir, out, "--resume_from_checkpoint", "true"))
    assert main(_argv(tiny_model_dir, out, "--overwrite_output_dir", "true")) == 0


def test_a_dataset_smaller_than_one_batch_is_an_error_not_zero_steps(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"train_dataset has 1 prompts, fewer than one generation batch takes"):
        main(_argv(tiny_model_dir, out, "--dataset_limit", "1", "--per_device_train_batch_size", "8"))
    assert not (out / "model.safetensors").exists()


def _start_blocked_run(model, out, release):
    env = {**os.environ, "RS_TRL_RELEASE": str(release), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests" / "scripts")])
    argv = _argv(model, out)
    argv[argv.index("--reward_funcs") + 1] = "blocking_reward.blocking_reward"
    process = subprocess.Popen(
        [sys.executable, "-m", "rs_trl.cli", "train", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 300
    while not Path(f"{release}.started").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()[-3000:]
        time.sleep(0.2)
    return process


@pytest.mark.slow
def test_a_running_run_holds_its_directory_and_a_dead_ones_lock_is_taken_over(tiny_model_dir, tmp_path, caplog):
    out, release = tmp_path / "run", tmp_path / "release"
    first = _start_blocked_run(tiny_model_dir, out, release)
    for extra in ([], ["--overwrite_output_dir", "true"], ["--resume_from_checkpoint", "true"]):
        with pytest.raises(
            ValueError, match=rf"in use by another run \(PID {first.pid} on host {socket.gethostname()}"
        ):
            main(_argv(tiny_model_dir, out, *extra))
    first.kill()  # SIGKILL: no chance to release the lock
    first.wait()
    assert (out / LOCK_FILE).exists()
    with caplog.at_level(logging.WARNING):
        assert main(_argv(tiny_model_dir, out, "--overwrite_output_dir", "true")) == 0
    assert f"its holder is gone (PID {first.pid} is not running)" in caplog.text
    assert not (out / LOCK_FILE).exists()  # released at the end of the run


@pytest.fixture
def small_mount(tmp_path):
    """A tmpfs of the given size and mode, unmounted afterwards; skipped where mounting is not allowed."""
    mounted = []

    def mount(options: str) -> Path:
        target = tmp_path / f"mount{len(mounted)}"
        target.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", str(target)], capture_output=True)


def test_a_read_only_output_dir_fails_before_the_model_loads(tiny_model_dir, small_mount):
    read_only = small_mount("size=1m,ro")
    with pytest.raises(ValueError, match=r"output_dir .*run is not writable: read-only file system"):
        main(_argv(tiny_model_dir, read_only / "run"))


def test_a_full_disk_is_warned_before_the_first_step_and_named_when_saving_fails(tiny_model_dir, small_mount, caplog):
    full = small_mount("size=300k")
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(RuntimeError, match=r"failed at step 1: no space left on device"),
    ):
        main(_argv(tiny_model_dir, full / "run"))
    assert "less than one checkpoint of this model needs" in caplog.text


@pytest.mark.parametrize(
    "damage, message",
    [
        ("nan_weights", r"checkpoint-1 holds non-finite weights \(.* has NaN or inf\)"),
        ("state_wrong_shape", r"dynamic_sampling_state.json is not a dynamic-sampling state \(KeyError"),
        (
            "state_wrong_type",
            r"dynamic_sampling_state.json is not a dynamic-sampling state .*position must be a non-neg",
        ),
    ],
)
def test_a_damaged_checkpoint_is_one_line_before_any_step(tiny_model_dir, tmp_path, capsys, damage, message):
    out = tmp_path / "run"
    assert main(_argv(tiny_model_dir, out)) == 0
    checkpoint = out / "checkpoint-1"
    if damage == "nan_weights":
        weights = load_file(checkpoint / "model.safetensors")
        first = sorted(weights)[0]
        weights[first] = torch.full_like(weights[first], float("nan"))
        save_file(weights, checkpoint / "model.safetensors", metadata={"format": "pt"})
    else:
        state_file = checkpoint / "dynamic_sampling_state.json"
        state = json.loads(state_file.read_text())
        if damage == "state_wrong_shape":
            state = {"refill": state["refill"]}
        else:
            state["refill"]["position"] = "9"
        state_file.write_text(json.dumps(state))
    capsys.readouterr()
    assert (
        cli_main(["train", *_argv(tiny_model_dir, out, "--resume_from_checkpoint", "true", "--max_steps", "2")]) == 2
    )
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err, err
