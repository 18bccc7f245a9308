"""Fault isolation for reward functions: one bad call never kills a training step, a broken function stops the run.

A guarded reward function is called exactly where TRL calls it: in the training (main) thread, so anything that
works under `GRPOTrainer` works here, signal-based timeouts such as Math-Verify's included. A call that raises
leaves its samples unscored (NaN reward, so advantage 0), and so does one that calls `sys.exit`; None, NaN and
non-finite rewards (±inf, or beyond float32, which TRL stores rewards in) are unscored samples too. Every event is
counted per function, and the function running now is recorded in `REWARD_ACTIVITY` for the stall watchdog. A
wrong-length or wrong-type result is a bug in user code, not a transient fault, so it raises a clear error naming the
function.

`RewardHealth` turns those counts into decisions, on totals summed over all processes so that every process
decides the same: a function whose every call raised for `patience` generation steps in a row, or steps in which
no sample got a reward from any function, stop training with an error saying what to fix, instead of training on
nothing.
"""

import functools
import inspect
import logging
import math
import numbers
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset

from .rewards import math_accuracy_reward

logger = logging.getLogger(__name__)

# Arguments TRL passes to every reward function itself; anything else required must be a dataset column.
TRL_REWARD_KWARGS = {
    "prompts",
    "completions",
    "completion_ids",
    "trainer_state",
    "log_extra",
    "log_metric",
    "environments",
}
# Per-sample fault kinds, logged as `rewards/<name>/faults_<kind>`.
FAULT_KINDS = ("error", "timeout", "none", "nonfinite")
# Everything counted per function and round: calls, calls that raised or timed out, samples, then the faults.
TALLY_FIELDS = ("calls", "failed_calls", "samples", *FAULT_KINDS)


class RewardTimeout(Exception):
    """Raised inside a reward call that ran past `reward_timeout`."""


@dataclass
class RewardActivity:
    """The guarded reward call running in this process, read by `rs_trl.watchdog` from its own thread."""

    name: str | None = None  # the function running now, None between calls
    started: float = 0.0  # time.monotonic() when it started
    finished: float = 0.0  # time.monotonic() when the last call returned: progress


REWARD_ACTIVITY = RewardActivity()


def required_columns(reward_func) -> set[str]:
    """Dataset columns a reward function cannot run without (parameters with no default)."""
    if not callable(reward_func) or isinstance(reward_func, str):
        return set()
    try:
        parameters = inspect.signature(reward_func).parameters.values()
    except (TypeError, ValueError):
        return set()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in kinds and p.default is inspect.Parameter.empty} - TRL_REWARD_KWARGS


def call_with_timeout(func, kwargs: dict, seconds: float | None, name: str, warned: set):
    """`func(**kwargs)` in the calling thread, interrupted by `RewardTimeout` after `seconds` (None: no limit).

    The limit is a SIGALRM timer (`signal.setitimer`), not a worker thread: the call stays on the main thread, so
    main-thread-only code (signal-based timeouts) keeps working, and a call that overruns is unwound by an
    exception, so it releases its locks and the next call starts as healthy as the first. A thread could do
    neither: it cannot be stopped, so an abandoned call keeps running and holding whatever it holds.
    Where a SIGALRM timer cannot be used safely, the call runs without a limit and a warning says so once: off the
    main thread, or while another alarm is pending (it would be overwritten). A function that sets its own SIGALRM
    timer (Math-Verify's `parse`/`verify` with their default timeouts) cancels ours when it finishes; that is
    detected and reported once, and its own timeouts then bound it. `warned` holds the reasons already reported.
    Python runs a signal handler only between bytecodes, so a call stuck in one long C call (a native library, a
    blocking read that retries on EINTR) is interrupted only when that C call returns; the `RewardTimeout` then says
    how long the call really ran.
    """

    def warn_once(reason: str, message: str):
        if reason not in warned:
            warned.add(reason)
            logger.warning("reward_timeout is not enforced for %r: %s", name, message)

    if seconds is None:
        return func(**kwargs)
    if threading.current_thread() is not threading.main_thread():
        warn_once("thread", "it is called off the main thread.")
        return func(**kwargs)
    if signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        warn_once("pending", "another SIGALRM timer is pending.")
        return func(**kwargs)

    def on_alarm(signum, frame):
        raise RewardTimeout(
            f"reward function {name!r} ran {time.monotonic() - start:.1f} s, past reward_timeout={seconds} s (a call "
            "stuck inside C code is interrupted only when it returns to Python)"
        )

    previous = signal.signal(signal.SIGALRM, on_alarm)
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        try:
            result = func(**kwargs)
        finally:
            remaining, _ = signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    if remaining == 0 and time.monotonic() - start < seconds:
        warn_once("clobbered", "it sets its own SIGALRM timer (as Math-Verify does), which replaced ours.")
    return result


