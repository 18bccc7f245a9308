"""`rs-trl train`'s output directory: never overwrite a previous run by accident, never resume someone else's run.

A run directory holds one run: its checkpoints, final model and `metrics.json`. Starting a new run in a directory that
holds another is refused unless the user resumes it or asks to overwrite it (which removes its checkpoints, so a later
resume cannot pick one up). Every checkpoint records what defines its run (`RUN_FILE`), and resuming checks it.
"""

import json
import logging
import shutil
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, sort_checkpoints

from .checkpoints import incomplete_reason, last_complete_checkpoint

logger = logging.getLogger(__name__)

RUN_FILE = "rs_trl_run.json"
FINISHED_RUN_FILE = "metrics.json"  # what `rs-trl train` writes when a run ends


def parse_resume(value) -> bool | str | None:
    """`resume_from_checkpoint` as TRL users write it on the command line: true, false, or a checkpoint path."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true" or None
    return value or None


def run_identity(script_args, training_args, model_args) -> dict:
    """The settings that make two runs different runs (a resumed run must keep them)."""
    identity = {
        "model_name_or_path": model_args.model_name_or_path,
        "dataset_name": script_args.dataset_name,
        "risk_beta": training_args.risk_beta,
    }
    if hasattr(training_args, "advantage_estimator"):
        identity["advantage_estimator"] = training_args.advantage_estimator
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
        if previous:
            for checkpoint in checkpoints:
                shutil.rmtree(checkpoint)
            finished.unlink(missing_ok=True)
            print(f"--overwrite_output_dir: removed the previous run's {', '.join(previous)} from {output_dir}.")
        return None

    if resume is True:
        checkpoint = last_complete_checkpoint(output_dir) if output.is_dir() else None
        if checkpoint is None:
            raise ValueError(
                f"--resume_from_checkpoint true, but output_dir {output_dir} holds no complete checkpoint; start "
                "without it, or pass the path of a checkpoint."
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
    differing = {key: (recorded.get(key), value) for key, value in identity.items() if recorded.get(key) != value}
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
