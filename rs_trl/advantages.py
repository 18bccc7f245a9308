"""Risk-sensitive group advantages: the whole of RS-GRPO's math.

For a group of rewards r_1..r_G and risk parameter β, RS-GRPO maximises
J = (1/β) log E[exp(β r)], whose per-sample advantage is

    A_i = (1/β) (exp(β r_i) / mean_j exp(β r_j) − 1) = expm1(β r_i − logmeanexp_j(β r_j)) / β.

β → 0 recovers GRPO's centred reward r_i − mean_j r_j; β → ∞ weights only the best samples.
"""

import math

import torch

# Below this |β| the β=0 limit is exact to float64 precision for any reward scale we accept.
_BETA_ZERO_TOLERANCE = 1e-12


def zero_variance_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Bool per group: True when its scorable (non-NaN) rewards are all equal, i.e. it carries no signal."""
    grouped = rewards.view(-1, group_size)
    valid = ~torch.isnan(grouped)
    highest = torch.where(valid, grouped, -torch.inf).amax(dim=1)
    lowest = torch.where(valid, grouped, torch.inf).amin(dim=1)
    return ~(highest - lowest > 0)


def risk_sensitive_advantages(rewards: torch.Tensor, group_size: int, beta: float | torch.Tensor) -> torch.Tensor:
    """Per-sample risk-sensitive advantages for contiguous groups of `group_size` rewards.

    `beta` is one float, or a tensor with one β per group (adaptive β). NaN rewards (a reward function returned
    None) are left out of their group's statistics and get advantage 0; a group whose valid rewards are all equal
    gets exactly 0. Negative β (risk-averse) follows the same formula. Returns a tensor of `rewards`' shape and dtype.
    """
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 1:
        raise ValueError(f"`rewards` must be a 1-D tensor, got shape {tuple(getattr(rewards, 'shape', ()))}.")
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"`group_size` must be an integer >= 1, got {group_size!r}.")
    if rewards.numel() % group_size != 0:
        raise ValueError(f"`rewards` has {rewards.numel()} elements, not divisible by `group_size`={group_size}.")
    beta = torch.as_tensor(beta, dtype=torch.float64, device=rewards.device)
    if beta.dim() > 0 and beta.numel() != rewards.numel() // group_size:
        raise ValueError(f"`beta` must be a float or hold one value per group, got shape {tuple(beta.shape)}.")
    if not torch.isfinite(beta).all():
        raise ValueError(f"`beta` must be finite, got {beta.tolist()!r}.")
    beta = beta.reshape(-1, 1)

    # float64 keeps β·r exact enough for |β r| up to ~1e7 (rewards 1e4, β 1e3).
    grouped = rewards.detach().to(torch.float64).view(-1, group_size)
    valid = ~torch.isnan(grouped)
    count = valid.sum(dim=1, keepdim=True).to(torch.float64)
    filled = torch.where(valid, grouped, torch.zeros_like(grouped))
    mean = filled.sum(dim=1, keepdim=True) / count.clamp(min=1)
    # Centring first removes any common offset, so exp never sees a raw reward.
    centred = torch.where(valid, grouped - mean, torch.zeros_like(grouped))

    at_zero = beta.abs() < _BETA_ZERO_TOLERANCE
    if at_zero.all():
        advantages = centred
    else:
        # β = 0 rows take the exact centred limit below; a stand-in β of 1 keeps their division finite.
        beta = torch.where(at_zero, torch.ones_like(beta), beta)
        scaled = beta * centred
        top = torch.where(valid, scaled, torch.full_like(scaled, -math.inf)).amax(dim=1, keepdim=True)
        below_top = torch.where(valid, scaled - top.nan_to_num(neginf=0.0), torch.zeros_like(scaled))
        # logmeanexp(scaled) − top = log1p(mean(expm1(scaled − top))): every term stays O(β·spread), so tiny β
        # keeps full relative precision, and scaled − top <= 0 means exp never overflows.
        log_mean_exp_below_top = torch.log1p(torch.expm1(below_top).sum(dim=1, keepdim=True) / count.clamp(min=1))
        advantages = torch.expm1(below_top - log_mean_exp_below_top) / beta
        advantages = torch.where(valid, advantages, torch.zeros_like(advantages))
        advantages = torch.where(at_zero, centred, advantages)

    # Exact zeros for constant groups: float round-off must not invent a learning signal.
    constant = zero_variance_groups(grouped.flatten(), group_size).unsqueeze(1)
    advantages = torch.where(constant, torch.zeros_like(advantages), advantages)
    return advantages.reshape(rewards.shape).to(rewards.dtype)
