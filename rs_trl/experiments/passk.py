"""GRPO vs RS-GRPO at pass@k on a real pretrained model, offline on CPU, by a protocol fixed before it ran
(docs/passk-protocol.md): `rs-trl passk`.

SmolLM2-135M-Instruct (from PyPI) is trained on arithmetic (operands up to 99, or 199 or 499: the first where the base
model has headroom) with each method and each seed, with the demo recipe's settings, dynamic sampling off unless asked; every trained model is evaluated on 96
held-out problems (n=16, T=0.6, top-p 0.95). Before any training, the base model must have headroom on a separate dev
split of 64 problems: pass@16 in [40%, 85%], or the run stops. Every method is compared with GRPO, paired by seed and
problem, with a bootstrap over seeds *and* problems, and the decision rule of the protocol is applied.

Runs are resumable: one result file per method and seed; a rerun skips the finished ones and says so.

    rs-trl passk --out results/passk --seeds 0 1 2              # dynamic sampling off
    rs-trl passk --out results/passk-ds --seeds 0 1 2 --dynamic-sampling
    rs-trl passk --quick --out /tmp/passk                        # minutes: the same pipeline at a tiny budget (CI)
"""

import argparse
import json
import shutil
import time
from importlib import resources
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data import load_benchmark, load_math_dataset
from ..evaluation import evaluate_pass_at_k
from ..intervals import seed_problem_bootstrap
from ..offline import resolve_model
from ..reporting import RESULTS_FILE, plot_pass_at_k
from ..rewards import get_reward_funcs
from ..train import DEMO_RECIPE, parse_args

BASE_MODEL = "offline:SmolLM2-135M-Instruct"
# Task variants, easiest first: the first whose base dev pass@16 lies in DEV_HEADROOM is the task (protocol amendment 1).
MAX_OPERANDS = (99, 199, 499)
DEV_PROBLEMS, TEST_PROBLEMS = 64, 96
DEV_HEADROOM = (0.40, 0.85)  # base pass@16 on the dev split must lie here, else the task is too easy or too hard
METHODS = {
    "grpo": {"risk_beta": 0.0},
    "rs_grpo_b2": {"risk_beta": 2.0},
    "rs_grpo_b4": {"risk_beta": 4.0},
    "pkpo_k4": {"advantage_estimator": "pkpo", "pass_k": 4},
}
PRIMARY = "rs_grpo_b2"
# The decision rule, fixed in advance: RS-GRPO β=2's pass@16 gain over GRPO has a 95% lower bound above 0, and its
# pass@1 change a 95% lower bound above -3 points.
RULE = {"gain_k": 16, "gain_low_above": 0.0, "cost_k": 1, "cost_low_above": -0.03}


def split_problems(quick: bool, max_operand: int):
    """Disjoint dev and test problems from arithmetic's held-out split (which training cannot produce)."""
    dev, test = (4, 4) if quick else (DEV_PROBLEMS, TEST_PROBLEMS)
    held_out = load_benchmark("arithmetic-test", limit=dev + test, max_operand=max_operand)
    return held_out.select(range(dev)), held_out.select(range(dev, dev + test))


