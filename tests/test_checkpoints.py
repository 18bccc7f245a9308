"""Resume safety: incomplete checkpoints are skipped, corrupt files are named, missing state files are warned about."""

import logging
import shutil

import pytest
from datasets import Dataset

from rs_trl import RSGRPOTrainer
from tests.helpers import cpu_args


def length_reward(completions, **kwargs):
    return [float(len(c)) for c in completions]


def _trainer(model_dir, out_dir, max_steps):
    args = cpu_args(out_dir, max_steps=max_steps, save_strategy="steps", save_steps=1, learning_rate=1e-2)
    dataset = Dataset.from_dict({"prompt": [f"Question {i} :" for i in range(16)]})
    return RSGRPOTrainer(model=model_dir, reward_funcs=length_reward, args=args, train_dataset=dataset)


@pytest.fixture(scope="module")
def two_checkpoints(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    _trainer(tiny_model_dir, out, max_steps=2).train()
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()
    return out


def _copy(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


def test_resume_skips_a_checkpoint_killed_while_saving(tiny_model_dir, two_checkpoints, tmp_path, caplog, capsys):
    out = _copy(two_checkpoints, tmp_path)
    # What a SIGKILL during the save of step 3 leaves: configs and a half-written weights file, no trainer state.
    partial = out / "checkpoint-3"
    partial.mkdir()
    shutil.copy(out / "checkpoint-2" / "config.json", partial)
    (partial / "model.safetensors.tmp").write_bytes(b"\0" * 100)

    trainer = _trainer(tiny_model_dir, out, max_steps=3)
    with caplog.at_level(logging.WARNING):
        trainer.train(resume_from_checkpoint=True)
    assert f"Resuming from {out / 'checkpoint-2'}." in capsys.readouterr().out
    assert "Skipping incomplete checkpoint" in caplog.text and "checkpoint-3" in caplog.text
    assert trainer.state.global_step == 3


@pytest.mark.parametrize("missing", ["rng_state.pth", "dynamic_sampling_state.json"])
def test_resume_warns_naming_a_missing_state_file(tiny_model_dir, two_checkpoints, tmp_path, caplog, missing):
    out = _copy(two_checkpoints, tmp_path)
    (out / "checkpoint-2" / missing).unlink()
    with caplog.at_level(logging.WARNING):
        _trainer(tiny_model_dir, out, max_steps=3).train(resume_from_checkpoint=True)
    assert f"{out / 'checkpoint-2' / missing} is missing" in caplog.text and "will not reproduce" in caplog.text


@pytest.mark.parametrize("name", ["optimizer.pt", "model.safetensors", "trainer_state.json"])
def test_corrupt_checkpoint_file_is_named_before_loading(tiny_model_dir, two_checkpoints, tmp_path, name):
    out = _copy(two_checkpoints, tmp_path)
    path = out / "checkpoint-2" / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated, as a full disk leaves it
    with pytest.raises(
        ValueError, match=f"{path} is corrupt .*delete checkpoint-2 to resume from the checkpoint before"
    ):
        _trainer(tiny_model_dir, out, max_steps=3).train(resume_from_checkpoint=str(out / "checkpoint-2"))


@pytest.mark.parametrize("value", ["true", "True"])
def test_resume_true_as_a_string_resumes_as_trls_scripts_pass_it(
    tiny_model_dir, two_checkpoints, tmp_path, value, capsys
):
    """TRL's `grpo.py` hands `--resume_from_checkpoint true` to `train()` as the string "true"."""
    out = _copy(two_checkpoints, tmp_path)
    trainer = _trainer(tiny_model_dir, out, max_steps=3)
    trainer.train(resume_from_checkpoint=value)
    assert f"Resuming from {out / 'checkpoint-2'}." in capsys.readouterr().out
    assert trainer.state.global_step == 3
