"""The `rs/` metrics RSGRPOTrainer logs every step next to TRL's: pure tensor math over one scored batch."""

import torch

from .advantages import zero_variance_groups
from .estimators import default_ks, unbiased_pass_at_k


def risk_metrics(
    rewards: torch.Tensor, advantages: torch.Tensor, beta, group_size: int, ks: list[int] | None = None
) -> dict[str, float]:
    """`rs/` metrics of one batch (all processes' total rewards and final advantages, and the β the estimator used:
    a float, one value per group for adaptive β, or None): where the update's weight goes, how solved each prompt is,
    and `rs/pass@k` for each k of `ks` up to the group size (default 1, 2, 4, ... and the group size)."""
    grouped = rewards.view(-1, group_size)
    best, worst = rewards.nan_to_num(-torch.inf).max(), rewards.nan_to_num(torch.inf).min()
    valid = ~torch.isnan(grouped)
    # "Solved": for 0/1 rewards, correct; otherwise reached the batch's best reward, when that beats its worst.
    binary = bool(((grouped == 0) | (grouped == 1) | ~valid).all())
    solved = ((grouped == 1) if binary else (grouped == best) & (best > worst)) & valid
    solve_rate = solved.sum(1) / valid.sum(1).clamp(min=1)
    abs_adv = advantages.abs().view(-1, group_size).sum(dim=1)
    low_solve_rate = (solve_rate < 0.5).float()
    total = abs_adv.sum().clamp(min=1e-12)
    zero_variance = zero_variance_groups(rewards, group_size)
    # Free pass@k from the groups themselves: the unbiased estimator on each group's solved count.
    ks = sorted({k for k in (ks or default_ks(group_size)) if k <= group_size})
    pass_at = unbiased_pass_at_k(
        solved.sum(1, keepdim=True), valid.sum(1, keepdim=True), torch.tensor(ks, device=rewards.device)
    ).nanmean(dim=0)
    values = {
        "rs/abs_advantage_share_low_solve_rate": (abs_adv * low_solve_rate).sum() / total,
        "rs/abs_advantage_share_high_solve_rate": (abs_adv * (1 - low_solve_rate)).sum() / total,
        "rs/solve_rate/mean": solve_rate.mean(),
        "rs/solve_rate/median": solve_rate.median(),
        "rs/frac_groups_all_solved": (solve_rate == 1).float().mean(),
        "rs/frac_groups_none_solved": (solve_rate == 0).float().mean(),
        "rs/frac_zero_variance_groups": zero_variance.float().mean(),
        "rs/advantage/max": advantages.max(),
        "rs/advantage/min": advantages.min(),
    } | {f"rs/pass@{k}": value for k, value in zip(ks, pass_at)}
    if isinstance(beta, torch.Tensor):  # adaptive: its distribution over the groups that carry a signal
        informative = beta[~zero_variance]
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
    return dict(zip(values, torch.stack([v.float() for v in values.values()]).tolist()))
