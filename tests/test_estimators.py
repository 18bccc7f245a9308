"""Every advantage estimator against an independent reference, and the behaviour they all share.

The pass@k gradient estimators are proved by exact enumeration: for a softmax policy over a few actions, every
group of G sampled actions (so every reward pattern) is listed with its probability, and the expected update
E[(1/G) Σ_i A_i ∇ log π(a_i)] is compared with the true gradient of pass@k (or max@k) from autograd.
"""

import itertools
import math

import pytest
import torch

from rs_trl.advantages import risk_sensitive_advantages
from rs_trl.estimators import (
    ESTIMATORS,
    adaptive_beta,
    effective_sample_fraction,
    group_advantages,
    scheduled_beta,
    unbiased_pass_at_k,
)

PARAMS = {"rs_grpo": {"beta": 2.0}, "grpo": {}, "pass_at_k": {"k": 2}, "pkpo": {"k": 2}, "rloo": {}, "maxrl": {}}


def expected_update(logits, arm_rewards, group_size, estimator, **params):
    """E over all groups of `group_size` actions drawn from softmax(logits) of (1/G) Σ_i A_i ∇θ log π(a_i)."""
    probs = torch.softmax(logits, dim=0)
    groups = torch.tensor(list(itertools.product(range(len(logits)), repeat=group_size)))
    group_probs = probs[groups].prod(dim=1)
    advantages = group_advantages(arm_rewards[groups].flatten(), group_size, estimator, **params).view_as(groups)
    weight = (group_probs.unsqueeze(1) * advantages / group_size).flatten()
    # ∇θ log π(a) = onehot(a) − π for a softmax policy.
    one_hot_part = torch.zeros_like(logits).scatter_add_(0, groups.flatten(), weight)
    return one_hot_part - probs * weight.sum()


def true_max_at_k_gradient(logits, arm_rewards, k):
    """∇θ E[max of k i.i.d. draws], by autograd through the exact expectation over all k-tuples of actions."""
    logits = logits.detach().requires_grad_()
    probs = torch.softmax(logits, dim=0)
    tuples = torch.tensor(list(itertools.product(range(len(logits)), repeat=k)))
    objective = (probs[tuples].prod(dim=1) * arm_rewards[tuples].amax(dim=1)).sum()
    return torch.autograd.grad(objective, logits)[0]


LOGITS = torch.tensor([0.3, -0.4, 1.1], dtype=torch.float64)


# Two wrong actions for small groups; at G = 8 one wrong action keeps the 2^8 groups (every reward pattern) fast.
@pytest.mark.parametrize(("group_size", "actions"), [(2, 3), (3, 3), (5, 3), (8, 2)])
def test_pkpo_is_unbiased_for_the_pass_at_k_gradient(group_size, actions):
    # Action 0 is the correct one: pass@k = 1 − (1 − π_0)^k.
    arm_rewards = torch.tensor([1.0, 0.0, 0.0][:actions], dtype=torch.float64)
    for k in range(2, group_size + 1):
        logits = LOGITS[:actions].clone().requires_grad_()
        pass_k = 1 - (1 - torch.softmax(logits, dim=0)[0]) ** k
        (true_grad,) = torch.autograd.grad(pass_k, logits)
        got = expected_update(LOGITS[:actions], arm_rewards, group_size, "pkpo", k=k)
        torch.testing.assert_close(got, true_grad, rtol=1e-9, atol=1e-12, msg=f"G={group_size} k={k}")


