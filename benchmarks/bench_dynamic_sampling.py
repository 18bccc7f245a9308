"""Dynamic sampling at cluster cost: generation rounds per step and samples per trained sample, three policies.

On a GPU cluster a generation round costs about its longest completion, so sequential rounds are the main cost,
then samples. Policies, each on the same simulated reward streams (a group is zero-variance with probability p):
  - shortfall: each refill round asks for exactly the groups still missing, per process (rs_trl before predictive
    refill; the largest shortfall over processes sets the round size).
  - whole-batch: verl's DAPO recipe: every round generates a whole new batch, pooled over processes.
  - predictive (ours, `rs_trl.dynamic_sampling.DynamicSampler`): the main round already holds the groups the step is
    expected to need (running estimate of p) plus ~1 sd; informative groups pooled over processes (global quota).
    Also shown without the global quota ("predictive, per-process") to measure what pooling buys.
Then a real run of RSGRPOTrainer (tiny model, CPU) with the same p, counting rounds from outside (reward calls).

    python benchmarks/bench_dynamic_sampling.py              # 8 processes x 4 groups (the paper recipes' layout)
"""

import argparse
import os
import tempfile
import zlib

import torch

from rs_trl.dynamic_sampling import DynamicSampler, RefillSampler, groups_to_generate


def shortfall(processes, groups, p, max_rounds, rng):
    missing, rounds, generated = torch.full((processes,), groups), 0, 0
    while True:
        size = int(missing.max()) if rounds else groups
        informative = (torch.rand(processes, size, generator=rng) >= p).sum(dim=1)
        generated += processes * size
        missing = (missing - informative).clamp(min=0)
        if missing.max() == 0 or rounds == max_rounds:
            return rounds + 1, generated, int(missing.sum())
        rounds += 1


def whole_batch(processes, groups, p, max_rounds, rng):
    quota, found, rounds = processes * groups, 0, 0
    while True:
        found += int((torch.rand(processes * groups, generator=rng) >= p).sum())
        if found >= quota or rounds == max_rounds:
            return rounds + 1, (rounds + 1) * quota, max(quota - found, 0)
        rounds += 1


def predictive_per_process(state, processes, groups, p, max_rounds, rng):
    """Our round sizing with a per-process quota (no pooling); `state` carries the estimate across steps."""
    missing = torch.full((processes,), groups)
    size, rounds, generated, zero_variance = groups_to_generate(groups, state["p"], 1), 0, 0, 0
    while True:
        zero = torch.rand(processes, size, generator=rng) < p
        generated += processes * size
        zero_variance += int(zero.sum())
        missing = (missing - (~zero).sum(dim=1)).clamp(min=0)
        if missing.max() == 0 or rounds == max_rounds:
            break
        size, rounds = groups_to_generate(int(missing.max()), state["p"], 1), rounds + 1
    observed = zero_variance / generated
    state["p"] = observed if state["p"] == 0 else state["p"] + 0.3 * (observed - state["p"])
    return rounds + 1, generated, int(missing.sum())


def predictive(sampler, processes, groups, p, max_rounds, rng):
    size = groups + sampler.start_step()
    while size:
        size = sampler.observe(torch.rand(processes, size, generator=rng) < p)
    generated = sampler.generated_groups
    _, padded = sampler.finish_step()
    return sampler.rounds, generated, padded


def simulate(policy, processes, groups, p, steps, max_rounds, seed=0):
    rng = torch.Generator().manual_seed(seed)
    if policy == "predictive":
        sampler = DynamicSampler(RefillSampler(1, 0), processes, groups, max_rounds)
        run = lambda: predictive(sampler, processes, groups, p, max_rounds, rng)  # noqa: E731
    elif policy == "predictive, per-process":
        state = {"p": 0.0}
        run = lambda: predictive_per_process(state, processes, groups, p, max_rounds, rng)  # noqa: E731
    else:
        step = {"shortfall": shortfall, "whole-batch": whole_batch}[policy]
        run = lambda: step(processes, groups, p, max_rounds, rng)  # noqa: E731
    results = [run() for _ in range(steps)]
    rounds = sum(r for r, _, _ in results) / steps
    samples = sum(g for _, g, _ in results) / (steps * processes * groups)
    padded_steps = sum(pad > 0 for _, _, pad in results) / steps
    return rounds, samples, padded_steps


