"""Contract of rs_trl/trl_bridge.py, the only code that touches GRPOTrainer internals: if TRL moves them, fail here.

The behavioural half of the contract (the bridge with its default hook trains exactly like GRPOTrainer) is
`test_bridge_trains_bit_for_bit_like_grpo_trainer` in tests/test_dropin.py."""

import inspect
import re
from pathlib import Path

import trl
from packaging.version import Version
from trl import GRPOTrainer

import rs_trl

TESTED_TRL = (Version("1.16.0"), Version("1.17.0"))
MOVED = (
    "TRL internals the bridge relies on have changed ({}); re-check rs_trl/trl_bridge.py before widening the trl pin."
)


def test_trl_version_is_the_one_we_test_against():
    low, high = TESTED_TRL
    assert low <= Version(trl.__version__) < high, MOVED.format(f"trl {trl.__version__} outside [{low}, {high})")


def test_only_the_bridge_names_trl_generation_internals():
    """The rest of rs_trl reaches TRL's generation internals only through the bridge's hooks and methods."""
    package = Path(rs_trl.__file__).parent
    internals = ("_generate", "_calculate_rewards", "_get_per_token_logps_and_entropies", "vllm_generation", "_logs")
    for path in package.rglob("*.py"):
        if path.name == "trl_bridge.py":
            continue
        source = path.read_text()
        for name in internals:
            found = re.search(rf"\b{name}\b", source)
            assert not found, f"{path.relative_to(package)} names TRL's `{name}`: go through the bridge"
    assert "_metrics[" not in (package / "trainer.py").read_text()


def test_overridden_method_signatures():
    expected = {
        "_generate_and_score_completions": ["self", "inputs"],
        "_generate": ["self", "prompts"],
        "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
        "_save_checkpoint": ["self", "model", "trial"],
        "_load_optimizer_and_scheduler": ["self", "checkpoint"],
    }
    for name, params in expected.items():
        actual = list(inspect.signature(getattr(GRPOTrainer, name)).parameters)
        assert actual == params, MOVED.format(f"{name}{tuple(actual)} != {tuple(params)}")


def test_advantage_flow_inside_generate_and_score():
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    # Rewards are gathered by _calculate_rewards and advantages sliced per process from the global batch.
    for needle in (
        "rewards_per_func = self._calculate_rewards(inputs, prompts, completions, completion_ids_list)",
        "self.accelerator.process_index * len(prompts)",
        'self._logs["advantages"].extend(all_process_advantages.tolist())',
        '"advantages": advantages,',
        '"num_items_in_batch": num_items_in_batch,',
        "unscorable_mask = torch.isnan(rewards_per_func).all(dim=1)",
        "advantages = advantages / (std_rewards + 1e-4)",
    ):
        assert needle in source, MOVED.format(f"`{needle}` no longer in _generate_and_score_completions")
    # normalize_then_sum: the bridge's `total_rewards`/`group_advantages` reproduce this aggregation and its batch-std scaling.
    for needle in (
        "reward_k = (grouped - mean_k) / (std_k + 1e-4)",
        "rewards = (reward_k * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)",
        "advantages = (rewards - torch.nanmean(rewards)) / (std_rewards + 1e-4)",
    ):
        assert needle in source, MOVED.format(f"normalize_then_sum: `{needle}` changed")
    # `log_generated_rewards` mirrors TRL's reward metrics over the whole step's generated rows.
    for needle in (
        "rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)",
        'self._metrics[mode]["reward"].append(torch.nanmean(rewards).item())',
        'self._metrics[mode]["reward_std"].append(nanstd(rewards).item())',
        'self._metrics[mode]["frac_reward_zero_std"].append(is_std_zero.float().mean().item())',
        'self._metrics[mode][f"rewards/{reward_func_name}/mean"].append(mean_rewards)',
    ):
        assert needle in source, MOVED.format(f"reward metrics: `{needle}` changed")
    gather_source = inspect.getsource(GRPOTrainer._calculate_rewards)
    assert "gather(rewards_per_func)" in gather_source, MOVED.format("_calculate_rewards no longer gathers")
    # The reward guard wraps synchronous reward functions, which TRL calls in its own thread with these keywords.
    assert "output_reward_func = reward_func(\n" in gather_source and (
        "prompts=prompts, completions=completions, completion_ids=completion_ids_list, **reward_kwargs"
        in gather_source
    ), MOVED.format("the synchronous reward call")


def test_dynamic_sampling_hooks():
    """Scout rounds override `_generate`, `_calculate_rewards` and `_get_per_token_logps_and_entropies`; the replay
    feeds `_generate`'s 8-tuple back; the vLLM step wrapper relies on how TRL sleeps and re-syncs the engine."""
    from trl.generation.vllm_generation import VLLMGeneration

    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    for needle in (
        ") = self._generate(prompts)",
        "old_per_token_logps, _, _ = self._get_per_token_logps_and_entropies(",
        "ref_per_token_logps, _, _ = self._get_per_token_logps_and_entropies(",
        "if self.environment_factories is not None:",
        "if self.environments:",  # the replay clears both: TRL resets whatever `environments` holds
    ):
        assert needle in source, MOVED.format(f"`{needle}` no longer in _generate_and_score_completions")
    generate = inspect.getsource(GRPOTrainer._generate)
    assert (
        "return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images"
        in (generate)
    ), MOVED.format("_generate's return value")
    params = list(inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies).parameters)
    assert params[:5] == ["self", "model", "input_ids", "attention_mask", "logits_to_keep"], MOVED.format(params)
    vllm_generate = inspect.getsource(VLLMGeneration.generate)
    for needle in ("self.llm.sleep(level=2)", "self._llm_weights_sleeping = True", "self.sync_weights()"):
        assert needle in vllm_generate, MOVED.format(f"VLLMGeneration.generate: `{needle}`")


def test_logs_and_buffers_we_touch():
    init_source = inspect.getsource(GRPOTrainer.__init__)
    assert '"advantages": deque(maxlen=args.generation_batch_size)' in init_source, MOVED.format("_logs layout")
    prepare_source = inspect.getsource(GRPOTrainer._prepare_inputs)
    assert "self._buffered_inputs" in prepare_source and "split_tensor_dict" in prepare_source, MOVED.format(
        "_prepare_inputs buffering"
    )


def test_metrics_checkpoint_folder_and_completion_length_inputs():
    """`log_metrics` appends to `_metrics[mode][name]`; `_save_checkpoint` writes `checkpoint-<global_step>` under
    `_get_output_dir`; the replay's length metrics read `eos_token_ids` and `_tokenizer`, as `_generate` does."""
    from transformers import Trainer

    init_source = inspect.getsource(GRPOTrainer.__init__)
    assert 'self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}' in init_source, MOVED.format(
        "_metrics layout"
    )
    save_source = inspect.getsource(Trainer._save_checkpoint)
    assert 'checkpoint_folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"' in save_source and (
        "self._get_output_dir(trial=trial)" in save_source
    ), MOVED.format("Trainer._save_checkpoint's folder")
    generate_source = inspect.getsource(GRPOTrainer._generate)
    assert "eos_and_pad = [*self.eos_token_ids, self._tokenizer.pad_token_id]" in generate_source, MOVED.format(
        "_generate's truncation test"
    )
