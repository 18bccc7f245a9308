"""The `rs-trl train` entry point: the demo path, 2-process accelerate launch, LoRA + adapter reload, Hub card."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from rs_trl import RSGRPOConfig
from rs_trl.rewards import completion_text, get_reward_funcs
from rs_trl.tiny import build_tiny_model
from rs_trl.train import demo_main, parse_args, train
from tests.helpers import CPU_OVERRIDES, LORA_RECIPE, PAPER_RECIPE, free_port

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
# `rs-trl train` without a recipe takes the fields' own defaults, as `trl grpo` does: TRL's bf16 needs these on CPU.
ON_CPU = ["--use_cpu", "true", "--bf16", "false"]


def length_reward(completions, **kwargs) -> list[float]:
    """Varies within every group even for a random model, so the update is never zero (unlike accuracy)."""
    return [len(completion_text(c)) / 10 for c in completions]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_bad_reward_name_fails_before_any_compute():
    with pytest.raises(ValueError, match="reward_funcs.*'accuracy'.*math_accuracy_reward"):
        get_reward_funcs(["accuracy"])


def test_unknown_offline_model_is_a_clear_error(tmp_path):
    script_args, training_args, model_args = parse_args(
        ["--model_name_or_path", "offline:nope", "--output_dir", str(tmp_path), *ON_CPU]
    )
    with pytest.raises(ValueError, match="offline:nope.*offline:SmolLM2-135M-Instruct"):
        train(script_args, training_args, model_args)


def test_script_arguments_are_trls_plus_ours(tmp_path):
    import trl

    script_args, _, _ = parse_args(["--output_dir", str(tmp_path), "--dataset_test_split", "validation", *ON_CPU])
    assert isinstance(script_args, trl.ScriptArguments)
    assert script_args.dataset_test_split == "validation" and script_args.dataset_name == "arithmetic"


def test_unused_trl_dataset_fields_are_an_error_not_ignored(tmp_path):
    script_args, training_args, model_args = parse_args(
        [
            "--output_dir",
            str(tmp_path),
            "--dataset_streaming",
            "true",
            "--model_name_or_path",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            *ON_CPU,
        ]
    )
    with pytest.raises(ValueError, match="dataset_streaming is not supported"):
        train(script_args, training_args, model_args)


@pytest.mark.slow
def test_demo_code_path_with_tiny_model(tiny_model, tmp_path):
    """`rs-trl demo`: the packaged demo recipe, with the model swapped for the tiny one."""
    out = tmp_path / "demo"
    argv = ["--model_name_or_path", str(tiny_model), "--output_dir", str(out), "--max_steps", "1"]
    assert demo_main([*argv, "--dataset_limit", "8", "--eval_limit", "4", "--max_completion_length", "8"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["risk_beta"] == 2.0 and metrics["dataset"] == "arithmetic" and metrics["eval_problems"] == 4
    assert 0 <= metrics["accuracy_before"] <= 1 and 0 <= metrics["accuracy_after"] <= 1
    assert any("rs/solve_rate/mean" in entry for entry in metrics["log_history"])
    assert (out / "model.safetensors").is_file()


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tiny_model, tmp_path):
    """A paper recipe with its model overridden, through `accelerate launch` with 2 gloo processes."""
    out, probe = tmp_path / "run", tmp_path / "probe"
    probe.mkdir()
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "recipes" / "accelerate_configs" / "cpu_gloo.yaml"),
        "--main_process_port", str(free_port()),
        "-m", "rs_trl.train", "--config", str(PAPER_RECIPE),
        "--model_name_or_path", str(tiny_model), "--output_dir", str(out), *CPU_OVERRIDES,
        "--reward_funcs", "math_accuracy_reward", "world_size_probe.world_size_probe",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "RS_TRL_PROBE_DIR": str(probe)}
    env["PYTHONPATH"] = str(ROOT / "tests" / "scripts")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    # What each training process saw from inside: the config's 2 processes, joined over gloo.
    seen = [json.loads((probe / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert all(s == {"num_processes": 2, "world_size": 2, "distributed_type": "MULTI_CPU"} for s in seen), seen
    metrics = json.loads((out / "metrics.json").read_text())
    steps = [entry for entry in metrics["log_history"] if "loss" in entry]
    assert len(steps) == 2 and all("rs/frac_zero_variance_groups" in entry for entry in steps)
    assert metrics["risk_beta"] == 2.0 and (out / "model.safetensors").is_file()


@pytest.mark.slow
def test_lora_training_push_and_adapter_reload(tiny_model, tmp_path):
    """The LoRA recipe trains, the saved adapter reloads to the same weights, and the pushed card is RS-GRPO's."""
    from huggingface_hub import HfApi, RepoUrl
    from peft import AutoPeftModelForCausalLM

    out = tmp_path / "lora"
    reward = f"{__name__}.length_reward"
    argv = ["--config", str(LORA_RECIPE), "--model_name_or_path", str(tiny_model), "--output_dir", str(out)]
    argv += [*CPU_OVERRIDES, "--reward_funcs", reward, "--push_to_hub", "true", "--hub_model_id", "someone/tiny-rs"]
    script_args, training_args, model_args = parse_args(argv)
    assert model_args.use_peft and training_args.risk_beta == 2.0

    uploads = []

    def fake_upload_folder(self, *, folder_path, **kwargs):
        # Read the folder at upload time: what would have reached the Hub.
        uploads.append({p.name: p.read_text() for p in Path(folder_path).glob("*.md")})
        return mock.MagicMock()

    repo_url = RepoUrl("https://huggingface.co/someone/tiny-rs")
    with (
        mock.patch.object(HfApi, "create_repo", return_value=repo_url) as create_repo,
        mock.patch.object(HfApi, "upload_folder", fake_upload_folder),
    ):
        train(script_args, training_args, model_args)
    create_repo.assert_called()
    assert uploads, "push_to_hub did not upload"

    card = uploads[-1]["README.md"]
    for needle in ("RS-GRPO", "risk_beta | 2", "arithmetic", str(tiny_model), "2509.24261", "@article{jiang2025risk"):
        assert needle in card, needle

    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    reloaded = AutoPeftModelForCausalLM.from_pretrained(out)
    lora_b = {name: p for name, p in reloaded.named_parameters() if "lora_B" in name}
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b.values()), "LoRA B still zero: no training happened"
    from transformers import AutoModelForCausalLM

    inputs = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        base_logits = AutoModelForCausalLM.from_pretrained(tiny_model)(inputs).logits
        assert not torch.allclose(reloaded(inputs).logits, base_logits), "adapter has no effect after reload"


