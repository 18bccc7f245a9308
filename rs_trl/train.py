"""`rs-trl train`: train a model with RS-GRPO from a recipe YAML, TRL-style.

    rs-trl demo                                         # offline CPU demo (rs_trl/recipes_default/demo.yaml)
    rs-trl train --config recipes/Qwen2.5-Math-7B/rs_grpo/config_math12k.yaml --learning_rate 2e-6
    rs-trl train --model_name_or_path Qwen/Qwen2.5-Math-1.5B --dataset_name math12k   # the fields' own defaults
    accelerate launch --config_file recipes/accelerate_configs/zero3.yaml -m rs_trl.train --config <recipe>

Arguments are the fields of `ScriptArguments` (below), `RSGRPOConfig` and TRL's `ModelConfig`; a recipe sets them
and the command line overrides any of them. A recipe key that is none of these fields is an error. As with `trl grpo`,
no recipe applies unless `--config` names one; the demo recipe is asked for by name, with `rs-trl demo`.
"""

import dataclasses
import difflib
import json
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import trl
import yaml
from accelerate import PartialState
from transformers.integrations import get_available_reporting_integrations
from trl import ModelConfig, TrlParser, get_peft_config, get_quantization_config

from .checkpoints import CheckpointError
from .config import RSGRPOConfig
from .data import dataset_names, hub_id, load_math_dataset, load_prompt_dataset
from .evaluation import greedy_accuracy
from .offline import check_model_arg, resolve_model
from .preemption import TrainingInterrupted
from .rewards import REWARD_FUNCS, get_reward_funcs
from .run_dir import (
    RunDirLock,
    RunIdentityCallback,
    check_output_dir,
    disk_failures_explained,
    parse_resume,
    prepare_run_dir,
    run_identity,
)
from .trainer import RSGRPOTrainer

DEMO_RECIPE = "recipes_default/demo.yaml"


@dataclass
class ScriptArguments(trl.ScriptArguments):
    """TRL's `ScriptArguments` (dataset name and splits) plus what to score the model with.

    The model itself is in TRL's `ModelConfig`. `dataset_name` is a name of rs_trl's dataset registry or, as in TRL's
    and open-r1's scripts, any Hub id or local directory `datasets.load_dataset` reads (with `dataset_config`,
    `dataset_streaming` and the column options); registry datasets choose their own config, so setting
    `dataset_config` or `dataset_streaming` for them is an error rather than silently ignored.
    """

    dataset_name: str = field(
        default="arithmetic",
        metadata={
            "help": f"Dataset: one of {', '.join(dataset_names('train'))} (rs_trl.data), or a Hub id or local "
            "directory (TRL-style; see --dataset_prompt_column)."
        },
    )
    dataset_prompt_column: str = field(
        default="prompt",
        metadata={
            "help": "Hub/local datasets: the column with the prompt. 'prompt' is used as is (TRL's format); any other "
            "column holds the problem text and gets rs_trl's math prompt."
        },
    )
    dataset_answer_column: str | None = field(
        default=None,
        metadata={"help": "Hub/local datasets: a column to use as `answer` (what math_accuracy_reward reads)."},
    )
    dataset_limit: int | None = field(default=None, metadata={"help": "Train on at most this many problems."})
    chat: bool = field(
        default=True,
        metadata={"help": "Give prompts as chat messages (the model's chat template applies); false for plain text."},
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["math_accuracy_reward"],
        metadata={"help": f"Reward functions: {', '.join(REWARD_FUNCS)} (rs_trl.rewards) or a dotted import path."},
    )
    eval_limit: int = field(
        default=0,
        metadata={
            "help": "Score the model greedily on this many problems of the dataset's `test` split before and after "
            "training and write both accuracies to <output_dir>/metrics.json (single process only; 0 skips; "
            "use `rs-trl eval` for pass@k)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start a new run in an output_dir that holds a previous one, deleting its checkpoints."},
    )
    resume_allow_config_change: bool = field(
        default=False,
        metadata={
            "help": "Resume a checkpoint even if its model, dataset or risk_beta differ from this run's (else an error)."
        },
    )


USAGE = """rs-trl train [--config RECIPE.yaml] [--FIELD VALUE ...]

  --config RECIPE.yaml  a recipe: a YAML mapping of the fields below (see recipes/); flags override its values.
                        Without --config, no recipe applies: the fields' own defaults (shown below), as `trl grpo`.
                        `rs-trl demo` is `rs-trl train` with the offline CPU demo recipe (rs_trl/recipes_default)."""


def make_parser():
    """`TrlParser` over (ScriptArguments, RSGRPOConfig, ModelConfig): `--config x.yaml` plus per-field flags."""
    return TrlParser((ScriptArguments, RSGRPOConfig, ModelConfig), prog="rs-trl train", usage=USAGE)


