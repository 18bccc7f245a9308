"""Tests for maxrl() and rloo() against independent per-sample loop references written from the definitions."""

import math
import random
import zlib

import pytest
import torch

from rs_trl.estimators import maxrl, rloo

# ---------------------------------------------------------------------------
# Independent references: plain Python, one sample at a time, straight from the definitions.
# ---------------------------------------------------------------------------


def _rows(rewards: torch.Tensor) -> list[list[float]]:
    return rewards.tolist()


def rloo_reference(rewards: torch.Tensor) -> torch.Tensor:
    """A_i = r_i − average of the *other* scorable rewards in the group; 0 if unscorable or no other scorable one."""
    out = []
    for row in _rows(rewards):
        out_row = []
        for i, r_i in enumerate(row):
            if math.isnan(r_i):
                out_row.append(0.0)
                continue
            others = [r_j for j, r_j in enumerate(row) if j != i and not math.isnan(r_j)]
            if not others:
                out_row.append(0.0)
                continue
            out_row.append(r_i - math.fsum(others) / len(others))
        out.append(out_row)
    return torch.tensor(out, dtype=torch.float64).reshape(rewards.shape)


def maxrl_reference(rewards: torch.Tensor) -> torch.Tensor:
    """A_i = (r_i − mean) / mean over the scorable rewards; 0 if unscorable or mean == 0."""
    out = []
    for row in _rows(rewards):
        scorable = [r for r in row if not math.isnan(r)]
        if any(r < 0 for r in scorable):
            raise ValueError("negative reward")
        mean = math.fsum(scorable) / len(scorable) if scorable else 0.0
        out_row = []
        for r_i in row:
            if math.isnan(r_i) or mean == 0.0:
                out_row.append(0.0)
            else:
                out_row.append((r_i - mean) / mean)
        out.append(out_row)
    return torch.tensor(out, dtype=torch.float64).reshape(rewards.shape)


# ---------------------------------------------------------------------------
# Random groups: sizes 1..16, NaNs, binary / continuous rewards, some fully degenerate groups.
# ---------------------------------------------------------------------------


def _random_rewards(rng: random.Random, num_groups: int, G: int, kind: str, nan_prob: float) -> torch.Tensor:
    rows = []
    for _ in range(num_groups):
        mode = rng.random()
        row = []
        for _ in range(G):
            if kind == "binary":
                r = float(rng.random() < rng.choice([0.05, 0.3, 0.5, 0.9]))
            elif kind == "continuous_nonneg":
                r = rng.random() * rng.choice([1.0, 10.0, 1e-3])
            else:  # "continuous_any"
                r = rng.gauss(0.0, 3.0)
            row.append(r)
        if mode < 0.08:  # all zero
            row = [0.0] * G
        elif mode < 0.16:  # all equal
            row = [row[0]] * G
        elif mode < 0.22:  # all NaN
            row = [float("nan")] * G
        row = [float("nan") if rng.random() < nan_prob else r for r in row]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64).reshape(num_groups, G)


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


CASES = [
    (G, kind, nan_prob, seed)
    for G in range(1, 17)
    for kind in ("binary", "continuous_nonneg", "continuous_any")
    for nan_prob in (0.0, 0.25, 0.6)
    for seed in range(2)
]


def _check_output(adv: torch.Tensor, rewards: torch.Tensor) -> None:
    assert adv.shape == rewards.shape
    assert adv.dtype == torch.float64
    assert not torch.isnan(adv).any()
    assert torch.isfinite(adv).all()
    assert (adv[torch.isnan(rewards)] == 0).all()


