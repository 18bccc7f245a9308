"""The stall watchdog: a stalled step is reported (rank, step, running reward, stack), a healthy one is silent, and
no thread outlives training. Every wait here is bounded."""

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from datasets import Dataset

from rs_trl import RSGRPOTrainer
from rs_trl.reward_guard import guard_reward_function
from rs_trl.tiny import cpu_training_args
from rs_trl.watchdog import StallWatchdog
from tests.helpers import two_cpu_processes

REPO = Path(__file__).resolve().parents[1]
ARGS, STATE = SimpleNamespace(process_index=1), SimpleNamespace(global_step=7)


def capture_stderr(monkeypatch):
    # In the test body: pytest puts its own sys.stderr back between a fixture's setup and the test call.
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    return out


def test_blocked_reward_is_reported_then_the_watchdog_stops(monkeypatch):
    stderr = capture_stderr(monkeypatch)

    def blocked_reward(completions, **kwargs):
        deadline = time.monotonic() + 30  # bounded: the test fails below rather than hang
        while "stall watchdog" not in stderr.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        return [1.0]

    threads = threading.active_count()
    watchdog = StallWatchdog(0.3)
    watchdog.on_train_begin(ARGS, STATE, None)
    guarded = guard_reward_function(blocked_reward, "blocked_reward", None, Counter(), {})
    start = time.monotonic()
    guarded(prompts=["p"], completions=["c"])
    assert time.monotonic() - start < 10
    watchdog.on_train_end(ARGS, STATE, None)
    report = stderr.getvalue()
    assert re.search(r"rank 1, global step 7: no training progress for 0\.\d s \(stall_warning_seconds=0\.3\)", report)
    assert "inside reward function 'blocked_reward'" in report
    assert ", in blocked_reward\n" in report and "time.sleep(0.05)" in report  # the training thread's stack
    assert threading.active_count() <= threads


def test_healthy_run_prints_nothing(monkeypatch):
    stderr = capture_stderr(monkeypatch)
    threads = threading.active_count()
    watchdog = StallWatchdog(0.3)
    watchdog.on_train_begin(ARGS, STATE, None)
    guarded = guard_reward_function(lambda completions, **kw: [1.0], "quick", None, Counter(), {})
    for step in range(8):  # 1.2 s in all, never 0.3 s without progress
        time.sleep(0.15)
        if step % 2:
            watchdog.on_step_end(ARGS, STATE, None)
        else:
            guarded(prompts=["p"], completions=["c"])  # a reward call returning is progress too
    watchdog.on_train_end(ARGS, STATE, None)
    assert stderr.getvalue() == ""
    assert threading.active_count() <= threads


def test_watchdog_stops_by_itself_when_train_raised(monkeypatch):
    """An exception out of train() skips on_train_end: the watchdog must not report on a run that is over."""
    stderr = capture_stderr(monkeypatch)
    watchdog = StallWatchdog(0.2)

    def train():
        watchdog.on_train_begin(ARGS, STATE, None)
        raise RuntimeError("reward failed")

    with pytest.raises(RuntimeError):
        train()
    watchdog._thread.join(timeout=10)
    assert not watchdog._thread.is_alive()
    assert stderr.getvalue() == ""


def test_none_disables_the_watchdog():
    watchdog = StallWatchdog(None)
    watchdog.on_train_begin(ARGS, STATE, None)
    assert watchdog._thread is None
    watchdog.on_train_end(ARGS, STATE, None)


@pytest.mark.parametrize("seconds", [0, -1.5, float("inf"), "soon"])
def test_bad_stall_warning_seconds_names_the_field(tmp_path, seconds):
    with pytest.raises(ValueError, match="stall_warning_seconds must be a positive number of seconds or None"):
        cpu_training_args(tmp_path, stall_warning_seconds=seconds)


def test_trainer_runs_the_watchdog_silently_and_stops_it(tiny_model_dir, tmp_path, monkeypatch):
    stderr = capture_stderr(monkeypatch)
    dataset = Dataset.from_dict({"prompt": [f"Question {i} :" for i in range(8)]})
    args = cpu_training_args(tmp_path, max_steps=2, dynamic_sampling=False, stall_warning_seconds=60)
    trainer = RSGRPOTrainer(model=tiny_model_dir, reward_funcs=lambda completions, **kw: [1.0] * len(completions),
                            args=args, train_dataset=dataset)  # fmt: skip
    watchdogs = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, StallWatchdog)]
    assert [w.seconds for w in watchdogs] == [60]
    trainer.train()
    assert "stall watchdog" not in stderr.getvalue()
    assert not any(thread.name == "rs-trl-stall-watchdog" for thread in threading.enumerate())


def test_faulthandler_reports_when_the_gil_is_held():
    """A C call holding the GIL keeps the watchdog thread from running; faulthandler dumps the stacks instead."""
    child = textwrap.dedent(
        """
        import time
        from types import SimpleNamespace
        from rs_trl.watchdog import StallWatchdog

        StallWatchdog(0.2).on_train_begin(SimpleNamespace(process_index=0), SimpleNamespace(global_step=0), None)
        time.sleep(0.05)
        start = time.monotonic()
        while time.monotonic() - start < 2:
            sum(range(10**8))  # one C call that never releases the GIL
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "most recent call first" in result.stderr and "<module>" in result.stderr


def _wait_for_reports(process, ranks, seconds):
    """stderr lines of `process` until every rank in `ranks` printed a watchdog report (None after `seconds`)."""
    seen, lines = set(), []
    deadline = time.monotonic() + seconds
    os.set_blocking(process.stderr.fileno(), False)
    while time.monotonic() < deadline and seen != ranks and process.poll() is None:
        line = process.stderr.readline()
        if not line:
            time.sleep(0.2)
            continue
        lines.append(line)
        for rank in ranks:
            if f"[rs-trl stall watchdog] rank {rank}," in line:
                seen.add(rank)
    return lines, seen


@pytest.mark.slow
def test_two_processes_both_report_a_reward_blocked_on_rank_1(tiny_model_dir, tmp_path):
    """Rank 1's reward blocks; rank 0 waits in TRL's all_gather. Both ranks print a report naming where they are."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = two_cpu_processes(
        str(REPO / "tests" / "scripts" / "stall_two_process.py"), tiny_model_dir, str(tmp_path)
    )
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lines, seen = _wait_for_reports(process, {0, 1}, seconds=300)
    finally:  # the stall is by design: nothing ends it but this
        for pid_file in tmp_path.glob("worker*.pid"):
            with contextlib.suppress(ProcessLookupError):  # a worker that crashed is gone already
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    output = "".join(lines)
    assert seen == {0, 1}, output[-5000:]
    rank1 = output[output.index("rank 1,") :]
    assert "inside reward function 'blocks_on_rank_1'" in rank1.splitlines()[0]
    rank0 = output[output.index("rank 0,") :]
    assert "not inside a reward function" in rank0.splitlines()[0]
