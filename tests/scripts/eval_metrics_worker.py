"""Run by tests/test_diversity.py, alone or under `accelerate launch` with 2 processes: a short run with an
eval_dataset. Each process records the (prompt, completion) pairs its reward function saw, and what every logging
callback (what `report_to` integrations are) received, so the test can recompute the metrics from outside."""

import json
import sys
from pathlib import Path

from clean_exit import exit_after_teardown
from datasets import Dataset
from transformers import TrainerCallback

from rs_trl import RSGRPOTrainer
from rs_trl.rewards import completion_text
from rs_trl.tiny import cpu_training_args

SEEN: list = []


def digit_reward(prompts, completions, **kwargs):
    SEEN.extend([prompt, completion_text(completion)] for prompt, completion in zip(prompts, completions))
    return [float(any(ch.isdigit() for ch in completion_text(c))) for c in completions]


class RecordLogs(TrainerCallback):
    logs: list = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


def main(model_dir: str, out_dir: str):
    train = Dataset.from_dict({"prompt": [f"Train {i}: 3 + {i} =" for i in range(16)]})
    evaluation = Dataset.from_dict({"prompt": [f"Eval {i}: {i} + 4 =" for i in range(6)]})
    args = cpu_training_args(
        out_dir,
        max_steps=2,
        eval_strategy="steps",
        eval_steps=2,
        num_generations_eval=4,
        per_device_eval_batch_size=4,  # x 2 processes: groups of 4 split across them
        temperature=1.5,
        log_pass_at_k=[1, 2, 4],
    )
    trainer = RSGRPOTrainer(
        model=model_dir,
        reward_funcs=digit_reward,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        callbacks=[RecordLogs()],
    )
    trainer.train()
    rank = trainer.accelerator.process_index
    Path(out_dir, f"seen{rank}.json").write_text(json.dumps(SEEN))
    if trainer.accelerator.is_main_process:
        Path(out_dir, "logs.json").write_text(json.dumps(RecordLogs.logs))
    trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(*sys.argv[1:3])
    exit_after_teardown()
