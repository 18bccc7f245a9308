"""Math-Verify grading worker, run by `rs_trl.rewards.MathVerifier` as `python -P -m rs_trl.grading_worker`.

Reads `[completion, answer]` JSON lines on stdin and writes one score per line on stdout (`"ready"` first). Its
parent enforces the per-answer time limit by killing and replacing it, so Math-Verify's own (signal) timeouts are
off here, and a wrong or malformed answer scores 0.0 instead of raising.
"""

import json
import logging
import os
import re
import signal
import sys
import threading
import time
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from .rewards import last_boxed

# Without a box, Math-Verify's default extraction applies ("final answer is $x$", else the last expression).
EXTRACTION = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


@lru_cache(maxsize=4096)  # the same gold answer comes `num_generations` times per step
def parse_gold(answer: str) -> list:
    return parse(f"${answer}$", EXTRACTION, parsing_timeout=None) or parse(answer, parsing_timeout=None)


# A number as an answer is written: an optional sign, digits (thousands commas, a decimal point), or a fraction a/b,
# \frac{a}{b}; a percent sign may follow.
_NUMBER = re.compile(
    r"-?\s*(\d{1,3}(,\d{3})+(\.\d*)?|\d+(\.\d*)?|\.\d+|\d+\s*/\s*\d+|\\[dt]?frac\{\d+\}\{\d+\})\s*(\\?%)?"
)


def grade(completion: str, answer: str) -> float:
    gold = parse_gold(answer)
    if not gold:
        return 0.0
    boxed = last_boxed(completion)  # only the last box: Math-Verify would read several boxes as one set
    pred = parse(completion if boxed is None else f"$\\boxed{{{boxed}}}$", EXTRACTION, parsing_timeout=None)
    if not pred:
        return 0.0
    # Math-Verify compares values, so "123 + 45" (the question restated) would equal 168: where the gold answer is a
    # number, only a number answers it.
    if _NUMBER.fullmatch(answer.strip()) and not _NUMBER.fullmatch(str(pred[-1]).strip()):
        return 0.0
    return float(verify(gold, pred, timeout_seconds=None))


def exit_with_parent(parent: int) -> None:
    """A parent killed with SIGKILL cannot kill a worker stuck in sympy: the worker watches for it instead."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def serve() -> None:
    # Ctrl-C / a Jupyter interrupt reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints from libraries must not corrupt the protocol
    logging.disable(logging.WARNING)  # Math-Verify warns that its (signal) timeouts are off: that is intended
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    protocol.write('"ready"\n')
    protocol.flush()
    for line in sys.stdin:
        try:
            completion, answer = json.loads(line)
            score = grade(completion, answer)
        except Exception:  # malformed input or a sympy error is a wrong answer, never a crash
            score = 0.0
        protocol.write(f"{score}\n")
        protocol.flush()


if __name__ == "__main__":
    serve()
