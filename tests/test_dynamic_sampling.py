import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer

from rs_trl import RSGRPOConfig, RSGRPOTrainer
from rs_trl.advantages import zero_variance_groups
from rs_trl.dynamic_sampling import DynamicSampler, RefillSampler, groups_to_generate
from tests.helpers import cpu_args

REPO = Path(__file__).resolve().parents[1]


def numbered_prompts(n=32):
    return Dataset.from_dict({"prompt": [f"Question {i} :" for i in range(n)], "qid": list(range(n))})


def even_prompts_constant(completions, qid, **kwargs):
    """Prompts with an even id always score 1 (zero variance); odd ones score by their text (varied)."""
    return [1.0 if q % 2 == 0 else float(sum(map(ord, c)) % 97) for c, q in zip(completions, qid)]


def always_constant(completions, **kwargs):
    return [0.0] * len(completions)


def make_trainer(model_dir, tmp_path, reward, **overrides):
    args = cpu_args(tmp_path, **overrides)
    return RSGRPOTrainer(model=model_dir, reward_funcs=reward, args=args, train_dataset=numbered_prompts())


def test_zero_variance_groups_ignore_unscorable_samples():
    nan = float("nan")
    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, nan, 2.0, 2.0, nan, nan, nan, nan, nan])
    assert zero_variance_groups(rewards, 4).tolist() == [True, False, True, True]


def test_round_size_covers_the_mean_plus_a_margin():
    assert groups_to_generate(32, 0.0, 8) == 4  # nothing to predict: exactly the quota
    for p in (0.25, 0.5, 0.75):
        per_process = groups_to_generate(32, p, 8)
        total = per_process * 8
        assert 32 / (1 - p) <= total <= 1.25 * 32 / (1 - p) + 8  # mean + ~1 sd, within the sample budget
    assert groups_to_generate(2, 1.0, 1) == groups_to_generate(2, 0.95, 1) <= 20  # a pessimistic estimate is capped


def test_global_quota_moves_surplus_to_processes_that_are_short():
    sampler = DynamicSampler(RefillSampler(100, seed=0), num_processes=2, groups_per_process=2, max_rounds=3)
    assert sampler.start_step() == 0
    # Process 0 found 3 informative groups, process 1 only 1: one round suffices with a global quota.
    assert sampler.observe(torch.tensor([[False, False, False], [True, True, False]])) == 0
    assignment, padded = sampler.finish_step()
    assert padded == 0
    assert assignment[0] == [(0, 0, 0), (0, 0, 1)]
    assert assignment[1] == [(1, 0, 2), (0, 0, 2)]  # its own group first, then process 0's surplus
    assert sampler.zero_variance_rate == pytest.approx(2 / 6)
    assert sampler.start_step() >= 1  # the next main round is oversampled in advance


def test_shortfall_is_padded_with_zero_variance_groups_and_state_restores():
    sampler = DynamicSampler(RefillSampler(100, seed=0), num_processes=1, groups_per_process=2, max_rounds=1)
    sampler.start_step()
    assert sampler.observe(torch.tensor([[True, False]])) == 1
    assert sampler.observe(torch.tensor([[True]])) == 0  # no rounds left
    assignment, padded = sampler.finish_step()
    assert padded == 1 and assignment == [[(0, 0, 1), (0, 0, 0)]]
    sampler.refill.take(5)
    restored = DynamicSampler(RefillSampler(100, seed=0), num_processes=1, groups_per_process=2, max_rounds=1)
    restored.load_state_dict(json.loads(json.dumps(sampler.state_dict())))
    assert restored.zero_variance_rate == sampler.zero_variance_rate
    assert restored.refill.take(3) == sampler.refill.take(3)


@pytest.mark.timeout(10)  # the bug this guards against was an endless loop
def test_refill_state_from_a_larger_dataset_starts_a_new_pass_instead_of_spinning():
    """Resuming with a smaller dataset: the saved position (9) lies past the new end (8 rows)."""
    sampler = RefillSampler(8, seed=0)
    sampler.load_state_dict({"pass_index": 0, "position": 9, "drawn": 9})
    drawn = sampler.take(8)
    assert sorted(drawn) == list(range(8))  # a whole fresh pass
    assert (sampler.pass_index, sampler.position) == (2, 0)


def test_refill_sampler_covers_each_pass_and_restores():
    sampler = RefillSampler(10, seed=3)
    first_pass = sampler.take(6) + sampler.take(4)
    assert sorted(first_pass) == list(range(10))
    state = sampler.state_dict()
    upcoming = sampler.take(7)
    restored = RefillSampler(10, seed=3)
    restored.load_state_dict(state)
    assert restored.take(7) == upcoming


