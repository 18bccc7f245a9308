"""The reward guard, called as TRL calls a reward function: timeouts, fault counts, clear errors for bad results."""

import logging
import re
import signal
import sys
import threading
import time
from collections import Counter

import pytest
from datasets import Dataset

from rs_trl.reward_guard import REWARD_ACTIVITY, guard_reward_function, validate_train_dataset
from rs_trl.rewards import math_accuracy_reward

# sympy compares this with an expression for hours (a number-shaped gold answer rejects it before sympy runs)
PATHOLOGICAL, EXPRESSION_GOLD = r"\boxed{9^{9^{9^{9}}}}", "x+5"


def call(guarded, completions, **columns):
    return guarded(prompts=["p"] * len(completions), completions=completions, completion_ids=None, **columns)


def guard(func, timeout=None):
    tally, errors = Counter(), {}
    return guard_reward_function(func, func.__name__, timeout, tally, errors), tally, errors


def test_timed_out_call_leaves_the_next_calls_healthy():
    """One pathological batch past reward_timeout, then normal batches score normally and no thread is left behind."""
    guarded, tally, errors = guard(math_accuracy_reward, timeout=1.0)
    assert call(guarded, [r"\boxed{1}"], answer=["1"]) == [1.0]  # workers started
    threads = threading.active_count()
    start = time.monotonic()
    assert call(guarded, [PATHOLOGICAL] * 2, answer=[EXPRESSION_GOLD] * 2) == [None, None]
    assert time.monotonic() - start < 5
    assert tally[("math_accuracy_reward", "timeout")] == 2
    assert "reward_timeout" in str(errors["math_accuracy_reward"])
    for _ in range(3):
        assert call(guarded, [r"\boxed{4}", r"\boxed{3}"], answer=["4", "4"]) == [1.0, 0.0]
    assert tally[("math_accuracy_reward", "failed_calls")] == 1
    assert threading.active_count() <= threads


def test_timeout_interrupts_a_hung_call_on_the_main_thread():
    def hangs(completions, **kwargs):
        time.sleep(60)

    guarded, tally, _ = guard(hangs, timeout=0.3)
    start = time.monotonic()
    assert call(guarded, ["a", "b"]) == [None, None]
    assert time.monotonic() - start < 5
    assert tally[("hangs", "timeout")] == 2


def test_non_finite_rewards_are_unscored_faults():
    def odd(completions, **kwargs):
        return [1.0, float("inf"), float("-inf"), float("nan"), None, 0.0]

    guarded, tally, _ = guard(odd)
    rewards = call(guarded, list("abcdef"))
    assert rewards[:3] == [1.0, None, None] and rewards[4:] == [None, 0.0]  # ±inf would NaN its whole group
    assert (tally[("odd", "nonfinite")], tally[("odd", "none")]) == (2, 2)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ("1.0", r"'bad' returned str '1.0'"),
        (1.0, r"'bad' returned float 1.0"),
        (["yes", 1.0], r"'bad' returned a str \('yes'\) among its rewards"),
    ],
)
def test_wrong_result_type_names_the_function(result, message):
    def bad(completions, **kwargs):
        return result

    guarded, _, _ = guard(bad)
    with pytest.raises(TypeError, match=message):
        call(guarded, ["a", "b"])


def test_environment_rewards_without_completions_keyword():
    def get_reward(environments, **kwargs):
        return [1.0 for _ in environments]

    guarded, _, _ = guard(get_reward)
    assert guarded(prompts=["p", "q"], environments=[object(), object()]) == [1.0, 1.0]


def test_called_outside_trl_the_guard_is_the_function_itself():
    """Without TRL's `prompts` keyword (or with positional arguments) the wrapped function runs exactly as written:
    its result and its exceptions are its own, and nothing is counted."""

    def lengths(completions, **kwargs):
        return [float(len(c)) for c in completions]

    def fails(completions, **kwargs):
        raise KeyError("state")

    guarded, tally, _ = guard(lengths)
    assert guarded(completions=["ab", "c"]) == [2.0, 1.0]
    assert guarded(["ab", "c"]) == [2.0, 1.0]
    assert not tally
    guarded_failure, tally, _ = guard(fails)
    with pytest.raises(KeyError, match="state"):
        guarded_failure(completions=["a"])
    assert not tally


