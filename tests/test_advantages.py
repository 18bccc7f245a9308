import math

import pytest
import torch

from rs_trl.advantages import risk_sensitive_advantages
from tests.helpers import reference


@pytest.mark.parametrize("beta", [-8.0, -1.0, 0.0, 0.5, 2.0, 4.0, 16.0])
@pytest.mark.parametrize("group_size", [2, 4, 16])
def test_matches_float64_reference(beta, group_size):
    torch.manual_seed(0)
    rewards = torch.rand(8 * group_size, dtype=torch.float64)
    rewards[::3] = torch.round(rewards[::3])  # mix binary and continuous rewards
    got = risk_sensitive_advantages(rewards, group_size, beta)
    torch.testing.assert_close(got, reference(rewards.tolist(), group_size, beta), rtol=1e-10, atol=1e-12)


def test_binary_rewards_closed_form():
    # One correct out of four at β=2: A_correct = (4 e^2 / (e^2 + 3) − 1) / 2, A_wrong = (4 / (e^2 + 3) − 1) / 2.
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    got = risk_sensitive_advantages(rewards, 4, 2.0)
    e2 = math.exp(2.0)
    expected = torch.tensor([(4 * e2 / (e2 + 3) - 1) / 2] + [(4 / (e2 + 3) - 1) / 2] * 3)
    torch.testing.assert_close(got, expected)
    # Risk seeking gives the rare success more credit than GRPO's centring does (0.75).
    assert got[0] > 0.75


def test_beta_zero_is_exact_centering():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.25, 3.0, 3.0, 2.0, 1.0])
    got = risk_sensitive_advantages(rewards, 4, 0.0)
    expected = rewards.view(2, 4) - rewards.view(2, 4).mean(dim=1, keepdim=True)
    assert torch.equal(got, expected.flatten())


def test_continuous_as_beta_goes_to_zero():
    rewards = torch.rand(64, dtype=torch.float64)
    at_zero = risk_sensitive_advantages(rewards, 8, 0.0)
    for beta in (1e-3, 1e-6, 1e-9, -1e-9, 1e-11):
        gap = (risk_sensitive_advantages(rewards, 8, beta) - at_zero).abs().max().item()
        assert gap < abs(beta) + 1e-14  # |dA/dβ| <= 1/2 for rewards in [0, 1]


@pytest.mark.parametrize("beta", [-1e3, -5.0, 1e-3, 5.0, 1e3])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
def test_extreme_rewards_and_beta_stay_finite_and_correct(beta, scale):
    torch.manual_seed(1)
    rewards = (torch.rand(64, dtype=torch.float64) * 2 - 1) * scale
    got = risk_sensitive_advantages(rewards, 16, beta)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, reference(rewards.tolist(), 16, beta), rtol=1e-8, atol=1e-10)


def test_constant_groups_are_exactly_zero():
    rewards = torch.tensor([1e4] * 4 + [0.3] * 4 + [-7.0] * 4 + [1.0, 0.0, 1.0, 0.0])
    for beta in (-100.0, 0.0, 2.0, 1e3):
        got = risk_sensitive_advantages(rewards, 4, beta)
        assert torch.all(got[:12] == 0)
        assert torch.all(got[12:] != 0)


def test_nan_rewards_are_excluded_and_get_zero():
    nan = float("nan")
    rewards = torch.tensor([1.0, nan, 0.0, 0.0, nan, nan, nan, nan, 2.0, nan, 2.0, 2.0])
    got = risk_sensitive_advantages(rewards, 4, 2.0)
    assert torch.isfinite(got).all()
    assert got[1] == 0 and torch.all(got[4:] == 0)  # unscorable sample, all-NaN group, constant valid rewards
    # The NaN does not move the other samples' statistics: same as the group without it.
    torch.testing.assert_close(got[[0, 2, 3]], risk_sensitive_advantages(torch.tensor([1.0, 0.0, 0.0]), 3, 2.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_keeps_shape_and_dtype(dtype):
    rewards = torch.rand(32).to(dtype)
    got = risk_sensitive_advantages(rewards, 8, 4.0)
    assert got.shape == rewards.shape and got.dtype == dtype and torch.isfinite(got).all()
    expected = reference(rewards.double().tolist(), 8, 4.0).to(dtype)
    torch.testing.assert_close(got, expected)


def test_negative_beta_is_risk_averse():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    # Credit of the rare success relative to a failure: 3 for GRPO, more when risk seeking, less when averse.
    credit = [(a[0] / -a[1]).item() for a in (risk_sensitive_advantages(rewards, 4, b) for b in (4.0, 0.0, -4.0))]
    assert credit[0] > credit[1] == 3.0 > credit[2] > 0


@pytest.mark.parametrize(
    ("rewards", "group_size", "beta", "field"),
    [
        (torch.zeros(2, 4), 4, 1.0, "rewards"),
        (torch.zeros(6), 4, 1.0, "group_size"),
        (torch.zeros(4), 0, 1.0, "group_size"),
        (torch.zeros(4), 2, float("nan"), "beta"),
        (torch.zeros(4), 2, float("inf"), "beta"),
    ],
)
def test_bad_input_names_the_argument(rewards, group_size, beta, field):
    with pytest.raises(ValueError, match=field):
        risk_sensitive_advantages(rewards, group_size, beta)


@pytest.mark.parametrize("beta", [0.5, 2.0, 8.0])
def test_gradient_of_rs_objective_is_advantage_weighted_score(beta):
    """∇θ (1/β) log E_π[exp(β r)] equals E_π[A ∇θ log π] with A from a group whose empirical law is π."""
    counts = torch.tensor([1, 2, 3, 2])  # π = counts / 8, realised exactly by a group of 8 samples
    logits = torch.log(counts.double() / counts.sum()).requires_grad_()
    arm_rewards = torch.tensor([1.0, 0.2, 0.0, 0.6], dtype=torch.float64)

    probs = torch.softmax(logits, dim=0)
    objective = torch.log((probs * torch.exp(beta * arm_rewards)).sum()) / beta
    (true_grad,) = torch.autograd.grad(objective, logits)

    actions = torch.repeat_interleave(torch.arange(4), counts)
    advantages = risk_sensitive_advantages(arm_rewards[actions], len(actions), beta)
    log_probs = torch.log_softmax(logits, dim=0)[actions]
    (pg_grad,) = torch.autograd.grad((advantages * log_probs).mean(), logits)
    torch.testing.assert_close(pg_grad, true_grad, rtol=1e-10, atol=1e-12)
