"""The RS-GRPO part of a model card.

TRL writes the card (`create_model_card`: method name, paper link and BibTeX come from the trainer's `_name` and
`_paper`); this module adds the section a reader needs to know what was trained and how: risk_beta, base model,
dataset and the DAPO-style settings that shape the update.
"""

import textwrap
from pathlib import Path

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .config import RSGRPOConfig, trains_plain_grpo
from .estimators import estimator_spec

SECTION_TITLE = "## RS-GRPO settings"
# TRL's `_paper` layout: the trainer hands it to TRL, which writes the paper link and BibTeX into the card.
PAPER = {
    "title": "Risk-Sensitive RL for Alleviating Exploration Dilemmas in Large Language Models",
    "id": "2509.24261",
    # docstyle-ignore
    "citation": textwrap.dedent("""\
        @article{jiang2025risk,
            title        = {{Risk-Sensitive RL for Alleviating Exploration Dilemmas in Large Language Models}},
            author       = {Yuhua Jiang and Jiawei Huang and Yufeng Yuan and Xin Mao and Yu Yue and Qianchuan Zhao and Lin Yan},
            year         = 2025,
            eprint       = {arXiv:2509.24261},
        }"""),
}


def _format(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def rs_grpo_section(args: RSGRPOConfig, base_model: str | None, dataset_name: str | None) -> str:
    """Markdown section stating the method, risk_beta, base model, dataset and the update's settings."""
    spec = estimator_spec(args.advantage_estimator)
    if args.advantage_estimator != "rs_grpo":
        meaning = (
            f"This run used the `{args.advantage_estimator}` advantage estimator ({spec.description}) in place of "
            "the risk-sensitive advantage."
        )
    elif args.risk_beta_schedule != "constant":
        meaning = f"β followed the `{args.risk_beta_schedule}` schedule (`rs/beta*` in the training logs)."
    elif args.risk_beta == 0:
        meaning = "β = 0 is standard GRPO (mean reward; std scaling only if `scale_rewards` asks)."
    else:
        meaning = (
            f"β = {args.risk_beta:g} {'seeks' if args.risk_beta > 0 else 'avoids'} risk: the advantage "
            "(1/β)·(exp(β·r) / mean exp(β·r) − 1) gives rare correct answers more credit than GRPO's r − mean."
        )
    if trains_plain_grpo(args):
        method = "Trained as plain GRPO with rs_trl's `RSGRPOTrainer`: the risk-sensitive objective was not used."
    else:
        method = (
            "Trained with RS-GRPO, which maximises the risk-sensitive objective J = (1/β) log E[exp(β r)] "
            f"([{PAPER['title']}](https://arxiv.org/abs/{PAPER['id']}), arXiv:{PAPER['id']})."
        )
    epsilon_high = args.epsilon if args.epsilon_high is None else args.epsilon_high  # TRL's fallback
    rows = [
        ("method", "RS-GRPO (Risk-Sensitive GRPO)"),
        ("advantage_estimator", args.advantage_estimator),
        *((name, _format(getattr(args, name))) for name in spec.config_fields),
        ("base model", base_model or "unknown"),
        ("dataset", dataset_name or "not recorded"),
        ("num_generations (group size)", args.num_generations),
        ("loss_type", args.loss_type),
        ("epsilon / epsilon_high", f"{args.epsilon:g} / {epsilon_high:g}"),
        ("scale_rewards", args.scale_rewards),
        ("KL beta", f"{args.beta:g}"),
        ("learning_rate", f"{args.learning_rate:g}"),
        ("max_completion_length", args.max_completion_length),
        ("temperature", f"{args.temperature:g}"),
        ("dynamic_sampling", args.dynamic_sampling),
        ("dynamic_sampling_max_rounds", args.dynamic_sampling_max_rounds),
        ("dynamic_sampling_on_exhaustion", args.dynamic_sampling_on_exhaustion),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"{SECTION_TITLE}\n\n{method} {meaning}\n\n| setting | value |\n|---|---|\n{table}\n"


def add_rs_grpo_section(card_path: str | Path, args: RSGRPOConfig, base_model: str | None, dataset_name: str | None):
    """Insert (or replace) the RS-GRPO section in the model card at `card_path`, before its citations."""
    card_path = Path(card_path)
    text = card_path.read_text(encoding="utf-8")
    text = _drop_section(text, SECTION_TITLE)
    section = rs_grpo_section(args, base_model, dataset_name)
    marker = "\n## Citations"
    if marker in text:
        before, after = text.split(marker, 1)
        text = f"{before.rstrip()}\n\n{section}{marker}{after}"
    else:
        text = f"{text.rstrip()}\n\n{section}"
    card_path.write_text(text, encoding="utf-8")


def is_hub_id(name: str | None) -> bool:
    """Whether `name` is an `org/name` Hub id rather than a local path or a locally generated dataset's name."""
    if not name or "/" not in name or Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def name_local_base_model(card_path: str | Path, base_model: str | None):
    """TRL links the base model only when it is a Hub id and otherwise writes "[None](https://huggingface.co/None)";
    name a local base model by its path instead, as plain text."""
    card_path = Path(card_path)
    text = card_path.read_text(encoding="utf-8")
    replacement = f"`{base_model}` (a local model)" if base_model else "a local model"
    card_path.write_text(text.replace("[None](https://huggingface.co/None)", replacement), encoding="utf-8")


def _drop_section(text: str, title: str) -> str:
    """Remove a `## title` section (up to the next `## ` heading), so regenerating a card never duplicates it."""
    start = text.find(title)
    if start < 0:
        return text
    end = text.find("\n## ", start + len(title))
    return text[:start].rstrip() + ("\n" + text[end:] if end >= 0 else "\n")
