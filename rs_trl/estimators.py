"""Advantage estimators: a registry users can add to, the built-in estimators, and the β variants of RS-GRPO.

Every estimator is a vectorised function `(rewards [num_groups, G] float64, **params) -> advantages [num_groups, G]`,
where a NaN reward marks an unscorable sample, registered with `register_estimator(name, ...)` together with how its
parameters are read from the config, its config validation and its model-card line (`EstimatorSpec`). The config,
the trainer, the model card and `--methods` parsing read the spec; none branches on estimator names.
`group_advantages` is the one entry point: it adds what every estimator shares (input checks, NaN samples get 0,
groups whose rewards are all equal get exactly 0, binary-reward checks, the caller's dtype).

A user adds one in their own script, before building the config, and selects it with `advantage_estimator`:

    @register_estimator("centred_median", description="r − median of the group")
    def centred_median(rewards):
        return rewards - rewards.nanmedian(dim=1, keepdim=True).values

The advantages are meant for a loss that averages over samples, as TRL's does: a method that is an unbiased
estimator of ∇ pass@k is scaled here so that E[(1/G) Σ_i A_i ∇ log π(y_i)] = ∇ pass@k.
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
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
        others = ", ".join(repr(other) for other, spec in ESTIMATORS.items() if not spec.binary_rewards)
        raise ValueError(
            f"advantage_estimator={name!r} is defined for binary rewards (0 or 1) only, got e.g. "
            f"{rewards[bad][:3].tolist()}. Use one of {others} for other rewards."
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


def rloo(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO's leave-one-out baseline (Kool et al., 2019; Ahmadian et al., 2024, arXiv 2402.14740; NeMo-RL's default
    baseline, without NeMo-RL's leave-one-out std scaling: TRL's `scale_rewards` applies on top instead):

        A_i = r_i − (1/(n−1)) Σ_{j≠i} r_j = n/(n−1) · (r_i − mean_j r_j),   n ≥ 2 scorable samples.

    The baseline of sample i leaves it out, so it never depends on sample i's action. Any rewards. A group with
    fewer than 2 scorable samples has no baseline and gets 0 (NeMo-RL's and SkyRL's choice too).
    """
    valid, count = _counts(rewards)
    filled = torch.where(valid, rewards, 0.0)
    baseline = (filled.sum(dim=1, keepdim=True) - filled) / (count - 1).clamp(min=1)
    return torch.where(valid & (count >= 2), rewards - baseline, 0.0)


def maxrl(rewards: torch.Tensor) -> torch.Tensor:
    """MaxRL (Tajwar, Zeng et al., 2026, arXiv 2602.02710), as prime-rl (`MaxRLAlgorithm`) and SkyRL
    (`compute_maxrl_advantage`) compute it:

        A_i = (r_i − mean_j r_j) / mean_j r_j.

    Dividing by the group mean (the pass rate p̂ for 0/1 rewards) rather than the std weights rarely solved prompts
    by ~1/p̂, the gradient of a truncated maximum-likelihood objective. Meant without std scaling (leave
    `scale_rewards="none"`). Non-negative rewards only (the paper derives it for binary ones): a negative reward
    raises, since the mean could then be 0 or change sign. A group whose mean is 0 gets 0, as in prime-rl; no
    epsilon (SkyRL divides by mean + 1e-6).
    """
    valid, count = _counts(rewards)
    filled = torch.where(valid, rewards, 0.0)
    if bool((filled < 0).any()):
        raise ValueError(
            "advantage_estimator='maxrl' requires non-negative rewards (MaxRL, arXiv 2602.02710, divides by the "
            f"group mean and is derived for binary rewards); got a reward of {filled.min().item()}."
        )
    mean = filled.sum(dim=1, keepdim=True) / count.clamp(min=1)
    positive = mean > 0
    return torch.where(valid & positive, (rewards - mean) / torch.where(positive, mean, 1.0), 0.0)


def group_advantages(rewards: torch.Tensor, group_size: int, estimator: str = "rs_grpo", **params) -> torch.Tensor:
    """Advantages of the registered `estimator` for contiguous groups of `group_size` rewards.

    `rewards` is 1-D; NaN marks an unscorable sample, which is left out of its group and gets 0. A group whose
    scorable rewards are all equal gets exactly 0 for every estimator. Returns `rewards`' shape and dtype.
    """
    spec = estimator_spec(estimator)
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 1:
        raise ValueError(f"`rewards` must be a 1-D tensor, got shape {tuple(getattr(rewards, 'shape', ()))}.")
    if not isinstance(group_size, int) or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"`group_size` must be an integer >= 1 dividing {rewards.numel()}, got {group_size!r}.")
    grouped = rewards.detach().to(torch.float64).view(-1, group_size)
    if spec.binary_rewards:
        _require_binary(grouped, estimator)
    advantages = spec.function(grouped, **params)
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
    m/n >= `target` (with 0/1 rewards and `target` 0.5: every group at least half correct, e.g. 8 of 16) or one
    needing more than `max_beta` gets the cap `max_beta`, which shrinks its update, as risk seeking does for easy
    prompts (at 16 samples, 7 correct gets β 2.89 and 8 correct β 8: `rs-trl bandit --bias`); a constant group
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


