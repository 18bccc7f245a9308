"""Estimators and β variants through RSGRPOConfig and RSGRPOTrainer: selection, validation, metrics."""

from pathlib import Path

import pytest
import torch
from datasets import Dataset
from trl import GRPOTrainer

from rs_trl import RSGRPOConfig, RSGRPOTrainer
from rs_trl.estimators import METHOD_DEFAULTS, group_advantages, parse_method, scheduled_beta
from tests.helpers import cpu_args, grpo_config_like, score_like_trl


def has_digit_reward(completions, **kwargs):
    return [float(any(ch.isdigit() for ch in c)) for c in completions]


def digit_count_reward(completions, **kwargs):
    return [float(sum(ch.isdigit() for ch in c)) for c in completions]


def prompts_dataset(n=16):
    return Dataset.from_dict({"prompt": [f"What is {i} + {i + 1}?" for i in range(n)]})


def generation_batch(num_generations, n_prompts=2):
    return [{"prompt": f"Compute {i} + 7."} for i in range(n_prompts) for _ in range(num_generations)]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"advantage_estimator": "ppo"}, "advantage_estimator"),
        ({"advantage_estimator": "pkpo", "pass_k": 1}, "pass_k"),
        ({"advantage_estimator": "pass_at_k", "pass_k": 0}, "pass_k"),
        ({"advantage_estimator": "pass_at_k", "pass_k": 5, "num_generations": 4}, "pass_k"),
        ({"risk_beta_schedule": "step"}, "risk_beta_schedule"),
        ({"risk_beta_schedule": "adaptive", "advantage_estimator": "grpo"}, "risk_beta_schedule"),
        ({"risk_beta_schedule": "linear"}, "risk_beta_end"),
        ({"risk_beta_schedule": "cosine", "risk_beta_end": 1.0, "risk_beta_schedule_steps": 0}, "schedule_steps"),
        ({"risk_beta_target_ess": 0.0}, "risk_beta_target_ess"),
        ({"risk_beta_max": float("inf")}, "risk_beta_max"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(tmp_path, overrides, field):
    with pytest.raises(ValueError, match=field):
        RSGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", **overrides)


@pytest.mark.parametrize(
    ("overrides", "reward"),
    [
        ({"advantage_estimator": "pkpo", "pass_k": 2}, digit_count_reward),
        ({"advantage_estimator": "pass_at_k", "pass_k": 2}, has_digit_reward),
        ({"risk_beta_schedule": "adaptive", "risk_beta_target_ess": 0.5}, digit_count_reward),
    ],
)
def test_trainer_uses_the_selected_estimator_and_logs_pass_at_k(tiny_model_dir, tmp_path, overrides, reward):
    args = cpu_args(tmp_path, dynamic_sampling=False, **overrides)
    scored = []

    class RecordingTrainer(RSGRPOTrainer):
        def on_batch_scored(self, mode, rewards, advantages, info, group_size):
            scored.append((rewards, info))
            super().on_batch_scored(mode, rewards, advantages, info, group_size)

    trainer = RecordingTrainer(model=tiny_model_dir, reward_funcs=reward, args=args, train_dataset=prompts_dataset())
    trainer.model.train()
    torch.manual_seed(0)
    output = trainer._generate_and_score_completions(generation_batch(args.num_generations, n_prompts=4))
    [(rewards, info)] = scored
    params = {"beta": info["beta"]} if args.advantage_estimator == "rs_grpo" else {"k": args.pass_k}
    expected = group_advantages(rewards, args.num_generations, args.advantage_estimator, **params)
    torch.testing.assert_close(output["advantages"], expected)
    metrics = trainer._metrics["train"]
    grouped = rewards.view(-1, args.num_generations)
    solved = (grouped == rewards.max()) & (rewards.max() > rewards.min())
    assert metrics["rs/pass@1"] == [pytest.approx(solved.float().mean().item())]
    assert metrics[f"rs/pass@{args.num_generations}"] == [pytest.approx(solved.any(1).float().mean().item())]
    if args.risk_beta_schedule == "adaptive":
        assert {"rs/beta/mean", "rs/beta/min", "rs/beta/median", "rs/beta/max"} <= metrics.keys()


def test_grpo_estimator_is_trl_grpo(tiny_model_dir, tmp_path):
    rs_args = cpu_args(tmp_path / "rs", advantage_estimator="grpo", scale_rewards="group", dynamic_sampling=False)
    trainers = [
        cls(model=tiny_model_dir, reward_funcs=digit_count_reward, args=args, train_dataset=prompts_dataset())
        for cls, args in ((GRPOTrainer, grpo_config_like(rs_args)), (RSGRPOTrainer, rs_args))
    ]
    outputs = score_like_trl(trainers, rs_args.num_generations)
    torch.testing.assert_close(outputs[1]["advantages"], outputs[0]["advantages"])


def test_beta_schedule_is_followed_and_logged_every_step(tiny_model_dir, tmp_path):
    args = cpu_args(
        tmp_path,
        max_steps=3,
        risk_beta=4.0,
        risk_beta_schedule="linear",
        risk_beta_end=1.0,
        risk_beta_schedule_steps=2,
    )
    trainer = RSGRPOTrainer(
        model=tiny_model_dir, reward_funcs=digit_count_reward, args=args, train_dataset=prompts_dataset()
    )
    trainer.train()
    logged = [entry["rs/beta"] for entry in trainer.state.log_history if "rs/beta" in entry]
    assert logged == [pytest.approx(scheduled_beta(step, 2, 4.0, 1.0, "linear")) for step in range(3)]
    assert logged == [pytest.approx(4.0), pytest.approx(2.5), pytest.approx(1.0)]


def test_method_defaults_are_the_config_defaults(tmp_path):
    config = RSGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    assert {name: getattr(config, name) for name in METHOD_DEFAULTS} == METHOD_DEFAULTS


@pytest.mark.parametrize(
    ("spec", "changes"),
    [
        ("grpo", {"advantage_estimator": "grpo"}),
        ("rs_grpo:4", {"risk_beta": 4.0}),
        (
            "rs_grpo:adaptive:0.3:6",
            {"risk_beta_schedule": "adaptive", "risk_beta_target_ess": 0.3, "risk_beta_max": 6.0},
        ),
        ("rs_grpo:cosine:8:2", {"risk_beta_schedule": "cosine", "risk_beta": 8.0, "risk_beta_end": 2.0}),
        ("pkpo:16", {"advantage_estimator": "pkpo", "pass_k": 16}),
    ],
)
def test_method_specs_are_valid_configs(tmp_path, spec, changes):
    method = parse_method(spec)
    assert vars(method) == dict(METHOD_DEFAULTS, label=spec) | changes
    fields = {k: v for k, v in vars(method).items() if k != "label"}
    RSGRPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        report_to="none",
        num_generations=16,
        per_device_train_batch_size=16,
        **fields,
    )