def test_only_informative_groups_reach_the_loss(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, even_prompts_constant, dynamic_sampling_max_rounds=20)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer.model.train()
    inputs = [row for row in numbered_prompts().select(range(2)) for _ in range(4)]  # prompt 0 is constant
    batch = trainer._generate_and_score_completions(inputs)

    assert len(batch["advantages"]) == len(inputs) == batch["completion_ids"].size(0)
    prompts = tokenizer.batch_decode(batch["prompt_ids"], skip_special_tokens=True)
    ids = [int(p.split()[1]) for p in prompts]
    assert all(i % 2 == 1 for i in ids), ids  # every kept group has non-zero reward variance
    assert all(len(set(ids[g : g + 4])) == 1 for g in range(0, len(ids), 4))  # groups stay whole
    assert (batch["advantages"].view(-1, 4).abs().sum(dim=1) > 0).all()
    assert batch["num_items_in_batch"] == batch["completion_mask"].sum()
    metrics = trainer._metrics["train"]
    assert metrics["dynamic_sampling/rounds"][-1] >= 1
    assert metrics["dynamic_sampling/groups_kept"][-1] == 2
    assert metrics["dynamic_sampling/padded_groups"][-1] == 0


def test_exhaustion_error_names_the_zero_variance_fraction(tiny_model_dir, tmp_path):
    trainer = make_trainer(
        tiny_model_dir,
        tmp_path,
        always_constant,
        dynamic_sampling_max_rounds=2,
        dynamic_sampling_on_exhaustion="error",
    )
    trainer.model.train()
    inputs = [row for row in numbered_prompts().select(range(2)) for _ in range(4)]
    # Nothing informative: one refill round, not all of dynamic_sampling_max_rounds, then the error.
    with pytest.raises(RuntimeError, match=r"after 1 extra generation rounds: 100% of the 4 groups"):
        trainer._generate_and_score_completions(inputs)


def test_exhaustion_pad_fills_with_zero_advantage_groups(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, always_constant, dynamic_sampling_max_rounds=1)
    trainer.train()
    metrics = [h for h in trainer.state.log_history if "dynamic_sampling/padded_groups" in h]
    assert metrics and all(h["dynamic_sampling/padded_groups"] == 2 for h in metrics)
    assert metrics[0]["dynamic_sampling/groups_generated"] == 4  # 2 groups + 2 refilled (no estimate yet), no more
    # The first step found nothing informative, so the next one does not refill at all.
    assert [h["dynamic_sampling/rounds"] for h in metrics] == [1, 0]


def test_nothing_informative_costs_at_most_one_extra_round_then_none():
    sampler = DynamicSampler(RefillSampler(1000, seed=0), num_processes=2, groups_per_process=4, max_rounds=8)
    rounds = []
    for _ in range(10):
        size = sampler.start_step() + 4
        count = 0
        while size:
            count += 1
            size = sampler.observe(torch.ones(2, size, dtype=torch.bool))
        assert sampler.stopped_early
        sampler.finish_step()
        rounds.append(count)
    assert rounds == [2] + [1] * 9  # max_rounds=8 would allow 9 a step
    # One informative group is evidence enough to refill as before, even after empty steps.
    sampler.start_step()
    assert sampler.previous_step_empty
    assert sampler.observe(torch.tensor([[True, True, True, False], [True, True, True, True]])) > 0
    assert not sampler.stopped_early


def test_an_all_zero_variance_run_costs_at_most_1_5_rounds_per_step(tiny_model_dir, tmp_path, caplog):
    """Counted from outside: reward calls, one per generation round (dynamic_sampling_max_rounds at its default)."""
    calls = []

    def constant_and_counted(completions, **kwargs):
        calls.append(len(completions))
        return [0.0] * len(completions)

    trainer = make_trainer(tiny_model_dir, tmp_path, constant_and_counted, max_steps=6)
    with caplog.at_level("WARNING", logger="rs_trl.dynamic_sampling"):
        trainer.train()
    generation_steps = trainer.state.global_step  # steps_per_generation = 1 here
    assert len(calls) / generation_steps <= 1.5
    warnings = [r for r in caplog.records if "stopped refilling early" in r.getMessage()]
    assert len(warnings) == 1 and "dynamic_sampling_max_rounds=8" in warnings[0].getMessage()


