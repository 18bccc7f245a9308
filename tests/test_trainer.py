import math

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM
from trl import GRPOConfig, GRPOTrainer

from rs_trl import RSGRPOTrainer, risk_sensitive_advantages
from tests.helpers import cpu_args, grpo_config_like, score_like_trl


def digit_reward(completions, **kwargs):
    return [float(sum(ch.isdigit() for ch in c)) for c in completions]


def sometimes_none_reward(completions, **kwargs):
    # None = "cannot score": TRL turns it into NaN; the sample must then get advantage 0.
    return [None if len(c) % 5 == 0 else float(len(c) % 3) for c in completions]


def prompts_dataset(n=16):
    return Dataset.from_dict({"prompt": [f"What is {i} + {i + 1}?" for i in range(n)]})


@pytest.mark.parametrize("scale_rewards", ["none", "group", "batch"])
def test_risk_beta_zero_is_trl_grpo(tiny_model_dir, tmp_path, scale_rewards):
    rs_args = cpu_args(
        tmp_path / "rs", risk_beta=0.0, scale_rewards=scale_rewards, dynamic_sampling=False, reward_weights=[1.0, 0.5]
    )
    trl_args = grpo_config_like(rs_args)
    reward_funcs = [digit_reward, sometimes_none_reward]
    trainers = [
        cls(model=tiny_model_dir, reward_funcs=reward_funcs, args=args, train_dataset=prompts_dataset())
        for cls, args in ((GRPOTrainer, trl_args), (RSGRPOTrainer, rs_args))
    ]
    outputs = score_like_trl(trainers, rs_args.num_generations)
    torch.testing.assert_close(outputs[1]["advantages"], outputs[0]["advantages"])
    torch.testing.assert_close(
        torch.tensor(list(trainers[1]._logs["advantages"])), torch.tensor(list(trainers[0]._logs["advantages"]))
    )


def test_risk_beta_zero_trains_like_trl(tiny_model_dir, tmp_path):
    rs_args = cpu_args(tmp_path / "rs", risk_beta=0.0, dynamic_sampling=False, learning_rate=1e-2, max_steps=3)
    trl_args = grpo_config_like(rs_args)
    params = []
    for cls, args in ((GRPOTrainer, trl_args), (RSGRPOTrainer, rs_args)):
        trainer = cls(model=tiny_model_dir, reward_funcs=digit_reward, args=args, train_dataset=prompts_dataset())
        trainer.train()
        params.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    assert not torch.equal(
        params[1], torch.cat([p.flatten() for p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).parameters()])
    )
    torch.testing.assert_close(params[1], params[0])


def test_trains_with_risk_sensitive_advantages_and_checkpoint_reloads(tiny_model_dir, tmp_path):
    args = cpu_args(
        tmp_path / "out",
        risk_beta=4.0,
        max_steps=3,
        save_strategy="steps",
        save_steps=3,
        learning_rate=1e-2,
        reward_weights=[1.0, 0.5],
    )
    trainer = RSGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=[digit_reward, sometimes_none_reward],
        args=args,
        train_dataset=prompts_dataset(),
    )
    trainer.train()

    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert any(k.startswith("rs/") for k in trainer.state.log_history[0])

    # What TRL logs for its completion table (and what the loss saw) is the risk-sensitive advantage.
    per_func = torch.tensor([list(trainer._logs["rewards"][name]) for name in trainer.reward_func_names]).T
    rewards = (per_func * torch.tensor([1.0, 0.5])).nansum(dim=1)
    rewards[torch.isnan(per_func).all(dim=1)] = float("nan")
    expected = risk_sensitive_advantages(rewards, args.num_generations, 4.0)
    torch.testing.assert_close(torch.tensor(list(trainer._logs["advantages"])), expected)

    checkpoint = tmp_path / "out" / "checkpoint-3"
    reloaded = AutoModelForCausalLM.from_pretrained(checkpoint)
    for (name, saved), trained in zip(reloaded.state_dict().items(), trainer.model.state_dict().values()):
        torch.testing.assert_close(saved, trained, msg=name)
    assert "RS-GRPO" in (tmp_path / "out" / "README.md").read_text()  # TRL writes the model card next to checkpoints


def test_rejects_plain_grpo_config(tiny_model_dir, tmp_path):
    args = GRPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        report_to="none",
        num_generations=4,
        per_device_train_batch_size=8,
    )
    with pytest.raises(TypeError, match="RSGRPOConfig"):
        RSGRPOTrainer(model=tiny_model_dir, reward_funcs=digit_reward, args=args, train_dataset=prompts_dataset())
