"""recipes/slurm/train.sbatch submitted to a real Slurm: munge, slurmctld and slurmd on this machine, CPU only.

The fixture brings up a one-node cluster (Debian's `slurm-wlm` and `munge`, which `.ci/run` installs) in a temporary
directory with its own config, sockets and ports, and shuts it down afterwards; where the binaries are missing or
the daemons cannot start, the test is skipped with the reason. The job runs the sbatch unchanged except for
`--gpus-per-node=0` on the command line (the node has no GPUs), so `scontrol show hostnames`, `srun` and
`launch_node.sh` run for real, with 2 CPU processes over gloo.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import CPU_OVERRIDES, PAPER_RECIPE, free_port

ROOT = Path(__file__).resolve().parents[1]
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol")


def _wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    pytest.skip(f"a local Slurm could not start: {what}")


@pytest.fixture
def slurm_cluster(tmp_path):
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        pytest.skip(f"Slurm is not installed here ({', '.join(missing)} missing; apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("a local Slurm needs root here (slurmd runs jobs as their user)")
    root = tmp_path / "slurm"
    for folder in ("state", "spool", "log"):
        (root / folder).mkdir(parents=True)
    host = socket.gethostname()
    socket_path = root / "munge.socket"
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    subprocess.run(
        ["munged", "--force", f"--socket={socket_path}", f"--pid-file={root / 'munged.pid'}",
         f"--log-file={root / 'log' / 'munged.log'}", f"--key-file={key}", f"--seed-file={root / 'munged.seed'}"],
        check=True,
    )  # fmt: skip
    config = root / "slurm.conf"
    config.write_text(
        "\n".join(
            [
                "ClusterName=rstrl",
                f"SlurmctldHost={host}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                # cred_expire also sets how long a requeued job waits before it starts again (default 120 s); a
                # requeued job forced to start sooner is killed ("Job credential revoked").
                f"AuthInfo=socket={socket_path},cred_expire=10",
                f"StateSaveLocation={root / 'state'}",
                f"SlurmdSpoolDir={root / 'spool'}",
                f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                f"SlurmdPidFile={root / 'slurmd.pid'}",
                f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
                f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
                f"SlurmctldPort={free_port()}",
                f"SlurmdPort={free_port()}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "JobCompType=jobcomp/none",
                "MpiDefault=none",
                "SchedulerType=sched/builtin",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "ReturnToService=2",
                f"NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN",
                "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            ]
        )
        + "\n"
    )
    env = {**os.environ, "SLURM_CONF": str(config)}
    try:
        subprocess.run(["slurmctld", "-f", str(config)], env=env, check=True)
        subprocess.run(["slurmd", "-f", str(config)], env=env, check=True)

        def idle():
            result = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            return result.stdout.strip() == "idle"

        _wait_for(idle, 60, (root / "log" / "slurmctld.log").read_text()[-2000:])
        yield env
    finally:
        subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            path = root / pid_file
            if path.exists():
                subprocess.run(["kill", path.read_text().strip()], capture_output=True)


@pytest.mark.slow
def test_train_sbatch_runs_on_a_real_slurm(slurm_cluster, tiny_model_dir, tmp_path):
    out, probe = tmp_path / "run", tmp_path / "probe"
    probe.mkdir()
    env = {
        **slurm_cluster,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `accelerate` of this venv
        "PYTHONPATH": str(ROOT / "tests" / "scripts"),
        "RS_TRL_PROBE_DIR": str(probe),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "GPUS_PER_NODE": "2",  # processes per node: 2 CPU processes
        "MAIN_PROCESS_PORT": str(free_port()),
    }
    command = [
        "sbatch", "--wait", "--nodes", "1", "--gpus-per-node=0", "--output", str(tmp_path / "job.out"),
        "recipes/slurm/train.sbatch", str(PAPER_RECIPE), "recipes/accelerate_configs/cpu_gloo.yaml",
        "--model_name_or_path", tiny_model_dir, "--output_dir", str(out), *CPU_OVERRIDES,
        "--reward_funcs", "math_accuracy_reward", "world_size_probe.world_size_probe",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    log = (tmp_path / "job.out").read_text() if (tmp_path / "job.out").exists() else ""
    assert result.returncode == 0, result.stderr[-3000:] + log[-5000:]
    job_id = result.stdout.split()[-1]
    state = subprocess.run(
        ["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True
    ).stdout  # still known to slurmctld right after it ends
    assert "JobState=COMPLETED" in state and "ExitCode=0:0" in state, state
    # From inside each training process: 2 processes joined over gloo, started by srun -> launch_node.sh.
    seen = [json.loads((probe / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert all(s == {"num_processes": 2, "world_size": 2, "distributed_type": "MULTI_CPU"} for s in seen), seen
    metrics = json.loads((out / "metrics.json").read_text())
    assert len([entry for entry in metrics["log_history"] if "loss" in entry]) == 2


@pytest.mark.slow
def test_time_limit_signal_checkpoints_requeues_and_resumes(slurm_cluster, tiny_model_dir, tmp_path):
    """What `--signal=B:USR1@600` does before a time limit, sent now with scancel: the batch script passes USR1 to the
    training processes, which save and stop; the job requeues itself and its second run resumes to the last step."""
    out, log = tmp_path / "run", tmp_path / "job.out"
    env = {
        **slurm_cluster,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "GPUS_PER_NODE": "2",
        "MAIN_PROCESS_PORT": str(free_port()),
    }
    overrides = {**dict(zip(CPU_OVERRIDES[::2], CPU_OVERRIDES[1::2])), "--max_steps": "100", "--save_steps": "2"}
    overrides.update({"--save_strategy": "steps", "--dynamic_sampling": "false", "--dataset_limit": "64"})
    command = [
        "sbatch", "--parsable", "--nodes", "1", "--gpus-per-node=0", "--output", str(log),
        "recipes/slurm/train.sbatch", str(PAPER_RECIPE), "recipes/accelerate_configs/cpu_gloo.yaml",
        "--model_name_or_path", tiny_model_dir, "--output_dir", str(out), *(x for kv in overrides.items() for x in kv),
        "--reward_funcs", "format_reward",
    ]  # fmt: skip
    job_id = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.strip()

    def job_state():
        shown = subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True).stdout
        return shown.split("JobState=")[1].split()[0] if "JobState=" in shown else "GONE", shown

    def wait(check, seconds, what):
        deadline = time.monotonic() + seconds
        while not check():
            assert time.monotonic() < deadline, (
                f"{what}: {job_state()[1]}\n{log.read_text()[-4000:] if log.exists() else ''}"
            )
            time.sleep(0.5)

    # Any checkpoint: the recipe's save_total_limit rotates checkpoint-2 away within a second on an idle machine.
    wait(lambda: any(out.glob("checkpoint-*/trainer_state.json")), 600, "no checkpoint")
    subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], env=env, check=True)
    wait(lambda: "Restarts=1" in job_state()[1], 300, "the job did not requeue")
    wait(
        lambda: (out / "metrics.json").exists() and job_state()[0] == "COMPLETED",
        900,
        "the requeued job did not finish",
    )
    text = log.read_text()
    assert "requeueing job" in text and "Resuming from" in text, text[-4000:]
    assert "SIGUSR1 received: finishing this optimizer step" in text, text[-4000:]
    history = json.loads((out / "metrics.json").read_text())["log_history"]
    steps = [entry["step"] for entry in history if "loss" in entry]
    assert steps == list(range(1, 101)), steps
