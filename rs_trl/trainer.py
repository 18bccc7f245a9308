"""`RSGRPOTrainer`: TRL's `GRPOTrainer` with the risk-sensitive advantage.

TRL computes advantages inline in `_generate_and_score_completions`, so we let it run unchanged and
then replace the advantages it produced with ours, computed from the same gathered rewards (captured
in `_calculate_rewards`). Loss, generation, vLLM, PEFT, logging and checkpointing stay TRL's.
"""

import contextlib
import json
import os
from collections import Counter
from pathlib import Path

import torch
from accelerate.utils import gather_object
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.trainer.grpo_trainer import EnvironmentFactory, RewardFunc, RolloutFunc
from trl.trainer.utils import get_config_model_id, is_async_callable, nanstd

from .advantages import zero_variance_groups
from .checkpoints import check_resumable, last_complete_checkpoint
from .config import RSGRPOConfig
from .dynamic_sampling import DynamicSampler, RefillSampler, StreamRefill
from .estimators import estimator_params, group_advantages, unbiased_pass_at_k
from .model_card import PAPER, add_rs_grpo_section, is_hub_id, name_local_base_model
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
    _paper = PAPER

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
        columns = getattr(train_dataset, "column_names", None) or []
        if args.dynamic_sampling and {"image", "images"} & set(columns):
            raise ValueError(
                "dynamic_sampling does not support multimodal (image) datasets yet: set dynamic_sampling=False."
            )
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
        self._dynamic_sampler = None
        if args.dynamic_sampling:
            if isinstance(self.train_dataset, IterableDataset):
                refill = StreamRefill(self.train_dataset, args.seed + 1)
            else:
                refill = RefillSampler(len(self.train_dataset), args.seed + 1)
            groups_per_process = args.per_device_train_batch_size * args.steps_per_generation // args.num_generations
            self._dynamic_sampler = DynamicSampler(
                refill, self.accelerator.num_processes, groups_per_process, args.dynamic_sampling_max_rounds
            )

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
        """DAPO dynamic sampling at one TRL scoring pass per step over exactly the trained rows.

        Scout rounds run TRL's generation and reward scoring with its no-grad forward passes (old-policy and
        reference log-probs) switched off; `DynamicSampler` decides from the gathered rewards how many groups the
        next round needs and, at the end, which groups each process trains on. Then one replay runs TRL's
        `_generate_and_score_completions` on the kept groups, with generation and rewards taken from the scout
        rounds: TRL's own code computes the log-probs, the vLLM importance-sampling ratio, `num_items_in_batch`,
        the metrics and the completions table for exactly the rows the loss sees. All processes take every
        decision on gathered values, so they run the same rounds and collectives.
        """
        sampler, group_size = self._dynamic_sampler, self.num_generations
        num_processes = self.accelerator.num_processes
        metrics = self._metrics["train"]
        logged_before = {key: len(values) for key, values in metrics.items()}
        rounds = []  # per round: this process's groups, and the gathered rewards [processes, groups, G, funcs]
        generated_rewards = []  # per round: the reward of every generated sample, as the advantage sees it
        round_inputs = inputs + self._refill_inputs(sampler.start_step(), group_size)
        with self._vllm_awake_for_step():
            while round_inputs:
                groups, rewards_per_func = self._scout(round_inputs, group_size)
                rounds.append((groups, rewards_per_func.view(num_processes, -1, group_size, rewards_per_func.size(1))))
                generated_rewards.append(self._total_rewards(rewards_per_func, group_size))
                zero_variance = zero_variance_groups(generated_rewards[-1], group_size)
                round_inputs = self._refill_inputs(
                    sampler.observe(zero_variance.view(num_processes, -1).cpu()), group_size
                )
        generated, informative = sampler.generated_groups, sampler.informative_groups
        assignment, padded = sampler.finish_step()
        if padded and self.args.dynamic_sampling_on_exhaustion == "error":
            raise RuntimeError(
                f"Dynamic sampling could not fill the batch after {len(rounds) - 1} extra generation rounds: "
                f"{1 - informative / generated:.0%} of the {generated} groups generated for this step had zero reward "
                f"variance (every completion of the prompt scored the same), and {padded} groups are missing. "
                "Raise dynamic_sampling_max_rounds, use prompts of more suitable difficulty, set "
                "dynamic_sampling_on_exhaustion='pad', or set dynamic_sampling=False."
            )
        step_metrics = collapse_round_metrics(metrics, logged_before)

        kept_rewards = torch.stack([rounds[r][1][owner, g] for groups in assignment for owner, r, g in groups])
        self._gathered_rewards_per_func = kept_rewards.flatten(0, 1)
        batch, rewards, advantages = self._replay(self._take_assigned_groups(rounds, assignment))
        batch["advantages"] = self._local_slice(advantages)

        self._log_trained_completions(batch)
        for name, value in step_metrics.items():
            metrics[name].append(value)
        values = {
            "rounds": len(rounds) - 1,
            "groups_generated": generated,
            "groups_kept": sampler.quota - padded,
            "frac_zero_variance_before_filter": 1 - informative / generated,
            "samples_per_kept_sample": generated / max(sampler.quota - padded, 1),
            "padded_groups": padded,
            "surplus_groups_dropped": max(informative - sampler.quota, 0),
            "refill_prompts_drawn": sampler.refill.drawn,
            "zero_variance_rate_estimate": sampler.zero_variance_rate,
            "generated_reward_mean": torch.nanmean(torch.cat(generated_rewards)).item(),
        }
        for name, value in values.items():
            metrics[f"dynamic_sampling/{name}"].append(float(value))
        self._log_risk_metrics("train", rewards, advantages, group_size)
        return batch

    def _log_trained_completions(self, batch: dict):
        """TRL's `completions/*` length metrics, for the trained rows (the replay does not call `_generate`)."""
        lengths = batch["completion_mask"].sum(dim=1)
        last_tokens = batch["completion_ids"].gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        ends = torch.tensor([*self.eos_token_ids, self._tokenizer.pad_token_id], device=last_tokens.device)
        truncated = ~torch.isin(last_tokens, ends)
        if batch.get("tool_mask") is not None:  # as TRL: count only the tokens the model generated
            lengths = (batch["completion_mask"] * batch["tool_mask"]).sum(dim=1)
        lengths, truncated = self.accelerator.gather(lengths).float(), self.accelerator.gather(truncated)
        terminated = lengths[~truncated] if (~truncated).any() else lengths.new_zeros(1)
        metrics = self._metrics["train"]
        for name, values in (("", lengths), ("_terminated", terminated)):
            metrics[f"completions/mean{name}_length"].append(values.mean().item())
            metrics[f"completions/min{name}_length"].append(values.min().item())
            metrics[f"completions/max{name}_length"].append(values.max().item())
        metrics["completions/clipped_ratio"].append(truncated.float().mean().item())

    def _scout(self, inputs: list[dict], group_size: int):
        """One generation round through TRL, minus its no-grad forward passes; returns this process's groups
        (each: its input rows, the prompts TRL generated from, and `_generate`'s outputs) and the gathered rewards."""
        recorded = {}

        def generate_and_record(prompts):
            recorded["prompts"], recorded["outputs"] = prompts, generate(prompts)
            return recorded["outputs"]

        def skip_forward(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
            # The scout's log-probs are never used: only the rows that survive are scored, in the replay.
            return input_ids.new_zeros(input_ids.size(0), logits_to_keep, dtype=torch.float32), None, None

        generate = self._generate
        with _instance_overrides(self, _generate=generate_and_record, _get_per_token_logps_and_entropies=skip_forward):
            super()._generate_and_score_completions(inputs)
        rows = [slice(start, start + group_size) for start in range(0, len(inputs), group_size)]
        groups = [
            {"inputs": inputs[r], "prompts": recorded["prompts"][r], "outputs": _slice_outputs(recorded["outputs"], r)}
            for r in rows
        ]
        return groups, self._gathered_rewards_per_func

    def _take_assigned_groups(self, rounds, assignment) -> list[dict]:
        """This process's assigned groups; groups owned by another process are sent over (a global quota)."""
        rank = self.accelerator.process_index
        outgoing = {
            (target, position): rounds[r][0][g]
            for target, groups in enumerate(assignment)
            for position, (owner, r, g) in enumerate(groups)
            if owner == rank and target != rank
        }
        received = {}
        if self.accelerator.num_processes > 1:
            for sent in gather_object([outgoing]):
                received.update(sent)
        return [
            rounds[r][0][g] if owner == rank else received[(rank, position)]
            for position, (owner, r, g) in enumerate(assignment[rank])
        ]

    def _replay(self, groups: list[dict]):
        """TRL's `_generate_and_score_completions` over already generated and scored groups (no generation, no
        reward calls): it computes everything else for exactly these rows. Rewards: `_gathered_rewards_per_func`."""
        inputs = [
            dict(row, prompt=prompt) for group in groups for row, prompt in zip(group["inputs"], group["prompts"])
        ]
        outputs = _concat_outputs([group["outputs"] for group in groups])
        rewards_per_func = self._gathered_rewards_per_func
        # Environments already ran (and were reset) in the scout rounds: their prompts are in `inputs` now.
        with _instance_overrides(
            self,
            _generate=lambda prompts: outputs,
            _calculate_rewards=lambda *args: rewards_per_func,
            environment_factories=None,
        ):
            return self._score_round(inputs, self.num_generations)

    @contextlib.contextmanager
    def _vllm_awake_for_step(self):
        """With colocated vLLM in sleep mode, TRL sleeps the engine (dropping its weights) after every generate
        call and re-pushes the whole model at the next one. Within one step no optimizer update happens between
        rounds, so the engine stays awake until the step's last round: one weight sync per step."""
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

    def _refill_inputs(self, num_groups: int, group_size: int) -> list[dict]:
        """`num_groups` fresh prompts for this process, each repeated `group_size` times, as TRL's sampler does."""
        if num_groups == 0:
            return []
        num_processes = self.accelerator.num_processes
        refill = self._dynamic_sampler.refill
        drawn = refill.take(num_groups * num_processes)
        mine = drawn[self.accelerator.process_index * num_groups : (self.accelerator.process_index + 1) * num_groups]
        rows = [self.train_dataset[index] for index in mine] if isinstance(refill, RefillSampler) else mine
        return [row for row in rows for _ in range(group_size)]

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """TRL's card plus an "RS-GRPO settings" section (risk_beta, base model, dataset, update settings).

        Only Hub datasets are linked; a local base model is named by its path (TRL would write "[None](...)")."""
        super().create_model_card(
            model_name=model_name, dataset_name=dataset_name if is_hub_id(dataset_name) else None, tags=tags
        )
        if self.is_world_process_zero():
            base_model = get_config_model_id(self.model.config)
            card = Path(self.args.output_dir) / "README.md"
            name_local_base_model(card, base_model)
            add_rs_grpo_section(card, self.args, base_model, dataset_name)

    def train(self, resume_from_checkpoint=None, **kwargs):
        """TRL's `train`; `resume_from_checkpoint=True` takes the last *complete* checkpoint, and any checkpoint is
        checked (complete, readable, RNG and dynamic-sampling state present) and named before it is loaded."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"resume_from_checkpoint=True, but {self.args.output_dir} holds no complete checkpoint; train "
                    "from scratch without it, or pass the path of a checkpoint."
                )
        if resume_from_checkpoint:
            # The file names Trainer._save_rng_state and our _save_checkpoint write.
            rng_file = f"rng_state_{self.args.process_index}.pth" if self.args.world_size > 1 else "rng_state.pth"
            dynamic_sampling_file = DYNAMIC_SAMPLING_STATE if self._dynamic_sampler is not None else None
            check_resumable(resume_from_checkpoint, rng_file, dynamic_sampling_file)
            self.accelerator.print(f"Resuming from {resume_from_checkpoint}.")
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self._dynamic_sampler is not None and self.args.should_save:
            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            with open(os.path.join(folder, DYNAMIC_SAMPLING_STATE), "w") as f:
                json.dump(self._dynamic_sampler.state_dict(), f)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, DYNAMIC_SAMPLING_STATE) if checkpoint else None
        if self._dynamic_sampler is not None and path and os.path.exists(path):
            with open(path) as f:
                self._dynamic_sampler.load_state_dict(json.load(f))

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


# TRL logs these once per `_generate_and_score_completions` call; the replay logs them for the trained batch.
_RELOGGED_BY_REPLAY = ("reward", "reward_std", "frac_reward_zero_std", "rewards/", "completions/", "sampling/")


def collapse_round_metrics(metrics: dict, logged_before: dict) -> dict:
    """Remove the entries the scout rounds appended and return one value per metric for the step.

    Fault counts are summed over rounds; what the replay logs again for the trained batch is dropped; anything
    else (tool use, metrics reward functions log themselves) is averaged over the rounds.
    """
    step = {}
    for name, values in metrics.items():
        start = logged_before.get(name, 0)
        rounds = values[start:]
        if not rounds:
            continue
        del values[start:]
        if "/faults_" in name:
            step[name] = float(sum(rounds))
        elif not name.startswith(_RELOGGED_BY_REPLAY):
            step[name] = sum(rounds) / len(rounds)
    return step
