"""Configuration for RS-GRPO: TRL's `GRPOConfig` plus the risk-sensitivity knobs."""

import math
from dataclasses import dataclass, field

from trl import GRPOConfig

from .estimators import estimator_spec, is_integer, is_number


@dataclass
class RSGRPOConfig(GRPOConfig):
    r"""
    Configuration class for [`RSGRPOTrainer`]: every [`~trl.GRPOConfig`] field, plus:

    > Parameters that control risk sensitivity

    risk_beta (`float`, *optional*, defaults to `2.0`):
        Risk parameter β of the objective J = (1/β) log E[exp(β r)]. `0.0` is standard GRPO (maximise the mean
        reward); larger β moves the objective towards the best reward of each group, so rare correct answers get
        more credit and the policy keeps exploring (higher pass@k). Negative values are risk-averse. The paper
        recommends `2.0`. Not to be confused with TRL's `beta`, the KL coefficient.

    > Parameters that control dynamic sampling (DAPO)

    dynamic_sampling (`bool`, *optional*, defaults to `True`):
        Drop groups that carry no gradient (the configured estimator gives every sample a zero advantage: for
        `"rs_grpo"` and `"grpo"` exactly the groups whose rewards are all equal, judged on the weighted sum of reward
        functions and ignoring unscorable samples) and refill the generation batch with fresh prompts until every
        process has its full batch of informative groups. Needs whole groups per process.
    dynamic_sampling_max_rounds (`int`, *optional*, defaults to `8`):
        Extra generation rounds allowed per generation step. Each round generates only the missing groups. A step
        that has found no informative group at all stops after one extra round (after none when the previous step
        found none either), with a warning: see docs/dynamic-sampling.md.
    dynamic_sampling_on_exhaustion (`str`, *optional*, defaults to `"pad"`):
        What to do when the batch is still short after `dynamic_sampling_max_rounds`: `"pad"` fills it with
        dropped (zero-advantage) groups and logs `dynamic_sampling/padded_groups`; `"error"` stops training with
        the fraction of zero-variance groups seen.

    > Parameters that control logging

    log_pass_at_k (`list[int]` or `None`, *optional*, defaults to `None`):
        The k of the pass@k logged from each batch's groups: `rs/pass@k` over the training groups every step, and
        `eval_rs/pass@k` over the `num_generations_eval` samples per prompt at each evaluation (with an
        `eval_dataset`), by the unbiased estimator of Chen et al. (2021). `None`: 1, 2, 4, ... and the group size.
        k above a batch's group size is skipped. Logged with them: `rs/distinct_answers/mean`, the distinct final
        answers per group (`rs_trl.diversity.final_answer`), and `rs/frac_groups_one_answer`.

    > Parameters that control preemption

    checkpoint_on_signal (`bool`, *optional*, defaults to `True`):
        On the first SIGTERM, SIGINT or SIGUSR1 during `train()` (what Slurm sends before a time limit or a
        preemption, and Ctrl-C), finish the current optimizer step, save a complete checkpoint on every process
        (they agree on the step) and raise `rs_trl.TrainingInterrupted`; `rs-trl train` then exits with 128 + the
        signal's number, and `--resume_from_checkpoint true` continues the run. A second signal, 2 s or more after
        the first, stops at once. `False` leaves the signals to Python's defaults, as in TRL.

    > Parameters that control fault tolerance

    reward_timeout (`float` or `None`, *optional*, defaults to `None`):
        Seconds one call of a synchronous reward function may take; `None` (default) sets no limit, exactly as TRL.
        The limit is a SIGALRM timer on the main thread (see `rs_trl.reward_guard.call_with_timeout`): the call is
        never moved to another thread, so signal-based code such as Math-Verify keeps working. A call that raises or
        times out leaves its samples unscored (advantage 0) and is counted in `rewards/<name>/faults_*`; training
        goes on. Not a wall-clock limit for a call stuck in one long C call (a native library, a blocking socket
        read): Python interrupts it only when that C call returns, and the warning then names the function and how
        long it ran against the limit. Bound such code inside the function (its own client timeouts, a subprocess).
    stall_warning_seconds (`float` or `None`, *optional*, defaults to `900.0`):
        Seconds without training progress (a step beginning or ending, a reward call returning) after which every
        rank prints a stall report: its rank, the global step, the reward function it is inside and its Python
        stack (`rs_trl.watchdog`), again every period while the stall lasts. Nothing is stopped, as in TRL: a reward
        that blocks on one rank leaves the others waiting in a collective, and this says where. `None` disables it.
    reward_failure_patience (`int` or `None`, *optional*, defaults to `3`):
        Generation steps in a row in which a reward function failed on every call, or in which no sample got a
        reward from any function, before training stops with an error naming the cause. A failure shorter than
        this is a fault: its samples are left unscored and training goes on. `None` never stops (it warns each
        step), which is TRL's behaviour when no sample gets a reward: the one difference from `GRPOTrainer` at
        `risk_beta=0` that TRL's values for the fields below do not remove.

    > Parameters that choose the advantage estimator and vary β

    advantage_estimator (`str`, *optional*, defaults to `"rs_grpo"`):
        How each group's rewards become advantages: any name registered with `rs_trl.register_estimator`. Built in:
        `"rs_grpo"` (this paper, uses `risk_beta`), `"grpo"` (r − mean, TRL's), `"pass_at_k"` (Chen et al. 2025's
        analytic pass@k advantage, binary rewards only, uses `pass_k`), `"pkpo"` (Walder & Karkhanis 2025's
        unbiased pass@k / max@k gradient with their k−1 baseline, uses `pass_k`), `"rloo"` (leave-one-out baseline)
        and `"maxrl"` ((r − mean) / mean, non-negative rewards). TRL's `scale_rewards` still applies on top.
    pass_k (`int`, *optional*, defaults to `4`):
        The k of `"pass_at_k"` and `"pkpo"`: 1 <= k <= `num_generations` (k >= 2 for `"pkpo"`). Ignored otherwise.
        With `"pass_at_k"`, k = `num_generations` gives every group advantage 0 (each k-subset is the whole group).
    risk_beta_schedule (`str`, *optional*, defaults to `"constant"`):
        How β varies over training (`"rs_grpo"` only): `"constant"` (`risk_beta`), `"linear"` or `"cosine"` (from
        `risk_beta` at step 0 to `risk_beta_end` at `risk_beta_schedule_steps`, then held), or `"adaptive"` (per
        group, the β at which the weights softmax(β r) keep an effective sample fraction `risk_beta_target_ess`,
        capped at `risk_beta_max`; `risk_beta` is then unused). The β used is logged every step (`rs/beta*`).
    risk_beta_end (`float` or `None`, *optional*, defaults to `None`):
        Final β of a `"linear"` or `"cosine"` schedule (required for those).
    risk_beta_schedule_steps (`int` or `None`, *optional*, defaults to `None`):
        Optimizer steps over which a `"linear"` or `"cosine"` schedule runs; `None` = the whole run (`max_steps`).
    risk_beta_target_ess (`float`, *optional*, defaults to `0.5`):
        `"adaptive"`: target effective sample size of softmax(β r) as a fraction of the group's samples, in (0, 1].
        Smaller = larger β (more risk seeking); 1 = β 0 (GRPO). With 0/1 rewards and the defaults, groups less than
        half correct get β 1.77-2.89 (below 2 for 1-4 of 16 correct: less risk seeking than β = 2 on the hardest
        prompts); see `risk_beta_max` for the rest (`rs-trl bandit --bias` prints every case).
    risk_beta_max (`float`, *optional*, defaults to `8.0`):
        `"adaptive"`: the cap on β, used by groups that cannot reach the target below it. A group's effective sample
        fraction never falls below the share of its samples tied for the best reward, so with 0/1 rewards and
        target 0.5 every group at least half correct gets the cap: at 16 samples, β jumps from 2.89 (7 correct) to
        8 (8 correct) and the group's update mass Σ|A| drops 2.7× (5.48 to 2.00).

    > Parameters whose defaults differ from [`~trl.GRPOConfig`]

    scale_rewards (`str`, *optional*, defaults to `"none"`):
        TRL defaults to `"group"` (divide by the group's reward std). The risk-sensitive advantage already sets the
        scale of each group's update, and the paper applies no std scaling, so none is applied by default. `"group"`
        and `"batch"` still work and divide the risk-sensitive advantage exactly as TRL divides `r - mean`.
    epsilon_high (`float`, *optional*, defaults to `0.28`):
        TRL defaults to `epsilon`. The paper trains with DAPO's clip-higher (upper clip 0.28), which keeps
        low-probability tokens able to grow, the same exploration that risk-seeking is after.
    """

    risk_beta: float = field(
        default=2.0,
        metadata={
            "help": "Risk parameter β of J = (1/β) log E[exp(β r)]. 0 is standard GRPO; larger values favour the best "
            "samples of each group (more exploration, higher pass@k); negative values are risk-averse. The paper "
            "recommends 2.0. Not TRL's `beta`, which is the KL coefficient."
        },
    )
    dynamic_sampling: bool = field(
        default=True,
        metadata={
            "help": "Drop groups whose advantage is zero for every sample (for rs_grpo/grpo: equal rewards) and refill "
            "the batch with fresh prompts (DAPO dynamic sampling)."
        },
    )
    dynamic_sampling_max_rounds: int = field(
        default=8,
        metadata={"help": "Extra generation rounds per step for dynamic sampling; each generates only the shortfall."},
    )
    dynamic_sampling_on_exhaustion: str = field(
        default="pad",
        metadata={
            "help": "When dynamic sampling is still short after the extra rounds: 'pad' (fill with zero-advantage "
            "groups, logged) or 'error'."
        },
    )
    log_pass_at_k: list[int] | None = field(
        default=None,
        metadata={
            "help": "k of the logged rs/pass@k (training groups) and eval_rs/pass@k (eval groups); None: 1, 2, 4, ... "
            "and the group size."
        },
    )
    checkpoint_on_signal: bool = field(
        default=True,
        metadata={
            "help": "On SIGTERM/SIGINT/SIGUSR1 (a scheduler's preemption or time limit, Ctrl-C), finish the step, save "
            "a checkpoint on every process and exit with 128 + the signal; a second signal stops at once."
        },
    )
    reward_timeout: float | None = field(
        default=None,
        metadata={
            "help": "Seconds a reward function call may take before its samples are left unscored (None: no limit). "
            "Enforced with a SIGALRM timer on the main thread; the call itself stays where TRL makes it. A call stuck "
            "in one long C call is interrupted only when it returns to Python (the warning says how long it ran)."
        },
    )
    stall_warning_seconds: float | None = field(
        default=900.0,
        metadata={
            "help": "Seconds without training progress after which every rank prints its step, running reward "
            "function and stack (nothing is stopped). None: no stall reports."
        },
    )
    reward_failure_patience: int | None = field(
        default=3,
        metadata={
            "help": "Generation steps in a row in which a reward function failed on every call (or no sample got any "
            "reward) before training stops with an error. None: never stop, only warn (TRL's behaviour)."
        },
    )
    scale_rewards: str = field(
        default="none",
        metadata={
            "help": "Std scaling applied on top of the risk-sensitive advantage: 'none' (default, as in the paper), "
            "'group' or 'batch' (as in TRL)."
        },
    )
    epsilon_high: float | None = field(
        default=0.28,
        metadata={"help": "Upper clipping epsilon (DAPO clip-higher). The paper uses 0.28."},
    )

    advantage_estimator: str = field(
        default="rs_grpo",
        metadata={
            "help": "Advantage estimator, any name registered with rs_trl.register_estimator: 'rs_grpo' (risk_beta), "
            "'grpo' (r - mean), 'pass_at_k' (Chen et al. 2025, binary rewards, pass_k), 'pkpo' (Walder & Karkhanis "
            "2025, pass_k), 'rloo' (leave-one-out baseline), 'maxrl' ((r - mean) / mean)."
        },
    )
    pass_k: int = field(
        default=4,
        metadata={"help": "k of the 'pass_at_k' and 'pkpo' estimators, 1 <= k <= num_generations (>= 2 for pkpo)."},
    )
    risk_beta_schedule: str = field(
        default="constant",
        metadata={
            "help": "β over training for 'rs_grpo': 'constant', 'linear' or 'cosine' (risk_beta -> risk_beta_end over "
            "risk_beta_schedule_steps), or 'adaptive' (per group, by effective sample size; risk_beta_target_ess, "
            "risk_beta_max)."
        },
    )
    risk_beta_end: float | None = field(
        default=None, metadata={"help": "Final β of a 'linear' or 'cosine' risk_beta_schedule."}
    )
    risk_beta_schedule_steps: int | None = field(
        default=None,
        metadata={"help": "Steps of a 'linear' or 'cosine' risk_beta_schedule (None: max_steps); β is held after."},
    )
    risk_beta_target_ess: float = field(
        default=0.5,
        metadata={"help": "'adaptive' β: target effective sample fraction of softmax(β r) per group, in (0, 1]."},
    )
    risk_beta_max: float = field(default=8.0, metadata={"help": "'adaptive' β: the cap on each group's β."})

    def __post_init__(self):
        if not is_number(self.risk_beta) or not math.isfinite(self.risk_beta):
            raise ValueError(f"risk_beta must be a finite float, got {self.risk_beta!r}.")
        self.risk_beta = float(self.risk_beta)
        rounds = self.dynamic_sampling_max_rounds
        if not is_integer(rounds, 0):
            raise ValueError(f"dynamic_sampling_max_rounds must be an integer >= 0, got {rounds!r}.")
        self.dynamic_sampling_max_rounds = int(rounds)
        if self.dynamic_sampling_on_exhaustion not in ("pad", "error"):
            raise ValueError(
                "dynamic_sampling_on_exhaustion must be one of 'pad', 'error', "
                f"got {self.dynamic_sampling_on_exhaustion!r}."
            )
        if self.log_pass_at_k is not None and not all(is_integer(k, 1) for k in self.log_pass_at_k):
            raise ValueError(f"log_pass_at_k must be a list of integers >= 1 or None, got {self.log_pass_at_k!r}.")
        timeout = self.reward_timeout
        if timeout is not None and not (is_number(timeout) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"reward_timeout must be a positive number of seconds or None, got {timeout!r}.")
        stall = self.stall_warning_seconds
        if stall is not None and not (is_number(stall) and math.isfinite(stall) and stall > 0):
            raise ValueError(f"stall_warning_seconds must be a positive number of seconds or None, got {stall!r}.")
        patience = self.reward_failure_patience
        if patience is not None and not is_integer(patience, 1):
            raise ValueError(f"reward_failure_patience must be an integer >= 1 or None, got {patience!r}.")
        self.reward_failure_patience = None if patience is None else int(patience)
        super().__post_init__()
        if self.scale_rewards not in ("none", "group", "batch"):
            raise ValueError(f"scale_rewards must be one of 'none', 'group', 'batch', got {self.scale_rewards!r}.")
        self._validate_estimator()
        local_generation_batch = self.per_device_train_batch_size * self.steps_per_generation
        if self.dynamic_sampling and local_generation_batch % self.num_generations != 0:
            # Groups are filtered per process, so no group may straddle two processes.
            raise ValueError(
                "dynamic_sampling needs whole groups on every process: per_device_train_batch_size "
                f"({self.per_device_train_batch_size}) * steps_per_generation ({self.steps_per_generation}) = "
                f"{local_generation_batch} must be a multiple of num_generations ({self.num_generations}). "
                "Change those values or set dynamic_sampling=False."
            )

    def _validate_estimator(self):
        spec = estimator_spec(self.advantage_estimator)  # raises naming the registered estimators
        # The schedule varies rs_grpo's β; any other estimator would silently ignore it.
        if self.risk_beta_schedule != "constant" and "risk_beta_schedule" not in spec.config_fields:
            raise ValueError(
                f"risk_beta_schedule={self.risk_beta_schedule!r} varies the β of advantage_estimator='rs_grpo'; "
                f"it has no effect on {self.advantage_estimator!r}. Set risk_beta_schedule='constant'."
            )
        spec.validate(self)


