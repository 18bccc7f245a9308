"""A user's training script with an advantage estimator of its own, registered at import time, as in every process
that `accelerate launch` starts. Run by tests/test_estimator_registry.py, on 1 or 2 processes.

Writes, per rank, the world size, how often the estimator ran in this process, and whether every advantage that
reached the loss is the estimator's (recomputed here from the rewards of the trained groups).
"""

import json
import sys
from pathlib import Path

import torch
from clean_exit import exit_after_teardown
from datasets import Dataset

from rs_trl import RSGRPOTrainer, register_estimator
from rs_trl.tiny import cpu_training_args

CALLS = []


@register_estimator("best_minus_worst_share", description="(r − min) / (max − min) − 1/2, a user's own estimator")
def best_minus_worst_share(rewards):
    CALLS.append(rewards.shape)
    low = rewards.nan_to_num(torch.inf).amin(dim=1, keepdim=True)
    high = rewards.nan_to_num(-torch.inf).amax(dim=1, keepdim=True)
    return (rewards - low) / (high - low).clamp(min=1e-12) - 0.5


def text_reward(completions, **kwargs):
    return [float(sum(map(ord, completion)) % 5) for completion in completions]


class RecordingTrainer(RSGRPOTrainer):
    checked = []

    def compute_loss(self, model, inputs, *args, **kwargs):
        self.checked.append(inputs["advantages"].clone())
        return super().compute_loss(model, inputs, *args, **kwargs)

    def on_batch_scored(self, mode, rewards, advantages, info, group_size):
        grouped = rewards.view(-1, group_size).double()
        expected = best_minus_worst_share(grouped).flatten()
        constant = (grouped.amax(1) == grouped.amin(1)).repeat_interleave(group_size)
        self.matches = getattr(self, "matches", []) + [
            bool(
                torch.allclose(advantages.double(), torch.where(constant, 0.0, expected).to(advantages.dtype).double())
            )
        ]
        super().on_batch_scored(mode, rewards, advantages, info, group_size)


def main(model_dir: str, out_dir: str):
    dataset = Dataset.from_dict({"prompt": [f"Question {i} :" for i in range(32)]})
    args = cpu_training_args(out_dir, max_steps=2, advantage_estimator="best_minus_worst_share")
    trainer = RecordingTrainer(model=model_dir, reward_funcs=text_reward, args=args, train_dataset=dataset)
    trainer.train()
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    rank = trainer.accelerator.process_index
    record = {
        "world_size": world_size,
        "num_processes": trainer.accelerator.num_processes,
        "estimator_calls": len(CALLS),
        "batches_at_loss": len(trainer.checked),
        "nonzero_at_loss": sum(int(batch.abs().sum() > 0) for batch in trainer.checked),
        "advantages_are_the_estimators": trainer.matches,
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))
    # As rs_trl.train ends: every rank reaches the process-group teardown together.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main(*sys.argv[1:3])
    exit_after_teardown()