def test_rewards_beyond_float32_are_non_finite_faults():
    """TRL stores rewards as float32: 1e300 would become inf there and zero its whole group's advantages."""

    def huge(completions, **kwargs):
        return [1.0, 1e300, -1e300, 3.0e38]

    guarded, tally, _ = guard(huge)
    assert call(guarded, list("abcd")) == [1.0, None, None, 3.0e38]
    assert tally[("huge", "nonfinite")] == 2


def test_sys_exit_in_a_reward_is_a_fault_of_that_function(caplog):
    def exits(completions, **kwargs):
        sys.exit(3)

    guarded, tally, errors = guard(exits)
    with caplog.at_level(logging.WARNING, logger="rs_trl.reward_guard"):
        assert call(guarded, ["a", "b"]) == [None, None]
    assert (tally[("exits", "failed_calls")], tally[("exits", "error")]) == (1, 2)
    assert "'exits'" in caplog.text and "sys.exit(3)" in caplog.text
    assert isinstance(errors["exits"], SystemExit)


def test_keyboard_interrupt_in_a_reward_still_stops_training():
    def interrupted(completions, **kwargs):
        raise KeyboardInterrupt

    guarded, _, _ = guard(interrupted)
    with pytest.raises(KeyboardInterrupt):
        call(guarded, ["a"])


def test_timeout_message_names_the_function_and_how_long_it_overran():
    """A call stuck in C (here: SIGALRM held back for 1 s) is interrupted only when it returns to Python: the error
    says so, with the measured duration next to the limit."""

    def stuck_in_c(completions, **kwargs):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            time.sleep(1.0)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        return [1.0]

    guarded, tally, errors = guard(stuck_in_c, timeout=0.2)
    assert call(guarded, ["a"]) == [None]
    assert tally[("stuck_in_c", "timeout")] == 1
    assert re.search(r"'stuck_in_c' ran 1\.\d s, past reward_timeout=0\.2 s", str(errors["stuck_in_c"]))


def test_reward_activity_records_the_running_function():
    seen = {}

    def looks(completions, **kwargs):
        seen["name"], seen["started"] = REWARD_ACTIVITY.name, REWARD_ACTIVITY.started
        return [1.0]

    guarded, _, _ = guard(looks)
    before = time.monotonic()
    call(guarded, ["a"])
    assert seen["name"] == "looks" and seen["started"] >= before
    assert REWARD_ACTIVITY.name is None and REWARD_ACTIVITY.finished >= seen["started"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"prompt": ["a", None, ""]}, r"'prompt' is empty or None in row 1"),
        ({"prompt": ["a", "b", "  "]}, r"'prompt' is empty or None in row 2"),
        ({"prompt": [[{"role": "user", "content": "a"}], []]}, r"'prompt' is empty or None in row 1"),
        ({"prompt": ["a", "b", "c"], "answer": ["1", "2", None]}, r"'answer' is empty or None in row 2"),
        ({"prompt": ["a", "b"], "answer": ["", "2"]}, r"'answer' is empty or None in row 0"),
    ],
)
def test_dataset_with_empty_prompts_or_gold_answers_is_refused(columns, message):
    with pytest.raises(ValueError, match=message):
        validate_train_dataset(Dataset.from_dict(columns), [math_accuracy_reward], needs_prompt=True)


def test_dataset_checks_accept_valid_and_other_answer_columns():
    ok = Dataset.from_dict({"prompt": ["a", "b"], "answer": [1, 2]})
    validate_train_dataset(ok, [math_accuracy_reward], needs_prompt=True)
    validate_train_dataset(ok.shuffle(seed=0), [math_accuracy_reward], needs_prompt=True)

    def custom(completions, answer, **kwargs):  # None may mean "does not apply" to a user's reward
        return [None if a is None else 1.0 for a in answer]

    validate_train_dataset(Dataset.from_dict({"prompt": ["a"], "answer": [None]}), [custom], needs_prompt=True)
