"""`RSGRPOTrainer`: TRL's `GRPOTrainer` with the risk-sensitive advantage, in the shape of TRL's small experimental
trainers. The one change is `compute_advantages`; `AdvantageGRPOTrainer` (rs_trl/trl_bridge.py) is the only code
that knows how TRL computes advantages, and `DynamicSamplingMixin` adds DAPO dynamic sampling on top of it.
Loss, generation, vLLM, PEFT, logging and checkpointing stay TRL's.
"""

import logging
from collections import Counter
from pathlib import Path

import torch
from accelerate.utils import gather_object
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin, TrainerCallback
from trl import GRPOTrainer
from trl.trainer.grpo_trainer import EnvironmentFactory, RewardFunc, RolloutFunc
from trl.trainer.utils import get_config_model_id, is_async_callable

from .checkpoints import check_finite_weights, check_resumable, last_complete_checkpoint
from .config import RSGRPOConfig, differences_from_grpo_config, trains_plain_grpo
from .diversity import distinct_answer_metrics, final_answer
from .dynamic_sampling import DYNAMIC_SAMPLING_STATE, DynamicSamplingMixin
from .estimators import estimator_params, group_advantages
from .model_card import PAPER, add_rs_grpo_section, is_hub_id, name_local_base_model
from .preemption import CheckpointOnSignal
from .reward_guard import TALLY_FIELDS, RewardHealth, guard_reward_function, validate_train_dataset
from .rewards import completion_text
from .risk_metrics import risk_metrics
from .run_dir import disk_failures_explained, parse_resume, warn_if_low_space
from .trl_bridge import AdvantageGRPOTrainer
from .watchdog import StallWatchdog

logger = logging.getLogger(__name__)


