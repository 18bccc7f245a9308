"""Math-Verify reward: equivalence table, last-box preference, malformed input, and bounded time from a thread."""

import os
import pickle
import threading
import time

import pytest

from rs_trl.rewards import (
    MathVerifier,
    completion_text,
    format_reward,
    get_reward_funcs,
    last_boxed,
    math_accuracy_reward,
)

# (completion, gold answer, expected reward)
CASES = [
    (r"so the answer is \boxed{\frac{1}{2}}", "1/2", 1.0),  # fractions
    (r"\boxed{0.5}", r"\frac12", 1.0),
    (r"\boxed{\dfrac{3}{4}}", "0.75", 1.0),
    (r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt2}", 1.0),  # LaTeX
    (r"\boxed{x^2+2x+1}", "(x+1)^2", 1.0),
    (r"\boxed{1/(n+1)}", r"\frac{1}{n+1}", 1.0),
    (r"$\boxed{1,000}$", "1000", 1.0),
    (r"\boxed{[0, 1)}", "[0,1)", 1.0),  # intervals
    (r"\boxed{(-\infty, 3]}", r"(-\infty,3]", 1.0),
    (r"\boxed{(0,1)}", "[0,1]", 0.0),
    (r"\boxed{10\text{ cm}}", "10", 1.0),  # units
    (r"\boxed{50\%}", "50", 1.0),
    (r"\boxed{2}", "3", 0.0),
    (r"\boxed{\pi}", "3.14", 0.0),
    (r"first \boxed{5}, corrected: \boxed{7}", "7", 1.0),  # the last box wins
    (r"first \boxed{5}, corrected: \boxed{7}", "5", 0.0),
    (r"\boxed{7} and then \boxed{", "7", 1.0),  # a truncated last box falls back to the complete one
    (r"So \boxed{7}. Put your final answer within \boxed{}.", "7", 1.0),  # a trailing empty box is skipped
    (r"\boxed{7} \boxed{ }", "7", 1.0),
    (r"\fbox{7}", "7", 1.0),  # \fbox is a box too
    (r"\boxed{5} then \fbox{7}", "7", 1.0),
    ("The answer is 42.", "42", 1.0),  # no box: Math-Verify's default extraction
    (r"\boxed{\frac{1}{", "1/2", 0.0),  # malformed input
    ("", "1", 0.0),
    (r"\boxed{5}", r"\frac{", 0.0),  # unparsable gold
    ("\x00\ud800 \\boxed{}}}{{", "1", 0.0),
]


def test_equivalence_table_plain_and_conversational():
    completions = [c for c, _, _ in CASES]
    answers = [a for _, a, _ in CASES]
    expected = [e for _, _, e in CASES]
    assert math_accuracy_reward(completions, answer=answers) == expected
    conversational = [[{"role": "assistant", "content": c}] for c in completions]
    assert math_accuracy_reward(conversational, answer=answers, prompts=None, trainer_state=None) == expected


def test_completion_text_shapes():
    assert completion_text("x") == "x"
    assert completion_text([{"role": "assistant", "content": "y"}]) == "y"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "z"}]}]) == "z"
    assert completion_text([{"role": "assistant", "content": None}]) == ""
    assert completion_text(None) == ""


def test_last_boxed_and_format_reward():
    assert last_boxed(r"\boxed{1} then \boxed{\frac{a}{b}}") == r"\frac{a}{b}"
    assert last_boxed(r"\boxed{3} \boxed{4") == "3"
    assert last_boxed("no box") is None
    assert last_boxed(r"\boxed{2} and \boxed{}") == "2"
    assert last_boxed(r"\fbox{x} then \boxed{\boxed{3}}") == "3"
    completions = [r"\boxed{3}", r"\boxed{}", "3", r"\boxed{3", [{"role": "assistant", "content": r"\boxed{x}"}]]
    assert format_reward(completions) == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_pathological_answer_times_out_from_worker_thread():
    # 9^(9^(9^9)) makes sympy's comparison with an expression run for hours (a number-shaped gold answer would reject
    # it before sympy runs); Math-Verify's signal timeouts cannot fire off the main thread.
    verifier = MathVerifier(timeout=1.0, num_workers=1)
    result, elapsed = {}, {}

    def run():
        start = time.monotonic()
        result["scores"] = verifier([r"\boxed{9^{9^{9^{9}}}}", r"\boxed{x+5}"], ["x+5", "x+5"])
        elapsed["s"] = time.monotonic() - start

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "grading hung"
    assert result["scores"] == [0.0, 1.0]  # the slow item scores 0.0; the replacement worker grades the rest
    assert 1.0 <= elapsed["s"] < 30  # the timeout fired, and only it
    assert verifier([r"\boxed{2}"], ["2"]) == [1.0]  # still usable afterwards
    verifier.close()


