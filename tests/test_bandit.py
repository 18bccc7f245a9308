"""The 100-armed bandit: landscape, vectorised advantage, lemmas, a shortened run and the CLI."""

import json
import math

import pytest
import torch

from rs_trl.advantages import risk_sensitive_advantages
from rs_trl.experiments import bandit


def test_landscape_and_initial_policy_match_the_paper():
    rewards = bandit.reward_landscape()
    probs = torch.softmax(bandit.initial_logits(), -1)
    assert rewards.argmax() == 40 and rewards[40] == pytest.approx(1.0, abs=1e-3)
    assert rewards[75] == pytest.approx(0.6, abs=1e-3)
    assert probs.argmax() == 75
    assert probs[40] == pytest.approx(0.0044, abs=2e-4)
    assert (probs * rewards).sum() == pytest.approx(0.375, abs=2e-3)


def test_batched_advantages_equal_risk_sensitive_advantages_per_beta():
    betas = [0.0, 0.5, 2.0, 4.0, 64.0, -3.0]
    rewards = torch.rand(
        len(betas),
        3,
        16,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
    )
    rewards[:, 0, :8] = rewards[:, 0, 8:]  # repeated values inside a group
    batched = bandit.batched_risk_sensitive_advantages(rewards, torch.tensor(betas))
    for i, beta in enumerate(betas):
        expected = risk_sensitive_advantages(rewards[i].flatten(), 16, beta).view(3, 16)
        torch.testing.assert_close(batched[i], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 3.0, 50.0])
def test_expected_update_is_the_exact_gradient_of_the_objective(beta):
    logits = torch.randn(
        7,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(1),
        requires_grad=True,
    )
    rewards = torch.rand(7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    probs = torch.softmax(logits, -1)
    objective = (probs * rewards).sum() if beta == 0 else torch.log((probs * torch.exp(beta * rewards)).sum()) / beta
    (gradient,) = torch.autograd.grad(objective, logits)
    torch.testing.assert_close(bandit.expected_update(logits.detach(), rewards, beta), gradient)


def test_lemma_1_standard_update_lowers_and_lemma_2_large_beta_raises_optimal_probability():
    numbers = bandit.lemma_numbers()
    sharp = numbers["sharpened"]
    assert sharp["delta_pi_optimal_beta_0"] < 0  # Lemma 1
    assert sharp["delta_pi_optimal_beta_16"] > 0  # Lemma 2
    threshold = sharp["smallest_improving_beta"]
    assert 2 < threshold < 8
    logits, rewards = (
        bandit.LEMMA_SHARPNESS * bandit.initial_logits(),
        bandit.reward_landscape(),
    )
    assert bandit.optimal_probability_change(logits, rewards, threshold * 0.99) < 0
    assert bandit.optimal_probability_change(logits, rewards, threshold * 1.01) > 0


def test_lemma_2_holds_for_random_policies():
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):
        logits = 3 * torch.randn(10, dtype=torch.float64, generator=generator)
        rewards = torch.rand(10, dtype=torch.float64, generator=generator)
        beta = bandit.smallest_improving_beta(logits, rewards, max_beta=1e4)
        assert bandit.optimal_probability_change(logits, rewards, 2 * beta + 1) > 0


def test_shortened_run_shapes_and_risk_seeking_helps():
    betas = [0.0, 8.0]
    run = bandit.run_bandit(steps=16 * 5000, betas=betas, seeds=2, progress=False)
    assert run["rewards"].shape == (2, 2, 80_000) and run["entropy"].shape == (
        2,
        2,
        5000,
    )
    results = bandit.summarize(run["rewards"], betas)
    assert all(0.55 < r < 0.61 for r in results["0"]["final_reward"])  # trapped on the local peak
    assert all(r > 0.9 for r in results["8"]["final_reward"])  # escaped to the global one
    assert all(step is not None and step < 80_000 for step in results["8"]["escape_step"])
    assert results["0"]["escape_step"] == [None, None]


