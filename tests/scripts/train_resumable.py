"""Run by tests/test_robustness.py: a tiny RS-GRPO run with dynamic sampling that checkpoints every 2 steps.

    python train_resumable.py MODEL_DIR OUT_DIR [--pause-after STEP] [--wait-at STEP] [--resume]

`--pause-after` sleeps after that step's checkpoint so the test can SIGKILL the process between checkpoints.
`--wait-at` writes `waiting` at the start of that step and waits for the test to write `signalled`, so a signal
arrives in the middle of a known step. Exits as `rs-trl train` does: 128 + the signal after a preemption.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from datasets import Dataset
from transformers import TrainerCallback

from rs_trl import RSGRPOTrainer, TrainingInterrupted
from rs_trl.tiny import cpu_training_args


def half_constant(completions, qid, **kwargs):
    return [1.0 if q % 3 == 0 else float(sum(map(ord, c)) % 5) for c, q in zip(completions, qid)]


class PauseAfter(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            Path(args.output_dir, "paused").write_text(str(self.step))
            time.sleep(600)


class WaitAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step - 1:
            Path(args.output_dir, "waiting").write_text(str(self.step))
            deadline = time.monotonic() + 120
            while not Path(args.output_dir, "signalled").exists() and time.monotonic() < deadline:
                time.sleep(0.1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("output_dir")
    parser.add_argument("--pause-after", type=int)
    parser.add_argument("--wait-at", type=int)
    parser.add_argument("--resume", action="store_true")
    options = parser.parse_args()
    dataset = Dataset.from_dict({"prompt": [f"Question {i} :" for i in range(24)], "qid": list(range(24))})
    args = cpu_training_args(
        options.output_dir,
        max_steps=6,
        save_strategy="steps",
        save_steps=2,
        learning_rate=1e-2,
        dynamic_sampling_max_rounds=10,
    )
    callbacks = [PauseAfter(options.pause_after)] if options.pause_after else []
    callbacks += [WaitAt(options.wait_at)] if options.wait_at else []
    trainer = RSGRPOTrainer(
        model=options.model_dir, reward_funcs=half_constant, args=args, train_dataset=dataset, callbacks=callbacks
    )
    try:
        trainer.train(resume_from_checkpoint=True if options.resume else None)
    except TrainingInterrupted as interruption:
        sys.exit(interruption.exit_code)
    Path(options.output_dir, "log_history.json").write_text(json.dumps(trainer.state.log_history))


if __name__ == "__main__":
    main()
