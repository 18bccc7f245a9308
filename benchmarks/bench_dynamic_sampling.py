"""Samples generated per kept sample: our shortfall-only refill vs a whole-batch refill policy (verl's DAPO
recipe regenerates a full batch each round), on simulated reward streams where each group is zero-variance
with probability p.

    python benchmarks/bench_dynamic_sampling.py
"""

import argparse

import torch

from rs_trl.dynamic_sampling import take_first


def generated_groups(batch_groups: int, p_zero: float, whole_batch: bool, generator: torch.Generator) -> int:
    """Groups generated to collect `batch_groups` informative ones (one process; no round limit)."""
    missing, generated = torch.tensor([batch_groups]), 0
    while missing.item() > 0:
        round_size = batch_groups if whole_batch else missing.item()
        informative = torch.rand(1, round_size, generator=generator) >= p_zero
        generated += round_size
        missing -= take_first(informative, missing).sum()
    return generated


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-groups", type=int, default=32, help="prompts per step (e.g. 512 samples / 16)")
    parser.add_argument("--steps", type=int, default=2000)
    options = parser.parse_args()
    print(f"{'p(zero var)':>11} | {'ours':>6} | {'whole-batch':>11} | {'whole / ours':>12}")
    for p_zero in (0.25, 0.5, 0.75):
        generator = torch.Generator().manual_seed(0)
        kept = options.batch_groups * options.steps
        ours = sum(generated_groups(options.batch_groups, p_zero, False, generator) for _ in range(options.steps))
        whole = sum(generated_groups(options.batch_groups, p_zero, True, generator) for _ in range(options.steps))
        print(f"{p_zero:>11.2f} | {ours / kept:>6.3f} | {whole / kept:>11.3f} | {whole / ours:>12.3f}")
    print("(samples generated per kept sample; the ideal is 1 / (1 - p))")


if __name__ == "__main__":
    main()
