"""Helpers shared by tests (tests import from here and from rs_trl, never from each other)."""

import math
import socket
import sys
from pathlib import Path

import torch
from trl import GRPOConfig

from rs_trl.tiny import cpu_training_args

ROOT = Path(__file__).resolve().parents[1]
PAPER_RECIPE = ROOT / "recipes" / "Qwen2.5-Math-1.5B" / "rs_grpo" / "config_deepmath103k.yaml"
LORA_RECIPE = ROOT / "recipes" / "Qwen2.5-1.5B-Instruct" / "rs_grpo" / "config_math12k_lora.yaml"
# What turns a GPU recipe into a seconds-long CPU run; the recipe's method settings stay as they are.
CPU_OVERRIDES = [
    "--dataset_name", "arithmetic", "--dataset_limit", "16",
    "--dtype", "float32", "--use_cpu", "true", "--bf16", "false", "--use_vllm", "false",
    "--gradient_checkpointing", "false", "--report_to", "none", "--push_to_hub", "false",
    "--max_steps", "2", "--per_device_train_batch_size", "4", "--num_generations", "4",
    "--gradient_accumulation_steps", "1", "--max_completion_length", "8", "--dynamic_sampling_max_rounds", "1",
    "--save_strategy", "no", "--logging_steps", "1", "--log_completions", "false",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_cpu_processes(*command: str) -> list[str]:
    """`accelerate launch` of `command` (a script and its arguments, or `-m module ...`) on 2 gloo CPU processes with
    the shipped cpu_gloo.yaml, on a free port."""
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    config = ["--config_file", str(ROOT / "recipes" / "accelerate_configs" / "cpu_gloo.yaml")]
    return [*launch, *config, "--main_process_port", str(free_port()), *command]


def cpu_args(output_dir, **overrides):
    """RSGRPOConfig for fast, deterministic CPU runs of the tiny model."""
    return cpu_training_args(output_dir, **overrides)


def grpo_config_like(rs_args):
    """The GRPOConfig a TRL user would write for the same run (every field RSGRPOConfig shares)."""
    shared = {k: v for k, v in rs_args.to_dict().items() if k in GRPOConfig.__dataclass_fields__}
    shared = {k: getattr(rs_args, k) for k in shared if GRPOConfig.__dataclass_fields__[k].init}
    shared.pop("generation_batch_size", None)
    return GRPOConfig(**shared)


def reference(rewards, group_size, beta):
    """Independent float64 computation, one group at a time, straight from the paper's formula."""
    out = []
    for start in range(0, len(rewards), group_size):
        group = [float(r) for r in rewards[start : start + group_size]]
        valid = [r for r in group if not math.isnan(r)]
        if len(set(valid)) <= 1:
            out += [0.0] * len(group)
            continue
        if beta == 0:
            mean = sum(valid) / len(valid)
            out += [0.0 if math.isnan(r) else r - mean for r in group]
            continue
        shift = max(beta * r for r in valid)  # exp(β r − shift) cannot overflow
        mean_exp = sum(math.exp(beta * r - shift) for r in valid) / len(valid)
        out += [0.0 if math.isnan(r) else (math.exp(beta * r - shift) / mean_exp - 1) / beta for r in group]
    return torch.tensor(out, dtype=torch.float64)


def score_like_trl(trainers, num_generations: int, n_prompts: int = 2) -> list[dict]:
    """One generation batch through each trainer's `_generate_and_score_completions` from the same seed; the
    completions must come out identical (and carry a signal), so the advantages are comparable."""
    batch = [{"prompt": f"Compute {i} + 7."} for i in range(n_prompts) for _ in range(num_generations)]
    outputs = []
    for trainer in trainers:
        trainer.model.train()
        torch.manual_seed(0)
        outputs.append(trainer._generate_and_score_completions(batch))
    assert torch.equal(outputs[0]["completion_ids"], outputs[1]["completion_ids"])
    assert outputs[0]["advantages"].abs().sum() > 0
    return outputs
