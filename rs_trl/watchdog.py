"""Stall watchdog: training that makes no progress for `stall_warning_seconds` is reported on every rank, never killed.

A reward that blocks on one rank leaves the other ranks waiting in TRL's `all_gather` forever, with no output
anywhere. As in TRL nothing is stopped, but nothing is silent either: each rank prints its rank, the global step, how
long it has made no progress, the reward function it is inside (if any) and the Python stack of its training thread.

A daemon thread prints that report: it can read the training thread's stack (`sys._current_frames()`) while that
thread waits in a collective, which releases the GIL. If the GIL is held (a C call that never releases it), the thread
cannot run; `faulthandler.dump_traceback_later` then dumps every thread's stack from C, one period later. Progress is
a training step beginning or ending (`on_step_begin`, `on_substep_end`, `on_step_end`), an evaluation step, or a
guarded reward call returning (`REWARD_ACTIVITY.finished`). A healthy run prints nothing.
"""

import faulthandler
import sys
import threading
import time
import traceback

from transformers import TrainerCallback

from .reward_guard import REWARD_ACTIVITY


class StallWatchdog(TrainerCallback):
    """Report, on this rank, a training run that made no progress for `seconds` (None: never), and again every
    `seconds` while it lasts."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self._progress = 0.0  # time.monotonic() of the last progress event
        self._stop = threading.Event()
        self._thread = None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.seconds is None:
            return
        self.stop()  # a previous train() that raised never reached on_train_end
        self._rank, self._state = args.process_index, state
        self._training_thread = threading.get_ident()
        # The Trainer's frame that called this callback: training is over once it leaves the training thread's stack
        # (an exception skips on_train_end), and the watchdog then stops by itself.
        frame = sys._getframe(1)
        while frame.f_globals.get("__name__") == "transformers.trainer_callback":
            frame = frame.f_back
        self._training_frame = frame
        self._progress = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="rs-trl-stall-watchdog", daemon=True)
        self._thread.start()

    def _progressed(self, args, state, control, **kwargs):
        self._progress = time.monotonic()

    on_step_begin = on_substep_end = on_step_end = on_prediction_step = _progressed

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()

    def stop(self):
        """Stop the watchdog thread and its faulthandler fallback (a later `on_train_begin` starts them again)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = self._training_frame = None
        faulthandler.cancel_dump_traceback_later()

    def _last_progress(self) -> float:
        return max(self._progress, REWARD_ACTIVITY.finished)

    def _watch(self):
        reported = 0.0
        while True:
            wait = max(self._last_progress(), reported) + self.seconds - time.monotonic()
            # Fires only if this thread cannot run for a whole period after its deadline: the GIL is held.
            faulthandler.dump_traceback_later(max(wait, 0) + self.seconds, file=sys.__stderr__)
            if self._stop.wait(max(wait, 0)):
                return
            idle = time.monotonic() - self._last_progress()
            if idle < self.seconds:
                continue
            frame = sys._current_frames().get(self._training_thread)
            if not any(caller is self._training_frame for caller in _frames(frame)):
                self._training_frame = None  # train() ended by an exception: nothing left to watch
                faulthandler.cancel_dump_traceback_later()
                return
            self._report(idle, traceback.extract_stack(frame))
            reported = time.monotonic()

    def _report(self, idle: float, stack):
        name, started = REWARD_ACTIVITY.name, REWARD_ACTIVITY.started
        where = (
            f"inside reward function {name!r} for {time.monotonic() - started:.1f} s"
            if name is not None
            else "not inside a reward function"
        )
        sys.stderr.write(
            f"[rs-trl stall watchdog] rank {self._rank}, global step {self._state.global_step}: no training progress "
            f"for {idle:.1f} s (stall_warning_seconds={self.seconds}), {where}. Nothing is stopped; a rank waiting "
            "in a collective (all_gather) waits for a rank that is stuck elsewhere. Training thread's stack, most "
            "recent call last:\n" + "".join(traceback.format_list(stack))
        )
        sys.stderr.flush()


def _frames(frame):
    while frame is not None:
        yield frame
        frame = frame.f_back