def test_runs_are_reproducible():
    first = bandit.run_bandit(steps=1600, betas=[0.0, 4.0], seeds=2, seed=5, progress=False)
    second = bandit.run_bandit(steps=1600, betas=[0.0, 4.0], seeds=2, seed=5, progress=False)
    assert torch.equal(first["rewards"], second["rewards"])


def test_moving_average_and_escape_step():
    rewards = torch.cat([torch.full((1, 1, 2000), 0.5), torch.ones(1, 1, 2000)], dim=-1)
    averaged = bandit.moving_average(rewards)
    assert averaged.shape[-1] == 4000 - 1000 + 1
    # Trailing mean > 0.9 needs > 800 of the last 1000 steps at 1.0: first at step 2000 + 801.
    assert bandit.summarize(rewards, [0.0])["0"]["escape_step"] == [2801]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"steps": 1000}, "steps"),
        ({"betas": [float("nan")]}, "betas"),
        ({"seeds": 0}, "seeds"),
        ({"batch_size": 1, "steps": 16}, "batch_size"),
        ({"lr": -0.1}, "lr"),
    ],
)
def test_bad_input_raises_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        bandit.run_bandit(**{"steps": 160, **kwargs}, progress=False)


def test_cli_writes_json_and_png(tmp_path, capsys):
    assert (
        bandit.main(
            [
                "--out",
                str(tmp_path),
                "--steps",
                "3200",
                "--betas",
                "0",
                "4",
                "--seeds",
                "2",
            ]
        )
        == 0
    )
    data = json.loads((tmp_path / "bandit.json").read_text())
    assert data["config"]["steps"] == 3200 and data["config"]["betas"] == [0.0, 4.0]
    assert set(data["results"]) == {"0", "4"}
    assert len(data["results"]["4"]["final_reward"]) == 2 and len(data["results"]["4"]["escape_step"]) == 2
    assert (tmp_path / "bandit.png").stat().st_size > 10_000
    assert bandit.main(["--lemmas"]) == 0
    assert "Lemma 1" in capsys.readouterr().out


def test_cli_module_dispatch(tmp_path):
    from rs_trl.cli import main

    assert (
        main(
            [
                "bandit",
                "--out",
                str(tmp_path),
                "--steps",
                "160",
                "--betas",
                "2",
                "--seeds",
                "1",
            ]
        )
        == 0
    )
    assert (tmp_path / "bandit.json").exists()


def test_methods_reproduce_the_beta_runs_and_run_every_estimator():
    betas = bandit.run_bandit(steps=16 * 600, betas=[4.0, 0.0], seeds=2, progress=False)
    methods = bandit.run_methods(
        ["rs_grpo:4", "grpo", "pass_at_k:4", "pkpo:4", "rs_grpo:adaptive", "rs_grpo:cosine:8:2"],
        steps=16 * 600,
        seeds=2,
        progress=False,
    )
    # Same draws, same advantage: RS-GRPO at β 4 and GRPO are the β runs exactly.
    assert torch.equal(methods["rewards"][:2], betas["rewards"])
    assert methods["rewards"].shape == (6, 2, 16 * 600)
    assert torch.isfinite(methods["final_policy"]).all()
    # The others learn something different from GRPO on the same draws.
    assert all(not torch.equal(methods["final_policy"][m], methods["final_policy"][1]) for m in range(2, 6))


