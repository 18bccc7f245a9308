"""Run by tests/test_watchdog.py under `accelerate launch --multi_gpu --num_processes 2`: the reward blocks on rank 1,
so rank 0 waits in TRL's all_gather. Both ranks must print a stall report; the test then kills both."""

import os
import sys
import time
from pathlib import Path

import torch
from datasets import Dataset

from rs_trl import RSGRPOTrainer
from rs_trl.tiny import cpu_training_args


def blocks_on_rank_1(completions, **kwargs):
    if torch.distributed.get_rank() == 1:
        time.sleep(600)  # as a reward stuck on a dead remote grader; the test kills the processes long before
    return [float(len(c)) for c in completions]


def main(model_dir: str, out_dir: str):
    # torch's launcher starts each worker in a session of its own: the test kills the workers by these ids.
    Path(out_dir, f"worker{os.environ['RANK']}.pid").write_text(str(os.getpid()))
    dataset = Dataset.from_dict({"prompt": [f"Question {i} :" for i in range(16)]})
    args = cpu_training_args(out_dir, max_steps=1, dynamic_sampling=False, stall_warning_seconds=3)
    trainer = RSGRPOTrainer(model=model_dir, reward_funcs=blocks_on_rank_1, args=args, train_dataset=dataset)
    assert trainer.accelerator.num_processes == torch.distributed.get_world_size() == 2, trainer.accelerator.state
    trainer.train()


if __name__ == "__main__":
    main(*sys.argv[1:3])
