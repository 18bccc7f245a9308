"""The cluster path run for real on CPU: 2 processes started by `accelerate launch` with the shipped accelerate configs.

Each run trains the tiny model for 2 steps with RS-GRPO and dynamic sampling on a reward that gives every even prompt
zero variance, through tests/scripts/cluster_worker.py, which asserts inside every rank its world size, distributed
type, finite losses and that the advantages reaching the loss are the ones the rewards give. Here we check what
needs all ranks or a clean process: same generation rounds on every rank, weights moved, the saved model reloads with
`from_pretrained` to the trained weights, and resume restores the dynamic-sampling state.

CPU needs only `--num_processes 2 --mixed_precision no` on the command line (the configs are for 8 GPUs in bf16)
and, inside the script, `use_cpu`/`ddp_backend` (see the worker). Every launch gets its own port, so tests of other
checkouts on the same machine cannot collide, and a hang detector kills the whole process group.
`test_vllm_colocate` needs the CPU build of vLLM and runs in CI's second stage, `bash run.sh test-vllm`.
"""

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "accelerate_configs"
WORKER = ROOT / "tests" / "scripts" / "cluster_worker.py"
TRAINED_WEIGHTS = "trained_weights.safetensors"  # written by the worker
HANG_TIMEOUT = 300  # a 2-step run takes 10-40 s on 2 busy cores; 5 minutes means it hangs
STEPS, LOCAL_BATCH = 2, 8
# What CPU needs on top of a shipped config (its process count and bf16 are for 8 GPUs).
CPU_OVERRIDES = ["--num_processes", "2", "--mixed_precision", "no"]
WALL_TIMES: dict[str, float] = {}

pytestmark = pytest.mark.slow


def start(command: list[str], log: Path, **env: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env}
    # Own session: on a hang the whole tree (launcher, torchrun agent, ranks) is killed together.
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def accelerate_launch(launch_args: list[str], worker_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", *launch_args, str(WORKER), *worker_args]


def wait_all(procs: list[subprocess.Popen], logs: list[Path], name: str):
    """Wait for every launcher; fail with the log tail if one fails or any is still running after HANG_TIMEOUT."""
    started = time.monotonic()
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, HANG_TIMEOUT - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(
            f"{name}: hung, killed after {HANG_TIMEOUT} s\n" + "\n".join(log.read_text()[-3000:] for log in logs)
        )
    WALL_TIMES[name] = WALL_TIMES.get(name, 0.0) + time.monotonic() - started
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, f"{name}: exit {proc.returncode}\n{log.read_text()[-6000:]}"


def run(name: str, launch_args: list[str], model_dir: str, out: Path, *worker_args: str, distributed_type: str):
    port = ["--main_process_port", str(free_port())]
    log = out.with_suffix(".log")
    worker = [model_dir, str(out), "--world-size", "2", "--distributed-type", distributed_type, *worker_args]
    wait_all([start(accelerate_launch([*launch_args, *port], worker), log)], [log], name)


def rank_results(out: Path, distributed_type: str, steps: int = STEPS, world_size: int = 2) -> list[dict]:
    """Checks across ranks: all reported, agree on every generation round, and trained every row they were given."""
    ranks = [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(world_size)]
    for result in ranks:
        assert result["world_size"] == world_size and result["distributed_type"] == distributed_type
        assert result["global_step"] == STEPS and len(result["records"]) == steps
        assert all(math.isfinite(loss) for loss in result["losses"]) and len(result["losses"]) == steps
        assert result["checked_rows"] == steps * LOCAL_BATCH  # the advantage check saw every row of the loss
    for result in ranks[1:]:
        assert result["reward_calls"] == ranks[0]["reward_calls"]
        assert [r["rounds"] for r in result["records"]] == [r["rounds"] for r in ranks[0]["records"]]
    return ranks


def check_saved_model(out: Path, model_dir: str, lora: bool = False):
    """The final model reloads, as a user loads it, to the trained weights; and training moved them."""
    trained = load_file(out / TRAINED_WEIGHTS)
    if lora:
        from peft import AutoPeftModelForCausalLM

        saved = dict(AutoPeftModelForCausalLM.from_pretrained(out).named_parameters())
        assert any(t.abs().sum() > 0 for name, t in trained.items() if "lora_B" in name), "LoRA B still zero"
    else:
        from transformers import AutoModelForCausalLM

        saved = dict(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).named_parameters())
        initial = dict(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).named_parameters())
        assert any(not torch.equal(t, initial[name]) for name, t in trained.items()), "no weight moved"
    assert saved.keys() == trained.keys(), sorted(saved.keys() ^ trained.keys())
    differ = [name for name, t in trained.items() if not torch.equal(saved[name].detach(), t)]
    assert not differ, f"saved weights differ from the trained ones: {differ}"


