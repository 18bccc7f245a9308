r"""Math rewards for GRPO / RS-GRPO: a Math-Verify accuracy reward that cannot hang, and a `\boxed{}` format reward.

Math-Verify's own timeouts use `signal.alarm`, which only works in the main thread, and a pathological sympy
comparison can otherwise run for minutes. Here grading runs in persistent worker processes (started once, reused
every step) with Math-Verify's signal timeouts disabled; a worker that overruns its per-answer time limit is killed
and replaced, and that answer scores 0.0. This works from any thread or process, including daemonic ones.

Combining with TRL's overlong punishment (DAPO's soft length penalty, Eq. 13)::

    from trl.rewards import get_soft_overlong_punishment
    from rs_trl.rewards import math_accuracy_reward

    overlong = get_soft_overlong_punishment(max_completion_len=4096, soft_punish_cache=512)
    trainer = RSGRPOTrainer(..., reward_funcs=[math_accuracy_reward, overlong],
                            args=RSGRPOConfig(..., reward_weights=[1.0, 1.0]))

TRL sums the weighted rewards before computing advantages, so the total is no longer binary; the risk-sensitive
advantage is defined for any real reward, but the paper's results use the binary accuracy reward alone.

The worker is `rs_trl.grading_worker` (`python -P -m rs_trl.grading_worker` serves JSON lines on stdin/stdout).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

WORKER_MODULE = "rs_trl.grading_worker"
_BOX_OR_BRACE = re.compile(r"\\(?:boxed|fbox)\{|[{}]")


def completion_text(completion: Any) -> str:
    """Text of one TRL completion: a plain string, or a conversation whose last message is the assistant's turn."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content")
        if isinstance(content, list):  # multimodal content parts
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return content if isinstance(content, str) else ""
    return ""


def last_boxed(text: str) -> str | None:
    r"""Content of the last complete, non-empty `\boxed{...}` or `\fbox{...}` in `text` (balanced braces), else None.

    Empty boxes are skipped (a model echoing "put your answer in \boxed{}" after answering), and so are unclosed
    ones (a truncated completion). One pass over the text, so thousands of unclosed boxes cost linear time.
    """
    opened = []  # per open brace: where its `\boxed{` / `\fbox{` starts, or None for a plain brace
    best_start, best = -1, None
    for match in _BOX_OR_BRACE.finditer(text):
        token = match.group()
        if token != "}":
            opened.append(match.start() if token != "{" else None)
            continue
        if not opened:
            continue
        box_start = opened.pop()
        if box_start is not None and box_start > best_start:
            content = text[text.index("{", box_start) + 1 : match.start()]
            if content.strip():
                best_start, best = box_start, content
    return best


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class _Worker:
    """One grading subprocess plus a reader thread that forwards its output lines to a shared queue."""

    def __init__(self, events: queue.Queue):
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", WORKER_MODULE],  # -P: the caller's working directory cannot shadow modules
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self.ready = False
        self.item: int | None = None  # index being graded
        self.deadline = float("inf")
        threading.Thread(target=self._read, args=(events,), daemon=True).start()

    def _read(self, events: queue.Queue) -> None:
        for line in self.process.stdout:
            events.put((self, line))
        events.put((self, None))  # EOF: the process died or was killed

    def send(self, index: int, completion: str, answer: str, timeout: float) -> None:
        self.item, self.deadline = index, time.monotonic() + timeout
        try:
            self.process.stdin.write(json.dumps([completion, answer]) + "\n")
            self.process.stdin.flush()
        except OSError:
            pass  # the process just died: its EOF event scores this item 0.0 and replaces it

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