def test_model_card_names_the_estimator(tmp_path):
    from rs_trl.model_card import rs_grpo_section

    args = RSGRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", advantage_estimator="pkpo", pass_k=3
    )
    section = rs_grpo_section(args, base_model="org/base", dataset_name="math12k")
    assert "`pkpo` advantage estimator" in section and "| pass_k | 3 |" in section
    assert "| advantage_estimator | pkpo |" in section


def test_estimators_and_beta_variants_are_selectable_on_the_command_line():
    from rs_trl.train import parse_args

    recipe = Path(__file__).resolve().parents[1] / "recipes/Qwen2.5-Math-1.5B/rs_grpo/config_deepmath103k.yaml"
    base = ["--config", str(recipe), "--use_cpu", "true"]
    _, args, _ = parse_args([*base, "--advantage_estimator", "pkpo", "--pass_k", "8"])
    assert (args.advantage_estimator, args.pass_k) == ("pkpo", 8)
    _, args, _ = parse_args([*base, "--risk_beta_schedule", "cosine", "--risk_beta_end", "0.5"])
    assert (args.risk_beta_schedule, args.risk_beta_end) == ("cosine", 0.5)
    _, args, _ = parse_args([*base, "--risk_beta_schedule", "adaptive", "--risk_beta_target_ess", "0.3"])
    assert (args.risk_beta_schedule, args.risk_beta_target_ess) == ("adaptive", 0.3)