@pytest.mark.parametrize("group_size", [2, 4, 5])
def test_pkpo_is_unbiased_for_the_max_at_k_gradient_with_continuous_rewards(group_size):
    logits = torch.tensor([0.2, -0.5, 0.9, 0.1], dtype=torch.float64)
    arm_rewards = torch.tensor([0.2, 0.5, 0.5, 1.0], dtype=torch.float64)  # with a tie
    for k in range(2, group_size + 1):
        got = expected_update(logits, arm_rewards, group_size, "pkpo", k=k)
        torch.testing.assert_close(got, true_max_at_k_gradient(logits, arm_rewards, k), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("group_size", [2, 4, 7])
def test_grpo_expected_update_is_the_mean_reward_gradient_shrunk_by_self_inclusion(group_size):
    arm_rewards = torch.tensor([1.0, 0.25, 0.0], dtype=torch.float64)
    # r_i − mean_j r_j includes r_i in its own baseline, hence (G − 1)/G of the pass@1 = E[r] gradient.
    expected = true_max_at_k_gradient(LOGITS, arm_rewards, 1) * (group_size - 1) / group_size
    torch.testing.assert_close(expected_update(LOGITS, arm_rewards, group_size, "grpo"), expected)


def chen_by_enumeration(rewards: list[float], k: int) -> list[float]:
    """Chen et al.'s definition before their closed form: every k-subset is a pseudo-group whose reward is its max;
    each sample's advantage is its mean, over the k-subsets holding it, of (max − mean) / std over all k-subsets."""
    subsets = list(itertools.combinations(range(len(rewards)), k))
    subset_reward = {s: max(rewards[i] for i in s) for s in subsets}
    mean = sum(subset_reward.values()) / len(subsets)
    std = math.sqrt(sum((v - mean) ** 2 for v in subset_reward.values()) / len(subsets))
    if std == 0:
        return [0.0] * len(rewards)
    return [
        sum((subset_reward[s] - mean) / std for s in subsets if i in s) / sum(i in s for s in subsets)
        for i in range(len(rewards))
    ]


@pytest.mark.parametrize("group_size", [2, 3, 5, 8])
def test_pass_at_k_matches_its_subset_definition_on_every_binary_pattern(group_size):
    patterns = torch.tensor(list(itertools.product([0.0, 1.0], repeat=group_size)), dtype=torch.float64)
    for k in range(1, group_size + 1):
        got = group_advantages(patterns.flatten(), group_size, "pass_at_k", k=k).view_as(patterns)
        expected = torch.tensor([chen_by_enumeration(p, k) for p in patterns.tolist()], dtype=torch.float64)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12, msg=f"G={group_size} k={k}")


def test_pass_at_k_at_k_1_is_grpo_with_std_scaling():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    grouped = rewards.view(2, 4)
    expected = (grouped - grouped.mean(1, keepdim=True)) / grouped.std(1, unbiased=False, keepdim=True)
    torch.testing.assert_close(group_advantages(rewards, 4, "pass_at_k", k=1), expected.flatten())


