"""Bad input fails early and clearly; reward faults never kill a step; extreme numerics; resume loses nothing."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from rs_trl import RSGRPOTrainer, risk_sensitive_advantages
from tests.helpers import cpu_args, reference

REPO = Path(__file__).resolve().parents[1]
MISSING_MODEL = "/nonexistent/model-must-not-be-loaded"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(risk_beta=float("nan")), "risk_beta"),
        (dict(risk_beta=float("inf")), "risk_beta"),
        (dict(risk_beta="high"), "risk_beta"),
        (dict(num_generations=1, per_device_train_batch_size=2), "at least 2 generations"),
        (dict(per_device_train_batch_size=6, num_generations=4), "divisible by num_generations"),
        (dict(dynamic_sampling_max_rounds=-1), "dynamic_sampling_max_rounds"),
        (dict(dynamic_sampling_max_rounds=2.5), "dynamic_sampling_max_rounds"),
        (dict(dynamic_sampling_on_exhaustion="retry"), "dynamic_sampling_on_exhaustion"),
        (dict(reward_timeout=0), "reward_timeout"),
        (dict(scale_rewards="std"), "scale_rewards"),
        (dict(reward_failure_patience=0), "reward_failure_patience"),
        (dict(reward_failure_patience="never"), "reward_failure_patience"),
        (dict(reward_failure_patience=1.5), "reward_failure_patience"),
    ],
)
def test_bad_config_names_the_field(tmp_path, overrides, field):
    with pytest.raises(ValueError, match=field):
        cpu_args(tmp_path, **overrides)


def needs_answer(completions, answer, **kwargs):
    return [float(c.strip() == a) for c, a in zip(completions, answer)]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"question": ["1+1"], "answer": ["2"]}, "needs a 'prompt' column"),
        ({"prompt": ["1+1"]}, r"needs dataset column\(s\) \['answer'\]"),
        ({"prompt": [], "answer": []}, "empty"),
    ],
)
def test_bad_dataset_fails_before_the_model_loads(tmp_path, columns, message):
    with pytest.raises(ValueError, match=message):
        RSGRPOTrainer(
            model=MISSING_MODEL,
            reward_funcs=needs_answer,
            args=cpu_args(tmp_path),
            train_dataset=Dataset.from_dict(columns),
        )


def varied(completions, **kwargs):
    return [float(sum(map(ord, c)) % 7) for c in completions]


def raises(completions, **kwargs):
    raise RuntimeError("grader crashed")


def returns_none(completions, **kwargs):
    return [None] * len(completions)


def returns_nan(completions, **kwargs):
    return [float("nan")] * len(completions)


def hangs(completions, **kwargs):
    time.sleep(30)
    return [1.0] * len(completions)


def wrong_length(completions, **kwargs):
    return [1.0]


@pytest.mark.parametrize(
    ("faulty", "kind"), [(raises, "error"), (returns_none, "none"), (returns_nan, "none"), (hangs, "timeout")]
)
def test_reward_fault_leaves_samples_unscored_and_training_continues(tiny_model_dir, tmp_path, faulty, kind):
    args = cpu_args(tmp_path, reward_timeout=0.5, dynamic_sampling=False, max_steps=2)
    dataset = Dataset.from_dict({"prompt": [f"Q{i}" for i in range(16)]})
    # The faulty function is the only one: every sample is unscorable, so every advantage must be 0.
    trainer = RSGRPOTrainer(model=tiny_model_dir, reward_funcs=faulty, args=args, train_dataset=dataset)
    trainer.train()
    assert trainer.state.global_step == 2
    assert all(a == 0 for a in trainer._logs["advantages"])
    counts = [h[f"rewards/{faulty.__name__}/faults_{kind}"] for h in trainer.state.log_history if "loss" in h]
    assert counts and all(c > 0 for c in counts)

    # Beside a healthy function the step keeps the healthy signal.
    trainer = RSGRPOTrainer(model=tiny_model_dir, reward_funcs=[varied, faulty], args=args, train_dataset=dataset)
    trainer.train()
    assert any(a != 0 for a in trainer._logs["advantages"])


def test_wrong_length_reward_is_a_clear_error(tiny_model_dir, tmp_path):
    dataset = Dataset.from_dict({"prompt": [f"Q{i}" for i in range(16)]})
    trainer = RSGRPOTrainer(
        model=tiny_model_dir, reward_funcs=wrong_length, args=cpu_args(tmp_path), train_dataset=dataset
    )
    with pytest.raises(ValueError, match="'wrong_length' returned 1 rewards"):
        trainer.train()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("group_size", [2, 3, 16, 64])
def test_extreme_numerics_match_float64(dtype, group_size):
    generator = torch.Generator().manual_seed(group_size)
    for beta in (-1e3, -37.0, -1e-4, 0.0, 1e-4, 2.0, 37.0, 1e3):
        for scale in (1e-3, 1.0, 1e4):
            rewards = (torch.rand(8 * group_size, generator=generator, dtype=torch.float64) * 2 - 1) * scale
            rewards = rewards.to(dtype)
            got = risk_sensitive_advantages(rewards, group_size, beta)
            assert torch.isfinite(got).all() and got.dtype == dtype
            expected = reference(rewards.double().tolist(), group_size, beta).to(dtype)
            torch.testing.assert_close(got, expected, msg=f"beta={beta} scale={scale}")


def _train(model_dir, out_dir, *extra):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(REPO / "tests" / "scripts" / "train_resumable.py"), model_dir, str(out_dir), *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tiny_model_dir, tmp_path):
    straight = _train(tiny_model_dir, tmp_path / "straight")
    killed = _train(tiny_model_dir, tmp_path / "killed", "--pause-after", "4")
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "paused").exists():
        assert killed.poll() is None and time.time() < deadline, killed.stdout.read()[-3000:]
        time.sleep(0.5)
    os.kill(killed.pid, signal.SIGKILL)  # between checkpoint-4 and checkpoint-6
    killed.wait()
    assert (tmp_path / "killed" / "checkpoint-4" / "dynamic_sampling_state.json").exists()
    assert not (tmp_path / "killed" / "checkpoint-6").exists()

    resumed = _train(tiny_model_dir, tmp_path / "killed", "--resume")
    for process in (straight, resumed):
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, output[-3000:]

    def steps(run):
        history = json.loads((tmp_path / run / "log_history.json").read_text())
        return {h["step"]: h for h in history if "loss" in h}

    straight_steps, resumed_steps = steps("straight"), steps("killed")
    assert max(resumed_steps) == max(straight_steps) == 6
    compared = [k for k in straight_steps[5] if k.startswith(("loss", "reward", "dynamic_sampling/", "rs/"))]
    for step in (5, 6):
        for key in compared:
            assert math.isclose(resumed_steps[step][key], straight_steps[step][key], rel_tol=1e-5, abs_tol=1e-7), (
                step,
                key,
                resumed_steps[step][key],
                straight_steps[step][key],
            )