@pytest.fixture(scope="module", autouse=True)
def report_wall_times():
    yield
    print("\ncluster launches, wall time:", ", ".join(f"{k} {v:.0f} s" for k, v in WALL_TIMES.items()))


def test_ddp_gloo_two_processes(tiny_model_dir, tmp_path):
    """`cpu_gloo.yaml` as shipped really starts the 2 processes it names."""
    out = tmp_path / "ddp"
    run(
        "ddp_gloo",
        ["--config_file", str(CONFIGS / "cpu_gloo.yaml")],
        tiny_model_dir,
        out,
        distributed_type="MULTI_CPU",
    )
    ranks = rank_results(out, "MULTI_CPU")
    assert sum(r["rounds"] for r in ranks[0]["records"]) > STEPS  # refill rounds happened, on both ranks alike
    check_saved_model(out, tiny_model_dir)


def test_zero2_lora(tiny_model_dir, tmp_path):
    out = tmp_path / "zero2_lora"
    launch = ["--config_file", str(CONFIGS / "zero2.yaml"), *CPU_OVERRIDES]
    run("zero2_lora", launch, tiny_model_dir, out, "--lora", distributed_type="DEEPSPEED")
    rank_results(out, "DEEPSPEED")
    check_saved_model(out, tiny_model_dir, lora=True)


@pytest.mark.parametrize("config", ["zero2.yaml", "zero3.yaml"])
def test_deepspeed_checkpoint_resume_and_final_model(tiny_model_dir, tmp_path, config):
    """ZeRO-2/3 (ZeRO-3 generates through TRL's parameter gathering): checkpoints, resume, final model."""
    launch = ["--config_file", str(CONFIGS / config), *CPU_OVERRIDES]
    name = Path(config).stem
    out = tmp_path / name
    run(name, launch, tiny_model_dir, out, "--save-steps", "1", distributed_type="DEEPSPEED")
    ranks = rank_results(out, "DEEPSPEED")
    check_saved_model(out, tiny_model_dir)

    # Resume from step 1: the first generation after resuming starts from the refill position the uninterrupted run
    # had at step 1, which the checkpoint saved.
    checkpoint = out / "checkpoint-1"
    saved_state = json.loads((checkpoint / "dynamic_sampling_state.json").read_text())
    assert saved_state["refill"]["drawn"] > 0  # refills happened before the checkpoint, so restoring it is observable
    resumed = tmp_path / f"{name}_resumed"
    run(
        f"{name}_resume",
        launch,
        tiny_model_dir,
        resumed,
        "--resume-from",
        str(checkpoint),
        distributed_type="DEEPSPEED",
    )
    for rank, result in zip(ranks, rank_results(resumed, "DEEPSPEED", steps=STEPS - 1)):
        assert result["records"][0]["step"] == 1
        assert result["records"][0]["sampler"] == saved_state == rank["records"][1]["sampler"]
    check_saved_model(resumed, tiny_model_dir)


