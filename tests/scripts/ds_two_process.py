"""Run by tests/test_dynamic_sampling.py under `accelerate launch --multi_gpu --num_processes 2`.

Without CUDA, accelerate falls back to torch.distributed on CPU with the gloo backend.
"""

import json
import sys
from pathlib import Path

import torch
from clean_exit import exit_after_teardown
from datasets import Dataset

from rs_trl import RSGRPOTrainer
from rs_trl.tiny import cpu_training_args


def even_prompts_constant(completions, qid, **kwargs):
    return [1.0 if q % 2 == 0 else float(sum(map(ord, c)) % 97) for c, q in zip(completions, qid)]


class RecordingTrainer(RSGRPOTrainer):
    records = []

    def build_training_batch(self, inputs):
        batch = super().build_training_batch(inputs)
        metrics = self._metrics["train"]
        self.records.append(
            {
                "rounds": metrics["dynamic_sampling/rounds"][-1],
                "groups_generated": metrics["dynamic_sampling/groups_generated"][-1],
                "groups_kept": metrics["dynamic_sampling/groups_kept"][-1],
                "refill_drawn": metrics["dynamic_sampling/refill_prompts_drawn"][-1],
                "num_items_in_batch": int(batch["num_items_in_batch"]),
                "local_rows": len(batch["advantages"]),
            }
        )
        return batch


def main(model_dir: str, out_dir: str):
    dataset = Dataset.from_dict({"prompt": [f"Question {i} :" for i in range(32)], "qid": list(range(32))})
    args = cpu_training_args(out_dir, max_steps=3, dynamic_sampling_max_rounds=20)
    trainer = RecordingTrainer(model=model_dir, reward_funcs=even_prompts_constant, args=args, train_dataset=dataset)
    # Launched with 2 processes: both must really be joined (not two single-process runs).
    assert trainer.accelerator.num_processes == torch.distributed.get_world_size() == 2, trainer.accelerator.state
    trainer.train()
    rank = trainer.accelerator.process_index
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(trainer.records))


if __name__ == "__main__":
    main(*sys.argv[1:3])
    exit_after_teardown()
