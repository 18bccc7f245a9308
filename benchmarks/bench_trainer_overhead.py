"""Trainer overhead: RSGRPOTrainer step time / GRPOTrainer step time, same tiny model, data and seed.

Runs of the two trainers alternate (and swap order each round) so machine noise hits both alike; the ratio of
median step times is printed.
Dynamic sampling is off here: this isolates the cost of the risk-sensitive advantage path.

    python benchmarks/bench_trainer_overhead.py [--steps 30] [--rounds 3] [--profile]

`--profile` also prints, from cProfile over one more RSGRPOTrainer run, the milliseconds per step spent in rs_trl's
own per-step work: the advantage (`compute_advantages`) and the `rs/` metrics and reward health (`on_batch_scored`).
"""

import argparse
import cProfile
import os
import pstats
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from datasets import Dataset  # noqa: E402
from transformers import PrinterCallback, TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from rs_trl import RSGRPOConfig, RSGRPOTrainer  # noqa: E402
from rs_trl.tiny import build_tiny_model, cpu_training_args  # noqa: E402


def varied_reward(completions, **kwargs):
    return [float(sum(map(ord, c)) % 7) for c in completions]


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self._start = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def run(trainer_cls, config_class, model_dir, out_dir, steps, **extra):
    args = cpu_training_args(
        out_dir,
        config_class,
        per_device_train_batch_size=16,
        num_generations=8,
        max_completion_length=16,
        max_steps=steps,
        logging_steps=steps,
        scale_rewards="none",
        epsilon_high=0.28,
        **extra,
    )
    dataset = Dataset.from_dict({"prompt": [f"What is {i} + {i}?" for i in range(64)]})
    timer = StepTimer()
    trainer = trainer_cls(
        model=model_dir, reward_funcs=varied_reward, args=args, train_dataset=dataset, callbacks=[timer]
    )
    trainer.remove_callback(PrinterCallback)  # keep the output to the ratio
    trainer.train()
    return timer.times[2:]  # drop warm-up steps


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each trainer")
    parser.add_argument("--profile", action="store_true", help="also profile rs_trl's own per-step work")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(build_tiny_model(os.path.join(tmp, "model")))
        grpo, rs = [], []
        for round_index in range(options.rounds):
            # Alternate which trainer goes first, so warm caches favour neither.
            for name in ("grpo", "rs") if round_index % 2 == 0 else ("rs", "grpo"):
                if name == "grpo":
                    grpo += run(GRPOTrainer, GRPOConfig, model_dir, tmp, options.steps)
                else:
                    rs += run(
                        RSGRPOTrainer,
                        RSGRPOConfig,
                        model_dir,
                        tmp,
                        options.steps,
                        risk_beta=2.0,
                        dynamic_sampling=False,
                    )
    grpo_median, rs_median = statistics.median(grpo), statistics.median(rs)
    print(f"GRPOTrainer   median step: {grpo_median * 1e3:.1f} ms over {len(grpo)} steps")
    print(f"RSGRPOTrainer median step: {rs_median * 1e3:.1f} ms over {len(rs)} steps")
    print(f"overhead ratio (RS-GRPO / GRPO): {rs_median / grpo_median:.3f}  (target <= 1.03)")
    if options.profile:
        profile_own_work(options.steps)


def profile_own_work(steps: int):
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(build_tiny_model(os.path.join(tmp, "model")))
        profiler = cProfile.Profile()
        profiler.enable()
        run(RSGRPOTrainer, RSGRPOConfig, model_dir, tmp, steps, risk_beta=2.0, dynamic_sampling=False)
        profiler.disable()
    cumulative = {name: stat[3] for (_, _, name), stat in pstats.Stats(profiler).stats.items()}
    for hook in ("compute_advantages", "on_batch_scored"):
        print(f"{hook}: {cumulative[hook] / steps * 1e3:.2f} ms per step (cProfile, {steps} steps)")


if __name__ == "__main__":
    main()
