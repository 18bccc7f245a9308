"""The bridge over TRL (`AdvantageGRPOTrainer`) and dynamic sampling on top of it, judged by what reaches the loss."""

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from rs_trl import RSGRPOConfig, RSGRPOTrainer
from rs_trl.dynamic_sampling import DynamicSamplingMixin
from rs_trl.trl_bridge import AdvantageGRPOTrainer
from tests.helpers import cpu_args

# TRL's own default `GRPOConfig()` but for where it runs and for how long; the learning rate is large enough that
# identical weights are not an accident of tiny updates.
TRL_DEFAULTS_ON_CPU = dict(
    use_cpu=True,
    bf16=False,
    max_completion_length=8,
    max_steps=3,
    logging_steps=1,
    report_to="none",
    learning_rate=1e-3,
)


def text_reward(completions, **kwargs):
    return [float(sum(map(ord, completion)) % 7) for completion in completions]


def recording_loss(cls):
    """`cls` with every batch that reaches `compute_loss` recorded (advantages and prompt rows)."""

    class Recording(cls):
        def compute_loss(self, model, inputs, *args, **kwargs):
            self.loss_batches = getattr(self, "loss_batches", [])
            self.loss_batches.append({"advantages": inputs["advantages"].clone(), "prompt_ids": inputs["prompt_ids"]})
            return super().compute_loss(model, inputs, *args, **kwargs)

    return Recording


def groups_at_the_loss(trainer) -> list[torch.Tensor]:
    """The advantages that reached the loss, grouped by prompt (TRL shuffles rows before splitting the batch)."""
    groups = {}
    for batch in trainer.loss_batches:
        for prompt, advantage in zip(batch["prompt_ids"].tolist(), batch["advantages"].tolist()):
            groups.setdefault(tuple(prompt), []).append(advantage)
    return [torch.tensor(values) for values in groups.values()]


def test_bridge_trains_bit_for_bit_like_grpo_trainer(tiny_model_dir, tmp_path):
    """TRL's own default `GRPOConfig()` (group std scaling, 8 generations, gradient checkpointing, ...), changing
    only where it runs and for how long: the bridge with its default hook gives GRPOTrainer's losses and weights."""
    dataset = Dataset.from_dict({"prompt": [f"Compute {i} + 7." for i in range(16)]})
    trainers = []
    for cls in (GRPOTrainer, AdvantageGRPOTrainer):
        args = GRPOConfig(output_dir=str(tmp_path / cls.__name__), **TRL_DEFAULTS_ON_CPU)
        trainer = recording_loss(cls)(model=tiny_model_dir, reward_funcs=text_reward, args=args, train_dataset=dataset)
        trainer.train()
        trainers.append(trainer)
    trl, bridge = trainers
    assert len(trl.loss_batches) == len(bridge.loss_batches) == 3
    assert any(batch["advantages"].abs().sum() > 0 for batch in trl.loss_batches)
    for ours, theirs in zip(bridge.loss_batches, trl.loss_batches):
        assert torch.equal(ours["advantages"], theirs["advantages"])
    losses = [[entry["loss"] for entry in t.state.log_history if "loss" in entry] for t in trainers]
    assert losses[0] == losses[1]
    for (name, ours), theirs in zip(bridge.model.state_dict().items(), trl.model.state_dict().values()):
        assert torch.equal(ours, theirs), name


def three_of_four_or_one_of_four(completions, qid, **kwargs):
    """Per group of 4 (rows in order): even prompts score 1, 1, 1, 0 (unequal rewards whose pass@2 advantage is 0:
    every pair holds a correct sample); odd prompts score 1, 0, 0, 0 (informative)."""
    return [float(position < (3 if q % 2 == 0 else 1)) for position, q in ((i % 4, q) for i, q in enumerate(qid))]


@pytest.mark.parametrize(
    "overrides",
    [{"advantage_estimator": "pass_at_k", "pass_k": 2}, {"advantage_estimator": "pkpo", "pass_k": 4}],
    ids=["pass_at_k", "pkpo"],
)
def test_no_group_at_the_loss_has_all_zero_advantage(tiny_model_dir, tmp_path, overrides):
    """Dynamic sampling drops what the estimator gives no gradient, not only groups with equal rewards."""
    dataset = Dataset.from_dict({"prompt": [f"Question {i} :" for i in range(32)], "qid": list(range(32))})
    args = cpu_args(tmp_path, max_steps=3, dynamic_sampling_max_rounds=20, **overrides)
    trainer = recording_loss(RSGRPOTrainer)(
        model=tiny_model_dir, reward_funcs=three_of_four_or_one_of_four, args=args, train_dataset=dataset
    )
    trainer.train()
    groups = groups_at_the_loss(trainer)
    assert len(groups) == 3 * args.generation_batch_size // args.num_generations
    assert all(group.abs().sum() > 0 for group in groups)
    logged = [entry for entry in trainer.state.log_history if "dynamic_sampling/groups_generated" in entry]
    assert all(entry["dynamic_sampling/frac_zero_advantage_unequal_rewards"] > 0 for entry in logged)