def parse_args(argv: list[str] | None = None, default_recipe: str | None = None):
    """Parse `argv`; without `--config`, `default_recipe` (a file in the package, e.g. `DEMO_RECIPE`) is the base that
    flags override, and with none the fields' own defaults are."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    if "-h" in argv or "--help" in argv:  # help before any recipe applies, so it shows the fields' own defaults
        parser.parse_args_and_config(argv)  # prints the help and exits
    if "--config" not in argv:
        if default_recipe is None:
            return parser.parse_args_and_config(argv)
        argv = ["--config", str(resources.files("rs_trl") / default_recipe), *argv]
    position = argv.index("--config") + 1
    if position == len(argv) or argv[position].startswith("--"):
        raise ValueError("--config needs a value: the path of a recipe YAML, e.g. --config recipes/.../config.yaml.")
    fields = {
        field.name for config in (ScriptArguments, RSGRPOConfig, ModelConfig) for field in dataclasses.fields(config)
    }
    _check_recipe_keys(argv[position], fields)
    return parser.parse_args_and_config(argv)


def _check_recipe_keys(path: str, known: set[str]):
    """Reject recipe keys that are no field (typos would otherwise be ignored or reported obscurely)."""
    if not Path(path).is_file():
        raise ValueError(f"--config {path}: no such file; pass the path of a recipe YAML (see recipes/README.md).")
    try:
        recipe = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or " ".join(str(error).split())
        raise ValueError(f"{path}: not valid YAML ({where}{problem}); fix the recipe.") from None
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a recipe must be a YAML mapping of `field: value`, got {type(recipe).__name__}.")
    for key in recipe:
        if key != "env" and key not in known:  # `env:` sets environment variables, as in TRL
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{path}: unknown recipe key {key!r}; keys must be fields of ScriptArguments, RSGRPOConfig or "
                f"ModelConfig (see `rs-trl train --help`).{hint}"
            )


def check_report_to(report_to: list[str]) -> None:
    """Every `report_to` integration must be installed: Trainer would otherwise fail only after the model loads."""
    for name in report_to:
        if name not in get_available_reporting_integrations():
            package = {"azure_ml": "azureml-core"}.get(name, name)
            raise ValueError(
                f"report_to: {name!r} is not installed; pip install {package} (or pip install 'rs_trl[tracking]' for "
                "wandb and tensorboard), or pass --report_to none."
            )


def load_train_dataset(script_args: ScriptArguments, split: str, limit: int | None, seed: int):
    """A registry dataset by name (`rs_trl.data.load_math_dataset`), else any Hub id or local directory."""
    if script_args.dataset_name in dataset_names("train"):
        return load_math_dataset(script_args.dataset_name, split=split, chat=script_args.chat, limit=limit, seed=seed)
    return load_prompt_dataset(
        script_args.dataset_name,
        split,
        config=script_args.dataset_config,
        streaming=script_args.dataset_streaming,
        prompt_column=script_args.dataset_prompt_column,
        answer_column=script_args.dataset_answer_column,
        chat=script_args.chat,
        limit=limit,
        seed=seed,
    )


def train(script_args: ScriptArguments, training_args: RSGRPOConfig, model_args) -> dict:
    """Build the dataset, rewards and `RSGRPOTrainer`, train, save (and push); return the metrics written."""
    # Everything that can be wrong with the arguments fails here, before any model is loaded.
    reward_funcs = get_reward_funcs(script_args.reward_funcs)
    if model_args.model_name_or_path is None:
        raise ValueError(
            "model_name_or_path is required: a Hub id, a local directory or 'offline:SmolLM2-135M-Instruct'."
        )
    if training_args.max_steps == 0:
        raise ValueError("max_steps must be positive, or -1 to train for num_train_epochs; got 0.")
    check_report_to(training_args.report_to)
    state = PartialState()
    if script_args.dataset_name in dataset_names("train"):
        for name in ("dataset_config", "dataset_streaming"):
            if getattr(script_args, name):
                raise ValueError(
                    f"{name} is not supported for the registry dataset {script_args.dataset_name!r} (it chooses its "
                    "own); remove it, or pass a Hub id or local directory as --dataset_name."
                )
    if script_args.eval_limit < 0:
        raise ValueError(f"eval_limit must be >= 0, got {script_args.eval_limit}.")
    if script_args.eval_limit and state.num_processes > 1:
        raise ValueError("eval_limit > 0 needs a single process; for multi-GPU runs use `rs-trl eval` afterwards.")

    check_model_arg(model_args.model_name_or_path, "model_name_or_path")
    identity = run_identity(script_args, training_args, model_args)
    lock = RunDirLock(training_args.output_dir) if state.is_main_process else None
    try:
        return _train_in(lock, state, identity, script_args, training_args, model_args, reward_funcs)
    finally:
        if lock is not None:
            lock.release()


def _train_in(lock, state, identity, script_args, training_args, model_args, reward_funcs) -> dict:
    """`train` once its arguments are checked; the main process holds the output directory's lock throughout."""
    with state.main_process_first():  # one process converts/downloads, the others reuse its cache
        check_output_dir(training_args.output_dir, model_args.model_name_or_path)
        if lock is not None:
            lock.acquire()
        checkpoint = prepare_run_dir(
            training_args.output_dir,
            parse_resume(training_args.resume_from_checkpoint),
            script_args.overwrite_output_dir,
            identity,
            script_args.resume_allow_config_change,
        )
        model_path = resolve_model(model_args.model_name_or_path)
        train_dataset = load_train_dataset(
            script_args, script_args.dataset_train_split, script_args.dataset_limit, training_args.seed
        )
        eval_dataset = None
        if script_args.eval_limit:
            eval_dataset = load_train_dataset(
                script_args, script_args.dataset_test_split, script_args.eval_limit, training_args.seed
            )

    model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    training_args.model_init_kwargs = {**model_init_kwargs, **(training_args.model_init_kwargs or {})}
    trainer = RSGRPOTrainer(
        model=str(model_path),
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
        callbacks=[RunIdentityCallback(identity)],
    )

    metrics: dict = {
        "model": model_args.model_name_or_path,
        "dataset": script_args.dataset_name,
        "risk_beta": training_args.risk_beta,
    }
    if eval_dataset is not None:
        metrics["accuracy_before"] = greedy_accuracy(
            trainer.model, trainer.processing_class, eval_dataset, training_args.max_completion_length
        )
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except CheckpointError:
        raise  # found while loading the checkpoint, before any step: a one-line error like the argument checks
    except TrainingInterrupted:
        # Every rank saved and stops here: leave the process group as a finished run does (gloo's threads can
        # otherwise abort the interpreter at exit, pytorch/pytorch#179291), then exit for the scheduler.
        trainer.accelerator.end_training()
        raise
    except (ValueError, FileNotFoundError) as error:
        # Not a usage error once training has run: `rs-trl` prints those in one line, this keeps its traceback.
        raise RuntimeError(f"Training stopped at step {trainer.state.global_step}: {error!r}") from error
    if eval_dataset is not None:
        metrics["accuracy_after"] = greedy_accuracy(
            trainer.model, trainer.processing_class, eval_dataset, training_args.max_completion_length
        )
        metrics["eval_problems"] = len(eval_dataset)
    metrics["log_history"] = trainer.state.log_history

    with disk_failures_explained(
        training_args.output_dir,
        lambda: f"Saving the final model to {training_args.output_dir} failed",
        "Training finished; the checkpoints saved during it are intact: free space and resume from the last with "
        "--resume_from_checkpoint true.",
    ):
        trainer.save_model(training_args.output_dir)
    # The card links Hub datasets by id; checkpoint-time cards cannot know the dataset, so write the final one here.
    card_dataset = hub_id(script_args.dataset_name) or script_args.dataset_name
    trainer.create_model_card(model_name=Path(training_args.output_dir).name, dataset_name=card_dataset)
    if trainer.accelerator.is_main_process:
        metrics_path = Path(training_args.output_dir) / "metrics.json"
        metrics_path.write_text(json.dumps(metrics, indent=2))
        print(f"Saved the model to {training_args.output_dir} and metrics to {metrics_path}.")
    # Rank 0 is still saving and writing the card and metrics when the other ranks get here: let them reach the
    # process-group teardown together, as torch.distributed asks. Before the push, whose upload (rank 0 only) can
    # outlast the barrier's timeout.
    trainer.accelerator.wait_for_everyone()
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=card_dataset)
        trainer.accelerator.print(f"Pushed to https://huggingface.co/{trainer.hub_model_id}.")
    trainer.accelerator.end_training()
    return metrics


def main(argv: list[str] | None = None, default_recipe: str | None = None) -> int:
    """Entry point of `rs-trl train` and `python -m rs_trl.train` (also under `accelerate launch`)."""
    script_args, training_args, model_args = parse_args(argv, default_recipe)
    try:
        metrics = train(script_args, training_args, model_args)
    except TrainingInterrupted as interruption:  # its checkpoint is saved and named: exit for the scheduler to requeue
        return interruption.exit_code
    if "accuracy_before" in metrics:
        print(
            f"Greedy accuracy on {metrics['eval_problems']} held-out problems: "
            f"{metrics['accuracy_before']:.1%} before -> {metrics['accuracy_after']:.1%} after."
        )
    return 0


def demo_main(argv: list[str] | None = None) -> int:
    """Entry point of `rs-trl demo`: `rs-trl train` on the packaged offline CPU demo recipe (flags override it)."""
    return main(argv, default_recipe=DEMO_RECIPE)


if __name__ == "__main__":
    sys.exit(main())