def test_fsdp2_is_gpu_only(tiny_model_dir, tmp_path):
    """fsdp.yaml cannot run on CPU: accelerate turns FSDP on only over a GPU-type process group (MULTI_GPU, ...).

    With use_cpu=False and no GPU, accelerate sets up DistributedType.NO (and with use_cpu=True, MULTI_CPU), so the
    model would silently not be sharded; the worker's distributed-type assertion catches it. If a later accelerate
    runs FSDP on CPU, this test fails: then test FSDP2 like ZeRO-3 and update recipes/README.md's table.
    """
    out, log = tmp_path / "fsdp", tmp_path / "fsdp.log"
    launch = ["--config_file", str(CONFIGS / "fsdp.yaml"), *CPU_OVERRIDES, "--main_process_port", str(free_port())]
    worker = [tiny_model_dir, str(out), "--world-size", "2", "--distributed-type", "FSDP"]
    proc = start(accelerate_launch(launch, worker), log)
    with pytest.raises(AssertionError, match="exit 1"):
        wait_all([proc], [log], "fsdp2_gpu_only")
    assert "AssertionError: DistributedType.NO" in log.read_text()


def test_two_machines(tiny_model_dir, tmp_path):
    """recipes/slurm/launch_node.sh as srun runs it on 2 nodes: machine rank 0 and 1, one process each, over gloo."""
    out = tmp_path / "two_machines"
    script = ["bash", str(ROOT / "recipes" / "slurm" / "launch_node.sh"), str(CONFIGS / "cpu_gloo.yaml")]
    worker = [str(WORKER), tiny_model_dir, str(out), "--world-size", "2", "--distributed-type", "MULTI_CPU"]
    # What train.sbatch exports; PATH: the `accelerate` of this interpreter.
    env = {
        "NUM_MACHINES": "2",
        "GPUS_PER_NODE": "1",
        "MAIN_PROCESS_IP": "127.0.0.1",
        "MAIN_PROCESS_PORT": str(free_port()),
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    logs = [tmp_path / f"machine{rank}.log" for rank in (0, 1)]
    procs = [start([*script, *worker], log, SLURM_PROCID=str(rank), **env) for rank, log in zip((0, 1), logs)]
    wait_all(procs, logs, "two_machines")
    rank_results(out, "MULTI_CPU")
    check_saved_model(out, tiny_model_dir)


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="needs the CPU build of vLLM: bash run.sh test-vllm"
)
@pytest.mark.parametrize("processes", [1, 2])
def test_vllm_colocate(tmp_path, processes):
    """RS-GRPO generating with real vLLM engines (vllm_mode="colocate", one per process); the worker checks, at every
    generation round, that vLLM holds exactly the policy's weights (TRL's weight sync ran), and the usual checks."""
    from rs_trl.tiny import build_tiny_model

    model_dir = str(build_tiny_model(tmp_path / "model", hidden_size=128))  # vLLM's CPU attention needs head_dim >= 32
    out, log = tmp_path / "vllm", tmp_path / "vllm.log"
    distributed_type = "MULTI_CPU" if processes > 1 else "NO"
    worker = [model_dir, str(out), "--world-size", str(processes), "--distributed-type", distributed_type, "--vllm"]
    if processes > 1:
        launch = ["--config_file", str(CONFIGS / "cpu_gloo.yaml"), "--main_process_port", str(free_port())]
        command = accelerate_launch(launch, worker)
    else:
        command = [sys.executable, str(WORKER), *worker]
    wait_all([start(command, log, VLLM_CPU_KVCACHE_SPACE="1")], [log], f"vllm_colocate_{processes}")  # GiB of KV cache
    ranks = rank_results(out, distributed_type, world_size=processes)
    assert sum(r["rounds"] for r in ranks[0]["records"]) > STEPS  # refill rounds generated with vLLM too
    check_saved_model(out, model_dir)
