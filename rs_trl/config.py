"""Configuration for RS-GRPO: TRL's `GRPOConfig` plus the risk-sensitivity knobs."""

import math
from dataclasses import dataclass, field

from trl import GRPOConfig


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
        if isinstance(self.risk_beta, bool) or not isinstance(self.risk_beta, (int, float)):
            raise ValueError(f"risk_beta must be a finite float, got {self.risk_beta!r}.")
        if not math.isfinite(self.risk_beta):
            raise ValueError(f"risk_beta must be a finite float, got {self.risk_beta!r}.")
        self.risk_beta = float(self.risk_beta)
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                f"multi_objective_aggregation={self.multi_objective_aggregation!r} is not supported by RS-GRPO; "
                "allowed: 'sum_then_normalize' (the risk-sensitive advantage is taken on the weighted reward sum)."
            )
        super().__post_init__()
        if self.scale_rewards not in ("none", "group", "batch"):
            raise ValueError(f"scale_rewards must be one of 'none', 'group', 'batch', got {self.scale_rewards!r}.")