def test_default_reward_from_thread_and_pickle():
    out = {}
    thread = threading.Thread(target=lambda: out.update(r=math_accuracy_reward([r"\boxed{4}"], answer=["4"])))
    thread.start()
    thread.join(timeout=60)
    assert out["r"] == [1.0]
    clone = pickle.loads(pickle.dumps(MathVerifier(timeout=2.0, num_workers=2)))
    assert (clone.timeout, clone.num_workers) == (2.0, 2)


def test_verifier_argument_errors():
    with pytest.raises(ValueError, match="timeout"):
        MathVerifier(timeout=0)
    with pytest.raises(ValueError, match="num_workers"):
        MathVerifier(num_workers=0)
    with pytest.raises(ValueError, match="answers"):
        math_accuracy_reward(["a", "b"], answer=["1"])


def test_format_reward_is_linear_in_unclosed_boxes():
    """10k unclosed `\\boxed{` once took 19 s in the training process; each box must be scanned once, not to the end."""
    text = r"\boxed{7} " + r"\boxed{" * 10_000 + "x" * 10_000
    start = time.perf_counter()
    assert format_reward([text]) == [1.0] and last_boxed(text) == "7"
    assert time.perf_counter() - start < 1.0
    assert last_boxed(r"\boxed{a \boxed{b} c} \boxed{") == "b"  # nested: the last complete box wins, as before


def test_missing_gold_answers_are_unscored_not_wrong():
    completions = [r"\boxed{1}", r"\boxed{2}", r"\boxed{3}", r"\boxed{4}"]
    assert math_accuracy_reward(completions, answer=[None, "", " ", "4"]) == [None, None, None, 1.0]


def test_reward_funcs_as_one_string():
    """A recipe's `reward_funcs: math_accuracy_reward` reaches us as a string, not a list."""
    assert get_reward_funcs("math_accuracy_reward") == [math_accuracy_reward]
    assert get_reward_funcs("os.path.join") == [os.path.join]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nosuchpkg.fn", r"reward_funcs: 'nosuchpkg\.fn': module 'nosuchpkg' cannot be imported"),
        ("os.path.nope", r"reward_funcs: 'os\.path\.nope': module 'os\.path' has no attribute 'nope'"),
        ("math.pi", r"reward_funcs: 'math\.pi' is a float, not a callable"),
    ],
)
def test_bad_dotted_reward_paths_are_one_line_errors(path, message):
    with pytest.raises(ValueError, match=message) as error:
        get_reward_funcs([path])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "completion, answer, expected",
    [
        ("To solve this, 123 + 45 =", "168", 0.0),  # the question restated: Math-Verify alone says 168
        (r"\boxed{123+45}", "168", 0.0),
        (r"\boxed{2^{10}}", "1024", 0.0),
        ("123 + 45 = 168.", "168", 1.0),
        (r"\boxed{168}", "168", 1.0),
        ("It is 1,024.", "1024", 1.0),
        (r"\boxed{-3}", "-3", 1.0),
        (r"\boxed{\frac{3}{4}}", "3/4", 1.0),
        ("x = 3/4", "0.75", 1.0),
        (r"\boxed{2\sqrt{3}}", r"2\sqrt{3}", 1.0),  # an expression answers where the gold answer is one
    ],
)
def test_a_number_is_answered_only_by_a_number(completion, answer, expected):
    assert math_accuracy_reward([completion], [answer]) == [expected]
