"""`RSGRPOTrainer`: TRL's `GRPOTrainer` with the risk-sensitive advantage.

TRL computes advantages inline in `_generate_and_score_completions`, so we let it run unchanged and
then replace the advantages it produced with ours, computed from the same gathered rewards (captured
in `_calculate_rewards`). Loss, generation, vLLM, PEFT, logging and checkpointing stay TRL's.
"""

import json
import os
import textwrap
from collections import Counter
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.trainer.grpo_trainer import EnvironmentFactory, RewardFunc, RolloutFunc
from trl.trainer.utils import get_config_model_id, is_async_callable, nanstd

from .advantages import zero_variance_groups
from .config import RSGRPOConfig
from .dynamic_sampling import (
    RefillSampler,
    StreamRefill,
    concat_batches,
    group_rows,
    select_rows,
    take_first,
)
from .estimators import estimator_params, group_advantages, unbiased_pass_at_k
from .model_card import add_rs_grpo_section
from .reward_guard import TALLY_FIELDS, RewardHealth, guard_reward_function, required_columns

DYNAMIC_SAMPLING_STATE = "dynamic_sampling_state.json"


def _validate_train_dataset(dataset, reward_funcs, needs_prompt: bool):
    """Errors TRL would only hit mid-step (or never), raised before the model loads. TRL's own checks stay TRL's."""
    columns = getattr(dataset, "column_names", None)
    if columns is None:  # no dataset (TRL decides), or a stream whose columns are unknown until read
        return
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise ValueError("train_dataset is empty: RS-GRPO needs at least one prompt.")
    columns = set(columns)
    if needs_prompt and "prompt" not in columns:
        raise ValueError(f"train_dataset needs a 'prompt' column; it has {sorted(columns)}.")
    for func in reward_funcs:
        missing = required_columns(func) - columns
        if missing:
            raise ValueError(
                f"Reward function {getattr(func, '__name__', func)!r} needs dataset column(s) {sorted(missing)}, "
                f"which train_dataset lacks; it has {sorted(columns)}."
            )


