"""Recipes and accelerate configs: each parses into valid configs offline, and pairs differ only in risk_beta."""

import os
from importlib import resources
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DistributedType

from rs_trl.train import parse_args

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ACCELERATE_CONFIGS = sorted((RECIPES / "accelerate_configs").glob("*.yaml"))
TRAIN_RECIPES = sorted(p for p in RECIPES.glob("*/*/*.yaml") if p.parent.name != "accelerate_configs")
DEMO_RECIPE = Path(str(resources.files("rs_trl") / "recipes_default" / "demo.yaml"))
PAPER_RUNS = {
    ("Qwen2.5-Math-1.5B", "deepmath103k"),
    ("Qwen2.5-Math-7B", "deepmath103k"),
    ("Qwen2.5-Math-7B", "dapo17k"),
    ("Qwen2.5-Math-7B", "math12k"),
    ("Qwen2.5-7B", "math12k"),
    ("Qwen3-4B-Base", "math12k"),
    ("Llama-3.1-8B-Instruct", "math12k"),
}
# What may differ between a paper run's rs_grpo and grpo recipes.
PAIR_DIFFERENCES = {"risk_beta", "output_dir", "hub_model_id"}
# The paper's pass@k baseline rows we have recipes for (Mahdavi et al. has none: its form is not established).
BASELINES = {
    ("Qwen2.5-Math-1.5B", "pass_at_k"),
    ("Qwen2.5-Math-1.5B", "pkpo"),
    ("Qwen2.5-Math-7B", "pass_at_k"),
}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_every_paper_run_has_both_methods():
    found = {(p.parts[-3], p.stem.removeprefix("config_")) for p in TRAIN_RECIPES if p.parent.name == "rs_grpo"}
    assert PAPER_RUNS <= found
    for model, dataset in PAPER_RUNS:
        assert (RECIPES / model / "grpo" / f"config_{dataset}.yaml").is_file()


@pytest.mark.parametrize("path", [*TRAIN_RECIPES, DEMO_RECIPE], ids=lambda p: str(p.relative_to(p.parents[2])))
def test_recipe_parses_into_valid_configs(path):
    # use_cpu: this machine has no GPU and the recipes ask for bf16; nothing is downloaded by parsing.
    script_args, training_args, model_args = parse_args(["--config", str(path), "--use_cpu", "true"])
    raw = _load(path)
    assert model_args.model_name_or_path == raw["model_name_or_path"]
    assert training_args.risk_beta == raw["risk_beta"]
    assert script_args.dataset_name == raw["dataset_name"]
    assert training_args.dynamic_sampling is True and training_args.loss_type == "dapo"
    assert training_args.epsilon_high == pytest.approx(0.28)


@pytest.mark.parametrize("model,dataset", sorted(PAPER_RUNS))
def test_paper_pair_differs_only_in_risk_beta(model, dataset):
    rs = _load(RECIPES / model / "rs_grpo" / f"config_{dataset}.yaml")
    grpo = _load(RECIPES / model / "grpo" / f"config_{dataset}.yaml")
    assert rs["risk_beta"] == 2.0 and grpo["risk_beta"] == 0.0
    assert {k for k in rs.keys() | grpo.keys() if rs.get(k) != grpo.get(k)} == PAIR_DIFFERENCES
    # The paper's DAPO settings.
    assert rs["num_generations"] == 16 and rs["epsilon_high"] == 0.28 and rs["loss_type"] == "dapo"
    assert rs["dynamic_sampling"] is True and rs["use_vllm"] is True


@pytest.mark.parametrize("model,method", sorted(BASELINES))
def test_baseline_recipe_differs_from_rs_grpo_only_in_the_estimator(model, method):
    baseline = _load(RECIPES / model / method / "config_deepmath103k.yaml")
    rs = _load(RECIPES / model / "rs_grpo" / "config_deepmath103k.yaml")
    assert baseline["advantage_estimator"] == method and baseline["pass_k"] == 4
    differing = {k for k in rs.keys() | baseline.keys() if rs.get(k) != baseline.get(k)}
    assert differing == {"advantage_estimator", "pass_k", "output_dir", "hub_model_id"}


def test_every_rs_grpo_recipe_has_a_grpo_twin():
    for path in TRAIN_RECIPES:
        if path.parent.name == "rs_grpo":
            twin = _load(path.parents[1] / "grpo" / path.name)
            rs = _load(path)
            assert twin["risk_beta"] == 0.0 and rs["risk_beta"] == 2.0
            assert {k for k in rs.keys() | twin.keys() if rs.get(k) != twin.get(k)} == PAIR_DIFFERENCES