@pytest.mark.parametrize(
    "overrides",
    [
        dict(steps_per_generation=2, per_device_train_batch_size=4),
        dict(num_iterations=2),
        dict(gradient_accumulation_steps=2, per_device_train_batch_size=4),
        dict(beta=0.04),
    ],
    ids=["steps_per_generation", "num_iterations", "grad_accum", "kl"],
)
def test_training_combinations(tiny_model_dir, tmp_path, overrides):
    trainer = make_trainer(tiny_model_dir, tmp_path, even_prompts_constant, max_steps=2, **overrides)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and torch.isfinite(torch.tensor(losses)).all()
    filtered = [h for h in trainer.state.log_history if "dynamic_sampling/groups_kept" in h]
    groups_per_generation = trainer.args.generation_batch_size // trainer.args.num_generations
    assert filtered and all(h["dynamic_sampling/groups_kept"] == groups_per_generation for h in filtered)


def test_config_rejects_groups_split_across_processes(monkeypatch):
    # Two processes with 2 samples each: TRL accepts the global batch of 4, but each group would straddle both.
    monkeypatch.setattr(RSGRPOConfig, "world_size", property(lambda self: 2))
    with pytest.raises(ValueError, match="whole groups on every process"):
        RSGRPOConfig(output_dir="/tmp/x", use_cpu=True, per_device_train_batch_size=2, num_generations=4)
    RSGRPOConfig(
        output_dir="/tmp/x", use_cpu=True, per_device_train_batch_size=2, num_generations=4, dynamic_sampling=False
    )


