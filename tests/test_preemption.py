"""Preemption loses nothing: a scheduler's SIGTERM/SIGUSR1 (or Ctrl-C) mid-step ends the run with a complete
checkpoint of that step on every process and exit code 128 + signal; resuming reaches the uninterrupted run's last
step with no step lost or repeated. Signals come from outside the training process, as a scheduler sends them."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rs_trl.checkpoints import incomplete_reason
from tests.helpers import two_cpu_processes

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _train(model_dir, out_dir, *extra):
    command = [sys.executable, str(ROOT / "tests" / "scripts" / "train_resumable.py"), model_dir, str(out_dir), *extra]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 300):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear within {seconds} s"
        time.sleep(0.2)


def _logged_steps(history: list[dict]) -> dict[int, dict]:
    steps = [entry["step"] for entry in history if "loss" in entry]
    assert len(steps) == len(set(steps)), f"a step was trained twice: {steps}"
    return {entry["step"]: entry for entry in history if "loss" in entry}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_mid_step_saves_that_step_and_resume_matches_uninterrupted_run(tiny_model_dir, tmp_path, sig):
    straight = _train(tiny_model_dir, tmp_path / "straight")
    stopped = _train(tiny_model_dir, tmp_path / "stopped", "--wait-at", "3")
    _wait_for(tmp_path / "stopped" / "waiting", stopped)
    stopped.send_signal(sig)  # arrives during step 3
    (tmp_path / "stopped" / "signalled").touch()
    output = stopped.communicate(timeout=300)[0]
    assert stopped.returncode == 128 + sig.value, output[-3000:]
    assert f"{sig.name} received: finishing this optimizer step" in output
    assert f"stopped after step 3 and saved {tmp_path / 'stopped' / 'checkpoint-3'}" in output
    checkpoint = tmp_path / "stopped" / "checkpoint-3"
    assert incomplete_reason(checkpoint) is None and (checkpoint / "dynamic_sampling_state.json").is_file()
    assert sorted(p.name for p in (tmp_path / "stopped").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]

    resumed = _train(tiny_model_dir, tmp_path / "stopped", "--resume")
    for process in (straight, resumed):
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, output[-3000:]
    straight_steps, resumed_steps = (
        _logged_steps(json.loads((tmp_path / run / "log_history.json").read_text())) for run in ("straight", "stopped")
    )
    assert sorted(resumed_steps) == sorted(straight_steps) == [1, 2, 3, 4, 5, 6]
    compared = [k for k in straight_steps[4] if k.startswith(("loss", "reward", "dynamic_sampling/", "rs/"))]
    for step in (4, 5, 6):
        for key in compared:
            assert math.isclose(resumed_steps[step][key], straight_steps[step][key], rel_tol=1e-5, abs_tol=1e-7), (
                step,
                key,
            )


@pytest.mark.slow
def test_a_second_signal_stops_at_once(tiny_model_dir, tmp_path):
    stopped = _train(tiny_model_dir, tmp_path / "run", "--wait-at", "3")
    _wait_for(tmp_path / "run" / "waiting", stopped)
    stopped.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    stopped.send_signal(signal.SIGTERM)  # within 2 s: the same event (a launcher forwarding it), still saves
    time.sleep(3)
    stopped.send_signal(signal.SIGTERM)  # a second event: stop now, mid-step, nothing saved
    output = stopped.communicate(timeout=60)[0]
    assert stopped.returncode == -signal.SIGTERM, output[-3000:]
    assert not (tmp_path / "run" / "checkpoint-3").exists()


@pytest.mark.slow
def test_sigterm_to_the_launcher_checkpoints_every_rank_and_resume_finishes_the_run(tiny_model_dir, tmp_path):
    """`rs-trl train` on 2 gloo processes; SIGTERM goes to `accelerate launch` only, which forwards it."""
    out = tmp_path / "run"

    def launch(*extra):
        command = two_cpu_processes(
            "-m", "rs_trl.train", "--model_name_or_path", tiny_model_dir, "--output_dir", str(out),
            "--dataset_name", "arithmetic", "--dataset_limit", "64", "--reward_funcs", "format_reward",
            "--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--gradient_checkpointing", "false",
            "--max_steps", "100", "--per_device_train_batch_size", "4", "--num_generations", "4",
            "--max_completion_length", "8", "--dynamic_sampling", "false", "--save_strategy", "steps",
            "--save_steps", "2", "--logging_steps", "1", *extra,
        )  # fmt: skip
        return subprocess.Popen(
            command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    first = launch()
    _wait_for(out / "checkpoint-2" / "trainer_state.json", first)
    first.send_signal(signal.SIGTERM)
    output = first.communicate(timeout=300)[0]
    assert first.returncode == 128 + signal.SIGTERM.value, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    last = max(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    stop_step = int(last.name.split("-")[1])
    assert 2 < stop_step < 100 and incomplete_reason(last) is None and not (out / "metrics.json").exists()
    # Both ranks took part in the save: each process's RNG state is in the checkpoint.
    assert all((last / f"rng_state_{rank}.pth").is_file() for rank in range(2))
    assert f"stopped after step {stop_step} and saved {last}" in output

    second = launch("--resume_from_checkpoint", "true")
    output = second.communicate(timeout=600)[0]
    assert second.returncode == 0, output[-4000:]
    assert f"Resuming from {last}." in output
    history = json.loads((out / "metrics.json").read_text())["log_history"]
    assert sorted(_logged_steps(history)) == list(range(1, 101))