@pytest.mark.parametrize("G,kind,nan_prob,seed", CASES)
def test_rloo_matches_loop_reference(G, kind, nan_prob, seed):
    rng = random.Random(_seed(G, kind, nan_prob, seed))
    rewards = _random_rewards(rng, num_groups=40, G=G, kind=kind, nan_prob=nan_prob)
    adv = rloo(rewards)
    _check_output(adv, rewards)
    torch.testing.assert_close(adv, rloo_reference(rewards), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("G,kind,nan_prob,seed", CASES)
def test_rloo_n_over_n_minus_1_identity(G, kind, nan_prob, seed):
    """A_i = n/(n−1)·(r_i − mean) for n ≥ 2 scorable samples, and the advantages sum to 0 per group."""
    rng = random.Random(_seed("id", G, kind, nan_prob, seed))
    rewards = _random_rewards(rng, num_groups=40, G=G, kind=kind, nan_prob=nan_prob)
    adv = rloo(rewards)
    for g, row in enumerate(_rows(rewards)):
        scorable = [r for r in row if not math.isnan(r)]
        n = len(scorable)
        if n < 2:
            assert (adv[g] == 0).all()
            continue
        mean = math.fsum(scorable) / n
        for i, r in enumerate(row):
            expected = 0.0 if math.isnan(r) else n / (n - 1) * (r - mean)
            assert adv[g, i].item() == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert adv[g].sum().item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("G,kind,nan_prob,seed", [c for c in CASES if c[1] != "continuous_any"])
def test_maxrl_matches_loop_reference(G, kind, nan_prob, seed):
    rng = random.Random(_seed("maxrl", G, kind, nan_prob, seed))
    rewards = _random_rewards(rng, num_groups=40, G=G, kind=kind, nan_prob=nan_prob)
    adv = maxrl(rewards)
    _check_output(adv, rewards)
    torch.testing.assert_close(adv, maxrl_reference(rewards), rtol=1e-12, atol=1e-12)
    # Σ_i (r_i − mean)/mean = 0 over a group's scorable samples.
    torch.testing.assert_close(adv.sum(dim=1), torch.zeros(adv.shape[0], dtype=torch.float64), rtol=0, atol=1e-9)


@pytest.mark.parametrize("G", range(1, 17))
def test_maxrl_binary_closed_form(G):
    """Binary group with K successes of n: success → n/K − 1, failure → −1; K = 0 → all 0."""
    for K in range(G + 1):
        row = [1.0] * K + [0.0] * (G - K)
        adv = maxrl(torch.tensor([row], dtype=torch.float64))[0].tolist()
        for r, a in zip(row, adv):
            if K == 0:
                expected = 0.0
            else:
                expected = G / K - 1 if r == 1.0 else -1.0
            assert a == pytest.approx(expected, rel=1e-12, abs=1e-12)


# ---------------------------------------------------------------------------
# Degenerate cases.
# ---------------------------------------------------------------------------

NAN = float("nan")


def _t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_rloo_degenerate_groups():
    rewards = _t(
        [
            [NAN, NAN, NAN],  # n = 0
            [2.5, NAN, NAN],  # n = 1
            [3.0, 3.0, 3.0],  # constant
            [1.0, 4.0, NAN],  # n = 2: A = ±(r_i − r_other)
            [-5.0, NAN, 7.0],  # negative rewards fine
        ]
    )
    expected = _t([[0, 0, 0], [0, 0, 0], [0, 0, 0], [-3.0, 3.0, 0], [-12.0, 0, 12.0]])
    torch.testing.assert_close(rloo(rewards), expected, rtol=0, atol=1e-15)
    assert rloo(_t([[1.7]])).item() == 0.0  # G = 1
    assert rloo(torch.empty(0, 4, dtype=torch.float64)).shape == (0, 4)


def test_maxrl_degenerate_groups():
    rewards = _t(
        [
            [NAN, NAN, NAN],  # n = 0
            [0.7, NAN, NAN],  # n = 1 → r = mean → 0
            [0.0, 0.0, 0.0],  # all zero → 0, not NaN
            [0.0, NAN, 0.0],  # all scorable zero → 0
            [1.0, 1.0, 1.0],  # all success → 0
            [2.0, 2.0, NAN],  # constant non-binary → 0
        ]
    )
    adv = maxrl(rewards)
    assert (adv == 0).all()
    assert maxrl(_t([[0.0]])).item() == 0.0  # G = 1
    assert maxrl(torch.empty(0, 4, dtype=torch.float64)).shape == (0, 4)
    assert maxrl(_t([[-0.0, 1.0]])).tolist() == [[-1.0, 1.0]]  # −0.0 is not negative


def test_maxrl_rejects_negative_rewards():
    with pytest.raises(ValueError, match=r"advantage_estimator='maxrl'"):
        maxrl(_t([[1.0, 0.0], [0.5, -0.1]]))
    with pytest.raises(ValueError, match=r"advantage_estimator='maxrl'"):
        maxrl(_t([[-1.0, -1.0]]))  # mean < 0
    with pytest.raises(ValueError, match=r"advantage_estimator='maxrl'"):
        maxrl(_t([[-1.0, 1.0]]))  # mean == 0 with mixed signs
    # NaN (unscorable) is not a negative reward
    maxrl(_t([[NAN, 1.0, 0.0]]))


def test_maxrl_scale_invariant_not_shift_invariant():
    rng = random.Random(0)
    rewards = _random_rewards(rng, num_groups=50, G=8, kind="continuous_nonneg", nan_prob=0.2)
    torch.testing.assert_close(maxrl(rewards * 7.5), maxrl(rewards), rtol=1e-12, atol=1e-12)
    shifted = maxrl(rewards + 1.0)
    mask = torch.isfinite(rewards).all(dim=1) & (maxrl(rewards).abs().sum(dim=1) > 0)
    assert not torch.allclose(shifted[mask], maxrl(rewards)[mask])


def test_rloo_shift_invariant():
    rng = random.Random(1)
    rewards = _random_rewards(rng, num_groups=50, G=8, kind="continuous_any", nan_prob=0.2)
    torch.testing.assert_close(rloo(rewards + 3.25), rloo(rewards), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# Test vectors from the public implementations' own unit tests.
# ---------------------------------------------------------------------------


def test_maxrl_prime_rl_vectors():
    # prime-rl tests/unit/orchestrator/test_advantage.py::test_max_rl_mean_normalized
    assert maxrl(_t([[1.0, 0.0, 0.0, 0.0]])).tolist() == [[3.0, -1.0, -1.0, -1.0]]
    assert maxrl(_t([[0.0, 0.0]])).tolist() == [[0.0, 0.0]]
    assert maxrl(_t([[1.0, 1.0]])).tolist() == [[0.0, 0.0]]


def test_maxrl_skyrl_vectors():
    # SkyRL tests/backends/skyrl_train/utils/test_ppo_utils.py::test_compute_maxrl_advantage
    # (SkyRL divides by mean + 1e-6; we divide by the mean exactly, so compare at 1e-5 as that test does)
    expected = _t([[1.5 / (4.5 + 1e-6), -1.5 / (4.5 + 1e-6)], [-1.5 / (10.5 + 1e-6), 1.5 / (10.5 + 1e-6)]])
    torch.testing.assert_close(maxrl(_t([[6.0, 3.0], [9.0, 12.0]])), expected, rtol=0, atol=1e-5)


def test_rloo_nemo_rl_vectors():
    # NeMo-RL tests/unit/algorithms/test_utils.py::test_calculate_baseline_and_std_per_prompt_* ; advantage = r − baseline
    torch.testing.assert_close(
        rloo(_t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])), _t([[1 - 2.5, 0.0, 3 - 1.5], [4 - 5.5, 0.0, 6 - 4.5]])
    )
    # single generation per prompt: baseline = reward → advantage 0
    assert rloo(_t([[2.5], [4.0]])).tolist() == [[0.0], [0.0]]
    # mixed prompt sizes [1, 2] and [4, 5, 6] (NaN-padded to G = 3)
    torch.testing.assert_close(rloo(_t([[1.0, 2.0, NAN], [4.0, 5.0, 6.0]])), _t([[-1.0, 1.0, 0.0], [-1.5, 0.0, 1.5]]))
    # masked sample (999.0 marked invalid there; NaN here) is left out of the baseline
    torch.testing.assert_close(rloo(_t([[1.0, NAN, 3.0]])), _t([[1.0 - 3.0, 0.0, 3.0 - 1.0]]))