def differences_from_grpo_config(config: RSGRPOConfig) -> dict[str, tuple]:
    """{field: (value here, GRPOConfig's default)} for the fields whose default RSGRPOConfig changes and whose value
    still differs from TRL's, plus the RS-GRPO settings that make training differ from TRL's GRPO at all."""
    ours, theirs = RSGRPOConfig.__dataclass_fields__, GRPOConfig.__dataclass_fields__
    redefaulted = [name for name in theirs if ours[name].default != theirs[name].default]
    differences = {
        name: (getattr(config, name), theirs[name].default)
        for name in redefaulted
        if getattr(config, name) != theirs[name].default
    }
    if config.dynamic_sampling:
        differences["dynamic_sampling"] = (True, "no such option")
    if not trains_plain_grpo(config):
        if config.advantage_estimator == "rs_grpo":
            differences["risk_beta"] = (config.risk_beta, "GRPO, i.e. 0")
        else:
            differences["advantage_estimator"] = (config.advantage_estimator, "GRPO's r - mean")
    return differences


def trains_plain_grpo(config: RSGRPOConfig) -> bool:
    """GRPO's advantage, r − mean: the `grpo` estimator, or RS-GRPO at a constant β = 0."""
    constant_zero = config.risk_beta_schedule == "constant" and config.risk_beta == 0
    return config.advantage_estimator == "grpo" or (config.advantage_estimator == "rs_grpo" and constant_zero)