def unbiased_pass_at_k(correct, scored, k) -> torch.Tensor:
    """1 − C(n − c, k) / C(n, k) (Chen et al., 2021) for c correct of n scored samples, elementwise with broadcasting
    (tensors or numbers), k clipped to n; NaN where n = 0. The one pass@k estimator of rs_trl: training metrics,
    evaluation and intervals all call it. In log space (no binomial is ever formed), float64."""
    n = torch.as_tensor(scored, dtype=torch.float64)
    c = torch.as_tensor(correct, dtype=torch.float64, device=n.device)
    k = torch.minimum(torch.as_tensor(k, dtype=torch.float64, device=n.device), n).clamp(min=1)
    # log of P(a k-subset holds no correct sample); −inf (pass@k = 1) when n − c < k.
    log_all_wrong = _log_binom(n - c, k) - _log_binom(n, k)
    return torch.where(n > 0, -torch.expm1(log_all_wrong), torch.nan)


def default_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n (n itself included): the x axis of the paper's pass@k curves."""
    ks = [2**i for i in range(int(math.log2(n)) + 1)]
    return ks if ks[-1] == n else ks + [n]


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class EstimatorSpec:
    """Everything rs_trl needs to know about one advantage estimator.

    function: `(rewards [num_groups, G] float64, **params) -> advantages`, NaN rewards marking unscorable samples.
    params: `(config, rewards [num_groups, G], step, total_steps) -> dict`, the keyword arguments of `function` at
        optimizer step `step`, read from the config (an `RSGRPOConfig` or any object with its fields).
    validate: `(config) -> None`, raising a ValueError that names the field, called by `RSGRPOConfig.__post_init__`.
    binary_rewards: True if defined for 0/1 rewards only (checked on every call; experiments binarise for it).
    config_fields: the config fields it reads, shown in the model card's settings table.
    description: one line for the model card (what it computes, and its source).
    method_syntax / parse_args: how `--methods` spells it (`"pkpo:K"`), and `(["8"]) -> config overrides`.
    """

    name: str
    function: Callable[..., torch.Tensor]
    params: Callable[..., dict]
    validate: Callable[..., None]
    binary_rewards: bool
    config_fields: tuple[str, ...]
    description: str
    method_syntax: str
    parse_args: Callable[[list[str]], dict]


ESTIMATORS: dict[str, EstimatorSpec] = {}


def _no_params(config, rewards, step, total_steps) -> dict:
    return {}


def _no_validation(config) -> None:
    pass


def _no_method_args(args: list[str]) -> dict:
    if args:
        raise ValueError
    return {}


def register_estimator(
    name: str,
    *,
    params: Callable[..., dict] = _no_params,
    validate: Callable[..., None] = _no_validation,
    binary_rewards: bool = False,
    config_fields: tuple[str, ...] = (),
    description: str = "",
    method_syntax: str | None = None,
    parse_args: Callable[[list[str]], dict] = _no_method_args,
):
    """Decorator registering an advantage estimator under `name` (see `EstimatorSpec` for the arguments); select it
    with `advantage_estimator=name`. Register it in every process (at import time of the training script) and
    before building the config, which checks the name. A name is registered once: a second registration raises."""
    if not (isinstance(name, str) and name.isidentifier()):
        raise ValueError(f"An estimator name must be a Python identifier, got {name!r}.")

    def register(function):
        if name in ESTIMATORS:
            raise ValueError(f"Advantage estimator {name!r} is already registered ({ESTIMATORS[name].function}).")
        ESTIMATORS[name] = EstimatorSpec(
            name,
            function,
            params,
            validate,
            binary_rewards,
            tuple(config_fields),
            description or (function.__doc__ or name).strip().splitlines()[0],
            method_syntax or name,
            parse_args,
        )
        return function

    return register


def estimator_spec(name: str) -> EstimatorSpec:
    if name not in ESTIMATORS:
        raise ValueError(f"advantage_estimator must be one of {', '.join(map(repr, ESTIMATORS))}, got {name!r}.")
    return ESTIMATORS[name]


def estimator_params(config, rewards: torch.Tensor, step: int, total_steps: int) -> dict:
    """The keyword arguments of `config.advantage_estimator`'s function for rewards [num_groups, G] at optimizer
    step `step` of `total_steps`."""
    return estimator_spec(config.advantage_estimator).params(config, rewards, step, total_steps)


