"""Resume safety: resume only from a complete, readable checkpoint, and say which one and what it lacks.

A process killed while saving leaves a `checkpoint-N` folder with some of its files; transformers'
`get_last_checkpoint` picks the newest folder regardless. `Trainer._save_checkpoint` writes `trainer_state.json`
last, so a checkpoint without it (or with a half-written `*.tmp` file) is incomplete and resume skips it.
"""

import json
import logging
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import sort_checkpoints

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from. Found before the first step, so `rs-trl train` reports it in one line
    (other errors raised inside `train()` keep their traceback)."""


def incomplete_reason(checkpoint: str | Path) -> str | None:
    """Why `checkpoint` was not completely written, or None if it was."""
    checkpoint = Path(checkpoint)
    partial = sorted(p.name for p in checkpoint.glob("*.tmp"))
    if partial:
        return f"half-written file(s) {partial}"
    if not (checkpoint / TRAINER_STATE_NAME).is_file():
        return f"no {TRAINER_STATE_NAME}, which the Trainer writes last"
    return None


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete checkpoint in `output_dir` (newer incomplete ones are skipped with a warning)."""
    for checkpoint in reversed(sort_checkpoints(str(output_dir))):
        reason = incomplete_reason(checkpoint)
        if reason is None:
            return checkpoint
        logger.warning(f"Skipping incomplete checkpoint {checkpoint} ({reason}): it was interrupted while saving.")
    return None


def check_readable(checkpoint: str | Path) -> None:
    """Fail with the file's name if a checkpoint file is truncated or corrupt, before anything is loaded from it.

    Cheap structural checks only: the safetensors header, the zip directory of torch files, JSON syntax.
    """
    for path in sorted(Path(checkpoint).rglob("*")):
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt"):
                    pass
            elif path.suffix in (".pt", ".pth", ".bin"):
                zipfile.ZipFile(path).close()  # torch.save writes a zip archive; truncation loses its directory
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except Exception as error:
            raise CheckpointError(
                f"{path} is corrupt ({type(error).__name__}: {error}); delete {Path(checkpoint).name} to resume from "
                "the checkpoint before it, or pass --resume_from_checkpoint with another checkpoint."
            ) from None


def check_resumable(checkpoint: str | Path, rng_file: str, dynamic_sampling_file: str | None) -> None:
    """Refuse an incomplete or corrupt checkpoint; warn, naming the file, when resuming will not be reproducible."""
    reason = incomplete_reason(checkpoint)
    if reason is not None:
        raise CheckpointError(
            f"{checkpoint} is incomplete ({reason}); resume from an earlier checkpoint, or pass "
            "--resume_from_checkpoint true to pick the last complete one."
        )
    check_readable(checkpoint)
    for name, role in ((rng_file, "random number generator"), (dynamic_sampling_file, "dynamic-sampling refill")):
        if name is not None and not (Path(checkpoint) / name).is_file():
            logger.warning(
                f"{Path(checkpoint) / name} is missing: the {role} state cannot be restored, so the resumed run "
                "will not reproduce an uninterrupted one."
            )


def check_finite_weights(model, checkpoint: str) -> None:
    """Refuse to resume from weights holding NaN or inf (saved after training diverged): generation would fail deep
    inside sampling instead. One `isfinite` per parameter, on the device it lives on."""
    for name, parameter in model.named_parameters():
        if parameter.numel() and not bool(torch.isfinite(parameter).all()):
            raise CheckpointError(
                f"{checkpoint} holds non-finite weights ({name} has NaN or inf): training had diverged when it was "
                "saved. Resume from an earlier checkpoint (--resume_from_checkpoint PATH)."
            )