class MathVerifier:
    """Grade completions against gold answers with Math-Verify in worker processes, with a per-answer time limit.

    Args:
        timeout: seconds one answer may take (extraction + comparison) before it scores 0.0 and its worker is
            replaced.
        num_workers: grading processes; default `min(4, cpu_count // 2)`, at least 1.
        startup_timeout: seconds a new worker may take to import Math-Verify / sympy.

    Thread-safe (calls are serialized). Workers start on first use and exit with the parent process.
    """

    def __init__(self, timeout: float = 5.0, num_workers: int | None = None, startup_timeout: float = 120.0):
        if not timeout > 0:
            raise ValueError(f"`timeout` must be > 0 seconds, got {timeout!r}.")
        if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 1):
            raise ValueError(f"`num_workers` must be a positive integer or None, got {num_workers!r}.")
        self.timeout = timeout
        self.num_workers = num_workers or max(1, min(4, (os.cpu_count() or 2) // 2))
        self.startup_timeout = startup_timeout
        self._reset()
        atexit.register(self.close)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._events: queue.Queue = queue.Queue()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()

    def __call__(self, completions: list[str], answers: list[str]) -> list[float]:
        """Scores (1.0 correct, 0.0 otherwise) for `completions[i]` against `answers[i]`."""
        if len(completions) != len(answers):
            raise ValueError(f"got {len(completions)} completions but {len(answers)} answers.")
        if self._pid != os.getpid():  # a forked child must not share the parent's workers and pipes
            self._reset()
        with self._lock:
            try:
                return self._grade([_text(c) for c in completions], [_text(a) for a in answers])
            except BaseException:
                # Interrupted (a reward_timeout, Ctrl-C): workers may still be grading this call's answers, and
                # their late scores must not be read as the next call's. Fresh workers keep the next call healthy.
                self.close()
                raise

    def _grade(self, completions: list[str], answers: list[str]) -> list[float]:
        scores = [0.0] * len(completions)
        todo = deque(range(len(completions)))
        while len(self._workers) < min(self.num_workers, len(todo)):
            self._start_worker()
        busy = 0

        def dispatch(worker: _Worker) -> None:
            nonlocal busy
            if todo:
                index = todo.popleft()
                worker.send(index, completions[index], answers[index], self.timeout)
                busy += 1

        for worker in self._workers:
            if worker.ready:
                dispatch(worker)
        while todo or busy:
            wait = min(w.deadline for w in self._workers) - time.monotonic()
            try:
                worker, line = self._events.get(timeout=max(wait, 0.0))
            except queue.Empty:
                worker = min(self._workers, key=lambda w: w.deadline)
                line = None  # treat an overrun like a crash: score 0.0, replace the worker
            if worker not in self._workers:
                continue  # late output of a worker that was already replaced
            if line is None:
                if not worker.ready:
                    self.close()
                    raise RuntimeError(
                        "Math-Verify worker failed to start (is `math-verify[antlr4_13_2]` installed?); "
                        f"run `{sys.executable} -P -m {WORKER_MODULE}` to see the error."
                    )
                if worker.item is not None:
                    busy -= 1  # its item keeps score 0.0
                self._replace(worker)
                continue
            if not worker.ready:
                worker.ready = True
            else:
                scores[worker.item] = float(line)
                worker.item, worker.deadline = None, float("inf")
                busy -= 1
            dispatch(worker)
        return scores

    def _start_worker(self) -> _Worker:
        worker = _Worker(self._events)
        worker.deadline = time.monotonic() + self.startup_timeout
        self._workers.append(worker)
        return worker

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers.remove(worker)
        self._start_worker()

    def close(self) -> None:
        """Stop the worker processes (a later call starts new ones)."""
        for worker in self._workers:
            worker.kill()
        self._workers.clear()

    def __getstate__(self) -> dict:  # picklable for TRL / multiprocessing: processes are not copied
        return {"timeout": self.timeout, "num_workers": self.num_workers, "startup_timeout": self.startup_timeout}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


_default_verifier: MathVerifier | None = None
_default_lock = threading.Lock()


def default_verifier() -> MathVerifier:
    """The process-wide verifier used by `math_accuracy_reward` (created on first use)."""
    global _default_verifier
    with _default_lock:
        if _default_verifier is None:
            _default_verifier = MathVerifier()
        return _default_verifier


def math_accuracy_reward(completions: list, answer: list[str], **kwargs) -> list[float | None]:
    r"""TRL reward function: 1.0 if the completion's final answer equals `answer` under Math-Verify, else 0.0; None
    (unscored, so advantage 0) where the gold answer is None or blank, which no completion could match.

    The final answer is the last non-empty `\boxed{...}` or `\fbox{...}` if there is one, otherwise what Math-Verify's default extraction
    finds (e.g. "the final answer is $3$"). Works for plain-text (`list[str]`) and conversational
    (`list[list[dict]]`) completions; `answer` is the dataset's `answer` column, which TRL passes by name.
    Never raises on bad completions and never takes more than ~5 s per completion (see `MathVerifier`).
    """
    if len(completions) != len(answer):
        raise ValueError(f"got {len(completions)} completions but {len(answer)} answers.")
    gold = [i for i, a in enumerate(answer) if _text(a).strip()]
    scores = default_verifier()([completion_text(completions[i]) for i in gold], [answer[i] for i in gold])
    rewards = [None] * len(completions)
    for i, score in zip(gold, scores):
        rewards[i] = score
    return rewards


def format_reward(completions: list, **kwargs) -> list[float]:
    r"""TRL reward function: 1.0 if the completion contains a complete, non-empty `\boxed{...}`, else 0.0."""
    return [float(bool((last_boxed(completion_text(c)) or "").strip())) for c in completions]


# The reward functions `rs-trl train --reward_funcs` knows by name; add yours here or pass a dotted import path.
REWARD_FUNCS = {"math_accuracy_reward": math_accuracy_reward, "format_reward": format_reward}


def get_reward_funcs(names: list[str] | str) -> list:
    """Map names to reward functions: ours by name, anything else by dotted import path (as TRL's script does).

    A single string is one name: a recipe's `reward_funcs: math_accuracy_reward` arrives as a string, not a list."""
    funcs = []
    for name in [names] if isinstance(names, str) else names:
        if name in REWARD_FUNCS:
            funcs.append(REWARD_FUNCS[name])
        elif "." in name:
            funcs.append(_import_reward(name))
        else:
            raise ValueError(
                f"reward_funcs: unknown reward function {name!r}; allowed: {', '.join(REWARD_FUNCS)} or a dotted "
                "import path such as 'my_package.my_module.my_reward'."
            )
    return funcs


def _import_reward(path: str):
    """The callable at dotted `path`, or a one-line ValueError saying what is wrong with the path."""
    module_name, attribute = path.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"reward_funcs: {path!r}: module {module_name!r} cannot be imported ({error}).") from None
    if not hasattr(module, attribute):
        raise ValueError(f"reward_funcs: {path!r}: module {module_name!r} has no attribute {attribute!r}.")
    func = getattr(module, attribute)
    if not callable(func):
        raise ValueError(
            f"reward_funcs: {path!r} is a {type(func).__name__}, not a callable; name a reward function instead."
        )
    return func