def is_number(value) -> bool:
    """A real number given as such (not a bool, not a string): what config checks accept."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_integer(value, smallest: int) -> bool:
    return is_number(value) and float(value).is_integer() and value >= smallest


def _rs_grpo_params(config, rewards, step, total_steps) -> dict:
    if config.risk_beta_schedule == "adaptive":
        return {"beta": adaptive_beta(rewards, config.risk_beta_target_ess, config.risk_beta_max)}
    total = config.risk_beta_schedule_steps or total_steps
    return {"beta": scheduled_beta(step, total, config.risk_beta, config.risk_beta_end, config.risk_beta_schedule)}


def _validate_rs_grpo(config) -> None:
    schedules = ("constant", "linear", "cosine", "adaptive")
    if config.risk_beta_schedule not in schedules:
        raise ValueError(
            f"risk_beta_schedule must be one of {', '.join(map(repr, schedules))}, got {config.risk_beta_schedule!r}."
        )
    if config.risk_beta_schedule in ("linear", "cosine"):
        end = config.risk_beta_end
        if not (is_number(end) and math.isfinite(end)):
            raise ValueError(
                f"risk_beta_end must be a finite float for a {config.risk_beta_schedule} schedule, got {end!r}."
            )
    steps = config.risk_beta_schedule_steps
    if steps is not None and not is_integer(steps, 1):
        raise ValueError(f"risk_beta_schedule_steps must be an integer >= 1 or None, got {steps!r}.")
    target = config.risk_beta_target_ess
    if not (is_number(target) and 0 < target <= 1):
        raise ValueError(f"risk_beta_target_ess must be a fraction in (0, 1], got {target!r}.")
    cap = config.risk_beta_max
    if not (is_number(cap) and math.isfinite(cap) and cap > 0):
        raise ValueError(f"risk_beta_max must be a finite float > 0, got {cap!r}.")


def _parse_rs_grpo(args: list[str]) -> dict:
    if len(args) == 1 and args[0] != "adaptive":
        return {"risk_beta": float(args[0])}
    if args and args[0] == "adaptive" and len(args) <= 3:
        return {"risk_beta_schedule": "adaptive"} | dict(
            zip(("risk_beta_target_ess", "risk_beta_max"), map(float, args[1:]))
        )
    if len(args) == 3 and args[0] in ("linear", "cosine"):
        return {"risk_beta_schedule": args[0], "risk_beta": float(args[1]), "risk_beta_end": float(args[2])}
    raise ValueError


def _pass_k_params(config, rewards, step, total_steps) -> dict:
    return {"k": config.pass_k}


def _pass_k_validator(smallest: int):
    def validate(config) -> None:
        if not is_integer(config.pass_k, smallest):
            raise ValueError(f"pass_k must be an integer >= {smallest}, got {config.pass_k!r}.")
        if config.pass_k > config.num_generations:
            raise ValueError(f"pass_k ({config.pass_k}) must be <= num_generations ({config.num_generations}).")

    return validate


def _parse_pass_k(args: list[str]) -> dict:
    if len(args) != 1:
        raise ValueError
    return {"pass_k": int(args[0])}


register_estimator(
    "rs_grpo",
    params=_rs_grpo_params,
    validate=_validate_rs_grpo,
    config_fields=("risk_beta", "risk_beta_schedule"),
    description="the risk-sensitive advantage (1/β)·(exp(β·r) / mean exp(β·r) − 1) (arXiv 2509.24261)",
    method_syntax="rs_grpo:BETA, rs_grpo:adaptive[:TARGET_ESS[:MAX_BETA]], rs_grpo:linear|cosine:START:END",
    parse_args=_parse_rs_grpo,
)(rs_grpo)
register_estimator("grpo", description="GRPO's r − mean of the group (arXiv 2402.03300)")(grpo)
register_estimator(
    "rloo", description="RLOO's r − mean of the other samples of the group (Kool et al. 2019; arXiv 2402.14740)"
)(rloo)
register_estimator(
    "maxrl", description="MaxRL's (r − mean) / mean of the group, non-negative rewards (arXiv 2602.02710)"
)(maxrl)
register_estimator(
    "pass_at_k",
    params=_pass_k_params,
    validate=_pass_k_validator(1),
    binary_rewards=True,
    config_fields=("pass_k",),
    description="Pass@k Training's analytic pass@k advantage, binary rewards (arXiv 2508.10751)",
    method_syntax="pass_at_k:K",
    parse_args=_parse_pass_k,
)(pass_at_k)
register_estimator(
    "pkpo",
    params=_pass_k_params,
    validate=_pass_k_validator(2),
    config_fields=("pass_k",),
    description="PKPO's unbiased pass@k / max@k gradient with the k−1 baseline (arXiv 2505.15201)",
    method_syntax="pkpo:K",
    parse_args=_parse_pass_k,
)(pkpo)


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


def parse_method(spec: str) -> SimpleNamespace:
    """A method for `rs-trl bandit --methods` / `rs-trl dilemma --methods`, as `METHOD_DEFAULTS` with the changes
    its estimator's `parse_args` reads from the spec (`grpo`, `rs_grpo:4`, `pkpo:8`, ...). Its `label` names it in
    tables and plots."""
    name, *args = spec.split(":")
    try:
        changes = ESTIMATORS[name].parse_args(args) if name in ESTIMATORS else None
    except ValueError:
        changes = None
    if changes is None:
        raise ValueError(
            f"Method {spec!r} is not one of: {', '.join(spec.method_syntax for spec in ESTIMATORS.values())}."
        )
    return SimpleNamespace(**dict(METHOD_DEFAULTS, advantage_estimator=name, label=spec) | changes)