class RSGRPOTrainer(GRPOTrainer):
    """Drop-in replacement for [`~trl.GRPOTrainer`] training with Risk-Sensitive GRPO (arXiv 2509.24261).

    The one change w.r.t. GRPOTrainer is the advantage: `(1/β)(exp(β r_i) / mean_j exp(β r_j) - 1)` per group
    instead of `r_i - mean_j r_j`, plus DAPO dynamic sampling and reward fault isolation. It takes exactly
    GRPOTrainer's arguments; `args` must be an [`RSGRPOConfig`]. With `risk_beta=0` and `dynamic_sampling=False` it
    trains exactly as GRPOTrainer does.
    """

    _tag_names = ["trl", "grpo", "rs-grpo"]
    _name = "RS-GRPO"
    _paper = {
        "title": "Risk-Sensitive RL for Alleviating Exploration Dilemmas in Large Language Models",
        "id": "2509.24261",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @article{jiang2025risk,
                title        = {{Risk-Sensitive RL for Alleviating Exploration Dilemmas in Large Language Models}},
                author       = {Yuhua Jiang and Jiawei Huang and Yufeng Yuan and Xin Mao and Yu Yue and Qianchuan Zhao and Lin Yan},
                year         = 2025,
                eprint       = {arXiv:2509.24261},
            }"""),
    }

    def __init__(
        self,
        model: "str | PreTrainedModel | PeftModel",  # noqa: F821 - peft is optional, as in TRL
        reward_funcs: RewardFunc | list[RewardFunc] | None = None,
        args: RSGRPOConfig | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset
        | IterableDataset
        | DatasetDict
        | IterableDatasetDict
        | dict[str, Dataset | IterableDataset]
        | None = None,
        processing_class: PreTrainedTokenizerBase | ProcessorMixin | None = None,
        reward_processing_classes: PreTrainedTokenizerBase | list[PreTrainedTokenizerBase] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        quantization_config: "BitsAndBytesConfig | None" = None,  # noqa: F821 - optional, as in TRL
        peft_config: "PeftConfig | None" = None,  # noqa: F821 - optional, as in TRL
        tools: list | None = None,
        rollout_func: RolloutFunc | None = None,
        environment_factory: EnvironmentFactory | dict[str, EnvironmentFactory] | None = None,
    ):
        if args is None:
            model_name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = RSGRPOConfig(f"{model_name.split('/')[-1]}-RS-GRPO")
        if not isinstance(args, RSGRPOConfig):
            raise TypeError(f"RSGRPOTrainer needs `args` to be an RSGRPOConfig, got {type(args).__name__}.")
        # Fail on bad data before the model is loaded or anything is generated.
        funcs = reward_funcs if isinstance(reward_funcs, list) else [] if reward_funcs is None else [reward_funcs]
        _validate_train_dataset(train_dataset, funcs, needs_prompt=environment_factory is None)
        super().__init__(
            model,
            reward_funcs,
            args,
            train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            reward_processing_classes=reward_processing_classes,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
            tools=tools,
            rollout_func=rollout_func,
            environment_factory=environment_factory,
        )

        # Guard every synchronous reward function, environment-owned ones included; it still runs where TRL runs it.
        self._reward_tally, self._reward_errors = Counter(), {}
        self.reward_funcs = [
            func
            if isinstance(func, torch.nn.Module) or is_async_callable(func)
            else guard_reward_function(func, name, args.reward_timeout, self._reward_tally, self._reward_errors)
            for func, name in zip(self.reward_funcs, self.reward_func_names)
        ]
        self._reward_health = RewardHealth(self.reward_func_names, args.reward_failure_patience)
        # Its own seeded pass over the training set (TRL's placeholder rows when an environment owns the data), so
        # refills never disturb the main dataloader's order.
        self._refill_sampler = None
        if args.dynamic_sampling:
            if isinstance(self.train_dataset, IterableDataset):
                self._refill_sampler = StreamRefill(self.train_dataset, args.seed + 1)
            else:
                self._refill_sampler = RefillSampler(len(self.train_dataset), args.seed + 1)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Rewards of all processes, in global order: the only input the risk-sensitive advantage needs.
        self._gathered_rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._account_reward_faults(self._gathered_rewards_per_func)
        return self._gathered_rewards_per_func

    def _account_reward_faults(self, gathered_rewards_per_func: torch.Tensor):
        """Log this round's reward faults per function (`rewards/<name>/faults_<kind>`, samples summed over
        processes) and hand the totals to the health check, so every process takes the same decision."""
        local = torch.tensor(
            [[self._reward_tally[(name, field)] for field in TALLY_FIELDS] for name in self.reward_func_names],
            dtype=torch.float32,
            device=self.accelerator.device,
        )
        self._reward_tally.clear()
        totals = self.accelerator.gather(local.unsqueeze(0)).sum(dim=0).tolist()
        mode = "train" if self.model.training else "eval"
        for name, row in zip(self.reward_func_names, totals):
            for field, count in zip(TALLY_FIELDS, row):
                if field not in ("calls", "failed_calls", "samples"):
                    self._metrics[mode][f"rewards/{name}/faults_{field}"].append(count)
        if mode == "train":
            scored = bool((~torch.isnan(gathered_rewards_per_func)).any())
            self._reward_health.add_round(totals, scored)

    def _generate_and_score_completions(self, inputs):
        if self.model.training and self.args.dynamic_sampling:
            output = self._generate_with_dynamic_sampling(inputs)
        else:
            mode = "train" if self.model.training else "eval"
            group_size = self.num_generations if mode == "train" else self.num_generations_eval
            output, rewards, advantages = self._score_round(inputs, group_size)
            output["advantages"] = self._local_slice(advantages)
            self._log_risk_metrics(mode, rewards, advantages, group_size)
        if self.model.training:
            self._reward_health.end_step(self._reward_errors)
        return output

    def _score_round(self, inputs, group_size: int):
        """TRL's generation and scoring of one batch: its output, and the rewards and advantages of all processes."""
        output = super()._generate_and_score_completions(inputs)
        rewards = self._total_rewards(self._gathered_rewards_per_func, group_size)
        advantages = self._advantages(rewards, group_size)
        # TRL just appended its own global advantages for the completions table; swap in ours.
        logged = self._logs["advantages"]
        for _ in range(min(len(rewards), len(logged))):
            logged.pop()
        logged.extend(advantages.tolist())
        return output, rewards, advantages

    def _local_slice(self, global_values: torch.Tensor) -> torch.Tensor:
        local_size = len(global_values) // self.accelerator.num_processes
        start = self.accelerator.process_index * local_size
        return global_values[start : start + local_size]

    def _generate_with_dynamic_sampling(self, inputs):
        """Generate, drop zero-variance groups, and refill only the missing groups until the batch is full.

        Every decision is taken on rewards gathered from all processes, so all processes run the same rounds
        (generation and reward gathering are collective) and each keeps exactly its own share of whole groups.
        """
        group_size, rank = self.num_generations, self.accelerator.process_index
        num_processes = self.accelerator.num_processes
        quota = len(inputs) // group_size  # groups each process must hand to the loss
        missing = torch.full((num_processes,), quota)
        kept_rows, dropped_rows = [], []  # this process's rows, per round
        kept_rewards, dropped_rewards = [], []  # [processes, groups, group_size] per round, for every process
        generated = zero_variance = surplus = 0
        round_inputs, rounds = inputs, 0
        while True:
            output, rewards, _ = self._score_round(round_inputs, group_size)
            rewards = rewards.cpu()
            per_process = rewards.view(num_processes, -1, group_size)
            no_signal = zero_variance_groups(rewards, group_size).view(num_processes, -1)
            keep = take_first(~no_signal, missing)
            generated += no_signal.numel()
            zero_variance += int(no_signal.sum())
            surplus += int((~no_signal & ~keep).sum())
            missing -= keep.sum(dim=1)
            kept_rows.append(select_rows(output, group_rows(keep[rank], group_size)))
            dropped_rows.append(select_rows(output, group_rows(no_signal[rank], group_size)))
            kept_rewards.append([per_process[p][keep[p]] for p in range(num_processes)])
            dropped_rewards.append([per_process[p][no_signal[p]] for p in range(num_processes)])
            if missing.max() == 0 or rounds == self.args.dynamic_sampling_max_rounds:
                break
            rounds += 1
            round_inputs = self._refill_inputs(int(missing.max()), group_size)

        padded_groups = int(missing.sum())
        if padded_groups and self.args.dynamic_sampling_on_exhaustion == "error":
            raise RuntimeError(
                f"Dynamic sampling could not fill the batch after {rounds} extra generation rounds: "
                f"{zero_variance / generated:.0%} of the {generated} groups generated for this step had zero reward "
                f"variance (every completion of the prompt scored the same), and {padded_groups} groups are missing. "
                "Raise dynamic_sampling_max_rounds, use prompts of more suitable difficulty, set "
                "dynamic_sampling_on_exhaustion='pad', or set dynamic_sampling=False."
            )
        if padded_groups:
            # Least-bad filler: dropped groups have zero advantage, so they add tokens but no gradient.
            pad_rows = concat_batches(dropped_rows, self._tokenizer.pad_token_id)
            kept_rows.append(select_rows(pad_rows, torch.arange(int(missing[rank]) * group_size)))
            all_dropped = [torch.cat([r[p] for r in dropped_rewards]) for p in range(num_processes)]
            kept_rewards.append([all_dropped[p][: int(missing[p])] for p in range(num_processes)])

        batch = concat_batches(kept_rows, self._tokenizer.pad_token_id)
        rewards = torch.cat([torch.cat([r[p] for r in kept_rewards]).flatten() for p in range(num_processes)]).to(
            self.accelerator.device
        )
        advantages = self._advantages(rewards, group_size)
        batch["advantages"] = self._local_slice(advantages)
        # Token-level loss normalisation must count the tokens of the batch that is trained on.
        loss_mask = (
            batch["completion_mask"]
            if batch.get("tool_mask") is None
            else batch["completion_mask"] * batch["tool_mask"]
        )
        batch["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()

        metrics = self._metrics["train"]
        kept_groups = num_processes * quota - padded_groups
        metrics["dynamic_sampling/rounds"].append(float(rounds))
        metrics["dynamic_sampling/groups_generated"].append(float(generated))
        metrics["dynamic_sampling/groups_kept"].append(float(kept_groups))
        metrics["dynamic_sampling/frac_zero_variance_before_filter"].append(zero_variance / generated)
        metrics["dynamic_sampling/samples_per_kept_sample"].append(generated / max(kept_groups, 1))
        metrics["dynamic_sampling/padded_groups"].append(float(padded_groups))
        metrics["dynamic_sampling/surplus_groups_dropped"].append(float(surplus))
        metrics["dynamic_sampling/refill_prompts_drawn"].append(float(self._refill_sampler.drawn))
        self._log_risk_metrics("train", rewards, advantages, group_size)
        return batch

    def _refill_inputs(self, num_groups: int, group_size: int) -> list[dict]:
        """`num_groups` fresh prompts for this process, each repeated `group_size` times, as TRL's sampler does."""
        num_processes = self.accelerator.num_processes
        drawn = self._refill_sampler.take(num_groups * num_processes)
        mine = drawn[self.accelerator.process_index * num_groups : (self.accelerator.process_index + 1) * num_groups]
        rows = (
            [self.train_dataset[index] for index in mine] if isinstance(self._refill_sampler, RefillSampler) else mine
        )
        return [row for row in rows for _ in range(group_size)]

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """TRL's card plus an "RS-GRPO settings" section (risk_beta, base model, dataset, update settings)."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if self.is_world_process_zero():
            base_model = get_config_model_id(self.model.config)
            add_rs_grpo_section(Path(self.args.output_dir) / "README.md", self.args, base_model, dataset_name)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self._refill_sampler is not None and self.args.should_save:
            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            with open(os.path.join(folder, DYNAMIC_SAMPLING_STATE), "w") as f:
                json.dump(self._refill_sampler.state_dict(), f)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, DYNAMIC_SAMPLING_STATE) if checkpoint else None
        if self._refill_sampler is not None and path and os.path.exists(path):
            with open(path) as f:
                self._refill_sampler.load_state_dict(json.load(f))

    def _total_rewards(self, rewards_per_func: torch.Tensor, group_size: int) -> torch.Tensor:
        """One reward per sample, as TRL's `multi_objective_aggregation` defines it; NaN where every function
        returned None. `sum_then_normalize`: the weighted sum. `normalize_then_sum`: the weighted sum of each
        function's rewards normalised within the group (GDPO)."""
        if self.multi_objective_aggregation == "normalize_then_sum":
            grouped = rewards_per_func.view(-1, group_size, rewards_per_func.size(1))
            mean = torch.nanmean(grouped, dim=1, keepdim=True)
            std = nanstd(grouped, dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)
            per_func = ((grouped - mean) / (std + 1e-4)).view_as(rewards_per_func)
        else:
            per_func = rewards_per_func
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = (per_func * weights).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        return rewards

    def _advantages(self, rewards: torch.Tensor, group_size: int) -> torch.Tensor:
        """The configured estimator's advantage in place of GRPO's `r - mean`, then the std scaling TRL would apply.
        The only place that calls the estimator registry; the β it used is kept for `_log_risk_metrics`."""
        args = self.args
        params = estimator_params(args, rewards.view(-1, group_size), self.state.global_step, self.state.max_steps)
        self._risk_beta_used = params.get("beta")
        advantages = group_advantages(rewards, group_size, args.advantage_estimator, **params)
        if self.multi_objective_aggregation == "normalize_then_sum":  # TRL always scales this one by the batch std
            std = nanstd(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
            advantages = advantages / (std + 1e-4)
        elif self.scale_rewards == "group":
            std = nanstd(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size)
            advantages = advantages / (std + 1e-4)
        elif self.scale_rewards == "batch":
            std = nanstd(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
            advantages = advantages / (std + 1e-4)
        return torch.nan_to_num(advantages, nan=0.0)

    def _log_risk_metrics(self, mode: str, rewards: torch.Tensor, advantages: torch.Tensor, group_size: int):
        """`rs/` metrics: where the update's weight goes, and how solved each prompt is."""
        grouped = rewards.view(-1, group_size)
        best, worst = rewards.nan_to_num(-torch.inf).max(), rewards.nan_to_num(torch.inf).min()
        valid = ~torch.isnan(grouped)
        # "Solved" = reached the batch's best reward, when that beats its worst (for 0/1 rewards: correct).
        solved = (grouped == best) & valid & (best > worst)
        solve_rate = solved.sum(1) / valid.sum(1).clamp(min=1)
        abs_adv = advantages.abs().view(-1, group_size).sum(dim=1)
        low_solve_rate = (solve_rate < 0.5).float()
        total = abs_adv.sum().clamp(min=1e-12)
        values = {
            "rs/abs_advantage_share_low_solve_rate": (abs_adv * low_solve_rate).sum() / total,
            "rs/abs_advantage_share_high_solve_rate": (abs_adv * (1 - low_solve_rate)).sum() / total,
            "rs/solve_rate/mean": solve_rate.mean(),
            "rs/solve_rate/median": solve_rate.median(),
            "rs/frac_groups_all_solved": (solve_rate == 1).float().mean(),
            "rs/frac_groups_none_solved": (solve_rate == 0).float().mean(),
            "rs/frac_zero_variance_groups": zero_variance_groups(rewards, group_size).float().mean(),
            "rs/advantage/max": advantages.max(),
            "rs/advantage/min": advantages.min(),
            # Free pass@k from the training groups themselves: the unbiased estimator on each group's solved count.
            "rs/pass@1": unbiased_pass_at_k(solved.sum(1), valid.sum(1), 1).nanmean(),
            f"rs/pass@{group_size}": unbiased_pass_at_k(solved.sum(1), valid.sum(1), group_size).nanmean(),
        }
        beta = getattr(self, "_risk_beta_used", None)
        if isinstance(beta, torch.Tensor):  # adaptive: its distribution over the groups that carry a signal
            informative = beta[~zero_variance_groups(rewards, group_size)]
            if informative.numel():
                values |= {
                    "rs/beta/mean": informative.mean(),
                    "rs/beta/min": informative.min(),
                    "rs/beta/median": informative.median(),
                    "rs/beta/max": informative.max(),
                }
        elif beta is not None:
            values["rs/beta"] = torch.tensor(beta, device=advantages.device)
        # One device-to-host copy for all of them.
        for name, value in zip(values, torch.stack([v.float() for v in values.values()]).tolist()):
            self._metrics[mode][name].append(value)
