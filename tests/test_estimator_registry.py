"""Estimators users add: registered in their own script, selected by name, trained on 1 and 2 processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rs_trl import RSGRPOConfig, register_estimator
from rs_trl.estimators import ESTIMATORS, group_advantages, parse_method
from rs_trl.model_card import rs_grpo_section

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def registered():
    """Names registered inside a test are removed afterwards, so other tests see only the built-in estimators."""
    before = set(ESTIMATORS)
    yield
    for name in set(ESTIMATORS) - before:
        del ESTIMATORS[name]


def config(tmp_path, **overrides):
    return RSGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", **overrides)


def test_a_registered_estimator_is_validated_parsed_and_named_in_the_model_card(tmp_path, registered):
    def validate(config):
        if config.pass_k % 2:
            raise ValueError(f"pass_k must be even for 'top_half', got {config.pass_k}.")

    @register_estimator(
        "top_half",
        params=lambda config, rewards, step, total_steps: {"k": config.pass_k},
        validate=validate,
        config_fields=("pass_k",),
        description="1 for the better half of the group, else 0 (a test's estimator)",
        method_syntax="top_half:K",
        parse_args=lambda args: {"pass_k": int(args[0])},
    )
    def top_half(rewards, k):
        return (rewards > rewards.nanmedian(dim=1, keepdim=True).values).double() * k

    rewards = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert group_advantages(rewards, 4, "top_half", k=2).tolist() == [0.0, 0.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="pass_k must be even"):
        config(tmp_path, advantage_estimator="top_half", pass_k=3)
    args = config(tmp_path, advantage_estimator="top_half", pass_k=2)
    section = rs_grpo_section(args, base_model="org/base", dataset_name=None)
    assert "`top_half` advantage estimator (1 for the better half" in section and "| pass_k | 2 |" in section
    assert vars(parse_method("top_half:6"))["pass_k"] == 6
    with pytest.raises(ValueError, match="top_half:K"):
        parse_method("nonexistent")


def test_names_are_registered_once(registered):
    with pytest.raises(ValueError, match="'grpo' is already registered"):
        register_estimator("grpo")(lambda rewards: rewards)
    with pytest.raises(ValueError, match="advantage_estimator must be one of .*'maxrl'.*got 'not_registered'"):
        config("/tmp/unused", advantage_estimator="not_registered")


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_user_registered_estimator_trains(tiny_model_dir, tmp_path, processes):
    """tests/scripts/custom_estimator.py registers its estimator at import; under `accelerate launch` each process
    must run it, and every advantage that reaches the loss must be the estimator's."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    script = str(REPO / "tests" / "scripts" / "custom_estimator.py")
    if processes == 1:
        command = [sys.executable, script, tiny_model_dir, str(tmp_path)]
    else:
        command = [
            *(sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"),
            *("--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", script),
            *(tiny_model_dir, str(tmp_path)),
        ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    records = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(processes)]
    for record in records:
        assert record["world_size"] == record["num_processes"] == processes
        assert record["estimator_calls"] >= 2  # at least once per training step, in this very process
        assert record["batches_at_loss"] == 2 and record["nonzero_at_loss"] >= 1
        assert record["advantages_are_the_estimators"] and all(record["advantages_are_the_estimators"])
