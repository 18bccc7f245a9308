"""Wall time of the full 7-β bandit figure (one seed, 4e5 steps each): `rs_trl.experiments.bandit` vs direct loops.

Baselines, both plain numpy with a Python loop over β (as in the paper's `codes/bandit.py`):
- per-step: one sampled action and one entropy per environment step, an update every 16 steps with a
  Python loop over the 16 actions (the released script's structure);
- per-update: 16 actions sampled at once and a vectorised gradient, one Python iteration per update.
Baselines run on a prefix of the updates and are extrapolated linearly to the full run (the cost per
update is constant: same array sizes every update). Run: `python benchmarks/bench_bandit.py`.
"""

import argparse
import time

import numpy as np

from rs_trl.experiments.bandit import DEFAULT_BETAS, initial_logits, reward_landscape, run_bandit

FULL_STEPS, BATCH, LR = 400_000, 16, 0.1


def _softmax(theta: np.ndarray) -> np.ndarray:
    z = np.exp(theta - theta.max())
    return z / z.sum()


def _weights(rewards: np.ndarray, beta: float) -> np.ndarray:
    if beta == 0:
        return rewards - rewards.mean()
    top = (beta * rewards).max()
    value = (np.log(np.mean(np.exp(beta * rewards - top))) + top) / beta  # (1/β) log mean exp(β r)
    return np.expm1(beta * (rewards - value)) / beta


def per_step_loop(beta: float, steps: int, rng: np.random.Generator) -> None:
    """The released script's structure: act, log reward and entropy every step; update every 16."""
    means, theta = reward_landscape().numpy(), initial_logits().numpy().copy()
    actions, rewards, entropy = [], [], []
    for _ in range(steps):
        policy = _softmax(theta)
        action = rng.choice(len(theta), p=policy)
        actions.append(action)
        rewards.append(means[action])
        if len(actions) == BATCH:
            weights, grad = (
                _weights(np.array(rewards[-BATCH:]), beta),
                np.zeros_like(theta),
            )
            for a, w in zip(actions, weights):
                grad_log_pi = -policy.copy()
                grad_log_pi[a] += 1
                grad += w * grad_log_pi
            theta += LR * grad / BATCH
            actions = []
        p = _softmax(theta)
        entropy.append(-np.sum(p * np.log(p + 1e-9)))


def per_update_loop(beta: float, updates: int, rng: np.random.Generator) -> None:
    """One Python iteration per update: 16 actions at once, vectorised numpy gradient."""
    means, theta = reward_landscape().numpy(), initial_logits().numpy().copy()
    rewards_log, entropy = np.empty((updates, BATCH)), np.empty(updates)
    for u in range(updates):
        policy = _softmax(theta)
        actions = rng.choice(len(theta), size=BATCH, p=policy)
        rewards = means[actions]
        weights = _weights(rewards, beta)
        grad = np.bincount(actions, weights=weights, minlength=len(theta)) - policy * weights.sum()
        theta += LR * grad / BATCH
        rewards_log[u] = rewards
        p = _softmax(theta)
        entropy[u] = -np.sum(p * np.log(p + 1e-9))


def _time(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--subset-updates",
        type=int,
        default=1000,
        help="updates per β timed for the baselines",
    )
    args = parser.parse_args()
    full_updates = FULL_STEPS // BATCH
    scale = full_updates / args.subset_updates
    rng = np.random.default_rng(0)

    ours = _time(run_bandit, FULL_STEPS, list(DEFAULT_BETAS), 1, BATCH, LR, 0, False)
    per_step = scale * sum(_time(per_step_loop, b, args.subset_updates * BATCH, rng) for b in DEFAULT_BETAS)
    per_update = scale * sum(_time(per_update_loop, b, args.subset_updates, rng) for b in DEFAULT_BETAS)

    print(
        f"Full figure: {len(DEFAULT_BETAS)} betas x {FULL_STEPS:,} steps ({full_updates:,} updates of {BATCH}), one seed"
    )
    print(f"  rs_trl.experiments.bandit (all betas vectorised, measured in full): {ours:8.2f} s")
    print(
        f"  per-update numpy loop over betas (timed on {args.subset_updates} updates/beta, x{scale:g} extrapolated): "
        f"{per_update:8.1f} s -> {per_update / ours:6.1f}x"
    )
    print(
        f"  per-step numpy loop, released-script style (timed on {args.subset_updates * BATCH} steps/beta, "
        f"x{scale:g} extrapolated): {per_step:8.1f} s -> {per_step / ours:6.1f}x"
    )


if __name__ == "__main__":
    main()
