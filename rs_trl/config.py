"""Configuration for RS-GRPO: TRL's `GRPOConfig` plus the risk-sensitivity knobs."""

import math
from dataclasses import dataclass, field

from trl import GRPOConfig


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
        Drop groups whose rewards are all equal (they get zero advantage, so no learning signal) and refill the
        generation batch with fresh prompts until every process has its full batch of informative groups. "Equal"
        is judged on the weighted sum of reward functions that the advantage uses, ignoring unscorable (None/NaN)
        samples. Needs a map-style `train_dataset` and whole groups per process.
    dynamic_sampling_max_rounds (`int`, *optional*, defaults to `8`):
        Extra generation rounds allowed per generation step. Each round generates only the missing groups.
    dynamic_sampling_on_exhaustion (`str`, *optional*, defaults to `"pad"`):
        What to do when the batch is still short after `dynamic_sampling_max_rounds`: `"pad"` fills it with
        dropped (zero-advantage) groups and logs `dynamic_sampling/padded_groups`; `"error"` stops training with
        the fraction of zero-variance groups seen.

    > Parameters that control fault tolerance

    reward_timeout (`float` or `None`, *optional*, defaults to `None`):
        Seconds one call of a synchronous reward function may take; `None` (default) sets no limit, exactly as TRL.
        The limit is a SIGALRM timer on the main thread (see `rs_trl.reward_guard.call_with_timeout`): the call is
        never moved to another thread, so signal-based code such as Math-Verify keeps working. A call that raises or
        times out leaves its samples unscored (advantage 0) and is counted in `rewards/<name>/faults_*`; training
        goes on.
    reward_failure_patience (`int`, *optional*, defaults to `3`):
        Generation steps in a row in which a reward function failed on every call, or in which no sample got a
        reward from any function, before training stops with an error naming the cause. A failure shorter than
        this is a fault: its samples are left unscored and training goes on.

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
            "help": "Drop zero-variance groups and refill the batch with fresh prompts (DAPO dynamic sampling)."
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
    reward_timeout: float | None = field(
        default=None,
        metadata={
            "help": "Seconds a reward function call may take before its samples are left unscored (None: no limit). "
            "Enforced with a SIGALRM timer on the main thread; the call itself stays where TRL makes it."
        },
    )
    reward_failure_patience: int = field(
        default=3,
        metadata={
            "help": "Generation steps in a row in which a reward function failed on every call (or no sample got any "
            "reward) before training stops with an error."
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

    def __post_init__(self):
        if not _is_number(self.risk_beta) or not math.isfinite(self.risk_beta):
            raise ValueError(f"risk_beta must be a finite float, got {self.risk_beta!r}.")
        self.risk_beta = float(self.risk_beta)
        rounds = self.dynamic_sampling_max_rounds
        if not (_is_number(rounds) and float(rounds).is_integer() and rounds >= 0):
            raise ValueError(f"dynamic_sampling_max_rounds must be an integer >= 0, got {rounds!r}.")
        self.dynamic_sampling_max_rounds = int(rounds)
        if self.dynamic_sampling_on_exhaustion not in ("pad", "error"):
            raise ValueError(
                "dynamic_sampling_on_exhaustion must be one of 'pad', 'error', "
                f"got {self.dynamic_sampling_on_exhaustion!r}."
            )
        timeout = self.reward_timeout
        if timeout is not None and not (_is_number(timeout) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"reward_timeout must be a positive number of seconds or None, got {timeout!r}.")
        patience = self.reward_failure_patience
        if not (_is_number(patience) and float(patience).is_integer() and patience >= 1):
            raise ValueError(f"reward_failure_patience must be an integer >= 1, got {patience!r}.")
        self.reward_failure_patience = int(patience)
        super().__post_init__()
        if self.scale_rewards not in ("none", "group", "batch"):
            raise ValueError(f"scale_rewards must be one of 'none', 'group', 'batch', got {self.scale_rewards!r}.")
        local_generation_batch = self.per_device_train_batch_size * self.steps_per_generation
        if self.dynamic_sampling and local_generation_batch % self.num_generations != 0:
            # Groups are filtered per process, so no group may straddle two processes.
            raise ValueError(
                "dynamic_sampling needs whole groups on every process: per_device_train_batch_size "
                f"({self.per_device_train_batch_size}) * steps_per_generation ({self.steps_per_generation}) = "
                f"{local_generation_batch} must be a multiple of num_generations ({self.num_generations}). "
                "Change those values or set dynamic_sampling=False."
            )