def _check_rewards(name: str, rewards, num_samples: int) -> list:
    """The rewards as a list, or a TypeError naming the function if they are not one number-or-None per sample."""
    if isinstance(rewards, (str, bytes, dict)) or not hasattr(rewards, "__len__") or not hasattr(rewards, "__iter__"):
        raise TypeError(
            f"Reward function {name!r} returned {type(rewards).__name__} {rewards!r:.80}; it must return a list with "
            f"one float (or None) per completion ({num_samples} here)."
        )
    rewards = list(rewards)
    for reward in rewards:
        if reward is not None and not isinstance(reward, numbers.Real) and not _is_scalar_tensor(reward):
            raise TypeError(
                f"Reward function {name!r} returned a {type(reward).__name__} ({reward!r:.80}) among its rewards; each "
                "reward must be a float, or None for a sample the function does not apply to."
            )
    return rewards


def _is_scalar_tensor(value) -> bool:
    return getattr(value, "ndim", None) == 0 or getattr(value, "shape", None) == ()


def guard_reward_function(reward_func, name: str, timeout: float | None, tally: Counter, last_errors: dict):
    """Wrap a synchronous reward function.

    Counts go to `tally[(name, field)]` for each of `TALLY_FIELDS`; the last exception of a failed call to
    `last_errors[name]`. A failed call returns None for every sample (`sys.exit` in the function is a failed call:
    it would end training with no message); non-finite rewards become None.
    """

    warned = set()

    @functools.wraps(reward_func)
    def guarded(*args, **kwargs):
        # TRL calls with keywords and always passes `prompts`; any other caller (a test, an environment's own
        # reward, a user) gets exactly the function it wrapped: the guard never adds a failure mode.
        if args or "prompts" not in kwargs:
            return reward_func(*args, **kwargs)
        num_samples = len(kwargs["prompts"])
        tally[(name, "calls")] += 1
        tally[(name, "samples")] += num_samples
        REWARD_ACTIVITY.name, REWARD_ACTIVITY.started = name, time.monotonic()
        try:
            rewards = call_with_timeout(reward_func, kwargs, timeout, name, warned)
        except RewardTimeout as exc:
            return _failed(name, "timeout", exc, num_samples, tally, last_errors)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a fault in user code must stay inside this call
            return _failed(name, "error", exc, num_samples, tally, last_errors)
        finally:
            REWARD_ACTIVITY.name, REWARD_ACTIVITY.finished = None, time.monotonic()
        rewards = _check_rewards(name, rewards, num_samples)
        # Judged as TRL stores them, in float32: 1e300 is finite here but inf there.
        as_float32 = torch.tensor([math.nan if r is None else float(r) for r in rewards], dtype=torch.float32)
        for i, reward in enumerate(as_float32.tolist()):
            if math.isnan(reward):
                tally[(name, "none")] += 1
            elif math.isinf(reward):
                tally[(name, "nonfinite")] += 1
                rewards[i] = None  # an infinite reward would turn its whole group's advantages into NaN
        return rewards

    return guarded


def _failed(name, kind, exc, num_samples, tally, last_errors):
    tally[(name, "failed_calls")] += 1
    tally[(name, kind)] += num_samples
    last_errors[name] = exc
    raised = f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"raised {exc!r}"
    logger.warning("Reward function %r %s; its %d samples are unscored.", name, raised, num_samples)
    return [None] * num_samples


