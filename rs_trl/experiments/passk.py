"""GRPO vs RS-GRPO at pass@k on a real pretrained model, offline on CPU: `rs-trl passk`.

SmolLM2-135M-Instruct (from PyPI) is trained with GRPO (β = 0) and RS-GRPO (β = 2 and a larger β) from the same
seed, on the same problems, for the same number of steps, with the demo recipe's settings (`rs-trl train`), then
the base model and each trained model are evaluated with the paper's protocol (`rs_trl.evaluation`: n samples per
problem, temperature 0.6, top-p 0.95, unbiased pass@k) on held-out problems that training cannot contain. The task
is generated arithmetic: measured on the base model, pass@1 is low (35%) while pass@8 reaches 100% on 20 problems,
so there is room for pass@k to be kept or lost. Writes one result directory per model, `comparison.md` (pass@k with
intervals, paired differences, newly solved and lost problems) and `pass_at_k.png` with every curve.

    rs-trl passk --out results/passk            # the full experiment
    rs-trl passk --quick --out /tmp/passk       # a few minutes: the same pipeline, tiny budget (CI smoke test)
"""

import argparse
import time
from importlib import resources
from pathlib import Path

from ..evaluation import evaluate_pass_at_k
from ..offline import resolve_model
from ..reporting import compare_results, plot_pass_at_k
from ..train import DEMO_RECIPE, parse_args, train

BENCHMARK = "arithmetic-test"


def method_name(beta: float) -> str:
    return "GRPO" if beta == 0 else f"RS-GRPO b={beta:g}"


def run(out: Path, betas: list[float], steps: int, n: int, problems: int, max_new_tokens: int) -> str:
    """Train one model per β, evaluate the base and every trained model, write the comparison; return it."""
    out.mkdir(parents=True, exist_ok=True)
    recipe = str(resources.files("rs_trl") / DEMO_RECIPE)
    models = {"base": "offline:SmolLM2-135M-Instruct"}
    for beta in betas:
        name = method_name(beta)
        model_dir = out / "models" / name.replace(" ", "_")
        argv = ["--config", recipe, "--risk_beta", str(beta), "--max_steps", str(steps), "--eval_limit", "0"]
        argv += ["--output_dir", str(model_dir), "--overwrite_output_dir", "true"]
        train(*parse_args(argv))
        models[name] = str(model_dir)
    results = []
    for name, model in models.items():
        results.append(
            evaluate_pass_at_k(
                str(resolve_model(model)),
                [BENCHMARK],
                n=n,
                limit=problems,
                max_new_tokens=max_new_tokens,
                backend="transformers",
                out_dir=out / "results" / name.replace(" ", "_"),
                name=name,
            )
        )
    comparison = compare_results(results, sorted({1, n // 4, n}))
    (out / "comparison.md").write_text(comparison + "\n", encoding="utf-8")
    plot_pass_at_k(results, out / "pass_at_k.png")
    return comparison


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rs-trl passk", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("passk"), help="output directory (default: ./passk)")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 2.0, 8.0], help="0 is GRPO")
    parser.add_argument("--steps", type=int, default=24, help="training steps per method")
    parser.add_argument("--n", type=int, default=16, help="samples per held-out problem")
    parser.add_argument("--problems", type=int, default=40, help="held-out problems")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="as in training")
    parser.add_argument("--quick", action="store_true", help="2 steps, 4 problems, n=4: a smoke test of the pipeline")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.problems, args.n = 2, 4, 4
    start = time.monotonic()
    print(run(args.out, args.betas, args.steps, args.n, args.problems, args.max_new_tokens))
    print(f"\nwrote {args.out / 'comparison.md'} and {args.out / 'pass_at_k.png'} in {time.monotonic() - start:.0f} s")
    return 0