def test_model_card_section_is_inserted_once_before_citations(tmp_path):
    from rs_trl import RSGRPOConfig
    from rs_trl.model_card import SECTION_TITLE, add_rs_grpo_section

    card = tmp_path / "README.md"
    card.write_text("# Model Card\n\nintro\n\n## Citations\n\nbibtex\n")
    args = RSGRPOConfig(output_dir=str(tmp_path), use_cpu=True, risk_beta=0.0)
    for _ in range(2):  # regenerating must not duplicate the section
        add_rs_grpo_section(card, args, base_model="org/base", dataset_name="hiyouga/math12k")
    text = card.read_text()
    assert text.count(SECTION_TITLE) == 1 and text.index(SECTION_TITLE) < text.index("## Citations")
    assert "| risk_beta | 0 |" in text and "standard GRPO" in text and "org/base" in text and "hiyouga/math12k" in text
    assert "plain GRPO" in text and "2509.24261" not in text  # β = 0 does not claim RS-GRPO


def test_model_card_at_beta_zero_cites_grpo_not_rs_grpo(tiny_model, tmp_path):
    from datasets import Dataset
    from trl import GRPOTrainer

    from rs_trl import RSGRPOTrainer
    from rs_trl.tiny import cpu_training_args

    args = cpu_training_args(tmp_path, risk_beta=0.0, max_steps=1)
    dataset = Dataset.from_dict({"prompt": ["What is 1 + 1?"] * 8})
    trainer = RSGRPOTrainer(model=str(tiny_model), reward_funcs=length_reward, args=args, train_dataset=dataset)
    trainer.create_model_card(model_name="tiny-grpo")
    card = (tmp_path / "README.md").read_text()
    assert GRPOTrainer._paper["id"] in card and "2509.24261" not in card


def test_help_mentions_config_and_shows_the_fields_own_defaults(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--config RECIPE.yaml" in text

    def default(flag: str) -> str:
        after = text.split(flag, 1)[1]
        return after[after.index("(default: ") :].split(")")[0].removeprefix("(default: ")

    # The fields' own defaults, not the demo recipe's (12 steps of the offline SmolLM2).
    assert default("--max_steps MAX_STEPS") == "-1" and default("--model_name_or_path MODEL_NAME_OR_PATH") == "None"
    assert default("--risk_beta RISK_BETA") == "2.0"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config"], "--config needs a value"),
        (["--config", "missing.yaml"], "--config missing.yaml: no such file"),
        (["--config", "{bad}"], r"bad.yaml: not valid YAML \(line 2, column 5"),
    ],
)
def test_config_file_errors_are_one_line_naming_the_file(tmp_path, capsys, argv, message):
    import re

    from rs_trl.cli import main as cli_main

    bad = tmp_path / "bad.yaml"
    bad.write_text("risk_beta: [2\nbeta: 0\n")
    argv = [str(bad) if a == "{bad}" else a for a in argv]
    assert cli_main(["train", *argv]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and re.search(message, error), error


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max_steps", "0"], "max_steps must be positive, or -1"),
        (["--report_to", "tensorboard"], "report_to: 'tensorboard' is not installed; pip install tensorboard"),
    ],
)
def test_bad_run_settings_fail_before_the_model_loads(tmp_path, flags, message):
    pytest.importorskip("torch")
    if "tensorboard" in flags and importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed here")
    argv = ["--model_name_or_path", "/nonexistent/model-must-not-be-loaded", "--output_dir", str(tmp_path), *ON_CPU]
    argv += flags
    with pytest.raises(ValueError, match=message):
        train(*parse_args(argv))