def test_dynamic_sampling_works_with_the_plain_grpo_hook(tiny_model_dir, tmp_path):
    """The mixin over the bridge's own GRPO advantage, no risk sensitivity anywhere: constant groups never reach the
    loss, and each step trains a full batch."""

    class DynamicSamplingGRPOTrainer(DynamicSamplingMixin, AdvantageGRPOTrainer):
        pass

    def even_prompts_constant(completions, qid, **kwargs):
        return [1.0 if q % 2 == 0 else float(sum(map(ord, c)) % 97) for c, q in zip(completions, qid)]

    dataset = Dataset.from_dict({"prompt": [f"Question {i} :" for i in range(32)], "qid": list(range(32))})
    args = cpu_args(tmp_path, max_steps=3, dynamic_sampling_max_rounds=20)
    trainer = recording_loss(DynamicSamplingGRPOTrainer)(
        model=tiny_model_dir, reward_funcs=even_prompts_constant, args=args, train_dataset=dataset
    )
    assert not isinstance(trainer, RSGRPOTrainer)
    trainer.train()
    groups = groups_at_the_loss(trainer)
    assert len(groups) == 3 * args.generation_batch_size // args.num_generations
    assert all(group.abs().sum() > 0 for group in groups)
    generated = sum(e["dynamic_sampling/groups_generated"] for e in trainer.state.log_history if "loss" in e)
    assert generated > len(groups)  # constant groups were generated and dropped


class ResetCountingEnvironment:
    """A sandbox-like environment that counts every `reset` TRL makes and records what each reset was for."""

    resets = []

    def reset(self, **kwargs):
        ResetCountingEnvironment.resets.append(kwargs.get("qid"))
        return " Observation."


def test_environments_see_one_reset_per_generated_rollout_under_dynamic_sampling(
    tiny_model_dir, tool_tokenizer_dir, tmp_path, monkeypatch
):
    """Refill rounds really happen (half the prompts score constantly); every rollout generated resets its
    environment once, as TRL would, and the replay of the kept groups resets none (nor appends a second
    observation to their prompts)."""
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    ResetCountingEnvironment.resets = []

    def even_prompts_constant(completions, qid, **kwargs):
        return [1.0 if q % 2 == 0 else float(sum(map(ord, str(c))) % 97) for c, q in zip(completions, qid)]

    dataset = Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": f"Question {i} :"}] for i in range(32)], "qid": list(range(32))}
    )
    args = cpu_args(tmp_path, max_steps=3, dynamic_sampling_max_rounds=20)
    trainer = recording_loss(RSGRPOTrainer)(
        model=tiny_model_dir,
        reward_funcs=even_prompts_constant,
        args=args,
        train_dataset=dataset,
        processing_class=tool_tokenizer_dir,
        environment_factory=ResetCountingEnvironment,
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "dynamic_sampling/groups_generated" in entry]
    generated_rollouts = sum(entry["dynamic_sampling/groups_generated"] for entry in logged) * args.num_generations
    assert generated_rollouts > 3 * args.generation_batch_size  # refills happened
    assert len(ResetCountingEnvironment.resets) == generated_rollouts
    trained_prompts = [p for batch in trainer.loss_batches for p in batch["prompt_ids"].tolist()]
    observation = tool_tokenizer_dir(" Observation.", add_special_tokens=False)["input_ids"]
    for prompt in trained_prompts:
        text = [token for token in prompt if token != tool_tokenizer_dir.pad_token_id]
        occurrences = sum(text[i : i + len(observation)] == observation for i in range(len(text)))
        assert occurrences == 1


@pytest.fixture
def tool_tokenizer_dir(tiny_model_dir):
    """The tiny model's tokenizer with TRL's Qwen2.5 chat template (TRL needs a tool-aware one for environments)."""
    import importlib.resources

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = (importlib.resources.files("trl") / "chat_templates" / "qwen2_5.jinja").read_text()
    return tokenizer


def test_rs_grpo_at_beta_zero_with_trls_values_is_grpo_trainer_on_trls_defaults(tiny_model_dir, tmp_path, caplog):
    """The drop-in claim, against TRL's own default `GRPOConfig()` (not a copy of ours): RSGRPOTrainer with
    risk_beta=0, dynamic_sampling=False and TRL's values for the two defaults it changes gives GRPOTrainer's
    advantages, losses and weights; and it names at start-up whatever still differs."""
    dataset = Dataset.from_dict({"prompt": [f"Compute {i} + 7." for i in range(16)]})
    trl_args = GRPOConfig(output_dir=str(tmp_path / "trl"), **TRL_DEFAULTS_ON_CPU)
    rs_args = RSGRPOConfig(
        output_dir=str(tmp_path / "rs"),
        risk_beta=0.0,
        dynamic_sampling=False,
        scale_rewards="group",
        epsilon_high=None,
        **TRL_DEFAULTS_ON_CPU,
    )
    trainers = []
    with caplog.at_level("WARNING", logger="rs_trl.trainer"):
        for cls, args in ((GRPOTrainer, trl_args), (RSGRPOTrainer, rs_args)):
            trainer = recording_loss(cls)(
                model=tiny_model_dir, reward_funcs=text_reward, args=args, train_dataset=dataset
            )
            trainer.train()
            trainers.append(trainer)
    assert not [r for r in caplog.records if "trains differently" in r.getMessage()]
    trl, rs = trainers
    for ours, theirs in zip(rs.loss_batches, trl.loss_batches):
        torch.testing.assert_close(ours["advantages"], theirs["advantages"], rtol=0, atol=1e-6)
    for ours, theirs in zip(rs.model.parameters(), trl.model.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)

    caplog.clear()
    with caplog.at_level("WARNING", logger="rs_trl.trainer"):
        RSGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=text_reward,
            args=RSGRPOConfig(output_dir=str(tmp_path / "defaults"), **TRL_DEFAULTS_ON_CPU),
            train_dataset=dataset,
        )
    [warning] = [r.getMessage() for r in caplog.records if "trains differently" in r.getMessage()]
    for needle in ("scale_rewards='none' (TRL: 'group')", "epsilon_high=0.28 (TRL: None)", "dynamic_sampling=True"):
        assert needle in warning
