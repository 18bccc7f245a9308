"""The one place rs_trl touches TRL's private `GRPOTrainer` internals (TRL 1.16; guarded by tests/test_trl_internals.py).

TRL computes the group advantage inline in `_generate_and_score_completions`, the method it changes most. Rather than
copy that method, `AdvantageGRPOTrainer` lets it run unchanged and swaps in the advantages of its own
`compute_advantages` hook, computed from the rewards TRL gathered. Everything it relies on is named below with the
TRL code it mirrors; if TRL merges an advantage hook (huggingface/trl#7298), this file is where we adopt it.

For dynamic sampling it also runs TRL's pass in two cut-down forms: a *scout* round (generation and rewards, without
the no-grad log-prob passes) and a *replay* (TRL's pass over already generated and scored rows: log-probs, metrics
and the completions table, with no generation and no reward calls).
"""

import contextlib
import os
from dataclasses import dataclass, field

import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.trainer.utils import nanstd


@dataclass
class _TRLPass:
    """How one call of TRL's `_generate_and_score_completions` departs from TRL, read by the overrides below."""

    generated: tuple | None = None  # replay: `_generate`'s return value, handed back instead of generating
    rewards_per_func: torch.Tensor | None = None  # replay: handed back instead of calling the reward functions
    skip_forward: bool = False  # scout: skip the old-policy and reference log-prob passes
    recorded: dict = field(default_factory=dict)  # what TRL generated ("prompts", "outputs") and gathered ("rewards")


# TRL logs these once per `_generate_and_score_completions` call; the replay logs them again for the trained batch.
_RELOGGED_BY_REPLAY = ("reward", "reward_std", "frac_reward_zero_std", "rewards/", "completions/", "sampling/")
# Of those, the reward statistics keep TRL's meaning (the policy's rewards on everything it generated for the step,
# `log_generated_rewards`); the trained batch's go under `dynamic_sampling/trained_*`.
_TRAINED_REWARD_STATS = ("reward", "reward_std", "frac_reward_zero_std")


