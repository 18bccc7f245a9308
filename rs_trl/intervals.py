"""Uncertainty of pass@k over problems: bootstrap intervals, paired differences, solved/lost transitions.

pass@k of a model on a benchmark is the mean over problems of the unbiased per-problem estimate
1 − C(n − c, k) / C(n, k) (c correct of n samples). The problems are a sample of what the benchmark stands for, so
the interval resamples problems with replacement (percentile bootstrap, seeded, `resamples` draws); the sampling
noise inside each problem is already averaged by the unbiased estimator. Two models evaluated on the same problems
are compared by a paired bootstrap of the difference: they differ beyond noise when its interval excludes 0.
"""

import math
from collections.abc import Sequence

import torch

from .estimators import unbiased_pass_at_k


def pass_at_k_per_problem(correct: Sequence[int], n: int, ks: Sequence[int]) -> torch.Tensor:
    """[problems, len(ks)] unbiased pass@k estimates, float64."""
    return unbiased_pass_at_k(torch.as_tensor(list(correct)).unsqueeze(1), n, torch.as_tensor(list(ks)).unsqueeze(0))


def _resampled_means(values: torch.Tensor, resamples: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(values), (resamples, len(values)), generator=generator)
    return values[picks].mean(dim=1)  # [resamples, len(ks)]


def _percentiles(draws: torch.Tensor, level: float) -> tuple[list[float], list[float]]:
    tail = (1 - level) / 2
    low = torch.quantile(draws, tail, dim=0)
    high = torch.quantile(draws, 1 - tail, dim=0)
    return low.tolist(), high.tolist()


def bootstrap_interval(
    correct: Sequence[int], n: int, ks: Sequence[int], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[int, tuple[float, float, float]]:
    """pass@k and its bootstrap interval over problems: `{k: (estimate, low, high)}`."""
    if not correct:
        return {k: (math.nan, math.nan, math.nan) for k in ks}
    values = pass_at_k_per_problem(correct, n, ks)
    low, high = _percentiles(_resampled_means(values, resamples, seed), level)
    return {k: (estimate, lo, hi) for k, estimate, lo, hi in zip(ks, values.mean(dim=0).tolist(), low, high)}


def paired_difference(
    correct_a: Sequence[int],
    correct_b: Sequence[int],
    n: int,
    ks: Sequence[int],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[int, tuple[float, float, float]]:
    """pass@k of b minus a on the same problems, with a paired bootstrap interval: `{k: (difference, low, high)}`.

    The difference is beyond noise at that level when the interval does not contain 0."""
    if len(correct_a) != len(correct_b):
        raise ValueError(f"paired comparison needs the same problems: {len(correct_a)} vs {len(correct_b)} problems.")
    differences = pass_at_k_per_problem(correct_b, n, ks) - pass_at_k_per_problem(correct_a, n, ks)
    low, high = _percentiles(_resampled_means(differences, resamples, seed), level)
    return {k: (d, lo, hi) for k, d, lo, hi in zip(ks, differences.mean(dim=0).tolist(), low, high)}


def transitions(correct_a: Sequence[int], correct_b: Sequence[int]) -> tuple[list[int], list[int]]:
    """Problems (indices) newly solved by b (no correct sample from a, at least one from b) and lost by b.

    pass@k > 0 exactly when a problem has a correct sample, for every k <= n, so these are the pass@k transitions."""
    newly_solved = [i for i, (a, b) in enumerate(zip(correct_a, correct_b)) if a == 0 and b > 0]
    lost = [i for i, (a, b) in enumerate(zip(correct_a, correct_b)) if a > 0 and b == 0]
    return newly_solved, lost


def seed_problem_bootstrap(
    correct_a: Sequence[Sequence[int]],
    correct_b: Sequence[Sequence[int]] | None,
    n: int,
    ks: Sequence[int],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[int, tuple[float, float, float]]:
    """pass@k over training seeds and problems (`correct_a[seed][problem]`), or with `correct_b` the paired difference
    b − a, with a percentile bootstrap that resamples seeds and problems (the same picks for a and b): the interval
    carries the seed-to-seed variance as well as the choice of problems. `{k: (estimate, low, high)}`."""
    values = torch.stack([pass_at_k_per_problem(c, n, ks) for c in correct_a])  # [seeds, problems, ks]
    if correct_b is not None:
        if [len(c) for c in correct_b] != [len(c) for c in correct_a]:
            raise ValueError("paired comparison needs the same seeds and problems for both methods.")
        values = torch.stack([pass_at_k_per_problem(c, n, ks) for c in correct_b]) - values
    generator = torch.Generator().manual_seed(seed)
    seeds, problems = values.shape[:2]
    seed_picks = torch.randint(seeds, (resamples, seeds), generator=generator)
    problem_picks = torch.randint(problems, (resamples, problems), generator=generator)
    draws = values[seed_picks[:, :, None], problem_picks[:, None, :]].mean(dim=(1, 2))  # [resamples, ks]
    low, high = _percentiles(draws, level)
    return {k: (estimate, lo, hi) for k, estimate, lo, hi in zip(ks, values.mean(dim=(0, 1)).tolist(), low, high)}
