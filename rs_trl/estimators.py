"""Pass@k-oriented advantage estimators side by side, and the β variants of RS-GRPO: pure tensor math.

`ESTIMATORS` maps each name accepted by `RSGRPOConfig.advantage_estimator` to a vectorised function
`(rewards [num_groups, G] float64, **params) -> advantages [num_groups, G]`, where a NaN reward marks an
unscorable sample. `group_advantages` is the one entry point the trainer calls: it adds what every estimator
shares (input checks, NaN samples get 0, groups whose rewards are all equal get exactly 0, the caller's dtype).

The advantages are meant for a loss that averages over samples, as TRL's does: a method that is an unbiased
estimator of ∇ pass@k is scaled here so that E[(1/G) Σ_i A_i ∇ log π(y_i)] = ∇ pass@k.
"""

import functools
import math
from types import SimpleNamespace

import torch

from .advantages import risk_sensitive_advantages, zero_variance_groups


def _log_binom(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """log C(n, k) elementwise (float64), −inf where C(n, k) = 0 (k < 0 or k > n)."""
    n, k = torch.broadcast_tensors(n.to(torch.float64), torch.as_tensor(k, dtype=torch.float64, device=n.device))
    defined = (k >= 0) & (k <= n)
    n_, k_ = n.clamp(min=0), k.clamp(min=0)
    value = torch.lgamma(n_ + 1) - torch.lgamma(k_ + 1) - torch.lgamma((n_ - k_).clamp(min=0) + 1)
    return torch.where(defined, value, torch.full_like(value, -math.inf))


def _binom_ratio(n_top, k_top, n_bottom, k_bottom) -> torch.Tensor:
    """C(n_top, k_top) / C(n_bottom, k_bottom), formed in log space so no binomial ever overflows."""
    return torch.exp(_log_binom(n_top, k_top) - _log_binom(n_bottom, k_bottom))


def _counts(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    valid = ~torch.isnan(rewards)
    return valid, valid.sum(dim=1, keepdim=True).to(torch.float64)


def _require_binary(rewards: torch.Tensor, name: str) -> None:
    bad = (rewards != 0) & (rewards != 1) & ~torch.isnan(rewards)
    if bad.any():
        raise ValueError(
            f"advantage_estimator={name!r} is defined for binary rewards (0 or 1) only, got e.g. "
            f"{rewards[bad][:3].tolist()}. Use 'rs_grpo', 'grpo' or 'pkpo' (which handles continuous rewards) for "
            "other rewards."
        )


def _check_k(k, name: str, smallest: int = 1) -> None:
    if not (isinstance(k, int) and not isinstance(k, bool) and k >= smallest):
        raise ValueError(f"advantage_estimator={name!r} needs an integer k >= {smallest}, got {k!r}.")


def grpo(rewards: torch.Tensor) -> torch.Tensor:
    """GRPO's group-centred reward (Shao et al., 2024, arXiv 2402.03300), as TRL computes it before any std scaling:

        A_i = r_i − mean_j r_j.

    Any rewards. TRL's optional std scaling (`scale_rewards`) is applied by the trainer on top, as for every estimator.
    """
    valid, count = _counts(rewards)
    mean = torch.where(valid, rewards, 0.0).sum(dim=1, keepdim=True) / count.clamp(min=1)
    return torch.where(valid, rewards - mean, 0.0)


def rs_grpo(rewards: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """RS-GRPO (Jiang et al., 2025, arXiv 2509.24261), the risk-sensitive advantage of J = (1/β) log E[e^{βr}]:

        A_i = (1/β) (e^{β r_i} / mean_j e^{β r_j} − 1),   r_i − mean_j r_j at β = 0.

    Any rewards. `beta` is one float or one value per group (adaptive β); see `rs_trl.advantages`.
    """
    return risk_sensitive_advantages(rewards.flatten(), rewards.shape[1], beta).view_as(rewards)


def pass_at_k(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Pass@k Training (Chen et al., 2025, arXiv 2508.10751), their analytical pass@k advantage; binary rewards.

    With n scorable samples of which c are correct, a random k-subset has no correct sample with probability
    q = C(n−c, k) / C(n, k); the group's pass@k reward has mean R̄ = 1 − q and std σ = sqrt(q (1 − q)), and

        A_correct = (1 − R̄) / σ,      A_wrong = (1 − R̄ − C(n−c−1, k−1) / C(n−1, k−1)) / σ,

    i.e. each sample's mean over the k-subsets that contain it of the normalised subset reward (max − R̄) / σ.
    σ = 0 (every k-subset passes, or none does) gives 0, as does a group with fewer than k scorable samples; so at
    k = G (every k-subset is the whole group) the advantage is 0 for every group: use k < G.
    Not an unbiased gradient estimator (the mean and std are taken from the same samples). Rejects non-binary rewards.
    """
    _require_binary(rewards, "pass_at_k")
    _check_k(k, "pass_at_k")
    group_size = rewards.shape[1]
    valid = ~torch.isnan(rewards)
    correct = rewards == 1
    # Both advantages depend only on (n, c): read them from a table built once per (G, k).
    index = valid.sum(dim=1) * (group_size + 1) + correct.sum(dim=1)
    if_correct, if_wrong = _pass_at_k_table(group_size, k, rewards.device)
    advantages = torch.where(correct, if_correct[index].unsqueeze(1), if_wrong[index].unsqueeze(1))
    return torch.where(valid, advantages, 0.0)


@functools.lru_cache(maxsize=32)
def _pass_at_k_table(group_size: int, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`pass_at_k`'s A_correct and A_wrong for every 0 <= c <= n <= group_size, flattened at n (G + 1) + c."""
    n, c = torch.meshgrid(*[torch.arange(group_size + 1, dtype=torch.float64)] * 2, indexing="ij")
    q = _binom_ratio(n - c, k, n, k)  # P(a k-subset has no correct sample) = 1 − R̄
    q_wrong = _binom_ratio(n - c - 1, k - 1, n - 1, k - 1)  # the same, for k-subsets holding a given wrong sample
    sigma = torch.sqrt(q * (1 - q))
    usable = (sigma > 0) & (n >= k) & (c <= n)
    safe_sigma = torch.where(usable, sigma, 1.0)
    if_correct = torch.where(usable, q / safe_sigma, 0.0)
    if_wrong = torch.where(usable, (q - q_wrong) / safe_sigma, 0.0)
    return if_correct.flatten().to(device), if_wrong.flatten().to(device)


def pkpo(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """PKPO (Walder & Karkhanis, 2025, arXiv 2505.15201) with their recommended, lowest-variance baseline s^(loo−1):

        s_i = (1 / C(n, k)) Σ_{|I| = k, i ∈ I} [max_{j ∈ I} r_j − max_{j ∈ I∖{i}} r_j],      A_i = n s_i,

    an unbiased estimator of ∇ maxg@k = ∇ E[max of k samples] (pass@k for 0/1 rewards), since the baseline
    max_{I∖i} never depends on sample i. With the n scorable rewards sorted ascending, r_(1) <= ... <= r_(n),
    it is s_(m) = (1 / C(n, k)) [C(m−1, k−1) r_(m) − Σ_{j<m} C(j−1, k−2) r_(j)], one cumulative sum (ties
    give equal values). Continuous rewards are the paper's maxg@k; for 0/1 rewards a correct sample gets
    n C(n−c, k−1) / C(n, k) and a wrong one 0. The factor n makes the sample-mean loss unbiased. k >= 2 (the
    k−1 baseline is empty at k = 1); a group with fewer than k scorable samples gets 0.
    """
    _check_k(k, "pkpo", smallest=2)
    group_size = rewards.shape[1]
    valid = ~torch.isnan(rewards)
    n = valid.sum(dim=1, keepdim=True)
    # Unscorable samples sort first (as −inf) and get rank <= 0, where every weight is 0.
    ordered, order = torch.sort(torch.where(valid, rewards, -math.inf), dim=1)
    rank = torch.arange(1, group_size + 1, device=rewards.device) - (group_size - n)
    scorable = rank >= 1
    # s_i is unchanged by a common shift of the rewards (the weights below sum to C(m−1, k−1)), so centring
    # first keeps the difference of two large products free of cancellation.
    mean = torch.where(scorable, ordered, 0.0).sum(dim=1, keepdim=True) / n.clamp(min=1)
    centred = torch.where(scorable, ordered - mean, 0.0)
    self_weight, lower_weight = _pkpo_table(group_size, k, rewards.device)
    index = n * (group_size + 1) + rank.clamp(min=0)
    lower = lower_weight[index] * centred
    advantages = self_weight[index] * centred - (torch.cumsum(lower, dim=1) - lower)  # minus Σ over lower ranks
    return torch.empty_like(advantages).scatter_(1, order, advantages)


@functools.lru_cache(maxsize=32)
def _pkpo_table(group_size: int, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """n C(m−1, k−1) / C(n, k) and n C(m−1, k−2) / C(n, k) for every 0 <= n, m <= group_size (0 where m < 1 or
    n < k), flattened at n (G + 1) + m: `pkpo`'s weights of rank m in a group of n, times n."""
    n, m = torch.meshgrid(*[torch.arange(group_size + 1, dtype=torch.float64)] * 2, indexing="ij")
    usable = (n >= k) & (m >= 1) & (m <= n)
    self_weight = torch.where(usable, n * _binom_ratio(m - 1, k - 1, n, k), 0.0)
    lower_weight = torch.where(usable, n * _binom_ratio(m - 1, k - 2, n, k), 0.0)
    return self_weight.flatten().to(device), lower_weight.flatten().to(device)


ESTIMATORS = {"rs_grpo": rs_grpo, "grpo": grpo, "pass_at_k": pass_at_k, "pkpo": pkpo}


def group_advantages(rewards: torch.Tensor, group_size: int, estimator: str = "rs_grpo", **params) -> torch.Tensor:
    """Advantages of `estimator` (a key of `ESTIMATORS`) for contiguous groups of `group_size` rewards.

    `rewards` is 1-D; NaN marks an unscorable sample, which is left out of its group and gets 0. A group whose
    scorable rewards are all equal gets exactly 0 for every estimator. Returns `rewards`' shape and dtype.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"advantage_estimator must be one of {', '.join(map(repr, ESTIMATORS))}, got {estimator!r}.")
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 1:
        raise ValueError(f"`rewards` must be a 1-D tensor, got shape {tuple(getattr(rewards, 'shape', ()))}.")
    if not isinstance(group_size, int) or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"`group_size` must be an integer >= 1 dividing {rewards.numel()}, got {group_size!r}.")
    grouped = rewards.detach().to(torch.float64).view(-1, group_size)
    advantages = ESTIMATORS[estimator](grouped, **params)
    # Exact zeros where there is no signal: float round-off must not invent one.
    silent = torch.isnan(grouped) | zero_variance_groups(grouped.flatten(), group_size).unsqueeze(1)
    advantages = torch.where(silent, 0.0, advantages)
    return advantages.reshape(rewards.shape).to(rewards.dtype)


# ---------------------------------------------------------------- β beyond a constant


def scheduled_beta(step: int, total_steps: int, start: float, end: float, kind: str) -> float:
    """β at optimizer step `step` of a `kind` schedule from `start` (step 0) to `end` (step `total_steps`, held after).

    `"linear"`: start + (end − start) t; `"cosine"`: end + (start − end)(1 + cos π t) / 2, with t = min(step / total_steps, 1).
    `"constant"`: start.
    """
    if kind == "constant":
        return float(start)
    progress = min(max(step, 0) / max(total_steps, 1), 1.0)
    if kind == "linear":
        return float(start + (end - start) * progress)
    if kind == "cosine":
        return float(end + (start - end) * (1 + math.cos(math.pi * progress)) / 2)
    raise ValueError(f"risk_beta_schedule must be one of 'constant', 'linear', 'cosine', 'adaptive', got {kind!r}.")


def _best_at_zero(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards shifted so each group's best is 0 (exp(β · shifted) <= 1 never overflows), 0 where unscorable;
    and the scorable mask as float weights."""
    valid = ~torch.isnan(rewards)
    top = torch.where(valid, rewards, -math.inf).amax(dim=1, keepdim=True)
    return torch.where(valid, rewards - top, 0.0), valid.to(rewards.dtype)


def _ess_fraction(shifted: torch.Tensor, mask: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    weights = torch.exp(beta.unsqueeze(1) * shifted) * mask
    return weights.sum(dim=1) ** 2 / ((weights * weights).sum(dim=1) * mask.sum(dim=1)).clamp(min=1e-300)


def effective_sample_fraction(rewards: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Kish's effective sample size of the weights w = softmax(β r) over each group's scorable samples, over
    their count: (Σ w)² / (n Σ w²), 1 for uniform weights (β = 0), down to (#best samples) / n as β → ∞.
    For β >= 0 (all `adaptive_beta` needs)."""
    return _ess_fraction(*_best_at_zero(rewards.to(torch.float64)), beta.to(torch.float64).view(-1))


def adaptive_beta(rewards: torch.Tensor, target: float, max_beta: float, iterations: int = 30) -> torch.Tensor:
    """Per group, the β in [0, max_beta] at which the exponential weights softmax(β r) have an effective sample
    fraction (`effective_sample_fraction`) equal to `target`, found by bisection (it falls monotonically in β).

    This is the adaptive tempering rule of sequential Monte Carlo (choose the next inverse temperature by
    bisection so that the ESS of the incremental weights hits a set fraction; Jasra, Stephens, Doucet &
    Tsagaris 2011, Scand. J. Stat. 38(1), Sec. 3.2), with β as the inverse temperature and the group as particles.
    The fraction falls from 1 (β = 0) towards m/n (β → ∞, m samples tied for the best), so a group with
    m/n >= `target` (an easy prompt: 12 correct of 16 never goes below 0.75) or one needing more than `max_beta`
    gets the cap `max_beta`, which shrinks its update, as risk seeking does for easy prompts; a constant group
    gets 0 (its weights are uniform for every β, and its advantage is 0 anyway). `target` = 1 gives β = 0
    everywhere: GRPO. 30 halvings locate β to `max_beta` / 2^30 (1e-8 for the default cap).
    """
    shifted, mask = _best_at_zero(rewards.to(torch.float64))
    # exp(β · −inf) = 0 weighs unscorable samples out for every β > 0, which is all the bisection tries.
    shifted = shifted.masked_fill(mask == 0, -math.inf)
    target_count = target * mask.sum(dim=1)

    def too_tilted(shifted, target_count, beta):  # ESS / n < target, as (Σw)² < target n Σw²
        weights = torch.exp(beta.unsqueeze(1) * shifted)
        return weights.sum(dim=1) ** 2 < target_count * (weights * weights).sum(dim=1)

    beta = torch.full((rewards.shape[0],), float(max_beta), dtype=torch.float64, device=rewards.device)
    # Only groups that reach the target below the cap need a search; the rest keep the cap.
    searched = too_tilted(shifted, target_count, beta)
    shifted, target_count = shifted[searched], target_count[searched]
    low, high = torch.zeros_like(beta[searched]), beta[searched]
    for _ in range(iterations):
        middle = (low + high) / 2
        tilted = too_tilted(shifted, target_count, middle)
        high = torch.where(tilted, middle, high)
        low = torch.where(tilted, low, middle)
    beta[searched] = high
    constant = zero_variance_groups(rewards.flatten(), rewards.shape[1])
    return torch.where(constant | (target >= 1), 0.0, beta)


def unbiased_pass_at_k(correct: torch.Tensor, scored: torch.Tensor, k: int) -> torch.Tensor:
    """1 − C(n − c, k) / C(n, k) per group (Chen et al., 2021), with k clipped to the group's n scored samples."""
    n = scored.to(torch.float64)
    k = torch.minimum(torch.full_like(n, float(k)), n).clamp(min=1)
    return torch.where(n > 0, 1 - _binom_ratio(n - correct.to(torch.float64), k, n, k), torch.nan)


# ---------------------------------------------------------------- one method = estimator + its parameters

# `RSGRPOConfig`'s defaults for the fields below (a test keeps them equal), so a method spec needs no TRL import.
METHOD_DEFAULTS = {
    "advantage_estimator": "rs_grpo",
    "risk_beta": 2.0,
    "pass_k": 4,
    "risk_beta_schedule": "constant",
    "risk_beta_end": None,
    "risk_beta_schedule_steps": None,
    "risk_beta_target_ess": 0.5,
    "risk_beta_max": 8.0,
}


def estimator_params(config, rewards: torch.Tensor, step: int, total_steps: int) -> dict:
    """The keyword arguments of `ESTIMATORS[config.advantage_estimator]` for rewards [num_groups, G] at optimizer
    step `step` of `total_steps`: `config` is an `RSGRPOConfig` or any object with the fields of `METHOD_DEFAULTS`."""
    if config.advantage_estimator == "grpo":
        return {}
    if config.advantage_estimator != "rs_grpo":
        return {"k": config.pass_k}
    if config.risk_beta_schedule == "adaptive":
        return {"beta": adaptive_beta(rewards, config.risk_beta_target_ess, config.risk_beta_max)}
    total = config.risk_beta_schedule_steps or total_steps
    return {"beta": scheduled_beta(step, total, config.risk_beta, config.risk_beta_end, config.risk_beta_schedule)}


def parse_method(spec: str) -> SimpleNamespace:
    """A method for `rs-trl bandit --methods` / `rs-trl dilemma --methods`, as `METHOD_DEFAULTS` with changes:
    `grpo`, `rs_grpo:BETA`, `rs_grpo:adaptive[:TARGET_ESS[:MAX_BETA]]`, `rs_grpo:linear|cosine:START:END`,
    `pass_at_k:K`, `pkpo:K`. Its `label` names it in tables and plots."""
    name, *args = spec.split(":")
    options = dict(METHOD_DEFAULTS, advantage_estimator=name, label=spec)
    try:
        if name == "grpo" and not args:
            pass
        elif name in ("pass_at_k", "pkpo") and len(args) == 1:
            options["pass_k"] = int(args[0])
        elif name == "rs_grpo" and len(args) == 1 and args[0] != "adaptive":
            options["risk_beta"] = float(args[0])
        elif name == "rs_grpo" and args and args[0] == "adaptive" and len(args) <= 3:
            options["risk_beta_schedule"] = "adaptive"
            options.update(zip(("risk_beta_target_ess", "risk_beta_max"), map(float, args[1:])))
        elif name == "rs_grpo" and len(args) == 3 and args[0] in ("linear", "cosine"):
            options.update(risk_beta_schedule=args[0], risk_beta=float(args[1]), risk_beta_end=float(args[2]))
        else:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"Method {spec!r} is not one of: grpo, rs_grpo:BETA, rs_grpo:adaptive[:TARGET_ESS[:MAX_BETA]], "
            "rs_grpo:linear:START:END, rs_grpo:cosine:START:END, pass_at_k:K, pkpo:K."
        ) from None
    return SimpleNamespace(**options)