class AdvantageGRPOTrainer(GRPOTrainer):
    """[`~trl.GRPOTrainer`] whose group advantage is a method, `compute_advantages`; everything else is TRL's.

    With the default hook (GRPO's `r - group mean`) it trains exactly as GRPOTrainer does under TRL's default
    `multi_objective_aggregation="sum_then_normalize"`; under `"normalize_then_sum"` TRL centres on the batch mean,
    which equals the group mean up to round-off when every sample is scored. Subclasses override:
    - `compute_advantages(rewards, group_size) -> (advantages, info)`: the advantage before TRL's std scaling;
    - `on_rewards(rewards_per_func)`: every reward round's gathered rewards (faults, health checks);
    - `on_completions(completions)`: every reward round's completions on this process (diversity metrics);
    - `on_batch_scored(mode, rewards, advantages, info, group_size)`: once per batch that reaches the loss or eval;
    - `build_training_batch(inputs)`: how a training batch is generated (dynamic sampling overrides it);
    - `save_extra_state(folder)` / `load_extra_state(folder)`: files of their own in each checkpoint.
    """

    _trl_pass: _TRLPass | None = None

    # ------------------------------------------------------------------ hooks

    def compute_advantages(self, rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, dict]:
        """Advantages for contiguous groups of `group_size` total rewards (NaN where unscorable), before TRL's std
        scaling, and a dict of what the caller may want to log. Default: GRPO's `r - group mean`, as TRL computes it."""
        mean = torch.nanmean(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size, dim=0)
        return rewards - mean, {}

    def on_rewards(self, rewards_per_func: torch.Tensor) -> None:
        """Called after every reward round with the rewards of all processes, [samples, reward functions]."""

    def on_completions(self, completions: list) -> None:
        """Called on every process after every reward round with its own completions (TRL's format: text or a
        conversation), in the order of the gathered rewards' slice for this process."""

    def on_batch_scored(self, mode: str, rewards, advantages, info: dict, group_size: int) -> None:
        """Called once per batch that reaches the loss (`mode="train"`) or the eval loop, with all processes'
        total rewards and final advantages and `compute_advantages`' info."""

    def build_training_batch(self, inputs: list[dict]) -> dict:
        """The training batch TRL's `_prepare_inputs` buffers: one TRL pass over `inputs`."""
        return self.generate_and_score(inputs, self.num_generations)

    def save_extra_state(self, folder: str) -> None:
        """Write extra files into checkpoint `folder` (called on the processes that save)."""

    def load_extra_state(self, folder: str) -> None:
        """Read what `save_extra_state` wrote, when resuming from `folder`."""

    # ------------------------------------------------------------------ advantages, as TRL aggregates and scales

    def total_rewards(self, rewards_per_func: torch.Tensor, group_size: int) -> torch.Tensor:
        """One reward per sample, NaN where every function returned None, as TRL's `multi_objective_aggregation`
        defines it (grpo_trainer.py, `_generate_and_score_completions`): `sum_then_normalize` is the weighted sum,
        `normalize_then_sum` the weighted sum of each function's rewards normalised within the group (GDPO)."""
        if self.multi_objective_aggregation == "normalize_then_sum":
            grouped = rewards_per_func.view(-1, group_size, rewards_per_func.size(1))
            mean = torch.nanmean(grouped, dim=1, keepdim=True)
            std = nanstd(grouped, dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)
            per_func = ((grouped - mean) / (std + 1e-4)).view_as(rewards_per_func)
        else:
            per_func = rewards_per_func
        return self._weighted_sum(per_func, rewards_per_func)

    def _weighted_sum(self, per_func: torch.Tensor, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """TRL's weighted sum over reward functions; NaN where every function returned None."""
        rewards = (per_func * self.reward_weights.to(per_func.device).unsqueeze(0)).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        return rewards

    def _scaling_std(self, rewards: torch.Tensor, group_size: int) -> torch.Tensor:
        """Per sample, the std TRL scales advantages by and tests for zero (`frac_reward_zero_std`): the batch's
        under `normalize_then_sum` or `scale_rewards="batch"`, else the sample's group's (0 for groups of one)."""
        if self.multi_objective_aggregation == "normalize_then_sum" or self.scale_rewards == "batch":
            return nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
        if group_size > 1:
            return nanstd(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size, dim=0)
        return torch.zeros_like(rewards)  # eval with num_generations_eval=1

    def group_advantages(self, rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, dict]:
        """`compute_advantages`, then the std scaling TRL applies to `r - mean` (`scale_rewards`; always the batch
        std under `normalize_then_sum`), then 0 for unscorable samples: the advantages that reach the loss."""
        advantages, info = self.compute_advantages(rewards, group_size)
        if self.multi_objective_aggregation == "normalize_then_sum" or self.scale_rewards != "none":
            advantages = advantages / (self._scaling_std(rewards, group_size) + 1e-4)
        return torch.nan_to_num(advantages, nan=0.0), info

    def log_metrics(self, mode: str, values: dict) -> None:
        """Append one value per metric to TRL's per-step metrics (averaged and reported at the next `log`)."""
        for name, value in values.items():
            self._metrics[mode][name].append(float(value))

    # ------------------------------------------------------------------ TRL's pass, whole or cut down

    def _generate_and_score_completions(self, inputs):
        if self.model.training:
            return self.build_training_batch(inputs)
        return self.generate_and_score(inputs, self.num_generations_eval)

    def generate_and_score(self, inputs: list[dict], group_size: int) -> dict:
        """One TRL pass over `inputs` with our advantages in place of TRL's."""
        return self._scored_pass(inputs, group_size, _TRLPass())

    def _scored_pass(self, inputs, group_size, trl_pass: _TRLPass) -> dict:
        output = self._run_trl_pass(inputs, trl_pass)
        rewards = self.total_rewards(trl_pass.recorded["rewards"], group_size)
        advantages, info = self.group_advantages(rewards, group_size)
        # TRL's `process_slice`: this process's rows of the global batch.
        local = len(advantages) // self.accelerator.num_processes
        output["advantages"] = advantages[self.accelerator.process_index * local :][:local]
        # TRL just appended its own advantages of all processes for the completions table (`_logs["advantages"]`).
        logged = self._logs["advantages"]
        for _ in range(min(len(advantages), len(logged))):
            logged.pop()
        logged.extend(advantages.tolist())
        self.on_batch_scored("train" if self.model.training else "eval", rewards, advantages, info, group_size)
        return output

    def _run_trl_pass(self, inputs, trl_pass: _TRLPass) -> dict:
        self._trl_pass = trl_pass
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self._trl_pass = None

    def _generate(self, prompts):
        trl_pass = self._trl_pass
        if trl_pass is None:
            return super()._generate(prompts)
        if trl_pass.generated is not None:
            return trl_pass.generated
        # TRL's `_generate` returns (prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields,
        # images, tool_images); the prompts are those after any environment's `reset`.
        trl_pass.recorded["prompts"], trl_pass.recorded["outputs"] = prompts, super()._generate(prompts)
        return trl_pass.recorded["outputs"]

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        trl_pass = self._trl_pass
        if trl_pass is not None and trl_pass.rewards_per_func is not None:
            rewards_per_func = trl_pass.rewards_per_func
        else:
            # TRL gathers the rewards of all processes here, in global order (`self.accelerator.gather`).
            rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self.on_rewards(rewards_per_func)
            self.on_completions(completions)
        if trl_pass is not None:
            trl_pass.recorded["rewards"] = rewards_per_func
        return rewards_per_func

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        if self._trl_pass is not None and self._trl_pass.skip_forward:
            # A scout round's log-probs are never used: only the rows that survive are scored, in the replay.
            return input_ids.new_zeros(input_ids.size(0), logits_to_keep, dtype=torch.float32), None, None
        return super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
        )

    def scout_round(self, inputs: list[dict], group_size: int) -> tuple[list[dict], torch.Tensor]:
        """Generation and reward scoring of `inputs` through TRL, minus its no-grad forward passes. Returns this
        process's groups (each: its input rows, the prompts TRL generated from, and `_generate`'s outputs), to be
        replayed, and the rewards of all processes, [samples, reward functions]."""
        trl_pass = _TRLPass(skip_forward=True)
        self._run_trl_pass(inputs, trl_pass)
        recorded = trl_pass.recorded
        rows = [slice(start, start + group_size) for start in range(0, len(inputs), group_size)]
        groups = [
            {"inputs": inputs[r], "prompts": recorded["prompts"][r], "outputs": _slice_outputs(recorded["outputs"], r)}
            for r in rows
        ]
        return groups, recorded["rewards"]

    def replay(self, groups: list[dict], rewards_per_func: torch.Tensor) -> dict:
        """TRL's pass over groups from `scout_round` with their gathered rewards (no generation, no reward calls):
        log-probs, the vLLM importance-sampling ratio, `num_items_in_batch`, metrics and the completions table are
        TRL's own, for exactly these rows, and the advantages ours."""
        inputs = [
            dict(row, prompt=prompt) for group in groups for row, prompt in zip(group["inputs"], group["prompts"])
        ]
        generated = _concat_outputs([group["outputs"] for group in groups])
        trl_pass = _TRLPass(generated=generated, rewards_per_func=rewards_per_func)
        # Environments already ran (and were reset) in the scout rounds: their prompts are in `inputs` now. TRL
        # draws environments when `environment_factories` is set and resets whatever `environments` holds (the last
        # scout round's), so both are cleared for the replay.
        saved = self.environment_factories, self.environments
        self.environment_factories = self.environments = None
        try:
            batch = self._scored_pass(inputs, self.num_generations, trl_pass)
        finally:
            self.environment_factories, self.environments = saved
        self._log_completion_lengths(batch)
        metrics = self._metrics["train"]
        for name in [name for name in metrics if name.startswith("rewards/") and name.endswith(("/mean", "/std"))]:
            metrics[name].pop()  # the generated rows' values, from `log_generated_rewards`, stand
        self.log_metrics(
            "train", {f"dynamic_sampling/trained_{name}": metrics[name].pop() for name in _TRAINED_REWARD_STATS}
        )
        return batch

    def log_generated_rewards(self, rewards_per_func: torch.Tensor, group_size: int) -> None:
        """TRL's reward metrics (`reward`, `reward_std`, `frac_reward_zero_std`, `rewards/<name>/mean|std`) over
        every sample generated for the step, [samples, functions] in whole groups: what a run without dynamic sampling
        logs, so runs compare on what the policy generated. Mirrors `_generate_and_score_completions`' logging."""
        rewards = self._weighted_sum(rewards_per_func, rewards_per_func)  # TRL logs the plain weighted sum
        std = self._scaling_std(rewards, group_size)
        values = {
            "reward": torch.nanmean(rewards),
            "reward_std": nanstd(rewards),
            "frac_reward_zero_std": torch.isclose(std, torch.zeros_like(std)).float().mean(),
        }
        for i, name in enumerate(self.reward_func_names):
            values |= {
                f"rewards/{name}/mean": torch.nanmean(rewards_per_func[:, i]),
                f"rewards/{name}/std": nanstd(rewards_per_func[:, i]),
            }
        self.log_metrics("train", {name: value.item() for name, value in values.items()})

    def _log_completion_lengths(self, batch: dict):
        """TRL's `completions/*` metrics (logged in `_generate`, which the replay skips), for the trained rows."""
        lengths = batch["completion_mask"].sum(dim=1)
        last_tokens = batch["completion_ids"].gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        ends = torch.tensor([*self.eos_token_ids, self._tokenizer.pad_token_id], device=last_tokens.device)
        truncated = ~torch.isin(last_tokens, ends)
        if batch.get("tool_mask") is not None:  # as TRL: count only the tokens the model generated
            lengths = (batch["completion_mask"] * batch["tool_mask"]).sum(dim=1)
        lengths, truncated = self.accelerator.gather(lengths).float(), self.accelerator.gather(truncated)
        terminated = lengths[~truncated] if (~truncated).any() else lengths.new_zeros(1)
        values = {"completions/clipped_ratio": truncated.float().mean()}
        for name, subset in (("", lengths), ("_terminated", terminated)):
            values |= {
                f"completions/mean{name}_length": subset.mean(),
                f"completions/min{name}_length": subset.min(),
                f"completions/max{name}_length": subset.max(),
            }
        self.log_metrics("train", {name: value.item() for name, value in values.items()})

    @contextlib.contextmanager
    def generation_rounds(self):
        """A block of scout rounds followed by one replay, forming one training step's batch.

        TRL's per-call metrics logged by the rounds become one value per step: fault counts summed, what the replay
        logs again for the trained batch dropped, anything else (tool use, metrics reward functions log) averaged.
        With colocated vLLM in sleep mode, the engine stays awake and synced once for the whole block."""
        metrics = self._metrics["train"]
        logged_before = {name: len(values) for name, values in metrics.items()}
        with self._vllm_awake():
            yield
        step = {}
        for name, values in metrics.items():
            start = logged_before.get(name, 0)
            rounds = values[start:]
            if not rounds:
                continue
            del values[start:]
            if "/faults_" in name:
                step[name] = sum(rounds)
            elif not name.startswith(_RELOGGED_BY_REPLAY):
                step[name] = sum(rounds) / len(rounds)
        self.log_metrics("train", step)

    @contextlib.contextmanager
    def _vllm_awake(self):
        """TRL's `VLLMGeneration.generate` (colocate, sleep mode) sleeps the engine, dropping its weights, after every
        call and re-pushes the whole model at the next. No optimizer update happens between the rounds of one step,
        so the engine stays awake until the last round: one weight sync per step."""
        generation = getattr(self, "vllm_generation", None)
        if not (self.use_vllm and getattr(generation, "mode", None) == "colocate" and generation.enable_sleep_mode):
            yield
            return
        llm, pending, synced = generation.llm, {}, []

        def sleep(level=1, **kwargs):
            pending.update(level=level, **kwargs)

        def wake_up(tags=None):
            if not pending:  # asleep since the previous step: really wake it
                real_wake_up(tags=tags)

        def sync_weights():
            if not synced:  # later rounds find the weights still loaded, although TRL believes them asleep
                real_sync_weights()
                synced.append(True)

        real_sleep, real_wake_up, real_sync_weights = llm.sleep, llm.wake_up, generation.sync_weights
        with _instance_overrides(llm, sleep=sleep, wake_up=wake_up):
            with _instance_overrides(generation, sync_weights=sync_weights):
                yield
        if pending:
            real_sleep(**pending)
            generation._llm_weights_sleeping = True

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            # The folder Trainer._save_checkpoint just wrote.
            self.save_extra_state(
                os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            )

    def _load_optimizer_and_scheduler(self, checkpoint):
        # Trainer calls this once when resuming, after the model weights are loaded.
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint:
            self.load_extra_state(checkpoint)