def test_cli_methods_write_their_own_json_and_png(tmp_path):
    argv = ["--out", str(tmp_path), "--steps", "1600", "--seeds", "1", "--methods", "grpo", "pkpo:4"]
    assert bandit.main(argv) == 0
    data = json.loads((tmp_path / "bandit_methods.json").read_text())
    assert data["config"]["methods"] == ["grpo", "pkpo:4"] and set(data["results"]) == {"grpo", "pkpo:4"}
    assert (tmp_path / "bandit_methods.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="not one of"):
        bandit.main(["--out", str(tmp_path), "--steps", "160", "--methods", "pkpo"])


def test_first_to_escape_counts_each_seed_for_its_fastest_runs():
    results = {
        "a": {"escape_step": [100, 300, None, None]},
        "b": {"escape_step": [200, 300, 50, None]},
        "c": {"escape_step": [None, 400, None, None]},
    }
    assert bandit.first_to_escape(results) == {"a": [0, 1], "b": [1, 2], "c": []}
    rewards = torch.cat([torch.full((2, 1, 2000), 0.5), torch.ones(2, 1, 2000)], dim=-1)
    rewards[1, :, 2000:2100] = 0.5  # run 1 escapes later
    summary = bandit.summarize(rewards, ["early", "late"])
    assert summary["early"]["first_to_escape"] == [0] and summary["late"]["first_to_escape"] == []


@pytest.mark.parametrize("beta", [0.0, 2.0, 8.0])
@pytest.mark.parametrize("p", [0.05, 0.3])
def test_update_to_gradient_ratio_against_full_enumeration_and_autograd(beta, p):
    """Three answers (one correct), groups of 4: the expected RS-GRPO update, enumerated over all 3^4 groups with
    the trainer's advantage, is parallel to the autograd gradient of J, with `update_to_gradient_ratio` as factor."""
    import itertools

    n = 4
    # π = [p, 0.6 (1 − p), 0.4 (1 − p)]: the correct answer with probability p, two unequal wrong ones.
    logits = torch.tensor([math.log(p), math.log(0.6 * (1 - p)), math.log(0.4 * (1 - p))], dtype=torch.float64)
    logits.requires_grad_(True)
    rewards = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    probs = torch.softmax(logits, -1)
    assert probs[0].item() == pytest.approx(p)
    objective = probs[0] if beta == 0 else torch.log((probs * torch.exp(beta * rewards)).sum()) / beta
    (gradient,) = torch.autograd.grad(objective, logits)
    probs = probs.detach()
    expected = torch.zeros(3, dtype=torch.float64)
    for group in itertools.product(range(3), repeat=n):
        chance = torch.prod(probs[list(group)])
        advantages = risk_sensitive_advantages(rewards[list(group)], n, beta)
        for answer, advantage in zip(group, advantages):
            expected += chance * advantage * (torch.nn.functional.one_hot(torch.tensor(answer), 3) - probs) / n
    ratio = bandit.update_to_gradient_ratio(p, beta, group_size=n)
    torch.testing.assert_close(expected, ratio * gradient, rtol=1e-9, atol=1e-12)
    if beta == 0:
        assert ratio == pytest.approx((n - 1) / n)


def test_update_to_gradient_ratio_numbers_quoted_in_the_docs(tmp_path, capsys):
    assert bandit.update_to_gradient_ratio(0.02, 0.0) == pytest.approx(15 / 16)
    assert bandit.update_to_gradient_ratio(0.02, 2.0) == pytest.approx(0.711, abs=5e-4)
    assert bandit.update_to_gradient_ratio(0.02, 8.0) == pytest.approx(0.264, abs=1e-3)
    assert bandit.update_to_gradient_ratio(0.5, 8.0) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="p"):
        bandit.update_to_gradient_ratio(0.0, 2.0)
    assert bandit.main(["--bias", "--out", str(tmp_path)]) == 0
    table = json.loads((tmp_path / "bandit_bias.json").read_text())["ratio_by_beta_then_p"]
    assert table["2"]["0.02"] == pytest.approx(0.7107, abs=1e-4) and table["0"]["0.5"] == 0.9375
    assert "p=0.02" in capsys.readouterr().out


def test_adaptive_beta_by_correct_caps_every_group_at_least_half_correct():
    rows = bandit.adaptive_beta_by_correct(16, target=0.5, max_beta=8.0)
    assert list(rows) == [str(c) for c in range(1, 16)]
    assert all(rows[str(c)]["beta"] == 8.0 for c in range(8, 16))  # ESS fraction never falls below c/16 >= 0.5
    assert all(1.7 < rows[str(c)]["beta"] < 3 and rows[str(c)]["ess_fraction"] == 0.5 for c in range(1, 8))
    assert all(rows[str(c)]["beta"] < 2 for c in range(1, 5))
    assert rows["7"]["update_mass"] / rows["8"]["update_mass"] == pytest.approx(2.74, abs=0.01)
    assert rows["12"]["ess_fraction"] == pytest.approx(0.75, abs=1e-3)
