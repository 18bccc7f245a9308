"""The exploration dilemma through the real `RSGRPOTrainer`, at toy LM scale.

A tiny causal LM answers prompts `Q<i>:` with a two-digit number: a 100-armed bandit written as a
token sequence. Each prompt has a correct answer (reward 1.0), a wrong-but-partially-rewarded
distractor (0.6, the bandit's local peak) and 98 other answers (0.1). The model is first fitted
(supervised, in-process) to prefer the distractor and to give the correct answer rarely, then trained
with GRPO (risk_beta=0) and RS-GRPO (risk_beta>0) for the same steps and seeds. pass@1 and pass@k
(correct = the exact correct answer) are measured before and after.

`rs-trl dilemma --out DIR` writes DIR/dilemma.json and DIR/dilemma.png. Seeds are the unit of replication: each
seed is a new model, task, warm start and RL run. Besides the mean over seeds, the JSON's `statistics` holds a 95%
percentile-bootstrap interval over seeds for every metric, the paired difference of every run from GRPO (same seeds,
same warm starts) with its interval, how many seeds end below their own pre-RL pass@max-k, and how many
(seed, prompt) pairs lose the correct answer (sampled before RL, never in the `eval_samples` samples after).
"""

import argparse
import copy
import json
import math
import random
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
from transformers.utils import logging as hf_logging

from ..estimators import estimator_spec, parse_method
from ..evaluation import pass_at_k
from ..plots import pyplot
from ..tiny import build_tiny_model, cpu_training_args
from ..trainer import RSGRPOTrainer
from ._common import beta_key

CORRECT_REWARD, DISTRACTOR_REWARD, OTHER_REWARD = (
    1.0,
    0.6,
    0.1,
)  # the bandit's global peak, local peak, floor


@dataclass
class DilemmaSettings:
    """Everything that defines one dilemma experiment (recorded in the JSON)."""

    seeds: int = 5
    betas: list[float] = field(default_factory=lambda: [0.0, 2.0, 4.0, 8.0])
    # Method specs (`rs_trl.estimators.parse_method`: "grpo", "pkpo:4", "rs_grpo:adaptive", ...); when given,
    # they replace `betas`. Binary-only estimators (pass_at_k) are trained on 1 = correct, 0 = anything else.
    methods: list[str] = field(default_factory=list)
    num_prompts: int = 4
    rl_steps: int = 100
    num_generations: int = 16
    prompts_per_step: int = 2
    learning_rate: float = 5e-4
    # Supervised warm start: the answer mix the model is fitted to (the rest spread over other answers).
    sft_distractor_share: float = 0.85
    sft_correct_share: float = 0.03
    sft_steps: int = 150
    eval_samples: int = 64
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])

    def validate(self) -> None:
        """Raise ValueError naming the first bad field, before any compute."""
        positive = (
            "seeds",
            "num_prompts",
            "rl_steps",
            "prompts_per_step",
            "sft_steps",
            "eval_samples",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}.")
        if self.num_generations < 2:
            raise ValueError(f"`num_generations` must be >= 2, got {self.num_generations}.")
        if not self.betas or not all(math.isfinite(b) for b in self.betas):
            raise ValueError(f"`betas` must be a non-empty list of finite floats, got {self.betas!r}.")
        for spec in self.methods:
            try:
                parse_method(spec)
            except ValueError as error:
                raise ValueError(f"`methods`: {error}") from None
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"`learning_rate` must be a finite float > 0, got {self.learning_rate!r}.")
        shares = (self.sft_distractor_share, self.sft_correct_share)
        if not (all(0 < s < 1 for s in shares) and sum(shares) <= 1):
            raise ValueError(
                f"`sft_distractor_share` and `sft_correct_share` must be in (0, 1) and sum to <= 1, got {shares}."
            )
        if not self.ks or any(k < 1 or k > self.eval_samples for k in self.ks):
            raise ValueError(f"`ks` must be integers in [1, eval_samples={self.eval_samples}], got {self.ks!r}.")
        if self.num_prompts > 50:
            raise ValueError(f"`num_prompts` must be <= 50 (two distinct answers per prompt), got {self.num_prompts}.")


def make_task(num_prompts: int, seed: int = 0) -> list[dict[str, str]]:
    """`num_prompts` prompts, each with its own correct answer and distractor (distinct two-digit numbers)."""
    answers = random.Random(seed).sample(range(100), 2 * num_prompts)
    return [
        {
            "prompt": f"Q{i}:",
            "correct": f"{answers[2 * i]:02d}",
            "distractor": f"{answers[2 * i + 1]:02d}",
        }
        for i in range(num_prompts)
    ]