def real_run(p: float, steps: int) -> tuple[float, float]:
    """RSGRPOTrainer on the tiny model: rounds per step and samples per trained sample, counted by the reward.

    The first step is left out: it has no estimate of p yet, so it refills like the shortfall policy."""
    from datasets import Dataset
    from transformers import PrinterCallback

    from rs_trl import RSGRPOTrainer
    from rs_trl.tiny import build_tiny_model, cpu_training_args

    calls = []  # (step, samples) per reward call, i.e. per generation round

    def reward(completions, zero_variance, trainer_state, **kwargs):
        calls.append((trainer_state.global_step, len(completions)))
        # Distinct sampled completions hash apart, so a non-constant prompt's group has variance.
        return [1.0 if zero else float(zlib.crc32(c.encode()) % 97) for c, zero in zip(completions, zero_variance)]

    rng = torch.Generator().manual_seed(1)
    dataset = Dataset.from_dict(
        {
            "prompt": [f"Question {i}:" for i in range(512)],
            "zero_variance": (torch.rand(512, generator=rng) < p).tolist(),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(os.path.join(tmp, "model"))
        args = cpu_training_args(tmp, max_steps=steps, per_device_train_batch_size=32, num_generations=4)
        trainer = RSGRPOTrainer(model=str(model), reward_funcs=reward, args=args, train_dataset=dataset)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    measured = [samples for step, samples in calls if step > 0]
    return len(measured) / (steps - 1), sum(measured) / ((steps - 1) * args.generation_batch_size)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--groups-per-process", type=int, default=4, help="recipes: 8 x 8 samples / 16 per group")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--max-rounds", type=int, default=8)
    parser.add_argument("--real-steps", type=int, default=31, help="tiny-model steps per p (0 skips the real run)")
    options = parser.parse_args()
    policies = ("shortfall", "whole-batch", "predictive, per-process", "predictive")
    print(
        f"Simulation: {options.processes} processes x {options.groups_per_process} groups, {options.steps} steps, "
        f"max {options.max_rounds} refill rounds. rounds = generation rounds per step; samples = generated per "
        "trained sample (x ideal 1/(1-p)); padded = steps that had to pad."
    )
    print(f"{'p':>5} | {'policy':<24} | {'rounds':>6} | {'samples':>7} | {'x ideal':>7} | {'padded':>6}")
    for p in (0.25, 0.5, 0.75):
        for policy in policies:
            rounds, samples, padded = simulate(
                policy, options.processes, options.groups_per_process, p, options.steps, options.max_rounds
            )
            print(
                f"{p:>5.2f} | {policy:<24} | {rounds:>6.2f} | {samples:>7.2f} | {samples * (1 - p):>7.2f} | "
                f"{padded:>6.1%}"
            )
    if options.real_steps:
        print(
            f"\nReal run: RSGRPOTrainer, tiny model, 1 process x 8 groups of 4, {options.real_steps} steps per p "
            "(the first, before any estimate, left out)"
        )
        print(f"{'p':>5} | {'rounds':>6} | {'samples':>7} | {'x ideal':>7} | simulated rounds / samples (same layout)")
        for p in (0.25, 0.5, 0.75):
            rounds, samples = real_run(p, options.real_steps)
            sim_rounds, sim_samples, _ = simulate("predictive", 1, 8, p, options.steps, options.max_rounds)
            print(
                f"{p:>5.2f} | {rounds:>6.2f} | {samples:>7.2f} | {samples * (1 - p):>7.2f} | "
                f"{sim_rounds:.2f} / {sim_samples:.2f}"
            )
    print("targets: rounds <= 1.3 and samples <= 1.25 x ideal (ideal samples per trained sample = 1/(1-p))")


if __name__ == "__main__":
    main()
