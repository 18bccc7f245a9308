"""Dataset loaders: prompt/answer columns, the one template, Hub column mapping (via local files), clear errors."""

import json

import pytest

from rs_trl.data import PROMPT_TEMPLATE, load_benchmark, load_math_dataset, load_prompt_dataset
from rs_trl.rewards import math_accuracy_reward


def test_arithmetic_chat_and_plain_seeded():
    chat = load_math_dataset("arithmetic", limit=20, seed=3)
    assert chat.column_names == ["prompt", "answer"] and len(chat) == 20
    message = chat[0]["prompt"]
    assert message[0]["role"] == "user" and message[0]["content"].endswith("within \\boxed{}.")
    plain = load_math_dataset("arithmetic", limit=20, seed=3, chat=False)
    assert plain[0]["prompt"] == message[0]["content"]
    assert load_math_dataset("arithmetic", limit=20, seed=3)["answer"] == chat["answer"]  # seeded
    assert load_math_dataset("arithmetic", split="test", limit=20, seed=3)["prompt"] != chat["prompt"]
    # answers are what the problem says: the reward accepts the true result in a box
    problems = [p[0]["content"].split("?")[0].removeprefix("What is ") for p in chat["prompt"]]
    boxed = [f"\\boxed{{{eval(expression)}}}" for expression in problems]
    assert math_accuracy_reward(boxed, answer=chat["answer"]) == [1.0] * 20


def test_gsm_symbolic_and_offline_benchmarks():
    gsm = load_math_dataset("gsm_symbolic", limit=3)
    assert len(gsm) == 3 and all(a.lstrip("-").isdigit() for a in gsm["answer"])
    bench = load_benchmark("arithmetic-test", limit=7)
    assert bench.column_names == ["prompt", "answer", "id", "problem"] and len(bench) == 7
    assert len(load_benchmark("arithmetic-test")) == 50


def test_champ_benchmark():
    pytest.importorskip("champ_dataset")
    champ = load_benchmark("champ", chat=False)
    assert len(champ) == 270 and champ[0]["prompt"] == PROMPT_TEMPLATE.format(question=champ[0]["problem"])


def test_hub_loader_maps_columns_dedups_and_strips_dapo_instructions(tmp_path):
    # A local directory with DAPO-Math-17k's layout stands in for the Hub (load_dataset reads both the same way).
    prefix = (
        "Solve the following math problem step by step. The last line of your response should be of the form "
        "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
    )
    suffix = '\n\nRemember to put your answer on its own line after "Answer:".'
    rows = [
        {"prompt": [{"role": "user", "content": prefix + q + suffix}], "reward_model": {"ground_truth": a}}
        for q, a in [("What is 1+1?", "2"), ("What is 2+2?", "4"), ("What is 1+1?", "2")]
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    dataset = load_math_dataset("dapo17k", hub_id=str(tmp_path), chat=False)
    assert dataset["prompt"] == [PROMPT_TEMPLATE.format(question=q) for q in ("What is 1+1?", "What is 2+2?")]
    assert dataset["answer"] == ["2", "4"]
    assert len(load_math_dataset("dapo17k", hub_id=str(tmp_path), limit=1)) == 1


def test_hub_loader_missing_column_error(tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps({"question": "q", "solution": "s"}))
    with pytest.raises(ValueError, match=r"no column\(s\) \['answer', 'problem'\].*columns are"):
        load_math_dataset("math12k", hub_id=str(tmp_path))
    with pytest.raises(ValueError, match="no column"):
        load_benchmark("aime24", hub_id=str(tmp_path))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: load_math_dataset("gsm8k"), "allowed: math12k, deepmath103k, dapo17k, arithmetic, gsm_symbolic"),
        (lambda: load_benchmark("aime26"), "allowed: aime24, aime25"),
        (lambda: load_math_dataset("arithmetic", limit=0), "limit"),
        (lambda: load_math_dataset("arithmetic", split="validation"), "split"),
        (lambda: load_math_dataset("arithmetic", colour="red"), "colour"),
        (lambda: load_benchmark("champ", max_operand=3), "max_operand"),
    ],
)
def test_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("name", ["arithmetic", "gsm_symbolic"])
def test_held_out_problems_are_never_training_problems(name):
    """Train on far more rows than the problem space holds; no test or benchmark problem may appear among them."""
    train = {p[0]["content"] for p in load_math_dataset(name, limit=3000 if name == "arithmetic" else 600)["prompt"]}
    for seed in (0, 1):
        test = [p[0]["content"] for p in load_math_dataset(name, split="test", limit=50, seed=seed)["prompt"]]
        assert len(set(test)) == len(test) == 50 and not train & set(test)
    benchmark = [p[0]["content"] for p in load_benchmark(f"{name}-test")["prompt"]]
    assert len(set(benchmark)) == len(benchmark) == 50 and not train & set(benchmark)


def test_asking_for_more_held_out_problems_than_exist_is_a_clear_error():
    with pytest.raises(ValueError, match="arithmetic: only 63 distinct 'test' problems exist, 64 were asked for"):
        load_math_dataset("arithmetic", split="test", limit=64)


@pytest.mark.parametrize(
    "call, fix",
    [
        (lambda: load_benchmark("aime24", hub_id="rs-trl-tests/not-cached"), "--benchmarks arithmetic-test"),
        (lambda: load_math_dataset("math12k", hub_id="rs-trl-tests/not-cached"), "arithmetic, gsm_symbolic"),
        (lambda: load_prompt_dataset("rs-trl-tests/not-cached"), "local directory"),
    ],
)
def test_unreachable_hub_dataset_names_it_and_the_way_out(call, fix):
    """HF_HUB_OFFLINE=1 (tests/conftest.py) and not cached: a ValueError naming the dataset, not a ConnectionError."""
    with pytest.raises(ValueError, match="rs-trl-tests/not-cached") as error:
        call()
    assert "HF_HUB_OFFLINE" in str(error.value) and fix in str(error.value)