def correct_reward(completions: list[str], correct: list[str], **kwargs) -> list[float]:
    """TRL reward function for binary-only estimators: 1.0 for the correct answer, 0.0 for anything else."""
    return [float(completion.strip() == right) for completion, right in zip(completions, correct)]


def answer_reward(completions: list[str], correct: list[str], distractor: list[str], **kwargs) -> list[float]:
    """TRL reward function: 1.0 for the correct answer, 0.6 for the distractor, 0.1 for anything else."""
    rewards = []
    for completion, right, wrong in zip(completions, correct, distractor):
        answer = completion.strip()
        rewards.append(CORRECT_REWARD if answer == right else DISTRACTOR_REWARD if answer == wrong else OTHER_REWARD)
    return rewards


def _load_tiny_model(seed: int):

    with tempfile.TemporaryDirectory() as directory:
        build_tiny_model(directory, seed=seed)
        return AutoModelForCausalLM.from_pretrained(directory), AutoTokenizer.from_pretrained(directory)


def _encode(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """Prompt ids and answer ids + EOS, tokenized separately as the trainer sees them."""
    return tokenizer(prompt).input_ids, tokenizer(answer).input_ids + [tokenizer.eos_token_id]


def supervised_warm_start(model, tokenizer, task: list[dict[str, str]], settings: DilemmaSettings, seed: int) -> None:
    """Fit the model (in place) to answer each prompt with the distractor mostly, the correct answer rarely
    and a spread of other answers: the sharp, wrong-leaning prior that RL then starts from."""
    rng = random.Random(seed)
    examples = []
    per_prompt = 100
    for item in task:
        n_distractor = round(settings.sft_distractor_share * per_prompt)
        n_correct = round(settings.sft_correct_share * per_prompt)
        others = [f"{a:02d}" for a in range(100) if f"{a:02d}" not in (item["correct"], item["distractor"])]
        answers = [item["distractor"]] * n_distractor + [item["correct"]] * n_correct
        answers += rng.choices(others, k=per_prompt - len(answers))
        examples += [_encode(tokenizer, item["prompt"], answer) for answer in answers]
    length = max(len(p) + len(a) for p, a in examples)
    input_ids = torch.full((len(examples), length), tokenizer.pad_token_id)
    labels = torch.full_like(input_ids, -100)  # loss on the answer tokens only
    attention = torch.zeros_like(input_ids)
    for row, (prompt, answer) in enumerate(examples):
        ids = prompt + answer
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, len(prompt) : len(ids)] = torch.tensor(answer)
        attention[row, : len(ids)] = 1
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(settings.sft_steps):
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