@contextlib.contextmanager
def _instance_overrides(obj, **attributes):
    """Set attributes on one object for the duration of a block (shadowing methods), then restore them."""
    missing = object()
    previous = {name: obj.__dict__.get(name, missing) for name in attributes}
    obj.__dict__.update(attributes)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is missing:
                del obj.__dict__[name]
            else:
                obj.__dict__[name] = value


def _slice_outputs(outputs: tuple, rows: slice) -> tuple:
    """Rows of each element of `GRPOTrainer._generate`'s return value (per-row lists, an extras dict, or None)."""

    def take(value):
        if isinstance(value, dict):
            return {key: take(item) for key, item in value.items()}
        return value[rows] if isinstance(value, (list, tuple, torch.Tensor)) else value

    return tuple(take(value) for value in outputs)


def _concat_outputs(parts: list[tuple]) -> tuple:
    """Inverse of `_slice_outputs` over groups: `_generate`'s return value for their rows together."""

    def join(values):
        first = values[0]
        if isinstance(first, dict):
            return {key: join([value[key] for value in values]) for key in first}
        if isinstance(first, torch.Tensor):
            return torch.cat(values)
        if isinstance(first, (list, tuple)):
            return [item for value in values for item in value]
        return first

    return tuple(join(list(values)) for values in zip(*parts))