def test_rs_grpo_is_the_existing_advantage_and_takes_one_beta_per_group():
    torch.manual_seed(0)
    rewards = torch.rand(24, dtype=torch.float64)
    torch.testing.assert_close(
        group_advantages(rewards, 8, "rs_grpo", beta=3.0), risk_sensitive_advantages(rewards, 8, 3.0)
    )
    betas = torch.tensor([0.0, 1e-13, 4.0], dtype=torch.float64)
    per_group = group_advantages(rewards, 8, "rs_grpo", beta=betas)
    for g, beta in enumerate(betas.tolist()):
        expected = risk_sensitive_advantages(rewards[8 * g : 8 * g + 8], 8, beta)
        torch.testing.assert_close(per_group[8 * g : 8 * g + 8], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_constant_groups_get_exact_zeros(estimator):
    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, float("nan"), 1.0, 1.0])
    assert torch.equal(group_advantages(rewards, 4, estimator, **PARAMS[estimator]), torch.zeros(12))


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_unscorable_samples_get_zero_and_are_left_out_of_their_group(estimator):
    torch.manual_seed(1)
    group = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    if estimator != "pass_at_k":
        group = group * 0.5 + torch.rand(6, dtype=torch.float64) * 0.5  # continuous rewards where allowed
    with_nan = torch.cat([group[:2], torch.tensor([float("nan")], dtype=torch.float64), group[2:]])
    got = group_advantages(with_nan, 7, estimator, **PARAMS[estimator])
    assert got[2] == 0
    without = group_advantages(group, 6, estimator, **PARAMS[estimator])
    torch.testing.assert_close(torch.cat([got[:2], got[3:]]), without, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dtype_is_kept_and_values_match_float64(estimator, dtype):
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    got = group_advantages(rewards.to(dtype), 4, estimator, **PARAMS[estimator])
    assert got.dtype == dtype and torch.isfinite(got).all()
    reference = group_advantages(rewards.double(), 4, estimator, **PARAMS[estimator])
    torch.testing.assert_close(got.double(), reference, rtol=1e-2, atol=1e-2)


def test_binary_only_estimator_rejects_other_rewards_by_name():
    with pytest.raises(ValueError, match="advantage_estimator='pass_at_k'.*binary"):
        group_advantages(torch.tensor([1.0, 0.5, 0.0, 0.0]), 4, "pass_at_k", k=2)


@pytest.mark.parametrize(
    ("estimator", "params", "match"),
    [
        ("pkpo", {"k": 1}, "pkpo.*k >= 2"),
        ("pass_at_k", {"k": 0}, "pass_at_k.*k >= 1"),
        ("nope", {}, "advantage_estimator must be one of"),
    ],
)
def test_bad_estimator_or_k_names_it(estimator, params, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, estimator, **params)


def test_pkpo_binary_closed_form_and_groups_smaller_than_k():
    # n = 4, c = 1, k = 3: the correct sample gets n C(n−c, k−1) / C(n, k) = 4 · 3 / 4, the wrong ones 0.
    got = group_advantages(torch.tensor([0.0, 1.0, 0.0, 0.0]), 4, "pkpo", k=3)
    torch.testing.assert_close(got, torch.tensor([0.0, 3.0, 0.0, 0.0]), atol=1e-7, rtol=0)
    # Two scorable samples cannot form a 3-subset: no estimate, so no update.
    short = torch.tensor([1.0, float("nan"), 0.0, float("nan")])
    assert torch.equal(group_advantages(short, 4, "pkpo", k=3), torch.zeros(4))


def test_adaptive_beta_hits_the_target_ess_caps_and_keeps_zeros():
    rewards = torch.tensor(
        [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], [0.3, 0.9, 0.1, 0.5], [1.0, 1.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]],
        dtype=torch.float64,
    )
    beta = adaptive_beta(rewards, target=0.6, max_beta=20.0)
    ess = effective_sample_fraction(rewards, beta)
    reachable = torch.tensor([0, 2, 3])
    torch.testing.assert_close(ess[reachable], torch.full((3,), 0.6, dtype=torch.float64), rtol=0, atol=1e-7)
    assert (beta[reachable] > 0).all() and (beta[reachable] < 20).all()
    # Three best samples of four: the fraction only falls from 1 to 3/4 as β → ∞, so this group gets the cap.
    assert beta[1] == 20.0 and beta[4] == 0  # and a constant group gets β = 0
    advantages = group_advantages(rewards.flatten(), 4, "rs_grpo", beta=beta)
    assert torch.equal(advantages[-4:], torch.zeros(4, dtype=torch.float64))


def test_adaptive_beta_is_continuous_into_grpo():
    torch.manual_seed(0)
    rewards = torch.rand(6, 8, dtype=torch.float64)
    grpo = group_advantages(rewards.flatten(), 8, "grpo")
    assert torch.equal(adaptive_beta(rewards, target=1.0, max_beta=8.0), torch.zeros(6, dtype=torch.float64))
    gaps = []
    for target in (0.99, 0.9999, 0.999999):
        beta = adaptive_beta(rewards, target=target, max_beta=8.0)
        gaps.append((group_advantages(rewards.flatten(), 8, "rs_grpo", beta=beta) - grpo).abs().max().item())
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-2


def test_schedules():
    assert scheduled_beta(7, 10, 2.0, 0.0, "constant") == 2.0
    assert scheduled_beta(0, 10, 4.0, 0.0, "linear") == 4.0
    assert scheduled_beta(5, 10, 4.0, 0.0, "linear") == pytest.approx(2.0)
    assert scheduled_beta(5, 10, 4.0, 0.0, "cosine") == pytest.approx(2.0)
    assert scheduled_beta(2, 10, 4.0, 0.0, "cosine") == pytest.approx(4.0 * (1 + math.cos(0.2 * math.pi)) / 2)
    assert scheduled_beta(25, 10, 4.0, 1.0, "cosine") == pytest.approx(1.0)  # held after the last step
    with pytest.raises(ValueError, match="risk_beta_schedule"):
        scheduled_beta(0, 10, 1.0, 0.0, "step")


def test_unbiased_pass_at_k_matches_exact_binomials():
    n = torch.tensor([16, 16, 16, 16, 12, 0, 1000])
    c = torch.tensor([0, 1, 5, 16, 3, 0, 7])
    for k in (1, 4, 16):
        got = unbiased_pass_at_k(c, n, k)
        expected = [
            1 - math.comb(ni - ci, min(k, ni)) / math.comb(ni, min(k, ni)) if ni else math.nan
            for ni, ci in zip(n.tolist(), c.tolist())
        ]
        torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), equal_nan=True)
