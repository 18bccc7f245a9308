"""`rs-trl train`'s output directory: never overwrite a previous run by accident, never resume someone else's run.

A run directory holds one run: its checkpoints, final model and `metrics.json`. Starting a new run in a directory that
holds another is refused unless the user resumes it or asks to overwrite it (which removes its checkpoints, so a later
resume cannot pick one up); one holding other files, or the base model itself, is refused too. A running run holds the
directory's lock (`LOCK_FILE`) for its whole life, so a second run into it is refused while the first runs. Every
checkpoint records what defines its run (`RUN_FILE`), and resuming checks it.
"""

import errno
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, sort_checkpoints

from .checkpoints import incomplete_reason, last_complete_checkpoint

logger = logging.getLogger(__name__)

RUN_FILE = "rs_trl_run.json"
FINISHED_RUN_FILE = "metrics.json"  # what `rs-trl train` writes when a run ends
LOCK_FILE = ".rs_trl_run.lock"
# The holder refreshes the lock's mtime this often; a lock on another host not refreshed for STALE_SECONDS is stale
# (a holder on this host is checked directly, by PID and process start time).
HEARTBEAT_SECONDS = 30
STALE_SECONDS = 300
# Entries a run writes before its first checkpoint (Trainer's TensorBoard logs), which do not make a directory foreign.
RUN_ENTRIES = ("runs", LOCK_FILE)


def parse_resume(value) -> bool | str | None:
    """`resume_from_checkpoint` as TRL users write it on the command line: true, false, or a checkpoint path."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true" or None
    return value or None


# What a resumed run must keep: the fields that change what is optimised, on which data, or the shape of the saved
# state (optimizer, scheduler, adapters). max_steps, num_train_epochs, logging and saving may change.
IDENTITY_FIELDS = {
    "script": ("dataset_name", "dataset_config", "dataset_train_split", "dataset_limit", "reward_funcs", "chat"),
    "training": (
        "risk_beta", "advantage_estimator", "pass_k", "risk_beta_schedule", "risk_beta_end",
        "risk_beta_schedule_steps", "risk_beta_target_ess", "risk_beta_max", "dynamic_sampling", "scale_rewards",
        "num_generations", "learning_rate", "lr_scheduler_type", "warmup_ratio", "warmup_steps", "weight_decay",
        "optim", "per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation", "beta",
        "loss_type", "epsilon", "epsilon_high", "temperature", "max_completion_length", "reward_weights", "seed",
    ),
    "model": ("model_name_or_path", "use_peft", "lora_r", "lora_alpha", "lora_target_modules"),
}  # fmt: skip


def run_identity(script_args, training_args, model_args) -> dict:
    """The settings that make two runs different runs (a resumed run must keep them)."""
    identity = {}
    for group, config in (("script", script_args), ("training", training_args), ("model", model_args)):
        for name in IDENTITY_FIELDS[group]:
            if hasattr(config, name):
                value = getattr(config, name)
                identity[name] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
    return identity


def prepare_run_dir(
    output_dir: str, resume: bool | str | None, overwrite: bool, identity: dict, allow_change: bool
) -> str | None:
    """Check `output_dir` against the request and return the checkpoint to resume from (None: a fresh run)."""
    output = Path(output_dir)
    if resume is None:
        checkpoints = sort_checkpoints(output_dir) if output.is_dir() else []
        finished = output / FINISHED_RUN_FILE
        previous = [Path(c).name for c in checkpoints] + ([finished.name] if finished.is_file() else [])
        if previous and not overwrite:
            raise ValueError(
                f"output_dir {output_dir} holds a previous run ({', '.join(previous)}); pass "
                "--resume_from_checkpoint true to continue it, --overwrite_output_dir true to replace it, or choose "
                "another --output_dir."
            )
        foreign = sorted(e.name for e in output.iterdir() if e.name not in RUN_ENTRIES) if output.is_dir() else []
        if foreign and not previous and not overwrite:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise ValueError(
                f"output_dir {output_dir} holds files that are not a run's ({shown}); training would overwrite them. "
                "Choose another --output_dir, or pass --overwrite_output_dir true to write into it anyway."
            )
        if previous:
            for checkpoint in checkpoints:
                shutil.rmtree(checkpoint)
            finished.unlink(missing_ok=True)
            print(f"--overwrite_output_dir: removed the previous run's {', '.join(previous)} from {output_dir}.")
        return None

    if resume is True:
        checkpoint = last_complete_checkpoint(output_dir) if output.is_dir() else None
        if checkpoint is None:
            incomplete = [Path(c).name for c in sort_checkpoints(output_dir)] if output.is_dir() else []
            fresh = (
                f"start a new run with --overwrite_output_dir true (it removes the incomplete {', '.join(incomplete)})"
                if incomplete
                else "start a new run without --resume_from_checkpoint"
            )
            raise ValueError(
                f"--resume_from_checkpoint true, but output_dir {output_dir} holds no complete checkpoint; {fresh}, "
                "or pass the path of a checkpoint."
            )
    else:
        checkpoint = str(resume)
        if not Path(checkpoint).is_dir():
            raise ValueError(f"--resume_from_checkpoint {checkpoint}: no such checkpoint directory.")
        reason = incomplete_reason(checkpoint)
        if reason is not None:
            raise ValueError(f"--resume_from_checkpoint {checkpoint}: incomplete checkpoint ({reason}).")
    _check_identity(checkpoint, identity, allow_change)
    return checkpoint


def _check_identity(checkpoint: str, identity: dict, allow_change: bool) -> None:
    path = Path(checkpoint) / RUN_FILE
    if not path.is_file():
        logger.warning(f"{path} is missing: cannot check that {checkpoint} was trained with this run's settings.")
        return
    recorded = json.loads(path.read_text(encoding="utf-8"))
    # Only what the checkpoint recorded can be compared (older checkpoints record fewer fields).
    differing = {
        key: (recorded[key], value) for key, value in identity.items() if key in recorded and recorded[key] != value
    }
    if not differing:
        return
    changes = ", ".join(f"{key}={old!r} there, {new!r} now" for key, (old, new) in differing.items())
    if not allow_change:
        raise ValueError(
            f"{checkpoint} belongs to a different run ({changes}); resume with the same settings, use another "
            "--output_dir for a new run, or pass --resume_allow_config_change true to continue it with these."
        )
    logger.warning(f"Resuming {checkpoint} with changed settings ({changes}), as --resume_allow_config_change asks.")


class RunIdentityCallback(TrainerCallback):
    """Writes the run's identity into every checkpoint, so a resume can tell whose checkpoint it is."""

    def __init__(self, identity: dict):
        self.identity = identity

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            if folder.is_dir():
                (folder / RUN_FILE).write_text(json.dumps(self.identity, indent=1), encoding="utf-8")


