"""Preemption: a scheduler's signal ends the run with a complete checkpoint instead of killing it mid-step.

Slurm sends SIGTERM (or the signal of `--signal`, e.g. SIGUSR1) before it kills a job at its time limit or on
preemption; Ctrl-C sends SIGINT. The first such signal lets the current optimizer step finish; then every process
agrees on the step (one all-reduce of a flag per step), saves the checkpoint through the Trainer's own
`_save_checkpoint`, and `train()` raises `TrainingInterrupted`, which `rs-trl train` turns into exit code
128 + signal, so a job script can requeue and resume with `--resume_from_checkpoint true`. A second signal ends the
process at once. One within `SAME_EVENT_SECONDS` of the first counts as the same event: a launcher (torchrun,
`accelerate launch`) forwards the scheduler's signal to ranks that already received it themselves.
"""

import os
import signal
import threading
import time

from transformers import TrainerCallback

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
SAME_EVENT_SECONDS = 2.0


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving `checkpoint`; `exit_code` is 128 + the signal's number."""

    def __init__(self, signal_name: str, exit_code: int, step: int, checkpoint: str):
        self.signal_name, self.exit_code, self.step, self.checkpoint = signal_name, exit_code, step, checkpoint
        super().__init__(
            f"{signal_name} received: stopped after step {step} and saved {checkpoint}; continue with "
            "--resume_from_checkpoint true (resume_from_checkpoint=True)."
        )


class CheckpointOnSignal(TrainerCallback):
    """Installs the handlers for the length of `train()`; `any_process(flag)` is True when any process's flag is."""

    def __init__(self, any_process, process_index: int):
        self.any_process = any_process
        self.process_index = process_index
        self.received: signal.Signals | None = None
        self.received_at = 0.0
        self.stopped_at_step: int | None = None
        self._previous: dict = {}

    def install(self) -> None:
        self.received, self.stopped_at_step = None, None
        if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
            self._previous = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _on_signal(self, signum, frame):
        now = time.monotonic()
        if self.received is None:
            self.received, self.received_at = signal.Signals(signum), now
            # os.write, not print: a handler can interrupt a print in progress on the main thread.
            os.write(
                2,
                f"[rank {self.process_index}] {self.received.name} received: finishing this optimizer step, then "
                "saving a checkpoint and stopping (a second signal stops at once).\n".encode(),
            )
        elif now - self.received_at > SAME_EVENT_SECONDS:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    def on_step_end(self, args, state, control, **kwargs):
        if self.any_process(self.received is not None) and state.global_step < state.max_steps:
            self.stopped_at_step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control

    def interruption(self, output_dir: str) -> TrainingInterrupted | None:
        """What stopped the run early, or None if it ran to its end."""
        if self.stopped_at_step is None:
            return None
        received = self.received or signal.SIGTERM  # another process received it; this one follows
        checkpoint = os.path.join(output_dir, f"checkpoint-{self.stopped_at_step}")
        return TrainingInterrupted(received.name, 128 + received.value, self.stopped_at_step, checkpoint)
