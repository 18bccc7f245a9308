"""Held-out pass@k and answer diversity in the training loop: `rs/pass@k` and `eval_rs/pass@k` for the configured k,
`rs/distinct_answers/mean` and `rs/frac_groups_one_answer`, recomputed from outside from what the reward functions
saw, on 1 and 2 processes (the eval groups are split across the 2 processes and must be whole again)."""

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from rs_trl import RSGRPOConfig
from rs_trl.diversity import distinct_answer_metrics, final_answer
from rs_trl.estimators import unbiased_pass_at_k
from rs_trl.risk_metrics import risk_metrics
from tests.helpers import two_cpu_processes

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "text, answer",
    [
        (r"So the sum is \boxed{ 12 }.", "12"),
        (r"\boxed{7} no wait, \boxed{8}", "8"),
        ("7 + 5 = 12, so 12.", "12"),
        ("The answer is -3/4", "-3/4"),
        ("  No   Idea  ", "no idea"),
    ],
)
def test_final_answer(text, answer):
    assert final_answer(text) == answer


def test_distinct_answers_per_whole_group():
    answers = ["1", "1", "1", "1", "2", "3", "2", "4"]
    assert distinct_answer_metrics(answers, 4) == {"rs/distinct_answers/mean": 2.0, "rs/frac_groups_one_answer": 0.5}


def test_pass_at_k_for_the_configured_ks_matches_the_unbiased_estimator():
    rewards = torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 0])
    metrics = risk_metrics(rewards, torch.zeros(8), 2.0, 4, ks=[1, 2, 3, 8])
    for k in (1, 2, 3):
        expected = (unbiased_pass_at_k(1, 4, k) + unbiased_pass_at_k(2, 4, k)) / 2
        assert metrics[f"rs/pass@{k}"] == pytest.approx(expected.item())
    assert "rs/pass@8" not in metrics  # above the group size
    assert {k for k in risk_metrics(rewards, torch.zeros(8), 2.0, 4) if "pass@" in k} == {
        "rs/pass@1",
        "rs/pass@2",
        "rs/pass@4",
    }


def test_a_batch_solved_everywhere_has_pass_at_k_one():
    metrics = risk_metrics(torch.ones(8), torch.zeros(8), 2.0, 4)
    assert metrics["rs/pass@1"] == metrics["rs/pass@4"] == 1.0 and metrics["rs/frac_groups_all_solved"] == 1.0


def test_log_pass_at_k_is_validated():
    with pytest.raises(ValueError, match=r"log_pass_at_k must be a list of integers >= 1"):
        RSGRPOConfig(output_dir="x", log_pass_at_k=[0, 2])


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_eval_logs_pass_at_k_and_distinct_answers_of_whole_groups(tiny_model_dir, tmp_path, processes):
    worker = [str(ROOT / "tests" / "scripts" / "eval_metrics_worker.py"), tiny_model_dir, str(tmp_path)]
    if processes == 1:
        command = [sys.executable, *worker]
    else:
        command = two_cpu_processes(*worker)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "scripts")])}
    env |= {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    # The eval groups, from what the reward functions saw on every process: 6 prompts x 4 samples.
    groups = defaultdict(list)
    for rank in range(processes):
        for prompt, completion in json.loads((tmp_path / f"seen{rank}.json").read_text()):
            if prompt.startswith("Eval"):
                groups[prompt].append(completion)
    assert len(groups) == 6 and all(len(group) == 4 for group in groups.values()), {
        p: len(g) for p, g in groups.items()
    }
    logs = json.loads((tmp_path / "logs.json").read_text())
    evaluation = [entry for entry in logs if "eval_loss" in entry or "eval_rs/pass@1" in entry]
    assert len(evaluation) == 1, logs
    logged = evaluation[0]
    # Every eval batch holds the same number of groups, so TRL's mean over batches is the mean over groups.
    distinct = [len({final_answer(c) for c in group}) for group in groups.values()]
    assert logged["eval_rs/distinct_answers/mean"] == pytest.approx(sum(distinct) / 6)
    assert logged["eval_rs/frac_groups_one_answer"] == pytest.approx(sum(d == 1 for d in distinct) / 6)
    correct = torch.tensor([sum(any(ch.isdigit() for ch in c) for c in group) for group in groups.values()])
    for k in (1, 2, 4):
        assert logged[f"eval_rs/pass@{k}"] == pytest.approx(unbiased_pass_at_k(correct, 4, k).mean().item(), abs=1e-4)
    training = [entry for entry in logs if "loss" in entry]
    assert len(training) == 2 and all("rs/distinct_answers/mean" in e and "rs/pass@4" in e for e in training)
