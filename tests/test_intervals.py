"""pass@k intervals: per-problem estimator vs brute force, bootstrap against a direct loop, paired tests, transitions."""

import itertools
import random

import pytest

from rs_trl.intervals import bootstrap_interval, paired_difference, pass_at_k_per_problem, transitions


def brute_pass_at_k(n, c, k):
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    return sum(any(s) for s in subsets) / len(subsets)


def test_per_problem_estimate_matches_brute_force():
    n, ks = 6, [1, 2, 3, 6]
    values = pass_at_k_per_problem(range(n + 1), n, ks)
    for c in range(n + 1):
        for j, k in enumerate(ks):
            assert values[c, j].item() == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_bootstrap_interval_matches_a_plain_loop_and_covers_the_estimate():
    rng = random.Random(0)
    correct = [rng.randint(0, 8) for _ in range(40)]
    result = bootstrap_interval(correct, 8, [1, 8], resamples=4000, seed=1)
    for k, (estimate, low, high) in result.items():
        per_problem = [brute_pass_at_k(8, c, k) for c in correct]
        assert estimate == pytest.approx(sum(per_problem) / len(per_problem))
        means = sorted(
            sum(rng.choice(per_problem) for _ in per_problem) / len(per_problem) for _ in range(2000)
        )  # an independent bootstrap with Python's RNG
        assert low == pytest.approx(means[50], abs=0.03) and high == pytest.approx(means[1949], abs=0.03)
        assert low <= estimate <= high
    assert bootstrap_interval(correct, 8, [1], seed=1) == bootstrap_interval(correct, 8, [1], seed=1)  # seeded


def test_paired_difference_separates_a_real_gain_from_noise():
    rng = random.Random(0)
    base = [rng.randint(0, 4) for _ in range(60)]
    better = [min(c + 3, 8) for c in base]
    difference, low, high = paired_difference(base, better, 8, [1])[1]
    assert difference > 0 and low > 0  # beyond noise
    shuffled = base[:]
    rng.shuffle(shuffled)
    _, low, high = paired_difference(base, shuffled, 8, [1])[1]
    assert low < 0 < high  # same distribution, different problems: no claim
    with pytest.raises(ValueError, match="same problems"):
        paired_difference(base, base[:-1], 8, [1])


def test_transitions():
    assert transitions([0, 2, 0, 3, 0], [1, 0, 0, 3, 5]) == ([0, 4], [1])


def test_compare_prints_intervals_paired_differences_and_transitions():
    from rs_trl.reporting import compare_results

    def result(model, correct):
        problems = [{"id": str(i), "answer": "1", "correct": c, "n": 8} for i, c in enumerate(correct)]
        curve = {str(k): bootstrap_interval(correct, 8, [k])[k][0] for k in (1, 8)}
        return {
            "model": model,
            "n": 8,
            "ks": [1, 8],
            "benchmarks": {"bench": {"pass_at_k": curve, "problems": problems}},
            "average": curve,
            "settings": {"n": 8},
        }

    rng = random.Random(0)
    base = [rng.randint(0, 3) if i % 4 else 0 for i in range(60)]
    better = [min(c + 4, 8) for c in base]
    text = compare_results([result("A", base), result("B", better)])
    low, high = bootstrap_interval(base, 8, [1])[1][1:]
    assert f"[{100 * low:.1f}, {100 * high:.1f}]" in text  # A's pass@1 interval in the table
    assert "pass@1: B − A = +" in text and "beyond noise" in text
    assert f"B newly solves {sum(c == 0 for c in base)} problem(s)" in text and "no longer solves 0" in text


def test_seed_problem_bootstrap_widens_with_seed_variance_and_pairs_methods():
    from rs_trl.intervals import seed_problem_bootstrap

    n, ks = 4, [1, 4]
    problems = [0, 1, 2, 3, 4] * 8
    steady = [problems, problems, problems]  # three seeds that agree
    noisy = [[0] * 40, problems, [4] * 40]  # three seeds that disagree, same mean
    steady_k1, noisy_k1 = seed_problem_bootstrap(steady, None, n, ks)[1], seed_problem_bootstrap(noisy, None, n, ks)[1]
    assert steady_k1[0] == pytest.approx(noisy_k1[0]) == pytest.approx(0.5)
    assert noisy_k1[2] - noisy_k1[1] > 2 * (steady_k1[2] - steady_k1[1])
    # b = a + 1 correct everywhere: the paired difference is exactly 0.25 at k=1, with no spread.
    better = [[c + 1 if c < 4 else 4 for c in seed] for seed in steady]
    estimate, low, high = seed_problem_bootstrap(steady, better, n, ks)[1]
    expected = sum((min(c + 1, 4) - c) / 4 for c in problems) / len(problems)
    assert estimate == pytest.approx(expected) and low <= estimate <= high
    with pytest.raises(ValueError, match="same seeds and problems"):
        seed_problem_bootstrap(steady, better[:2], n, ks)
