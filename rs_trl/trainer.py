"""`RSGRPOTrainer`: TRL's `GRPOTrainer` with the risk-sensitive advantage.

TRL computes advantages inline in `_generate_and_score_completions`, so we let it run unchanged and
then replace the advantages it produced with ours, computed from the same gathered rewards (captured
in `_calculate_rewards`). Loss, generation, vLLM, PEFT, logging and checkpointing stay TRL's.
"""

import textwrap

import torch
from trl import GRPOTrainer
from trl.trainer.utils import nanstd

from .advantages import risk_sensitive_advantages
from .config import RSGRPOConfig


class RSGRPOTrainer(GRPOTrainer):
    """Drop-in replacement for [`~trl.GRPOTrainer`] training with Risk-Sensitive GRPO (arXiv 2509.24261).

    Takes the same arguments as `GRPOTrainer`; `args` must be an [`RSGRPOConfig`]. With `risk_beta=0` it
    trains exactly as `GRPOTrainer` does.
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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, RSGRPOConfig):
            raise TypeError(f"RSGRPOTrainer needs `args` to be an RSGRPOConfig, got {type(self.args).__name__}.")

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Rewards of all processes, in global order: the only input the risk-sensitive advantage needs.
        self._gathered_rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._gathered_rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        rewards = self._total_rewards(self._gathered_rewards_per_func)
        advantages = self._advantages(rewards, group_size)
        self._replace_logged_advantages(advantages)
        local_size = len(output["advantages"])
        start = self.accelerator.process_index * local_size
        output["advantages"] = advantages[start : start + local_size]
        self._log_risk_metrics(mode, rewards, advantages, group_size)
        return output

    def _total_rewards(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """Weighted sum over reward functions, NaN where every function returned None (TRL's semantics)."""
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        return rewards

    def _advantages(self, rewards: torch.Tensor, group_size: int) -> torch.Tensor:
        """Risk-sensitive advantage in place of GRPO's `r - mean`, then TRL's optional std scaling."""
        advantages = risk_sensitive_advantages(rewards, group_size, self.args.risk_beta)
        if self.scale_rewards == "group":
            std = nanstd(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size)
            advantages = advantages / (std + 1e-4)
        elif self.scale_rewards == "batch":
            std = nanstd(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
            advantages = advantages / (std + 1e-4)
        return torch.nan_to_num(advantages, nan=0.0)

    def _replace_logged_advantages(self, advantages: torch.Tensor):
        # TRL just appended its own global advantages for the completions table; swap in ours.
        logged = self._logs["advantages"]
        for _ in range(min(len(advantages), len(logged))):
            logged.pop()
        logged.extend(advantages.tolist())

    def _log_risk_metrics(self, mode: str, rewards: torch.Tensor, advantages: torch.Tensor, group_size: int):
        """`rs/` metrics: where the update's weight goes, and how solved each prompt is."""
        grouped = rewards.view(-1, group_size)
        best = rewards.nan_to_num(-torch.inf).max()
        valid = ~torch.isnan(grouped)
        # "Solved" = reached the best reward seen in the batch (for 0/1 rewards: correct).
        solve_rate = ((grouped == best) & valid).sum(1) / valid.sum(1).clamp(min=1)
        abs_adv = advantages.abs().view(-1, group_size).sum(dim=1)
        low_accuracy = solve_rate < 0.5
        total = abs_adv.sum().clamp(min=1e-12)
        spread = grouped.nan_to_num(-torch.inf).amax(1) - grouped.nan_to_num(torch.inf).amin(1)
        metrics = self._metrics[mode]
        metrics["rs/abs_advantage_share_low_solve_rate"].append((abs_adv[low_accuracy].sum() / total).item())
        metrics["rs/abs_advantage_share_high_solve_rate"].append((abs_adv[~low_accuracy].sum() / total).item())
        metrics["rs/solve_rate/mean"].append(solve_rate.mean().item())
        metrics["rs/solve_rate/median"].append(solve_rate.median().item())
        metrics["rs/frac_groups_all_solved"].append((solve_rate == 1).float().mean().item())
        metrics["rs/frac_groups_none_solved"].append((solve_rate == 0).float().mean().item())
        metrics["rs/frac_zero_variance_groups"].append((~(spread > 0)).float().mean().item())
        metrics["rs/advantage/max"].append(advantages.max().item())
        metrics["rs/advantage/min"].append(advantages.min().item())
