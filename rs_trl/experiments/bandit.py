"""The paper's 100-armed bandit (arXiv 2509.24261, `codes/bandit.py`) and its Lemmas 1-2, vectorised.

A softmax policy over 100 arms starts on a local reward peak (arm 75, reward 0.6) far from the
global one (arm 40, reward 1.0). Sampled REINFORCE with the risk-sensitive advantage is run for
every β and seed at once: the whole sweep is one [β, seed, arm] tensor, so one update of all runs
is a handful of tensor ops instead of a Python loop over β, seeds and actions.

`rs-trl bandit --out DIR` writes DIR/bandit.json and DIR/bandit.png; `rs-trl bandit --lemmas`
prints the exact (all actions enumerated) expected updates behind Lemmas 1 and 2; `rs-trl bandit --bias --out DIR`
prints, and writes to DIR/bandit_bias.json, how far RS-GRPO's expected group update falls short of the exact
gradient of its objective on a binary-reward prompt (`update_to_gradient_ratio`) and which β adaptive β picks for
each number of correct samples in a group (`adaptive_beta_by_correct`).
"""

import argparse
import json
import math
import time
from pathlib import Path

import torch
from matplotlib.ticker import FuncFormatter
from tqdm.auto import tqdm

from ..estimators import (
    ESTIMATORS,
    adaptive_beta,
    effective_sample_fraction,
    estimator_params,
    group_advantages,
    parse_method,
)
from ..plots import pyplot
from ._common import beta_key

N_ARMS = 100
GLOBAL_ARM, LOCAL_ARM = 40, 75
DEFAULT_BETAS = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
MOVING_AVERAGE_WINDOW = 1000  # environment steps, as in the paper's plot
FINAL_WINDOW = 10_000  # environment steps averaged for `final_reward`
ESCAPE_THRESHOLD = 0.9  # moving-average reward that only the global peak can reach (local peak pays 0.6)
_CHUNK = 500  # uniforms are drawn per chunk of updates: one RNG call instead of hundreds


def reward_landscape(n_arms: int = N_ARMS) -> torch.Tensor:
    """Deterministic reward per arm: 0.1 baseline + a 0.9 peak at arm 40 + a 0.5 peak at arm 75 (width 5)."""
    arms = torch.arange(n_arms, dtype=torch.float64)
    global_peak, local_peak = (torch.exp(-((arms - centre) ** 2) / (2 * 5.0**2)) for centre in (GLOBAL_ARM, LOCAL_ARM))
    return 0.1 + 0.9 * global_peak + 0.5 * local_peak


def initial_logits(n_arms: int = N_ARMS) -> torch.Tensor:
    """The paper's initial policy: log of a bump on the local peak plus a 0.1 floor (π(arm 40) ≈ 0.004)."""
    arms = torch.arange(n_arms, dtype=torch.float64)
    probs = torch.exp(-0.5 * ((arms - LOCAL_ARM) / 5.0) ** 2) + 0.1
    logits = torch.log(probs / probs.sum() + 1e-8)
    return logits - logits.mean()


def batched_risk_sensitive_advantages(rewards: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """`risk_sensitive_advantages` for groups along the last dim of `rewards` [n_betas, ..., G], one β per row.

    Same value, (G · softmax(β(r − mean)) − 1) / β = (exp(β r) / mean exp(β r) − 1) / β, with r − mean at
    β = 0, but with a different β per leading index, so a whole β sweep is one tensor op.
    """
    beta = betas.to(rewards.dtype).view(-1, *([1] * (rewards.dim() - 1)))
    is_zero = beta == 0
    return _advantages(rewards, torch.where(is_zero, torch.ones_like(beta), beta), is_zero)


def _advantages(rewards: torch.Tensor, safe_beta: torch.Tensor, is_zero: torch.Tensor) -> torch.Tensor:
    # Split out so the update loop computes the β-only tensors once, not 25,000 times.
    centred = rewards - rewards.mean(dim=-1, keepdim=True)
    ratio = torch.softmax(safe_beta * centred, dim=-1) * rewards.shape[-1]  # exp(βr) / mean exp(βr), overflow-free
    return torch.where(is_zero, centred, (ratio - 1) / safe_beta)


def _validate(steps: int, betas: list[float], seeds: int, batch_size: int, lr: float) -> None:
    if not betas or not all(math.isfinite(b) for b in betas):
        raise ValueError(f"`betas` must be a non-empty list of finite floats, got {betas!r}.")
    if seeds < 1:
        raise ValueError(f"`seeds` (number of seeds) must be >= 1, got {seeds}.")
    if batch_size < 2:
        raise ValueError(f"`batch_size` must be >= 2 (a group of 1 has zero advantage), got {batch_size}.")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"`lr` must be a finite float > 0, got {lr!r}.")
    if steps < batch_size or steps % batch_size:
        raise ValueError(f"`steps` must be a positive multiple of `batch_size` ({batch_size}), got {steps}.")