@torch.no_grad()
def evaluate(model, tokenizer, task: list[dict[str, str]], settings: DilemmaSettings, seed: int) -> dict[str, float]:
    """pass@k over `eval_samples` sampled answers per prompt, and the share of samples that are the
    distractor, averaged over prompts."""
    model.eval()
    torch.manual_seed(seed)
    totals = {f"pass@{k}": 0.0 for k in settings.ks} | {"distractor_rate": 0.0}
    correct_per_prompt = []
    for item in task:
        prompt_ids = tokenizer(item["prompt"], return_tensors="pt").input_ids.repeat(settings.eval_samples, 1)
        generated = model.generate(
            input_ids=prompt_ids,
            attention_mask=torch.ones_like(prompt_ids),
            do_sample=True,
            temperature=1.0,
            top_k=None,
            top_p=None,
            max_new_tokens=4,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        texts = tokenizer.batch_decode(generated[:, prompt_ids.shape[1] :], skip_special_tokens=True)
        correct = sum(text.strip() == item["correct"] for text in texts)
        correct_per_prompt.append(correct)
        for k in settings.ks:
            totals[f"pass@{k}"] += pass_at_k(settings.eval_samples, correct, k)
        totals["distractor_rate"] += sum(text.strip() == item["distractor"] for text in texts) / len(texts)
    metrics = {name: round(value / len(task), 4) for name, value in totals.items()}
    return metrics | {"correct_per_prompt": correct_per_prompt}


def train_rl(
    model,
    tokenizer,
    task: list[dict[str, str]],
    method: dict,
    settings: DilemmaSettings,
    seed: int,
    output_dir: str,
):
    """Train `model` in place with `RSGRPOTrainer` configured by `method` (RSGRPOConfig fields: `risk_beta`, or
    `advantage_estimator` and its parameters; risk_beta=0 is exactly GRPO)."""
    rows = settings.rl_steps * settings.prompts_per_step
    dataset = Dataset.from_list([task[i % len(task)] for i in range(rows)])
    args = cpu_training_args(
        output_dir,
        **method,
        num_generations=settings.num_generations,
        per_device_train_batch_size=settings.num_generations * settings.prompts_per_step,
        max_completion_length=4,
        max_steps=settings.rl_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        temperature=1.0,
        seed=seed,
        logging_steps=10**6,
        dynamic_sampling=False,  # one plain batch per step, identical for every method
    )
    trainer = RSGRPOTrainer(
        model=model,
        reward_funcs=correct_reward if estimator_spec(args.advantage_estimator).binary_rewards else answer_reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict of every run
    trainer.train()
    return trainer.model


@contextmanager
def _quiet_single_thread():
    """One torch thread (the model is tiny: 2 threads ran 10x slower on a loaded 2-core machine) and no
    transformers progress bars or warnings; everything restored on exit."""
    threads, verbosity, bars = (
        torch.get_num_threads(),
        hf_logging.get_verbosity(),
        hf_logging.is_progress_bar_enabled(),
    )
    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.set_num_threads(threads)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def run_dilemma(settings: DilemmaSettings, progress: bool = True) -> dict:
    """For each seed: warm-start a tiny LM, evaluate, then train a copy per β and evaluate again."""
    settings.validate()
    per_seed = []
    bar = tqdm(
        total=settings.seeds * (1 + len(_runs(settings))),
        desc="dilemma runs",
        disable=not progress,
    )
    with _quiet_single_thread(), bar:
        for seed in range(settings.seeds):
            task = make_task(settings.num_prompts, seed)
            torch.manual_seed(seed)
            model, tokenizer = _load_tiny_model(seed)
            supervised_warm_start(model, tokenizer, task, settings, seed)
            record = {
                "seed": seed,
                "task": task,
                "before": evaluate(model, tokenizer, task, settings, seed),
                "after": {},
            }
            bar.update()
            for key, method in _runs(settings).items():
                with tempfile.TemporaryDirectory() as output_dir:
                    trained = train_rl(
                        copy.deepcopy(model),
                        tokenizer,
                        task,
                        method,
                        settings,
                        seed,
                        output_dir,
                    )
                record["after"][key] = evaluate(trained, tokenizer, task, settings, seed)
                bar.update()
            per_seed.append(record)
    return {
        "config": asdict(settings),
        "per_seed": per_seed,
        "summary": _summarize(per_seed, settings),
        "statistics": statistics(per_seed, settings),
    }


def _runs(settings: DilemmaSettings) -> dict[str, dict]:
    """Each trained variant: its key in the results, and the RSGRPOConfig fields that define it."""
    if settings.methods:
        return {spec: {k: v for k, v in vars(parse_method(spec)).items() if k != "label"} for spec in settings.methods}
    return {beta_key(beta): {"risk_beta": beta} for beta in settings.betas}


def _summarize(per_seed: list[dict], settings: DilemmaSettings) -> dict:
    """Mean over seeds of every metric, before training and after training with each β."""
    summary = {"before": _mean([record["before"] for record in per_seed])}
    for key in _runs(settings):
        name = key if settings.methods else f"beta={key}"
        summary[name] = _mean([record["after"][key] for record in per_seed])
    return summary


def _metric_names(row: dict) -> list[str]:
    return [name for name, value in row.items() if isinstance(value, (int, float))]


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {name: round(sum(row[name] for row in rows) / len(rows), 4) for name in _metric_names(rows[0])}


BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_LEVEL = 0.95


def bootstrap_mean_interval(
    values: list[float], resamples: int = BOOTSTRAP_RESAMPLES, level: float = BOOTSTRAP_LEVEL, seed: int = 0
) -> list[float]:
    """[mean, low, high]: the mean of `values` (one per seed) and its percentile-bootstrap interval (seeds resampled
    with replacement, `resamples` draws from a generator seeded with `seed`, so it is reproducible). One value gives
    [v, v, v]."""
    data = torch.tensor(values, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    means = data[torch.randint(len(data), (resamples, len(data)), generator=generator)].mean(dim=1)
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return [round(data.mean().item(), 4), round(low, 4), round(high, 4)]


def _baseline(settings: DilemmaSettings) -> str | None:
    """The run the others are paired against: GRPO (β = 0, or the `grpo` method) when it is in the sweep."""
    runs = _runs(settings)
    if settings.methods:
        return "grpo" if "grpo" in runs else None
    return beta_key(0.0) if beta_key(0.0) in runs else None


def statistics(per_seed: list[dict], settings: DilemmaSettings) -> dict:
    """Uncertainty over seeds, per run (keys as in `summary`):

    - `interval`: every metric's [mean, low, high], 95% percentile bootstrap over seeds (`bootstrap_mean_interval`);
    - `difference_from_grpo`: every metric's paired (same seed) difference run − GRPO as [mean, low, high]
      (absent for GRPO itself and without a GRPO run); beyond noise when the interval excludes 0;
    - `difference_from`: the same paired difference from every run listed before it, "before" (RL's effect)
      included, so any two runs can be compared on the same seeds;
    - `seeds_below_start`: seeds whose pass@max-k after RL is below the same seed's pass@max-k before RL;
    - `prompts_lost`: (seed, prompt) pairs whose correct answer was sampled before RL and never after;
    - `prompts_majority_correct`: (seed, prompt) pairs whose correct answer is more than half of the samples;
    and `prompts` (seeds × prompts) and `max_k`.
    """
    top = f"pass@{max(settings.ks)}"
    baseline = _baseline(settings)
    rows = {"before": [record["before"] for record in per_seed]}
    for key in _runs(settings):
        rows[key if settings.methods else f"beta={key}"] = [record["after"][key] for record in per_seed]
    before = rows["before"]
    result = {"prompts": sum(len(record["before"]["correct_per_prompt"]) for record in per_seed), "max_k": top}
    for name, seeds in rows.items():
        names = _metric_names(seeds[0])
        entry = {"interval": {metric: bootstrap_mean_interval([row[metric] for row in seeds]) for metric in names}}
        reference_name = baseline if settings.methods or baseline is None else f"beta={baseline}"
        if reference_name is not None and name not in ("before", reference_name):
            reference = rows[reference_name]
            entry["difference_from_grpo"] = {
                metric: bootstrap_mean_interval([row[metric] - ref[metric] for row, ref in zip(seeds, reference)])
                for metric in names
            }
        if name != "before":
            entry["difference_from"] = {
                other: {
                    metric: bootstrap_mean_interval(
                        [row[metric] - ref[metric] for row, ref in zip(seeds, rows[other])]
                    )
                    for metric in names
                }
                for other in list(rows)[: list(rows).index(name)]
            }
        entry["seeds_below_start"] = sum(row[top] < start[top] for row, start in zip(seeds, before))
        pairs = [
            (b, a)
            for row, start in zip(seeds, before)
            for b, a in zip(start["correct_per_prompt"], row["correct_per_prompt"])
        ]
        entry["prompts_lost"] = sum(b > 0 and a == 0 for b, a in pairs)
        entry["prompts_majority_correct"] = sum(a > settings.eval_samples / 2 for _, a in pairs)
        result[name] = entry
    return result


def plot(results: dict, path: Path) -> None:
    """pass@k curves (mean over seeds) before training and after each β, plus per-seed pass@1 / pass@max-k."""
    plt = pyplot()

    ks = results["config"]["ks"]
    fig, (ax_curve, ax_seeds) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, metrics in results["summary"].items():
        style = {"color": "gray", "linestyle": "--"} if name == "before" else {}
        label = (
            "before RL (warm start)"
            if name == "before"
            else "GRPO (β=0)"
            if name == "beta=0"
            else f"RS-GRPO ({name.replace('beta', 'β')})"
            if name.startswith("beta=")
            else name
        )
        ax_curve.plot(ks, [metrics[f"pass@{k}"] for k in ks], marker="o", label=label, **style)
    ax_curve.set(
        xscale="log",
        xlabel="k",
        ylabel="pass@k (mean over prompts and seeds)",
        title="pass@k",
    )
    ax_curve.set_xticks(ks, [str(k) for k in ks])
    ax_curve.legend(loc="lower right")
    names = ["before"] + list(results["per_seed"][0]["after"])
    for offset, metric in ((-0.2, "pass@1"), (0.2, f"pass@{ks[-1]}")):
        for i, name in enumerate(names):
            values = [(r["before"] if name == "before" else r["after"][name])[metric] for r in results["per_seed"]]
            ax_seeds.scatter(
                [i + offset] * len(values),
                values,
                color="tab:blue" if offset < 0 else "tab:orange",
                label=metric if i == 0 else None,
            )
    methods = bool(results["config"].get("methods"))
    ax_seeds.set_xticks(
        range(len(names)), ["before"] + [n if methods else f"β={n}" for n in names[1:]], rotation=30 if methods else 0
    )
    ax_seeds.set(ylabel="per seed", title=f"pass@1 and pass@{ks[-1]} per seed")
    ax_seeds.legend()
    steps = results["config"]["rl_steps"]
    fig.suptitle(f"Exploration dilemma, tiny LM + RSGRPOTrainer ({steps} RL steps, {len(results['per_seed'])} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    defaults = DilemmaSettings()
    parser = argparse.ArgumentParser(prog="rs-trl dilemma", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("dilemma"),
        help="output directory (default: ./dilemma)",
    )
    parser.add_argument("--seeds", type=int, default=defaults.seeds, help="number of seeds")
    parser.add_argument(
        "--betas",
        type=float,
        nargs="+",
        default=defaults.betas,
        help="risk_beta values (0 = GRPO)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=[],
        help="advantage estimators instead of --betas, e.g. grpo rs_grpo:2 rs_grpo:adaptive pass_at_k:4 pkpo:4",
    )
    parser.add_argument("--steps", type=int, default=defaults.rl_steps, help="RL steps per run")
    parser.add_argument("--prompts", type=int, default=defaults.num_prompts, help="number of prompts")
    parser.add_argument("--lr", type=float, default=defaults.learning_rate, help="RL learning rate")
    parser.add_argument(
        "--sft-steps",
        type=int,
        default=defaults.sft_steps,
        help="supervised warm-start steps",
    )
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=defaults.eval_samples,
        help="samples per prompt for pass@k",
    )
    return parser


def _print_statistics(stats: dict, settings: DilemmaSettings) -> None:
    top, prompts = stats["max_k"], stats["prompts"]
    level = f"{BOOTSTRAP_LEVEL:.0%}"
    print(
        f"\nmean over {settings.seeds} seeds [{level} bootstrap interval over seeds]; paired difference from GRPO; "
        f"seeds ending below their pre-RL {top}; of {prompts} (seed, prompt) pairs: correct answer lost, majority"
    )
    for name, entry in stats.items():
        if not isinstance(entry, dict):
            continue
        cells = [
            f"{metric} {m:.3f} [{lo:.3f}, {hi:.3f}]"
            for metric in ("pass@1", top)
            for m, lo, hi in [entry["interval"][metric]]
        ]
        if "difference_from_grpo" in entry:
            m, lo, hi = entry["difference_from_grpo"][top]
            cells.append(f"{top} - GRPO {m:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        previous = list(entry.get("difference_from", {}))[-1:]
        differences = entry.get("difference_from", {})
        if previous and previous[0] != "before" and differences[previous[0]] != entry.get("difference_from_grpo"):
            m, lo, hi = entry["difference_from"][previous[0]][top]
            cells.append(f"{top} - {previous[0]} {m:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        if name != "before":
            cells.append(f"below start {entry['seeds_below_start']}/{settings.seeds}")
            cells.append(f"lost {entry['prompts_lost']}/{prompts}")
        cells.append(f"majority correct {entry['prompts_majority_correct']}/{prompts}")
        print(f"{name:<20}" + "; ".join(cells))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = DilemmaSettings(
        seeds=args.seeds,
        betas=args.betas,
        methods=args.methods,
        rl_steps=args.steps,
        num_prompts=args.prompts,
        learning_rate=args.lr,
        sft_steps=args.sft_steps,
        eval_samples=args.eval_samples,
    )
    settings.validate()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = run_dilemma(settings)
    results["wall_time_s"] = round(time.perf_counter() - started, 1)
    stem = "dilemma_methods" if settings.methods else "dilemma"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / f"{stem}.png")
    ks = settings.ks
    print(f"{'':<20}" + "".join(f"{'pass@' + str(k):>10}" for k in ks) + f"{'distractor':>12}")
    for name, metrics in results["summary"].items():
        print(
            f"{name:<20}"
            + "".join(f"{metrics[f'pass@{k}']:>10.3f}" for k in ks)
            + f"{metrics['distractor_rate']:>12.3f}"
        )
    _print_statistics(results["statistics"], settings)
    print(f"{settings.seeds} seeds in {results['wall_time_s']} s -> {args.out}/{stem}.json, {stem}.png")
    return 0