def test_model_card_names_a_local_base_model_and_links_only_hub_datasets(tiny_model, tmp_path):
    from datasets import Dataset

    from rs_trl import RSGRPOTrainer
    from rs_trl.tiny import cpu_training_args

    dataset = Dataset.from_dict({"prompt": ["Q"] * 8, "answer": ["1"] * 8})
    trainer = RSGRPOTrainer(
        model=str(tiny_model), reward_funcs=length_reward, args=cpu_training_args(tmp_path), train_dataset=dataset
    )
    trainer.create_model_card(model_name="m", dataset_name="arithmetic")
    card = (tmp_path / "README.md").read_text()
    assert "[None]" not in card and "huggingface.co/None" not in card and "datasets/arithmetic" not in card
    assert f"fine-tuned version of `{tiny_model}`" in card and "| dataset | arithmetic |" in card
    trainer.create_model_card(model_name="m", dataset_name="hiyouga/math12k")
    assert "[hiyouga/math12k](https://huggingface.co/datasets/hiyouga/math12k)" in (tmp_path / "README.md").read_text()


def test_train_without_a_recipe_applies_none():
    """As `trl grpo`: no --config, no recipe; the demo's CPU settings never reach a GPU job unasked."""
    script_args, training_args, model_args = parse_args(
        ["--model_name_or_path", "Qwen/Qwen2.5-Math-7B", "--dataset_name", "math12k", "--output_dir", "out", *ON_CPU]
    )
    defaults = RSGRPOConfig(output_dir="out", use_cpu=True, bf16=False)
    assert training_args.max_steps == defaults.max_steps == -1
    assert training_args.max_completion_length == defaults.max_completion_length
    assert script_args.dataset_limit is None and script_args.eval_limit == 0


def test_demo_is_asked_for_by_name(capsys):
    from rs_trl.cli import main as cli_main

    _, training_args, model_args = parse_args(["--max_steps", "3"], default_recipe="recipes_default/demo.yaml")
    assert (model_args.model_name_or_path, training_args.max_steps) == ("offline:SmolLM2-135M-Instruct", 3)
    assert cli_main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out


async def async_reward_that_breaks(completions, **kwargs):
    """Async reward functions run unguarded, as in TRL: an error inside one surfaces mid-step."""
    raise ValueError("broken mid-training")


def test_errors_raised_during_training_keep_their_traceback(tiny_model, tmp_path):
    """Usage errors are one line (`rs-trl` returns 2); an error from inside a training step is not one of them."""
    from rs_trl.cli import main as cli_main

    argv = ["train", "--model_name_or_path", str(tiny_model), "--output_dir", str(tmp_path / "run"), *CPU_OVERRIDES]
    argv += ["--reward_funcs", f"{__name__}.async_reward_that_breaks"]
    with pytest.raises(RuntimeError, match="Training stopped at step 0: ValueError") as info:
        cli_main(argv)
    assert isinstance(info.value.__cause__, ValueError) and info.value.__cause__.__traceback__ is not None


@pytest.fixture
def local_dataset_dir(tmp_path):
    """A dataset as users keep them: a directory of JSON-lines files, one per split, read by `datasets.load_dataset`."""
    folder = tmp_path / "my_math"
    folder.mkdir()
    for split, count in (("train", 12), ("test", 4)):
        rows = [{"question": f"What is {i} + 2?", "solution": str(i + 2), "level": i % 3} for i in range(count)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def test_a_local_or_hub_dataset_trains_like_trls_script(tiny_model, tmp_path, local_dataset_dir):
    """As TRL's and open-r1's scripts: --dataset_name takes what `datasets.load_dataset` reads; columns are mapped."""
    out = tmp_path / "run"
    argv = ["--model_name_or_path", str(tiny_model), "--output_dir", str(out), *CPU_OVERRIDES]
    argv += ["--dataset_name", str(local_dataset_dir), "--dataset_prompt_column", "question"]
    argv += ["--dataset_answer_column", "solution", "--eval_limit", "2"]
    script_args, training_args, model_args = parse_args(argv)
    metrics = train(script_args, training_args, model_args)
    assert metrics["dataset"] == str(local_dataset_dir) and metrics["eval_problems"] == 2
    assert [h["step"] for h in metrics["log_history"] if "loss" in h] == [1, 2]


def test_a_dataset_without_the_prompt_column_names_its_columns_and_the_option(tiny_model, tmp_path, local_dataset_dir):
    argv = ["--model_name_or_path", str(tiny_model), "--output_dir", str(tmp_path / "run"), *CPU_OVERRIDES]
    argv += ["--dataset_name", str(local_dataset_dir)]
    with pytest.raises(ValueError, match=r"no column 'prompt'; its columns are \['level', 'question', 'solution'\]"):
        train(*parse_args(argv))
