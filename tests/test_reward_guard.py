"""The reward guard, called as TRL calls a reward function: timeouts, fault counts, clear errors for bad results."""

import threading
import time
from collections import Counter

import pytest

from rs_trl.reward_guard import guard_reward_function
from rs_trl.rewards import math_accuracy_reward

PATHOLOGICAL = r"\boxed{9^{9^{9^{9}}}}"  # sympy compares this for hours


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
    assert call(guarded, [PATHOLOGICAL] * 2, answer=["5", "5"]) == [None, None]
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
