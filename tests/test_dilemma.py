"""The exploration dilemma through RSGRPOTrainer: task, reward, validation, a shortened run and the effect."""

import json

import pytest

from rs_trl.experiments import dilemma


def test_task_answers_are_distinct_two_digit_numbers():
    task = dilemma.make_task(5, seed=1)
    answers = [item[key] for item in task for key in ("correct", "distractor")]
    assert len(set(answers)) == 10 and all(len(a) == 2 and a.isdigit() for a in answers)
    assert [item["prompt"] for item in task] == [f"Q{i}:" for i in range(5)]


def test_answer_reward_mirrors_the_bandit_peaks():
    rewards = dilemma.answer_reward([" 42 ", "17", "99", ""], correct=["42"] * 4, distractor=["17"] * 4)
    assert rewards == [1.0, 0.6, 0.1, 0.1]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"seeds": 0}, "seeds"),
        ({"betas": []}, "betas"),
        ({"num_generations": 1}, "num_generations"),
        ({"learning_rate": 0.0}, "learning_rate"),
        (
            {"sft_correct_share": 0.5, "sft_distractor_share": 0.6},
            "sft_distractor_share",
        ),
        ({"ks": [128]}, "ks"),
        ({"num_prompts": 51}, "num_prompts"),
        ({"methods": ["pkpo"]}, "methods"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        dilemma.DilemmaSettings(**changes).validate()


def test_cli_shortened_run_writes_json_and_png(tmp_path):
    argv = [
        "--out",
        str(tmp_path),
        "--seeds",
        "1",
        "--betas",
        "0",
        "4",
        "--steps",
        "2",
        "--prompts",
        "2",
    ]
    assert dilemma.main(argv + ["--sft-steps", "3", "--eval-samples", "16"]) == 0
    results = json.loads((tmp_path / "dilemma.json").read_text())
    assert set(results["summary"]) == {"before", "beta=0", "beta=4"}
    assert set(results["per_seed"][0]["after"]) == {"0", "4"}
    assert len(results["per_seed"][0]["after"]["4"]["correct_per_prompt"]) == 2
    assert set(results["statistics"]["beta=4"]["difference_from_grpo"]) == set(results["summary"]["before"])
    for metrics in results["summary"].values():
        assert 0 <= metrics["pass@1"] <= metrics["pass@16"] <= 1
    assert (tmp_path / "dilemma.png").stat().st_size > 10_000


def test_correct_reward_is_binary_correctness():
    assert dilemma.correct_reward([" 42 ", "17", ""], correct=["42"] * 3) == [1.0, 0.0, 0.0]


def test_cli_methods_run_writes_its_own_json(tmp_path):
    argv = ["--out", str(tmp_path), "--seeds", "1", "--methods", "grpo", "pass_at_k:2", "--steps", "2"]
    assert dilemma.main(argv + ["--prompts", "2", "--sft-steps", "3", "--eval-samples", "16"]) == 0
    results = json.loads((tmp_path / "dilemma_methods.json").read_text())
    assert set(results["summary"]) == {"before", "grpo", "pass_at_k:2"}
    assert results["config"]["methods"] == ["grpo", "pass_at_k:2"]
    assert (tmp_path / "dilemma_methods.png").stat().st_size > 10_000


@pytest.mark.slow
def test_risk_seeking_keeps_the_rare_correct_answer_that_grpo_loses():
    settings = dilemma.DilemmaSettings(seeds=1, betas=[0.0, 8.0])
    summary = dilemma.run_dilemma(settings, progress=False)["summary"]
    before, grpo, rs = summary["before"], summary["beta=0"], summary["beta=8"]
    assert before["distractor_rate"] > 0.7 and before["pass@1"] < 0.1  # the wrong-leaning warm start
    assert rs["pass@16"] > grpo["pass@16"]
    assert rs["pass@16"] > before["pass@16"]


def test_bootstrap_interval_over_seeds_is_reproducible_and_brackets_the_mean():
    values = [0.1, 0.5, 0.9, 0.4, 0.6]
    mean, low, high = dilemma.bootstrap_mean_interval(values)
    assert mean == 0.5 and 0.1 < low < 0.5 < high < 0.9
    assert dilemma.bootstrap_mean_interval(values) == [mean, low, high]  # seeded
    assert dilemma.bootstrap_mean_interval([0.3]) == [0.3, 0.3, 0.3]


def test_statistics_pair_each_run_with_grpo_on_the_same_seeds():
    settings = dilemma.DilemmaSettings(seeds=3, betas=[0.0, 2.0], ks=[1, 16], eval_samples=16)

    def row(pass_1, pass_16, correct):
        return {"pass@1": pass_1, "pass@16": pass_16, "distractor_rate": 0.5, "correct_per_prompt": correct}

    per_seed = [
        {"before": row(0.1, 0.5, [1, 1]), "after": {"0": row(0.1, 0.4, [0, 3]), "2": row(0.5, 0.9, [9, 2])}},
        {"before": row(0.1, 0.5, [1, 0]), "after": {"0": row(0.2, 0.6, [1, 0]), "2": row(0.6, 1.0, [16, 9])}},
        {"before": row(0.1, 0.5, [2, 2]), "after": {"0": row(0.3, 0.5, [0, 0]), "2": row(0.7, 0.8, [1, 1])}},
    ]
    stats = dilemma.statistics(per_seed, settings)
    assert stats["prompts"] == 6 and stats["max_k"] == "pass@16"
    assert stats["beta=2"]["difference_from_grpo"]["pass@16"][0] == pytest.approx(0.4)
    assert stats["beta=2"]["difference_from_grpo"]["pass@1"][1] > 0  # +0.4 on every seed: interval [0.4, 0.4]
    assert "difference_from_grpo" not in stats["beta=0"] and "difference_from_grpo" not in stats["before"]
    assert stats["beta=0"]["seeds_below_start"] == 1 and stats["beta=2"]["seeds_below_start"] == 0
    assert stats["beta=0"]["prompts_lost"] == 3 and stats["beta=2"]["prompts_lost"] == 0
    assert stats["beta=2"]["prompts_majority_correct"] == 3  # 9, 16 and 9 of 16 samples
    assert stats["beta=0"]["interval"]["pass@16"][0] == 0.5
    assert list(stats["beta=2"]["difference_from"]) == ["before", "beta=0"]
    assert stats["beta=2"]["difference_from"]["beta=0"] == stats["beta=2"]["difference_from_grpo"]
    assert stats["beta=0"]["difference_from"]["before"]["pass@16"][0] == pytest.approx(0.0)