def evaluation_settings(quick: bool) -> dict:
    n = 4 if quick else 16
    return {"n": n, "ks": list(range(1, n + 1)), "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 32}


def finished(result_dir: Path) -> dict | None:
    path = result_dir / RESULTS_FILE
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    return result if not result.get("unfinished") else None


def train_and_evaluate(method: str, seed: int, args, test, out: Path) -> dict:
    """Train one model (the demo recipe, with this method, seed and task), evaluate it on `test`, keep the result
    and the training log; the weights are deleted afterwards (12+ runs of 0.5 GB each)."""
    from ..trainer import RSGRPOTrainer  # TRL takes seconds to import; `--help` should not wait for it

    model_dir = out / "models" / f"{method}_seed{seed}"
    argv = ["--config", str(resources.files("rs_trl") / DEMO_RECIPE), "--seed", str(seed)]
    argv += ["--max_steps", str(args.steps), "--output_dir", str(model_dir), "--disable_tqdm", "true"]
    argv += ["--dynamic_sampling", str(args.dynamic_sampling).lower()]
    for field, value in METHODS[method].items():
        argv += [f"--{field}", str(value)]
    script_args, training_args, _ = parse_args(argv)
    train_set = load_math_dataset(
        "arithmetic", chat=script_args.chat, limit=script_args.dataset_limit, max_operand=args.max_operand
    )
    if model_dir.exists():
        shutil.rmtree(model_dir)  # an interrupted run's leftovers: this run starts over
    training_args.model_init_kwargs = {"dtype": torch.float32}
    trainer = RSGRPOTrainer(
        model=resolve_model(BASE_MODEL),
        reward_funcs=get_reward_funcs(script_args.reward_funcs),
        args=training_args,
        train_dataset=train_set,
    )
    start = time.monotonic()
    trainer.train()
    train_seconds = time.monotonic() - start
    trainer.save_model(str(model_dir))
    result_dir = out / "results" / f"{method}_seed{seed}"
    result = evaluate_pass_at_k(
        str(model_dir),
        {"test": test},
        **evaluation_settings(args.quick),
        seed=seed,
        backend="transformers",
        batch_size=64,
        out_dir=result_dir,
        name=f"{method} seed {seed}",
    )
    (result_dir / "training.json").write_text(
        json.dumps({"train_seconds": train_seconds, "log_history": trainer.state.log_history}, indent=1)
    )
    shutil.rmtree(model_dir)
    return result


def choose_task(args, out: Path) -> int:
    """The first of MAX_OPERANDS whose base pass@16 (pass@n) on its dev split lies in DEV_HEADROOM; --quick takes the
    first. Each variant's dev result is kept, so a rerun decides the same way without sampling again."""
    settings = evaluation_settings(args.quick)
    low, high = DEV_HEADROOM
    for max_operand in MAX_OPERANDS:
        dev, _ = split_problems(args.quick, max_operand)
        result_dir = out / "results" / f"base_dev_max{max_operand}"
        result = finished(result_dir) or evaluate_pass_at_k(
            resolve_model(BASE_MODEL), {"dev": dev}, **settings, backend="transformers", batch_size=64,
            out_dir=result_dir, name=f"base (dev, max_operand {max_operand})",
        )  # fmt: skip
        value = result["benchmarks"]["dev"]["pass_at_k"][str(settings["n"])]
        inside = low <= value <= high
        print(
            f"max_operand {max_operand}: base dev pass@{settings['n']} = {value:.1%} "
            f"({'inside' if inside else 'outside'} the protocol's [{low:.0%}, {high:.0%}])"
        )
        if inside or args.quick:
            return max_operand
    raise ValueError(
        f"no task variant ({', '.join(map(str, MAX_OPERANDS))}) gives the base model a dev pass@{settings['n']} in "
        f"[{low:.0%}, {high:.0%}]; the protocol (docs/passk-protocol.md) needs another task, not another rule."
    )


def summarize(results: dict[str, dict[int, dict]], base: dict, out: Path, ks: list[int], max_operand: int) -> dict:
    """Per method: pass@k averaged over seeds with seed x problem intervals, and the paired difference to GRPO."""

    def counts(result):
        return [problem["correct"] for problem in result["benchmarks"]["test"]["problems"]]

    n = base["settings"]["n"]
    seeds = sorted(set.intersection(*(set(by_seed) for by_seed in results.values())))
    summary = {"max_operand": max_operand, "seeds": seeds, "n": n, "ks": ks, "methods": {}, "differences": {}}
    grpo = [counts(results["grpo"][seed]) for seed in seeds]
    for method, by_seed in results.items():
        correct = [counts(by_seed[seed]) for seed in seeds]
        summary["methods"][method] = seed_problem_bootstrap(correct, None, n, ks)
        if method != "grpo":
            summary["differences"][method] = seed_problem_bootstrap(grpo, correct, n, ks)
    summary["methods"]["base"] = seed_problem_bootstrap([counts(base)], None, n, ks)
    summary["per_seed"] = {
        method: {str(seed): run_facts(by_seed[seed], out / "results" / f"{method}_seed{seed}", n) for seed in seeds}
        for method, by_seed in results.items()
    }
    primary = summary["differences"].get(PRIMARY)
    if primary is not None:
        gain_k = min(RULE["gain_k"], n)  # pass@n at --quick's n=4
        gain, cost = primary[gain_k], primary[RULE["cost_k"]]
        summary["decision"] = {
            "rule": {**RULE, "gain_k": gain_k},
            f"pass@{gain_k} difference": gain,
            f"pass@{RULE['cost_k']} difference": cost,
            "holds": gain[1] > RULE["gain_low_above"] and cost[1] > RULE["cost_low_above"],
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(summary_table(summary) + "\n", encoding="utf-8")
    curves = [
        {"model": method, "benchmarks": {"test": {"pass_at_k": {str(k): values[k][0] for k in ks}}}}
        for method, values in summary["methods"].items()
    ]
    plot_pass_at_k(curves, out / "pass_at_k.png")
    return summary


def run_facts(result: dict, result_dir: Path, n: int) -> dict:
    """One run at a glance: its test pass@1 and pass@n, the mean training reward over its first and last 4 steps (did
    it learn?), and its training time."""
    pass_at_k = result["benchmarks"]["test"]["pass_at_k"]
    training = json.loads((result_dir / "training.json").read_text(encoding="utf-8"))
    rewards = [entry["reward"] for entry in training["log_history"] if "reward" in entry]
    return {
        "pass@1": pass_at_k["1"],
        f"pass@{n}": pass_at_k[str(n)],
        "train_reward_first_4": sum(rewards[:4]) / len(rewards[:4]),
        "train_reward_last_4": sum(rewards[-4:]) / len(rewards[-4:]),
        "train_minutes": training["train_seconds"] / 60,
    }


def summary_table(summary: dict) -> str:
    shown = [k for k in (1, 2, 4, 8, 16) if k in summary["ks"]]
    lines = [
        f"pass@k on {TEST_PROBLEMS} held-out problems (operands up to {summary['max_operand']}), n={summary['n']}, "
        f"mean over seeds {summary['seeds']}; "
        "[95% bootstrap interval over seeds and problems]",
        "",
        "| model | " + " | ".join(f"pass@{k}" for k in shown) + " |",
        "|---" * (len(shown) + 1) + "|",
    ]
    for method, values in summary["methods"].items():
        lines.append(f"| {method} | " + " | ".join(_cell(values[k]) for k in shown) + " |")
    lines += ["", "Paired difference to GRPO (same seeds, same problems):", ""]
    lines += ["| method | " + " | ".join(f"Δpass@{k}" for k in shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for method, values in summary["differences"].items():
        lines.append(f"| {method} − grpo | " + " | ".join(_cell(values[k], signed=True) for k in shown) + " |")
    n = summary["n"]
    lines += ["", "Each run (test pass@k; mean training reward over the first and the last 4 steps):", ""]
    lines += [f"| method | seed | pass@1 | pass@{n} | train reward | train minutes |", "|---|---|---|---|---|---|"]
    for method, by_seed in summary["per_seed"].items():
        for seed, facts in by_seed.items():
            lines.append(
                f"| {method} | {seed} | {100 * facts['pass@1']:.1f} | {100 * facts[f'pass@{n}']:.1f} | "
                f"{facts['train_reward_first_4']:.2f} -> {facts['train_reward_last_4']:.2f} | "
                f"{facts['train_minutes']:.1f} |"
            )
    if "decision" in summary:
        decision = summary["decision"]
        lines += [
            "",
            f"Decision rule (fixed in advance): {PRIMARY}'s pass@{decision['rule']['gain_k']} gain over GRPO has a lower bound "
            f"> 0 and its pass@{RULE['cost_k']} change a lower bound > {RULE['cost_low_above'] * 100:g} points: "
            f"**{'holds' if decision['holds'] else 'does not hold'}**.",
        ]
    return "\n".join(lines)


def _cell(value, signed: bool = False) -> str:
    estimate, low, high = (100 * v for v in value)
    sign = "+" if signed else ""
    return f"{estimate:{sign}.1f} [{low:{sign}.1f}, {high:{sign}.1f}]"


def run(args) -> dict:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    args.max_operand = choose_task(args, out)
    _, test = split_problems(args.quick, args.max_operand)
    settings = evaluation_settings(args.quick)
    base = finished(out / "results" / "base") or evaluate_pass_at_k(
        resolve_model(BASE_MODEL), {"test": test}, **settings, backend="transformers", batch_size=64,
        out_dir=out / "results" / "base", name="base",
    )  # fmt: skip
    results: dict[str, dict[int, dict]] = {method: {} for method in args.methods}
    runs = [(method, seed) for seed in args.seeds for method in args.methods]
    for method, seed in tqdm(runs, desc="runs (method x seed)", unit="run"):
        result_dir = out / "results" / f"{method}_seed{seed}"
        done = finished(result_dir)
        if done is not None:
            tqdm.write(f"skipping {method} seed {seed}: finished ({result_dir / RESULTS_FILE})")
        results[method][seed] = done or train_and_evaluate(method, seed, args, test, out)
    return summarize(results, base, out, settings["ks"], args.max_operand)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rs-trl passk", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("passk"), help="output directory (default: ./passk)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training and sampling seeds")
    parser.add_argument(
        "--methods", nargs="+", default=["grpo", PRIMARY], choices=list(METHODS), help="grpo is the baseline"
    )
    parser.add_argument("--steps", type=int, default=24, help="training steps per run")
    parser.add_argument("--dynamic-sampling", action="store_true", help="train with DAPO dynamic sampling on")
    parser.add_argument("--quick", action="store_true", help="2 steps, 4+4 problems, n=4: a smoke test (CI)")
    args = parser.parse_args(argv)
    if "grpo" not in args.methods:
        raise ValueError("--methods must include grpo, the baseline every method is compared with.")
    if args.quick:
        args.steps = 2
    start = time.monotonic()
    summary = run(args)
    print(summary_table(summary))
    print(f"\nwrote {args.out / 'summary.md'}, summary.json and pass_at_k.png in {time.monotonic() - start:.0f} s")
    return 0