class RSGRPOTrainer(DynamicSamplingMixin, AdvantageGRPOTrainer):
    """Drop-in replacement for [`~trl.GRPOTrainer`] training with Risk-Sensitive GRPO (arXiv 2509.24261).

    The one change w.r.t. GRPOTrainer is the advantage: `(1/β)(exp(β r_i) / mean_j exp(β r_j) - 1)` per group
    instead of `r_i - mean_j r_j`, plus DAPO dynamic sampling and reward fault isolation. It takes exactly
    GRPOTrainer's arguments; `args` must be an [`RSGRPOConfig`]. With `risk_beta=0` and `dynamic_sampling=False` it
    trains exactly as GRPOTrainer does on the same settings (the defaults of `scale_rewards` and `epsilon_high`
    differ from TRL's: see [`RSGRPOConfig`]).
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
        validate_train_dataset(
            train_dataset, funcs, needs_prompt=environment_factory is None, rollout_fields=rollout_func is not None
        )
        columns = getattr(train_dataset, "column_names", None) or []
        if args.dynamic_sampling and {"image", "images"} & set(columns):
            raise ValueError(
                "dynamic_sampling does not support multimodal (image) datasets yet: set dynamic_sampling=False."
            )
        prompts_per_batch = args.generation_batch_size // args.num_generations
        if isinstance(train_dataset, Dataset) and len(train_dataset) < prompts_per_batch:
            # TRL's sampler drops an incomplete batch: the run would train 0 steps and save the untrained model.
            raise ValueError(
                f"train_dataset has {len(train_dataset)} prompts, fewer than one generation batch takes "
                f"(generation_batch_size {args.generation_batch_size} / num_generations {args.num_generations} = "
                f"{prompts_per_batch}): training would run 0 steps. Use more prompts, or a smaller "
                "per_device_train_batch_size or steps_per_generation."
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
        if trains_plain_grpo(args):  # TRL's model card names the trainer and cites its paper: GRPO's, then
            self._name, self._paper = GRPOTrainer._name, GRPOTrainer._paper
        self._checkpoint_on_signal = None
        if args.checkpoint_on_signal:
            self._checkpoint_on_signal = CheckpointOnSignal(self._any_process, args.process_index)
            self.add_callback(self._checkpoint_on_signal)
        differences = differences_from_grpo_config(args)
        if differences and self.accelerator.is_main_process:
            logger.warning(
                "RSGRPOTrainer trains differently from TRL's GRPOTrainer with GRPOConfig's defaults in: %s. Set "
                "them to TRL's values (risk_beta=0, dynamic_sampling=False, scale_rewards='group', "
                "epsilon_high=None) to train exactly as GRPOTrainer does.",
                ", ".join(f"{name}={ours!r} (TRL: {theirs!r})" for name, (ours, theirs) in differences.items()),
            )
        self._stall_watchdog = StallWatchdog(args.stall_warning_seconds)
        self.add_callback(self._stall_watchdog)

    def on_rewards(self, rewards_per_func: torch.Tensor):
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
        self.log_metrics(
            mode,
            {
                f"rewards/{name}/faults_{field}": count
                for name, row in zip(self.reward_func_names, totals)
                for field, count in zip(TALLY_FIELDS, row)
                if field not in ("calls", "failed_calls", "samples")
            },
        )
        if mode == "train":
            self._reward_health.add_round(totals, any_sample_scored=bool((~torch.isnan(rewards_per_func)).any()))

    def on_completions(self, completions: list) -> None:
        """Log how many different final answers each group gives (`rs/distinct_answers/mean`,
        `rs/frac_groups_one_answer`): every process's answers are gathered in process order, as TRL gathers the
        rewards, so groups split across processes are whole again."""
        answers = gather_object([final_answer(completion_text(c)) for c in completions])
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        self.log_metrics(mode, distinct_answer_metrics(answers, group_size))

    def compute_advantages(self, rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, dict]:
        """The one change w.r.t. GRPOTrainer: the configured estimator's advantage in place of `r - mean`."""
        args = self.args
        params = estimator_params(args, rewards.view(-1, group_size), self.state.global_step, self.state.max_steps)
        return group_advantages(rewards, group_size, args.advantage_estimator, **params), params

    def on_batch_scored(self, mode: str, rewards, advantages, info: dict, group_size: int):
        self.log_metrics(
            mode, risk_metrics(rewards, advantages, info.get("beta"), group_size, self.args.log_pass_at_k)
        )
        if mode == "train":
            self._reward_health.end_step(self._reward_errors)

    def load_extra_state(self, folder: str) -> None:
        super().load_extra_state(folder)
        check_finite_weights(self.model, folder)

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
        # TRL's own scripts pass `--resume_from_checkpoint true` through as the string "true".
        resume_from_checkpoint = parse_resume(resume_from_checkpoint)
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"resume_from_checkpoint=True, but {self.args.output_dir} holds no complete checkpoint; train "
                    "from scratch without it, or pass the path of a checkpoint."
                )
        if resume_from_checkpoint:
            # The file names Trainer._save_rng_state and DynamicSamplingMixin.save_extra_state write.
            rng_file = f"rng_state_{self.args.process_index}.pth" if self.args.world_size > 1 else "rng_state.pth"
            dynamic_sampling_file = DYNAMIC_SAMPLING_STATE if self.dynamic_sampler is not None else None
            check_resumable(resume_from_checkpoint, rng_file, dynamic_sampling_file)
            self.accelerator.print(f"Resuming from {resume_from_checkpoint}.")
        if self.is_world_process_zero() and self.args.save_strategy != "no":
            warn_if_low_space(self.args.output_dir, self._checkpoint_bytes())
        if self._checkpoint_on_signal is not None:
            self._checkpoint_on_signal.install()
        output_dir = self.args.output_dir
        try:
            with disk_failures_explained(
                output_dir,
                lambda: f"Saving to {output_dir} failed at step {self.state.global_step}",
                "The checkpoints saved before are intact: free space (or fix the disk) and resume with "
                "--resume_from_checkpoint true.",
            ):
                output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        finally:
            self._stall_watchdog.stop()  # also when train() raised, which skips on_train_end
            if self._checkpoint_on_signal is not None:
                self._checkpoint_on_signal.restore()
        stopped_by = self._checkpoint_on_signal
        interruption = stopped_by.interruption(self.args.output_dir) if stopped_by is not None else None
        if interruption is not None:
            self.accelerator.print(str(interruption))
            raise interruption
        return output

    def _checkpoint_bytes(self) -> int:
        """About what one checkpoint takes on disk: the saved weights (the adapter alone with PEFT) plus AdamW's two
        float32 moments per trainable parameter (ZeRO-3 keeps a parameter's full size in `ds_numel`)."""
        parameters = list(self.model.parameters())
        trainable = [p for p in parameters if p.requires_grad]
        saved = trainable if getattr(self.model, "peft_config", None) else parameters

        def numel(p):
            return getattr(p, "ds_numel", p.numel())

        return sum(numel(p) * p.element_size() for p in saved) + 8 * sum(numel(p) for p in trainable)

    def _any_process(self, flag: bool) -> bool:
        """True on every process when `flag` is True on any: they must stop at the same step."""
        if self.accelerator.num_processes == 1:
            return flag
        flags = torch.tensor([float(flag)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flags, reduction="sum").item() > 0)