@pytest.mark.slow
def test_two_processes_agree_on_rounds_and_batch_sizes(tiny_model_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(REPO / "tests" / "scripts" / "ds_two_process.py"),
        tiny_model_dir,
        str(tmp_path),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    records = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert len(records[0]) == len(records[1]) >= 2
    for step0, step1 in zip(*records):
        for key in ("rounds", "groups_generated", "groups_kept", "num_items_in_batch", "refill_drawn"):
            assert step0[key] == step1[key], (key, step0, step1)
        assert step0["local_rows"] == step1["local_rows"] == 8
    assert any(step["rounds"] >= 1 for step in records[0])  # refills really happened across processes
    assert sum(step["local_rows"] for step in records[0]) > 0


def test_reward_metrics_keep_trls_meaning_and_the_trained_batch_has_its_own(tiny_model_dir, tmp_path):
    """`reward`, `reward_std`, `frac_reward_zero_std`, `rewards/<f>/mean`: everything the policy generated for the step
    (what a run without dynamic sampling logs, so dashboards compare like with like); the trained batch's under
    `dynamic_sampling/trained_*`; the completions table and length metrics show the trained rows."""
    generated = []

    def recorded(completions, qid, **kwargs):
        generated.extend(even_prompts_constant(completions, qid))
        return generated[-len(completions) :]

    recorded.__name__ = "even_prompts_constant"
    trainer = make_trainer(tiny_model_dir, tmp_path, recorded, dynamic_sampling_max_rounds=20)
    trainer.model.train()
    inputs = [row for row in numbered_prompts().select(range(2)) for _ in range(4)]  # prompt 0 is constant
    batch = trainer._generate_and_score_completions(inputs)
    metrics = trainer._metrics["train"]
    assert metrics["dynamic_sampling/rounds"][-1] >= 1  # several rounds ran...
    for name in ("reward", "reward_std", "completions/mean_length", "rewards/even_prompts_constant/faults_error"):
        assert len(metrics[name]) == 1, name  # ...but each metric has one entry for the step
    everything = torch.tensor(generated)
    assert len(everything) > len(inputs)
    assert metrics["reward"][0] == pytest.approx(everything.mean().item())
    assert metrics["rewards/even_prompts_constant/mean"][0] == pytest.approx(everything.mean().item())
    assert metrics["reward_std"][0] == pytest.approx(everything.std().item())
    assert metrics["frac_reward_zero_std"][0] > 0  # the constant groups were generated...
    trained_rewards = list(trainer._logs["rewards"]["even_prompts_constant"])
    assert len(trained_rewards) == len(inputs)
    assert metrics["dynamic_sampling/trained_reward"][0] == pytest.approx(sum(trained_rewards) / len(trained_rewards))
    assert metrics["dynamic_sampling/trained_frac_reward_zero_std"][0] == 0  # ...and filtered out
    assert metrics["completions/mean_length"][0] == pytest.approx(batch["completion_mask"].sum(1).float().mean())
    # The table shows the trained rows with the advantages the loss uses.
    assert list(trainer._logs["advantages"]) == pytest.approx(batch["advantages"].tolist())
    assert all(int(p.split()[1]) % 2 == 1 for p in trainer._logs["prompt"])


def test_log_probs_are_computed_only_for_trained_rows(tiny_model_dir, tmp_path):
    """No-grad forward rows (old policy + reference) per trained row: 2.0 with KL and num_iterations=2, whatever
    dynamic sampling discards. Counted from outside, with hooks on the models' forward, generation excluded."""
    trainer = make_trainer(
        tiny_model_dir,
        tmp_path,
        even_prompts_constant,
        beta=0.04,
        num_iterations=2,
        max_steps=4,
        dynamic_sampling_max_rounds=20,
    )
    counts = {"rows": 0, "generating": False}
    generate = trainer.model.generate

    def generate_uncounted(*args, **kwargs):
        counts["generating"] = True
        try:
            return generate(*args, **kwargs)
        finally:
            counts["generating"] = False

    def count(module, args, kwargs):
        if not torch.is_grad_enabled() and not counts["generating"]:
            counts["rows"] += kwargs["input_ids"].size(0) if "input_ids" in kwargs else args[0].size(0)

    trainer.model.generate = generate_uncounted
    for model in (trainer.model, trainer.ref_model):
        model.register_forward_pre_hook(count, with_kwargs=True)
    trainer.train()
    metrics = [h for h in trainer.state.log_history if "dynamic_sampling/groups_generated" in h]
    generation_steps = trainer.state.global_step // 2
    trained_rows = generation_steps * trainer.args.generation_batch_size
    generated_rows = sum(h["dynamic_sampling/groups_generated"] for h in metrics) * 4
    assert generated_rows > trained_rows  # groups were really dropped
    assert counts["rows"] / trained_rows == 2.0


class StubLLM:
    """Stands in for `vllm.LLM` (not installable here): records sleep/wake calls and echoes a fixed completion."""

    def __init__(self):
        self.calls = []

    def sleep(self, level=1):
        self.calls.append(("sleep", level))

    def wake_up(self, tags=None):
        self.calls.append(("wake_up", tuple(tags or ())))

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        completion = SimpleNamespace(token_ids=[7, 8], logprobs=None)
        return [SimpleNamespace(prompt_token_ids=p["prompt_token_ids"], outputs=[completion]) for p in prompts]


def colocated_sleeping_vllm(monkeypatch):
    """TRL's real `VLLMGeneration.generate` in colocate + sleep mode, over a stub engine; counts weight syncs."""
    from trl.generation import vllm_generation

    monkeypatch.setattr(vllm_generation, "SamplingParams", dict, raising=False)
    generation = object.__new__(vllm_generation.VLLMGeneration)
    settings = dict(
        mode="colocate", enable_sleep_mode=True, _llm_weights_sleeping=True, llm=StubLLM(), model=torch.nn.Linear(1, 1),
        temperature=1.0, top_p=1.0, top_k=0, min_p=None, repetition_penalty=1.0, max_completion_length=2,
        logprobs=0, generation_kwargs={}, structured_outputs_regex=None, tensor_parallel_size=1, syncs=0,
        accelerator=SimpleNamespace(process_index=0, is_main_process=True),
    )  # fmt: skip
    generation.__dict__.update(settings)

    def sync_weights():  # what TRL's sync does to the engine's state; the weight push itself needs a real vLLM
        generation.syncs += 1
        generation.llm.wake_up(tags=["weights"])
        generation._llm_weights_sleeping = False

    generation.sync_weights = sync_weights
    return generation


def test_refill_rounds_do_not_reload_vllm_weights(tiny_model_dir, tmp_path, monkeypatch):
    trainer = make_trainer(tiny_model_dir, tmp_path, even_prompts_constant)
    generation = colocated_sleeping_vllm(monkeypatch)
    for _ in range(3):  # TRL alone: every round of a step re-pushes the weights
        generation.generate([[1, 2]], None, 1)
    assert generation.syncs == 3

    generation = colocated_sleeping_vllm(monkeypatch)
    monkeypatch.setattr(trainer, "use_vllm", True)
    monkeypatch.setattr(trainer, "vllm_generation", generation, raising=False)
    for step in range(2):
        with trainer._vllm_awake():
            for _ in range(3):  # main round + two refill rounds
                generation.generate([[1, 2]], None, 1)
        assert generation.syncs == step + 1  # one weight sync per step
        assert generation._llm_weights_sleeping and generation.llm.calls[-1] == ("sleep", 2)
    assert generation.llm.calls.count(("sleep", 2)) == 2
    assert generation.llm.calls.count(("wake_up", ("kv_cache",))) == 2


def test_multimodal_datasets_are_rejected_before_the_model_loads(tmp_path):
    dataset = Dataset.from_dict({"prompt": ["Describe."], "image": [None]})
    with pytest.raises(ValueError, match="dynamic_sampling does not support multimodal.*dynamic_sampling=False"):
        RSGRPOTrainer(
            model="/nonexistent/model-must-not-be-loaded",
            reward_funcs=always_constant,
            args=cpu_args(tmp_path),
            train_dataset=dataset,
        )