class RewardHealth:
    """Per-step verdicts on reward functions, from per-round totals summed over processes.

    Args:
        names: reward function names, in `TALLY_FIELDS` row order.
        patience: consecutive generation steps of total failure that stop training; None never stops.
    """

    def __init__(self, names: list[str], patience: int | None):
        self.names = names
        self.patience = math.inf if patience is None else patience
        self._step = Counter()  # (name, field) -> total this step
        self._scored_this_step = False
        self._failed_steps = Counter()  # name -> consecutive steps in which every call failed
        self._unscored_steps = 0  # consecutive steps in which no sample got any reward
        self._warned_fault_rate: set[str] = set()

    def add_round(self, totals: list[list[float]], any_sample_scored: bool):
        """`totals[i]` holds `TALLY_FIELDS` for `names[i]`, summed over processes, for one generation round."""
        for name, row in zip(self.names, totals):
            for field, value in zip(TALLY_FIELDS, row):
                self._step[(name, field)] += value
        self._scored_this_step |= any_sample_scored

    def end_step(self, last_errors: dict):
        """Close a generation step: warn on high fault rates, raise if a failure has lasted `patience` steps."""
        for name in self.names:
            calls, failed, samples = (self._step[(name, f)] for f in ("calls", "failed_calls", "samples"))
            faults = sum(self._step[(name, kind)] for kind in ("error", "timeout", "nonfinite"))
            if samples and faults / samples > 0.5 and name not in self._warned_fault_rate:
                self._warned_fault_rate.add(name)
                logger.warning(
                    "Reward function %r failed on %.0f%% of this step's samples (raised, timed out or returned a "
                    "non-finite value); those samples carry no learning signal. Last error: %r",
                    name,
                    100 * faults / samples,
                    last_errors.get(name),
                )
            self._failed_steps[name] = self._failed_steps[name] + 1 if calls and failed == calls else 0
            if self._failed_steps[name] >= self.patience:
                error = last_errors.get(name)
                cause = (
                    f"{type(error).__name__}: {error}"
                    if error is not None
                    else "a timeout or error on another process"
                )
                raise RuntimeError(
                    f"Reward function {name!r} failed on every call for {self.patience} generation steps in a row "
                    f"(last error: {cause}). This is a bug in the function or its inputs, not a transient fault: fix "
                    "the function (check it runs on one batch of your dataset outside the trainer), or raise "
                    "reward_failure_patience if failures this long are expected."
                )
        self._unscored_steps = 0 if self._scored_this_step else self._unscored_steps + 1
        if self._unscored_steps:
            logger.warning("No sample of this generation step got a reward from any reward function.")
        if self._unscored_steps >= self.patience:
            raise RuntimeError(
                f"No sample got a reward from any reward function (all returned None or failed) for {self.patience} "
                f"generation steps in a row, so training learns nothing. Reward functions: {self.names}. Make sure at "
                "least one of them returns a float for the samples of your dataset (None means 'does not apply'), "
                "or raise reward_failure_patience."
            )
        self._step.clear()
        self._scored_this_step = False


def validate_train_dataset(dataset, reward_funcs, needs_prompt: bool, rollout_fields: bool = False):
    """Errors TRL would only hit mid-step (or never), raised before the model loads: an empty dataset, no prompt
    column, a reward function's required column missing, an empty or None prompt, or an empty or None gold answer
    for `math_accuracy_reward` (it would grade every completion 0). TRL's own checks stay TRL's. With a `rollout_func`
    (`rollout_fields=True`) TRL also feeds rewards the rollout's extra fields, unknown until it runs, so reward
    parameters are not checked against the columns: nothing TRL accepts is refused."""
    columns = getattr(dataset, "column_names", None)
    if columns is None:  # no dataset (TRL decides), or a stream whose columns are unknown until read
        return
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise ValueError("train_dataset is empty: RS-GRPO needs at least one prompt.")
    columns = set(columns)
    if needs_prompt and "prompt" not in columns:
        raise ValueError(f"train_dataset needs a 'prompt' column; it has {sorted(columns)}.")
    # A user's own reward may take None for "does not apply"; our math reward needs a gold answer for every row.
    checked = ["prompt"] + (["answer"] if any(func is math_accuracy_reward for func in reward_funcs) else [])
    for column in checked if isinstance(dataset, Dataset) else []:
        row = _first_blank_row(dataset, column) if column in columns else None
        if row is not None:
            raise ValueError(
                f"train_dataset column {column!r} is empty or None in row {row} (the first such row): every row "
                f"needs a non-empty {column}. Drop or fix those rows (e.g. with `dataset.filter`)."
            )
    for func in [] if rollout_fields else reward_funcs:
        missing = required_columns(func) - columns
        if missing:
            raise ValueError(
                f"Reward function {getattr(func, '__name__', func)!r} needs dataset column(s) {sorted(missing)}, "
                f"which train_dataset lacks; it has {sorted(columns)}."
            )


def _first_blank_row(dataset: Dataset, column: str) -> int | None:
    """Index of the first row whose `column` is None, blank text or an empty list (a conversation with no message)."""
    values = dataset.select_columns([column]).with_format("arrow")[:][column]  # Arrow: fast on millions of rows
    blank = pc.is_null(values)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        blank = pc.or_kleene(blank, pc.equal(pc.utf8_trim_whitespace(values), ""))
    elif pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        blank = pc.or_kleene(blank, pc.equal(pc.list_value_length(values), 0))
    row = pc.index(pc.fill_null(blank, False), True).as_py()
    return None if row < 0 else row