def check_output_dir(output_dir: str, model_path: str) -> None:
    """Fail before any compute on an output_dir that cannot hold the run: a file, the base model's own directory, or
    a directory that cannot be written to (read-only, no permission, full)."""
    output = Path(output_dir)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output_dir {output_dir} is a file, not a directory; choose another --output_dir.")
    if Path(model_path).is_dir() and output.exists() and output.resolve() == Path(model_path).resolve():
        raise ValueError(
            f"output_dir {output_dir} is the base model's directory (model_name_or_path); training would overwrite its "
            "weights. Choose another --output_dir."
        )
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".rs_trl_write_test.{os.getpid()}"
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as error:
        raise ValueError(
            f"output_dir {output_dir} is not writable: {_why(error)}; choose another --output_dir."
        ) from None


def warn_if_low_space(output_dir: str, checkpoint_bytes: int) -> None:
    """Warn before the first step when the disk cannot hold one more checkpoint of this model."""
    free = shutil.disk_usage(output_dir).free
    if free < checkpoint_bytes:
        logger.warning(
            f"output_dir {output_dir} has {free / 2**30:.2f} GiB free, less than one checkpoint of this model needs "
            f"(about {checkpoint_bytes / 2**30:.2f} GiB): saving will fail. Free space or choose another --output_dir."
        )


def explain_save_failure(error: BaseException, output_dir: str) -> str | None:
    """A plain reason ("no space left on device", "read-only file system") when `error` came from a full or read-only
    disk, whatever the library wrapping it said (torch: "unexpected pos 260224 vs 260116"); None otherwise."""
    chain, seen = error, set()
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, OSError) and chain.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES):
            return _why(chain)
        chain = chain.__cause__ or chain.__context__
    try:
        if os.statvfs(output_dir).f_flag & os.ST_RDONLY:
            return "read-only file system"
        if shutil.disk_usage(output_dir).free < 2**20:
            return "no space left on device"
    except OSError:
        return None
    return None


@contextmanager
def disk_failures_explained(output_dir: str, failed: Callable[[], str], advice: str) -> Iterator[None]:
    """Turns a save that failed for a full or read-only disk into one plain RuntimeError: "{failed()}: {reason}.
    {advice}"; any other error passes through unchanged."""
    try:
        yield
    except Exception as error:
        reason = explain_save_failure(error, output_dir)
        if reason is None:
            raise
        raise RuntimeError(f"{failed()}: {reason}. {advice}") from error


def _why(error: OSError) -> str:
    return os.strerror(error.errno).lower() if error.errno else str(error)


class RunDirLock:
    """Holds `output_dir` for a run's whole life: a lock file naming host and PID, created atomically (O_EXCL works on
    local disks and NFS v3+), its mtime refreshed by a daemon thread. A second run is refused, naming the holder; a
    lock whose holder is gone (same host: PID no longer running, or a new process under that PID; other host: not
    refreshed for STALE_SECONDS) is taken over with a warning."""

    def __init__(self, output_dir: str):
        self.path = Path(output_dir) / LOCK_FILE
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                reason = self._stale_reason()
                if reason is None:
                    raise ValueError(self._held_message()) from None
                logger.warning(f"Taking over {self.path}: its holder is gone ({reason}).")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(self.holder, file)
            self._thread = threading.Thread(target=self._heartbeat, name="rs_trl-run-lock", daemon=True)
            self._thread.start()
            return
        raise ValueError(self._held_message())

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            if self._read() == self.holder:
                self.path.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:
                pass  # the next beat retries; a lock that stays unrefreshed is reported stale to others

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _stale_reason(self) -> str | None:
        holder = self._read()
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "it released the lock"
        if holder.get("host") == socket.gethostname():
            try:
                if abs(psutil.Process(holder["pid"]).create_time() - holder["started"]) < 1:
                    return None
                return f"PID {holder['pid']} is now another process"
            except (psutil.NoSuchProcess, KeyError, TypeError):
                return f"PID {holder.get('pid')} is not running"
        if age > STALE_SECONDS:
            return f"not refreshed for {age:.0f} s by {holder.get('host')}"
        return None

    def _held_message(self) -> str:
        holder = self._read()
        return (
            f"output_dir {self.path.parent} is in use by another run (PID {holder.get('pid')} on host "
            f"{holder.get('host')}, lock {self.path}); wait for it to end or stop it, or choose another --output_dir. "
            "--overwrite_output_dir replaces a finished run, never a running one."
        )