def run_bandit(
    steps: int = 400_000,
    betas: list[float] = DEFAULT_BETAS,
    seeds: int = 5,
    batch_size: int = 16,
    lr: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Run every (β, seed) pair of the bandit at once.

    Returns `rewards` [n_betas, seeds, steps] (reward of each environment step, float32),
    `entropy` [n_betas, seeds, updates] (entropy of the policy each update samples from) and `final_policy`
    [n_betas, seeds, arms]. The same uniform draws are shared across β (common random numbers), so
    β is the only difference between the runs of one seed.
    """
    betas = [float(b) for b in betas]
    _validate(steps, betas, seeds, batch_size, lr)
    updates = steps // batch_size
    landscape = reward_landscape()
    theta = initial_logits().expand(len(betas), seeds, N_ARMS).clone()
    beta_tensor = torch.tensor(betas, dtype=torch.float64)
    actions_log = torch.empty(updates, len(betas), seeds, batch_size, dtype=torch.int64)
    entropy_log = torch.empty(updates, len(betas), seeds, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)

    # The tensors are tiny: thread start-up costs more than it saves (7x slower measured with 2 threads).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _update_loop(theta, landscape, beta_tensor, lr, actions_log, entropy_log, generator, progress)
    finally:
        torch.set_num_threads(threads)
    return _run_logs(landscape, actions_log, entropy_log, theta)


def _run_logs(landscape, actions_log, entropy_log, theta) -> dict[str, torch.Tensor]:
    """Per run (β or method) and seed: the reward of every sampled action, entropy per update, final policy."""
    updates, runs, seeds, batch_size = actions_log.shape
    rewards = landscape.to(torch.float32)[actions_log]
    return {
        "rewards": rewards.permute(1, 2, 0, 3).reshape(runs, seeds, updates * batch_size),
        "entropy": entropy_log.to(torch.float32).permute(1, 2, 0),
        "final_policy": torch.softmax(theta, dim=-1),
    }


def _update_loop(theta, landscape, beta_tensor, lr, actions_log, entropy_log, generator, progress) -> None:
    """All updates of all runs, in place on `theta`, filling `actions_log` [U, β, S, G] and `entropy_log` [U, β, S].

    Each update is ~12 small tensor ops for every (β, seed) at once; `out=` writes avoid extra copies.
    """
    updates, n_betas, seeds, batch_size = actions_log.shape
    is_zero = (beta_tensor == 0).view(-1, 1, 1)
    safe_beta = torch.where(is_zero, torch.ones_like(beta_tensor.view(-1, 1, 1)), beta_tensor.view(-1, 1, 1))
    step_size = lr / batch_size
    with torch.inference_mode(), tqdm(total=updates, desc="bandit updates", disable=not progress) as bar:
        for start in range(0, updates, _CHUNK):
            stop = min(start + _CHUNK, updates)
            # Same draws for every β (common random numbers). Scaling into [0, 1 − 1e-9) keeps inverse-CDF
            # sampling inside the arms even when float round-off leaves cdf[-1] slightly below 1.
            uniforms = torch.rand(stop - start, 1, seeds, batch_size, generator=generator, dtype=torch.float64)
            uniforms = (uniforms * (1 - 1e-9)).expand(-1, n_betas, -1, -1).contiguous()
            for u in range(start, stop):
                probs = torch.softmax(theta, dim=-1)
                torch.sum(torch.special.entr(probs), dim=-1, out=entropy_log[u])  # entropy before update u
                actions = torch.searchsorted(probs.cumsum(-1), uniforms[u - start], out=actions_log[u])
                weights = _advantages(landscape[actions], safe_beta, is_zero)
                # mean_i w_i ∇log π(a_i) with ∇log π(a) = onehot(a) − π. The −π Σ_i w_i part vanishes: the
                # (risk-sensitive) advantages of a group sum to zero, so only the one-hot part is added.
                theta.scatter_add_(-1, actions, weights * step_size)
            bar.update(stop - start)


BINARY_THRESHOLD = 0.9  # binary-only estimators see 1 for the arms whose reward reaches it (the global peak's 38-42)


def run_methods(
    methods: list[str],
    steps: int = 400_000,
    seeds: int = 5,
    batch_size: int = 16,
    lr: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """`run_bandit` with any advantage estimator of `rs_trl.estimators` in place of the β sweep: one run per
    method spec (`rs_trl.estimators.parse_method`, e.g. `pkpo:4`, `rs_grpo:adaptive`) and seed, same returns with
    methods as the first dim, and the same draws for every method (common random numbers).

    Estimators that need 0/1 rewards (`pass_at_k`, any with `binary_rewards`) learn from r >= 0.9 (the global peak only); the logged reward is
    the landscape's for every method. The update is the general mean_i A_i (onehot(a_i) − π), since estimators
    such as PKPO do not centre their advantages. Schedules run over the whole run.
    """

    options = [parse_method(m) for m in methods]
    _validate(steps, [0.0], seeds, batch_size, lr)
    updates = steps // batch_size
    landscape = reward_landscape()
    theta = initial_logits().expand(len(options), seeds, N_ARMS).clone()
    actions_log = torch.empty(updates, len(options), seeds, batch_size, dtype=torch.int64)
    entropy_log = torch.empty(updates, len(options), seeds, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    step_size = lr / batch_size
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors, as in `run_bandit`
    try:
        with torch.inference_mode(), tqdm(total=updates, desc="bandit updates", disable=not progress) as bar:
            for u in range(updates):
                if u % _CHUNK == 0:  # drawn exactly as `run_bandit` draws them, so a method equals its β run
                    chunk = min(_CHUNK, updates - u)
                    uniforms = torch.rand(chunk, 1, seeds, batch_size, generator=generator, dtype=torch.float64)
                    uniforms = (uniforms * (1 - 1e-9)).expand(-1, len(options), -1, -1).contiguous()
                probs = torch.softmax(theta, dim=-1)
                entropy_log[u] = torch.special.entr(probs).sum(-1)
                actions = torch.searchsorted(probs.cumsum(-1), uniforms[u % _CHUNK])
                actions_log[u] = actions
                weights = torch.empty(actions.shape, dtype=torch.float64)
                for m, option in enumerate(options):
                    rewards = landscape[actions[m]]
                    if ESTIMATORS[option.advantage_estimator].binary_rewards:
                        rewards = (rewards >= BINARY_THRESHOLD).to(torch.float64)
                    params = estimator_params(option, rewards, u, updates)
                    weights[m] = group_advantages(
                        rewards.flatten(), batch_size, option.advantage_estimator, **params
                    ).view_as(rewards)
                theta.scatter_add_(-1, actions, weights * step_size)
                theta -= step_size * probs * weights.sum(-1, keepdim=True)
                bar.update()
    finally:
        torch.set_num_threads(threads)
    return _run_logs(landscape, actions_log, entropy_log, theta)


def moving_average(rewards: torch.Tensor, window: int = MOVING_AVERAGE_WINDOW) -> torch.Tensor:
    """Trailing mean over `window` steps along the last dim; entry i covers steps i+1 .. i+window."""
    window = min(window, rewards.shape[-1])
    cumulative = torch.nn.functional.pad(rewards.to(torch.float64).cumsum(-1), (1, 0))
    return (cumulative[..., window:] - cumulative[..., :-window]) / window


def summarize(rewards: torch.Tensor, betas: list[float | str]) -> dict[str, dict[str, list]]:
    """Per β (or method label): `final_reward` (mean of the last 10k steps) and `escape_step` (first step whose
    trailing 1000-step mean exceeds 0.9, or None) for each seed."""
    final = rewards[..., -min(FINAL_WINDOW, rewards.shape[-1]) :].to(torch.float64).mean(-1)
    averaged = moving_average(rewards)
    window = rewards.shape[-1] - averaged.shape[-1] + 1
    escaped = averaged > ESCAPE_THRESHOLD
    first = escaped.to(torch.int8).argmax(-1)
    results = {}
    for i, beta in enumerate(betas):
        results[beta if isinstance(beta, str) else beta_key(beta)] = {
            "final_reward": [round(v, 4) for v in final[i].tolist()],
            "escape_step": [
                int(f) + window if e else None for f, e in zip(first[i].tolist(), escaped[i].any(-1).tolist())
            ],
        }
    for name, seeds in first_to_escape(results).items():
        results[name]["first_to_escape"] = seeds
    return results


def first_to_escape(results: dict[str, dict[str, list]]) -> dict[str, list[int]]:
    """Per run, the seeds (indices) on which it escaped first among all runs of the table (ties count for each;
    a seed on which no run escaped counts for none)."""
    names = list(results)
    seeds = len(results[names[0]]["escape_step"])
    firsts = {name: [] for name in names}
    for seed in range(seeds):
        steps = {name: results[name]["escape_step"][seed] for name in names}
        escaped = [step for step in steps.values() if step is not None]
        for name, step in steps.items():
            if escaped and step == min(escaped):
                firsts[name].append(seed)
    return firsts


def plot(run: dict[str, torch.Tensor], betas: list[float | str], path: Path) -> None:
    """Three panels: landscape + initial policy, moving-average reward per β (or method label), entropy per β
    (seed mean, min-max band)."""
    plt = pyplot()

    fig, (ax_land, ax_reward, ax_entropy) = plt.subplots(1, 3, figsize=(18, 5))
    arms = torch.arange(N_ARMS)
    ax_land.plot(arms, reward_landscape(), color="black", label="reward")
    ax_land.set(xlabel="arm", ylabel="reward", title="Reward landscape and initial policy")
    ax_policy = ax_land.twinx()
    ax_policy.fill_between(
        arms,
        torch.softmax(initial_logits(), -1),
        alpha=0.3,
        color="tab:orange",
        label="initial π",
    )
    ax_policy.set_ylabel("initial policy probability")
    handles = ax_land.get_legend_handles_labels()[0] + ax_policy.get_legend_handles_labels()[0]
    ax_land.legend(handles=handles, loc="upper left")

    averaged = moving_average(run["rewards"])
    stride = max(1, averaged.shape[-1] // 2000)  # ~2000 points per curve keeps the PNG light
    reward_steps = torch.arange(averaged.shape[-1])[::stride] + (run["rewards"].shape[-1] - averaged.shape[-1] + 1)
    batch_size = run["rewards"].shape[-1] // run["entropy"].shape[-1]
    entropy_stride = max(1, run["entropy"].shape[-1] // 2000)
    entropy_steps = torch.arange(run["entropy"].shape[-1])[::entropy_stride] * batch_size
    colors = [plt.cm.tab10(i % 10) for i in range(len(betas))]
    for i, (beta, color) in enumerate(zip(betas, colors)):
        for ax, series, steps in (
            (ax_reward, averaged[i, :, ::stride], reward_steps),
            (ax_entropy, run["entropy"][i, :, ::entropy_stride], entropy_steps),
        ):
            label = beta if isinstance(beta, str) else f"β={beta_key(beta)}"
            ax.plot(steps, series.mean(0), color=color, label=label)
            if series.shape[0] > 1:
                ax.fill_between(
                    steps,
                    series.min(0).values,
                    series.max(0).values,
                    color=color,
                    alpha=0.15,
                )
    ax_reward.set(
        xlabel="environment steps",
        ylabel=f"reward ({MOVING_AVERAGE_WINDOW}-step moving average)",
        title="Reward",
    )
    ax_entropy.set(
        xlabel="environment steps",
        ylabel="policy entropy (nats)",
        title="Policy entropy",
    )
    for ax in (ax_reward, ax_entropy):
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
    ax_reward.legend(loc="lower right")
    n_seeds = run["rewards"].shape[1]
    advantage = "each method's advantage" if isinstance(betas[0], str) else "risk-sensitive advantage"
    fig.suptitle(f"100-armed bandit, sampled REINFORCE with {advantage} ({n_seeds} seeds: mean, min-max band)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- Lemmas 1 and 2 (exact expected updates)


def expected_update(logits: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """Exact policy gradient of J_β = (1/β) log E_π[exp(β r)] (J_0 = E_π[r]) for a softmax policy, all actions enumerated.

    Component i is π_i (r_i − E r) at β = 0 and (π_i / β)(exp(β r_i) / E exp(β r) − 1) otherwise: the
    population version of the (risk-sensitive) advantage. Computed in log space so β = 1e4 is fine.
    """
    log_probs = torch.log_softmax(logits.to(torch.float64), dim=-1)
    probs = log_probs.exp()
    rewards = rewards.to(torch.float64)
    if beta == 0:
        return probs * (rewards - (probs * rewards).sum())
    log_ratio = beta * rewards - torch.logsumexp(log_probs + beta * rewards, dim=-1)
    return probs * torch.expm1(log_ratio) / beta


def optimal_probability_change(logits: torch.Tensor, rewards: torch.Tensor, beta: float, lr: float = 0.1) -> float:
    """Change of π(best arm) after one exact expected step θ ← θ + lr ∇J_β."""
    best = int(rewards.argmax())
    before = torch.softmax(logits.to(torch.float64), -1)[best]
    after = torch.softmax(logits.to(torch.float64) + lr * expected_update(logits, rewards, beta), -1)[best]
    return float(after - before)


def smallest_improving_beta(
    logits: torch.Tensor, rewards: torch.Tensor, lr: float = 0.1, max_beta: float = 1e4
) -> float:
    """Smallest β >= 0 (to 1e-3 · max(β, 1), by bisection) above which the expected RS step raises π(best arm).

    Returns 0.0 when the standard step already raises it. Lemma 2 says such a β exists for every policy;
    raises ValueError if none is found below `max_beta`.
    """
    if optimal_probability_change(logits, rewards, 0.0, lr) > 0:
        return 0.0
    if optimal_probability_change(logits, rewards, max_beta, lr) <= 0:
        raise ValueError(f"No β <= max_beta={max_beta} raises the optimal arm's probability.")
    low, high = 0.0, max_beta
    while high - low > 1e-3 * max(high, 1.0):
        middle = (low + high) / 2
        low, high = (middle, high) if optimal_probability_change(logits, rewards, middle, lr) <= 0 else (low, middle)
    return high


LEMMA_SHARPNESS = 2.0  # Lemma 1's policy: the initial policy at temperature 1/2 (π ∝ π0², more mass on arm 75)


def lemma_numbers(lr: float = 0.1) -> dict[str, dict[str, float]]:
    """Lemmas 1-2 on the bandit's landscape, for its initial policy π0 and for π0 sharpened (π ∝ π0²).

    For π0 the standard step still raises π(arm 40), barely; once the policy leans harder on the local
    peak, the standard step lowers it (Lemma 1) while every β above a threshold raises it (Lemma 2).
    """
    rewards = reward_landscape()
    numbers = {}
    for name, logits in (
        ("initial", initial_logits()),
        ("sharpened", LEMMA_SHARPNESS * initial_logits()),
    ):
        probs = torch.softmax(logits, -1)
        policy = {
            "pi_optimal": float(probs[GLOBAL_ARM]),
            "pi_local": float(probs[LOCAL_ARM]),
            "expected_reward": float((probs * rewards).sum()),
            "smallest_improving_beta": smallest_improving_beta(logits, rewards, lr),
        }
        for beta in DEFAULT_BETAS[:5]:
            policy[f"delta_pi_optimal_beta_{beta_key(beta)}"] = optimal_probability_change(logits, rewards, beta, lr)
        numbers[name] = policy
    return numbers


def _print_lemmas(numbers: dict[str, dict[str, float]], lr: float) -> None:
    print(
        f"Lemmas 1-2: exact expected update (all {N_ARMS} arms enumerated), one step of lr {lr}, optimal arm {GLOBAL_ARM}"
    )
    titles = {
        "initial": "initial policy π0",
        "sharpened": f"sharpened policy π ∝ π0^{LEMMA_SHARPNESS:g}",
    }
    for name, policy in numbers.items():
        print(
            f"  {titles[name]}: π(optimal) = {policy['pi_optimal']:.3e}, π(local arm {LOCAL_ARM}) = {policy['pi_local']:.3f}, "
            f"E[r] = {policy['expected_reward']:.4f}"
        )
        for key, value in policy.items():
            if key.startswith("delta_pi_optimal_beta_"):
                beta = key.removeprefix("delta_pi_optimal_beta_")
                print(f"    β={beta:>3}: Δπ(optimal) = {value:+.3e} ({'lowers' if value < 0 else 'raises'} it)")
        threshold = policy["smallest_improving_beta"]
        print(
            f"    every β > {threshold:.3f} raises π(optimal)" if threshold else "    every β >= 0 raises π(optimal)"
        )
    sharp = numbers["sharpened"]
    print(
        f"  Lemma 1: on the sharpened policy the standard update lowers π(optimal) ({sharp['delta_pi_optimal_beta_0']:+.3e}).\n"
        f"  Lemma 2: a large enough β raises it (here β > {sharp['smallest_improving_beta']:.2f})."
    )


# ---------------------------------------------------------------- RS-GRPO's group update vs its objective's gradient

BIAS_PROBABILITIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.9)
BIAS_BETAS = (0.0, 1.0, 2.0, 4.0, 8.0)


def objective_gradient(p: float, beta: float) -> float:
    """dJ/dp for a binary reward (1 correct, 0 not) answered correctly with probability p, where
    J = (1/β) log E[e^{βr}] = (1/β) log(1 + p (e^β − 1)) (J = p at β = 0): (e^β − 1) / (β (1 + p (e^β − 1)))."""
    if beta == 0:
        return 1.0
    return math.expm1(beta) / (beta * (1 + p * math.expm1(beta)))


def expected_update_coefficient(p: float, beta: float, group_size: int = 16) -> float:
    """The expected RS-GRPO update of one prompt, E[(1/n) Σ_i A_i ∇log π(y_i)], as a multiple of ∇p.

    Exact: the number of correct samples c is Binomial(n, p), and given c the advantages are those of
    `rs_trl.estimators.group_advantages` (the trainer's estimator) for c ones and n − c zeros. Whatever the
    parametrisation, E[∇log π(y) | y correct] = ∇p / p and E[∇log π(y) | y wrong] = −∇p / (1 − p), so the
    update is (1/n) E_c[c A_correct / p − (n − c) A_wrong / (1 − p)] ∇p. Groups with c = 0 or n get A = 0.
    """
    n = group_size
    counts = torch.arange(n + 1)
    groups = (torch.arange(n).unsqueeze(0) < counts.unsqueeze(1)).to(torch.float64)  # row c: c ones, then zeros
    advantages = group_advantages(groups.flatten(), n, "rs_grpo", beta=beta).view(n + 1, n)
    a_correct, a_wrong = advantages[:, 0], advantages[:, -1]
    c = counts.to(torch.float64)
    probability = torch.exp(
        torch.lgamma(torch.tensor(n + 1.0, dtype=torch.float64)) - torch.lgamma(c + 1) - torch.lgamma(n - c + 1)
    ) * (p**c * (1 - p) ** (n - c))
    per_group = (c * a_correct / p - (n - c) * a_wrong / (1 - p)) / n
    return float((probability * per_group).sum())


def update_to_gradient_ratio(p: float, beta: float, group_size: int = 16) -> float:
    """E[RS-GRPO update] / ∇J on a binary-reward prompt solved with probability p, groups of `group_size`.

    Both are multiples of ∇p, so this is one number per (p, β, n), the same in every parametrisation. GRPO (β = 0)
    gives (n − 1)/n for every p (the group mean includes the sample itself). For β > 0 it falls on hard prompts:
    a group that holds a correct answer has mean_j e^{βr_j} >= (e^β + n − 1)/n, far above the true
    E[e^{βr}] = 1 + p(e^β − 1) when p << 1/n, so the correct answer's weight e^{βr}/mean is too small.
    """
    if not 0 < p < 1:
        raise ValueError(f"`p` must be in (0, 1), got {p!r}.")
    return expected_update_coefficient(p, beta, group_size) / objective_gradient(p, beta)


def bias_table(
    probabilities=BIAS_PROBABILITIES, betas=BIAS_BETAS, group_size: int = 16
) -> dict[str, dict[str, float]]:
    """`update_to_gradient_ratio` for every β (outer key, `beta_key`) and p (inner key)."""
    return {
        beta_key(beta): {f"{p:g}": round(update_to_gradient_ratio(p, beta, group_size), 4) for p in probabilities}
        for beta in betas
    }


def adaptive_beta_by_correct(
    group_size: int = 16, target: float = 0.5, max_beta: float = 8.0, constant_beta: float = 2.0
) -> dict[str, dict[str, float]]:
    """For a binary-reward group with c of `group_size` correct (c = 1 .. n − 1): the β that `risk_beta_schedule=
    "adaptive"` picks (`rs_trl.estimators.adaptive_beta`), the effective sample fraction it reaches, the advantages of
    a correct and a wrong sample and the group's update mass Σ_i |A_i|; and the same mass at β = `constant_beta`."""
    n = group_size
    rows = {}
    for c in range(1, n):
        rewards = torch.tensor([[1.0] * c + [0.0] * (n - c)], dtype=torch.float64)
        beta = adaptive_beta(rewards, target, max_beta)
        advantages = group_advantages(rewards.flatten(), n, "rs_grpo", beta=beta)
        constant = group_advantages(rewards.flatten(), n, "rs_grpo", beta=constant_beta)
        rows[str(c)] = {
            "beta": round(beta.item(), 4),
            "ess_fraction": round(effective_sample_fraction(rewards, beta).item(), 4),
            "advantage_correct": round(advantages[0].item(), 4),
            "advantage_wrong": round(advantages[-1].item(), 4),
            "update_mass": round(advantages.abs().sum().item(), 4),
            f"update_mass_beta_{beta_key(constant_beta)}": round(constant.abs().sum().item(), 4),
        }
    return rows


def _print_adaptive(rows: dict[str, dict[str, float]], group_size: int, target: float, max_beta: float) -> None:
    print(
        f"\nrisk_beta_schedule='adaptive' (target {target:g}, cap {max_beta:g}) on a group with c of {group_size} "
        "correct (0/1 rewards): β, effective sample fraction, advantages, update mass Σ|A| (and at constant β)"
    )
    for c, row in rows.items():
        print(f"  c={c:>2}: " + ", ".join(f"{name} {value:.4f}" for name, value in row.items()))


def _print_bias(table: dict[str, dict[str, float]], group_size: int) -> None:
    print(
        f"E[RS-GRPO update] / exact gradient of J = (1/β) log E[exp(β r)], binary reward, groups of {group_size}, "
        "by β (rows) and p = P(correct) (columns)"
    )
    probabilities = list(next(iter(table.values())))
    print(f"{'':>8}" + "".join(f"{'p=' + p:>9}" for p in probabilities))
    for beta, row in table.items():
        print(f"{'β=' + beta:>8}" + "".join(f"{value:>9.4f}" for value in row.values()))


# ---------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rs-trl bandit", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bandit"),
        help="output directory (default: ./bandit)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=400_000,
        help="environment steps per run (default: 4e5)",
    )
    parser.add_argument(
        "--betas",
        type=float,
        nargs="+",
        default=list(DEFAULT_BETAS),
        help="risk parameters β",
    )
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds per β (default: 5)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="actions sampled per update (default: 16)",
    )
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate (default: 0.1)")
    parser.add_argument(
        "--methods",
        nargs="+",
        help="compare advantage estimators instead of β values, e.g. grpo rs_grpo:2 rs_grpo:adaptive pass_at_k:4 "
        "pkpo:4 rs_grpo:cosine:8:0 (writes bandit_methods.json/png)",
    )
    parser.add_argument("--lemmas", action="store_true", help="print the Lemma 1-2 numbers and exit")
    parser.add_argument(
        "--bias",
        action="store_true",
        help="print RS-GRPO's expected update / the exact gradient of its objective (binary reward, groups of "
        "--batch-size) and the adaptive β of each number of correct samples, write OUT/bandit_bias.json and exit",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.lemmas:
        _print_lemmas(lemma_numbers(args.lr), args.lr)
        return 0
    if args.bias:
        table = bias_table(group_size=args.batch_size)
        _print_bias(table, args.batch_size)
        adaptive = adaptive_beta_by_correct(args.batch_size)
        _print_adaptive(adaptive, args.batch_size, 0.5, 8.0)
        args.out.mkdir(parents=True, exist_ok=True)
        record = {
            "config": {"group_size": args.batch_size, "rewards": "binary: 1 correct, 0 otherwise"},
            "definition": "E[(1/n) sum_i A_i grad log pi(y_i)] / grad (1/beta) log E[exp(beta r)], both multiples "
            "of grad p; exact sum over c ~ Binomial(n, p) with the trainer's rs_grpo advantages",
            "ratio_by_beta_then_p": table,
            "adaptive_beta_by_correct": {"target_ess": 0.5, "max_beta": 8.0, "groups": adaptive},
        }
        (args.out / "bandit_bias.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"-> {args.out}/bandit_bias.json")
        return 0
    _validate(args.steps, args.betas, args.seeds, args.batch_size, args.lr)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.methods:
        run = run_methods(args.methods, args.steps, args.seeds, args.batch_size, args.lr, args.seed)
    else:
        run = run_bandit(args.steps, args.betas, args.seeds, args.batch_size, args.lr, args.seed)
    elapsed = time.perf_counter() - started
    runs, name = (args.methods, "bandit_methods") if args.methods else (args.betas, "bandit")
    config = {
        "arms": N_ARMS,
        "steps": args.steps,
        "updates": args.steps // args.batch_size,
        "betas": args.betas,
        "methods": args.methods,
        "seeds": args.seeds,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "moving_average_window": MOVING_AVERAGE_WINDOW,
        "final_window": min(FINAL_WINDOW, args.steps),
        "escape_threshold": ESCAPE_THRESHOLD,
        "wall_time_s": round(elapsed, 2),
    }
    if args.methods:
        config["binary_threshold"] = BINARY_THRESHOLD
    results = summarize(run["rewards"], runs)
    (args.out / f"{name}.json").write_text(json.dumps({"config": config, "results": results}, indent=2) + "\n")
    plot(run, runs, args.out / f"{name}.png")
    for beta, result in results.items():
        escapes = [s for s in result["escape_step"] if s is not None]
        mean_final = sum(result["final_reward"]) / len(result["final_reward"])
        print(
            f"{beta if args.methods else 'β=' + beta:>22}: final reward {mean_final:.3f} (per seed {result['final_reward']}), "
            f"escaped {len(escapes)}/{len(result['escape_step'])} seeds"
            + (f", median escape step {sorted(escapes)[len(escapes) // 2]}" if escapes else "")
            + (f", first to escape on seeds {result['first_to_escape']}" if result["first_to_escape"] else "")
        )
    print(
        f"{args.steps} steps x {len(runs)} {'methods' if args.methods else 'betas'} x {args.seeds} seeds in "
        f"{elapsed:.1f} s -> {args.out}/{name}.json, {name}.png"
    )
    return 0
