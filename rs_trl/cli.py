"""`rs-trl` command line: one sub-command per concern, each module owning its own argument parsing."""

import importlib
import sys

COMMANDS = {
    "train": (
        "rs_trl.train",
        "main",
        "train with RS-GRPO (TrlParser; `--config recipe.yaml` and/or --FIELD flags, as `trl grpo`)",
    ),
    "demo": (
        "rs_trl.train",
        "demo_main",
        "the offline CPU demo: `rs-trl train` on the packaged recipe (SmolLM2-135M-Instruct, arithmetic)",
    ),
    "eval": ("rs_trl.evaluation", "main", "sample n completions per problem and report pass@k"),
    "compare": (
        "rs_trl.reporting",
        "compare_main",
        "compare pass@k result files (intervals, paired differences, newly solved and lost problems)",
    ),
    "bandit": (
        "rs_trl.experiments.bandit",
        "main",
        "the paper's 100-armed bandit: β sweep, estimators (--methods), lemmas",
    ),
    "passk": (
        "rs_trl.experiments.passk",
        "main",
        "GRPO vs RS-GRPO at pass@k on SmolLM2, offline: train, evaluate, compare with intervals",
    ),
    "dilemma": (
        "rs_trl.experiments.dilemma",
        "main",
        "toy-LM dilemma via RSGRPOTrainer: β sweep or estimators (--methods)",
    ),
}


def _usage() -> str:
    lines = ["usage: rs-trl COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<8} {help_text}" for name, (_, _, help_text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(
            f"rs-trl: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}.\n\n{_usage()}", file=sys.stderr
        )
        return 2
    module_name, function_name, _ = COMMANDS[argv[0]]
    command = getattr(importlib.import_module(module_name), function_name)
    try:
        return command(argv[1:]) or 0
    except (ValueError, FileNotFoundError) as error:
        # Bad input (arguments, files, configs): our messages name the culprit and the fix; a traceback adds nothing.
        # Errors raised once training runs reach here as RuntimeError (see rs_trl.train) and keep their traceback.
        print(f"rs-trl {argv[0]}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