def test_lora_recipe_builds_a_peft_config():
    from trl import get_peft_config

    (path,) = [p for p in TRAIN_RECIPES if "lora" in p.stem and p.parent.name == "rs_grpo"]
    _, _, model_args = parse_args(["--config", str(path), "--use_cpu", "true"])
    peft_config = get_peft_config(model_args)
    assert peft_config is not None and peft_config.r == 32 and peft_config.target_modules == "all-linear"


def test_readme_lists_every_recipe_with_its_launch_command():
    readme = (RECIPES / "README.md").read_text()
    for path in TRAIN_RECIPES:
        assert f"--config recipes/{path.relative_to(RECIPES)}" in readme, path
    for path in ACCELERATE_CONFIGS:
        assert f"recipes/accelerate_configs/{path.name}" in readme, path


def test_command_line_overrides_the_recipe():
    path = RECIPES / "Qwen2.5-Math-7B" / "rs_grpo" / "config_math12k.yaml"
    _, training_args, model_args = parse_args(
        ["--config", str(path), "--use_cpu", "true", "--risk_beta", "4", "--model_name_or_path", "some/model"]
    )
    assert training_args.risk_beta == 4.0 and model_args.model_name_or_path == "some/model"


def test_unknown_recipe_key_is_a_clear_error(tmp_path):
    recipe = _load(DEMO_RECIPE) | {"risk_betaa": 3}
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(ValueError, match="unknown recipe key .risk_betaa.*Did you mean .risk_beta."):
        parse_args(["--config", str(path)])


EXPECTED_DISTRIBUTED = {
    "ddp.yaml": DistributedType.MULTI_GPU,
    "zero2.yaml": DistributedType.DEEPSPEED,
    "zero3.yaml": DistributedType.DEEPSPEED,
    "fsdp.yaml": DistributedType.FSDP,
    # MULTI_GPU: MULTI_CPU would make `accelerate launch` start a single process (see the config's comment).
    "cpu_gloo.yaml": DistributedType.MULTI_GPU,
}


def test_all_accelerate_configs_present():
    assert {p.name for p in ACCELERATE_CONFIGS} == set(EXPECTED_DISTRIBUTED)


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_is_valid(path):
    config = ClusterConfig.from_yaml_file(str(path))  # rejects unknown keys and bad enum values
    assert config.distributed_type == EXPECTED_DISTRIBUTED[path.name]
    if config.distributed_type == DistributedType.DEEPSPEED:
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])
    # `accelerate launch` turns these sections into its own options: every key must be one of them.
    launch_options = {action.dest for action in launch_command_parser()._actions}
    for key in {**config.deepspeed_config, **config.fsdp_config}:
        assert key in launch_options, f"{path.name}: {key} is not an accelerate launch option"
    if path.name == "cpu_gloo.yaml":
        assert config.num_processes == 2 and config.mixed_precision == "no"
    else:
        assert config.mixed_precision == "bf16" and not config.use_cpu


def test_recipes_report_only_to_integrations_our_extras_install():
    import tomllib

    extras = tomllib.loads((RECIPES.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installed = {req.split(">")[0].split("[")[0].strip() for reqs in extras.values() for req in reqs}
    for path in TRAIN_RECIPES:
        report_to = _load(path).get("report_to", [])
        for integration in [report_to] if isinstance(report_to, str) else report_to:
            assert integration == "none" or integration in installed, f"{path}: report_to {integration}"


def test_tested_configurations_table():
    """recipes/README.md's table claims "tested on CPU in CI" only where a test in tests/test_cluster.py,
    tests/test_slurm.py or tests/test_preemption.py runs it."""
    import ast
    import re

    cluster_tests = {
        node.name
        for module in ("test_cluster.py", "test_slurm.py", "test_preemption.py")
        for node in ast.parse((RECIPES.parent / "tests" / module).read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }
    section = (RECIPES / "README.md").read_text().split("## Tested configurations")[1]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| `")]
    assert {re.match(r" `([\w.]+)`", row[0]).group(1) for row in rows} == set(EXPECTED_DISTRIBUTED)
    for row in rows:
        assert len(row) == 5, row
        for cell in map(str.strip, row[1:]):
            assert cell.startswith(("tested on CPU in CI", "GPU only, not tested", "not tested")), cell
            named = set(re.findall(r"`(test_\w+)`", cell))
            assert named <= cluster_tests, named - cluster_tests
            assert named or not cell.startswith("tested"), f"{cell!r} names no test"
