"""pass@k evaluation: sample n completions per problem, grade them with Math-Verify, report unbiased pass@k.

`evaluate_pass_at_k` is the library entry point and `rs-trl eval` (`main`) its command line; the samplers are in
`rs_trl.generation`, tables, intervals and plots (and `rs-trl compare`) in `rs_trl.reporting`. Results are one JSON
file per model (per-benchmark and averaged pass@k, and per-problem correct counts, so two models can be compared
problem by problem) plus a pass@k-vs-k plot.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .data import benchmark_names, load_benchmark
from .estimators import default_ks, unbiased_pass_at_k
from .generation import BACKENDS, TransformersSampler, make_sampler, resolve_backend
from .offline import check_model_arg, resolve_model
from .reporting import RESULTS_FILE, compare_results, load_results, plot_pass_at_k  # noqa: F401 - public here too
from .rewards import default_verifier, math_accuracy_reward

PLOT_FILE = "pass_at_k.png"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator 1 − C(n−c, k) / C(n, k) (Chen et al., 2021) of one problem, with its inputs checked
    (`rs_trl.estimators.unbiased_pass_at_k` computes it)."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
    if k < 1:
        raise ValueError(f"`k` must be >= 1, got {k}.")
    if k > n:
        raise ValueError(f"`k` ({k}) must be <= `n` ({n}), the number of samples.")
    if c > n:
        raise ValueError(f"`c` ({c}) must be <= `n` ({n}): more correct samples than samples.")
    return unbiased_pass_at_k(c, n, k).item()


# ----------------------------------------------------------------------------------------------------------------
# Evaluation.


def _check_args(
    n: int,
    ks: Sequence[int] | None,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    backend: str,
    batch_size: int,
    limit: int | None,
):
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"`n` must be a positive integer (samples per problem), got {n!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` (--batch-size) must be a positive integer, got {batch_size!r}.")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` (--limit) must be a positive integer (problems per benchmark), got {limit!r}.")
    bad = [k for k in ks if not isinstance(k, int) or not 1 <= k <= n] if ks is not None else []
    if ks is not None and (not ks or bad):
        raise ValueError(f"`ks` must be non-empty integers in [1, n={n}], got {list(ks)!r}.")
    if not temperature >= 0:
        raise ValueError(f"`temperature` must be >= 0 (0 is greedy), got {temperature!r}.")
    if not 0 < top_p <= 1:
        raise ValueError(f"`top_p` must be in (0, 1], got {top_p!r}.")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"`max_new_tokens` must be a positive integer, got {max_new_tokens!r}.")
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {', '.join(BACKENDS)}, got {backend!r}.")


def _resolve_benchmarks(benchmarks: Any) -> list[str] | Mapping:
    if isinstance(benchmarks, Mapping):  # {name: Dataset with `prompt` and `answer` columns}
        for name, dataset in benchmarks.items():
            missing = {"prompt", "answer"} - set(dataset.column_names)
            if missing:
                raise ValueError(
                    f"benchmark {name!r} lacks column(s) {sorted(missing)}; it has {dataset.column_names}."
                )
        return benchmarks
    names = [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
    allowed = benchmark_names()
    unknown = [name for name in names if name not in allowed]
    if not names or unknown:
        raise ValueError(f"unknown benchmark(s) {unknown or names!r}; allowed: {', '.join(allowed)}.")
    return names


def score_benchmark(correct: Sequence[int], n: int, ks: Sequence[int]) -> dict[str, float]:
    """Mean unbiased pass@k over problems, for each k (keys are str(k) so the dict survives JSON)."""
    if not correct:
        return {str(k): 0.0 for k in ks}
    return {str(k): unbiased_pass_at_k(list(correct), n, k).mean().item() for k in ks}


def evaluate_pass_at_k(
    model: Any,
    benchmarks: str | Sequence[str] | Mapping[str, Any],
    n: int = 32,
    ks: Sequence[int] | None = None,
    *,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_new_tokens: int = 4096,
    backend: str = "auto",
    chat: bool = True,
    limit: int | None = None,
    seed: int = 0,
    tokenizer: Any = None,
    batch_size: int = 32,
    out_dir: str | Path | None = None,
    name: str | None = None,
    save_completions: bool = False,
    verifier: Any = None,
    backend_kwargs: dict | None = None,
) -> dict:
    """Sample `n` completions per problem and report unbiased pass@k per benchmark and averaged over benchmarks.

    Args:
        model: path or Hub id (either backend), or a loaded transformers model (with `tokenizer`).
        benchmarks: names from `rs_trl.data.benchmark_names()` or {name: Dataset} with
            `prompt` and `answer` columns.
        n: samples per problem. ks: the k values (default 1, 2, 4, ..., n).
        temperature, top_p, max_new_tokens: sampling (temperature 0 means greedy: all n samples equal).
        backend: "vllm" (one request per prompt with n samples), "transformers" (`generate`, CPU or GPU), or
            "auto" (vLLM when installed and a GPU is visible).
        chat: chat-template prompts (instruct models) or plain text (base models).
        limit: first `limit` problems of each benchmark (quick checks).
        seed: sampling seed. batch_size: sequences per `generate` call (transformers backend).
        out_dir: if set, write `pass_at_k.json` and `pass_at_k.png` there (and `completions_<benchmark>.jsonl`
            with `save_completions`).
        name: model label in results and plots (default: `model` as given).
        verifier: a `rs_trl.rewards.MathVerifier` (default: the shared one).
        backend_kwargs: extra arguments for `vllm.LLM` or `AutoModelForCausalLM.from_pretrained`.

    Returns:
        {"model", "settings": {"model_path", "weights", "backend", "benchmarks", "limit", "n", "ks", "temperature",
        "top_p", "max_new_tokens", "seed", "chat"}, "ks", "benchmarks": {name: {"num_problems", "pass_at_k": {k: value},
        "problems": [{"id", "answer", "correct", "n"}]}}, "average": {k: mean over benchmarks}}.

    With `out_dir`, `pass_at_k.json` is rewritten as each benchmark finishes (with "unfinished": the benchmarks still
    to run), so an interruption loses at most the benchmark in progress. A rerun with the same `out_dir`, settings and
    weights (`_weights_identity`) reuses the benchmarks already there, saying so; one with other settings is refused;
    one whose model has other weights than the file records (retrained in place), or is a loaded model, evaluates
    every benchmark again and replaces the file.
    """
    _check_args(n, ks, temperature, top_p, max_new_tokens, backend, batch_size, limit)
    ks = list(ks) if ks is not None else default_ks(n)
    selected = _resolve_benchmarks(benchmarks)
    backend = resolve_backend(backend, model)
    settings = {
        "model_path": str(model) if isinstance(model, (str, Path)) else type(model).__name__,
        "weights": _weights_identity(model, (backend_kwargs or {}).get("revision")),
        "backend": backend,
        "benchmarks": list(selected),
        "limit": limit,
        "n": n,
        "ks": ks,
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "chat": chat,
    }
    results: dict[str, Any] = {
        "model": name or settings["model_path"],
        "settings": settings,
        "ks": ks,
        "benchmarks": {},
    }
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None:
        _prepare_out_dir(out_dir)
        results["benchmarks"] = _finished_benchmarks(out_dir / RESULTS_FILE, settings)

    todo = [bench for bench in selected if bench not in results["benchmarks"]]
    # Every dataset before the model: an unreachable one fails in seconds, not after the first benchmark.
    if isinstance(selected, Mapping):
        datasets = {b: selected[b].select(range(min(limit, len(selected[b])))) if limit else selected[b] for b in todo}
    else:
        datasets = {bench: load_benchmark(bench, chat=chat, limit=limit) for bench in todo}
    verifier = verifier or default_verifier()
    sampler = None
    for bench, dataset in datasets.items():
        if sampler is None:  # loaded only when a benchmark is left to run
            sampler = make_sampler(backend, model, tokenizer, seed, batch_size, backend_kwargs)
        if backend == "transformers":
            torch.manual_seed(seed)  # per benchmark, so a resumed evaluation samples as an uninterrupted one does
        completions = sampler.sample(list(dataset["prompt"]), n, temperature, top_p, max_new_tokens, f"{bench}")
        answers = list(dataset["answer"])
        flat = [text for samples in completions for text in samples]
        scores = _grade(verifier, flat, [a for a, samples in zip(answers, completions) for _ in samples], bench)
        correct, offset = [], 0
        for samples in completions:
            correct.append(int(sum(scores[offset : offset + len(samples)])))
            offset += len(samples)
        ids = dataset["id"] if "id" in dataset.column_names else [str(i) for i in range(len(dataset))]
        results["benchmarks"][bench] = {
            "num_problems": len(dataset),
            "pass_at_k": score_benchmark(correct, n, ks),
            "problems": [{"id": str(i), "answer": a, "correct": c, "n": n} for i, a, c in zip(ids, answers, correct)],
        }
        if out_dir is not None and save_completions:
            with open(out_dir / f"completions_{bench}.jsonl", "w", encoding="utf-8") as file:
                for i, samples in enumerate(completions):
                    score = scores[i * n : (i + 1) * n]
                    file.write(json.dumps({"id": str(ids[i]), "completions": samples, "scores": score}) + "\n")
        if out_dir is not None:
            unfinished = [b for b in selected if b not in results["benchmarks"]]
            _write_results(out_dir / RESULTS_FILE, results, unfinished)
    results["benchmarks"] = {bench: results["benchmarks"][bench] for bench in selected}  # the requested order
    results["average"] = {
        str(k): sum(b["pass_at_k"][str(k)] for b in results["benchmarks"].values()) / len(results["benchmarks"])
        for k in ks
    }
    if out_dir is not None:
        _write_results(out_dir / RESULTS_FILE, results, [])
        plot_pass_at_k([results], out_dir / PLOT_FILE)
    return results


# Model files whose change means other weights (a model directory also holds tokenizer and training files).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def _weights_identity(model: Any, revision: str | None = None) -> dict | None:
    """What identifies the weights `model` stands for, cheaply: a local directory by its weight files' names, sizes and
    modification times (nothing is read, whatever the model's size); a Hub id by the id and `revision`; None for a
    loaded model, whose weights may have changed since any earlier evaluation (a trainer's live model)."""
    if not isinstance(model, (str, Path)):
        return None
    path = Path(model)
    if not path.is_dir():
        return {"hub_id": str(model), "revision": revision or "main"}
    files = sorted(f for f in path.iterdir() if f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES))
    return {"files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]}


def _prepare_out_dir(out_dir: Path) -> None:
    """Create `out_dir` and make sure results can be written there, before any model is loaded."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a directory; pass a directory for the results.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {out_dir}: cannot create the directory ({error.strerror}); pass another.") from error
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out_dir} is not writable; pass a directory you can write to.")


def _finished_benchmarks(path: Path, settings: dict) -> dict:
    """Benchmarks an earlier run with the same settings and weights already wrote to `path`, said one by one (none if
    there is no such file, or it holds results for other weights: those are evaluated again and replaced)."""
    if not path.is_file():
        return {}
    previous = load_results(path)
    old = previous.get("settings", {})
    differing = [key for key in settings if key not in ("benchmarks", "weights") and old.get(key) != settings[key]]
    if differing:
        changes = ", ".join(f"{key}: {old.get(key)!r} there, {settings[key]!r} now" for key in differing)
        raise ValueError(
            f"{path} holds results of an evaluation with other settings ({changes}); use another --out, or delete "
            "the file to start over."
        )
    if settings["weights"] is None:
        print(f"{path}: a loaded model's weights cannot be matched with the results there; evaluating again.")
        return {}
    if old.get("weights") != settings["weights"]:
        # The model was retrained in place: the results wanted are those of the weights it has now.
        change = _weights_change(old.get("weights"), settings["weights"])
        print(f"{path} holds results for other weights ({change}); evaluating again and replacing them.")
        return {}
    dropped = [bench for bench in previous["benchmarks"] if bench not in settings["benchmarks"]]
    if dropped:  # rewriting the file without them would lose them
        raise ValueError(
            f"{path} holds results for {dropped}, which this run does not ask for; add them to --benchmarks, use "
            "another --out, or delete the file to start over."
        )
    for bench in previous["benchmarks"]:
        print(f"reusing {bench} from {path} (same weights and settings)")
    return previous["benchmarks"]


def _weights_change(old: dict | None, new: dict) -> str:
    if old is None:
        return "it records none"
    if "files" in old and "files" in new:
        before, after = ({name: rest for name, *rest in w["files"]} for w in (old, new))
        changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
        return f"changed since: {', '.join(changed)}"
    return f"{old} there, {new} now"


def _write_results(path: Path, results: dict, unfinished: list[str]) -> None:
    """Write atomically (temporary file + rename), so an interruption never leaves a truncated results file."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps({**results, "unfinished": unfinished}, indent=1), encoding="utf-8")
    os.replace(partial, path)


def _grade(verifier: Any, completions: list[str], answers: list[str], desc: str) -> list[float]:
    scores: list[float] = []
    chunk = 256  # progress granularity; the verifier parallelizes within a chunk
    with tqdm(total=len(completions), desc=f"{desc} grade", unit="sample") as progress:
        for start in range(0, len(completions), chunk):
            scores += verifier(completions[start : start + chunk], answers[start : start + chunk])
            progress.update(min(chunk, len(completions) - start))
    return scores


def greedy_accuracy(model, tokenizer, dataset, max_new_tokens: int, batch_size: int = 16) -> float:
    """Share of `dataset` problems whose greedy completion earns math_accuracy_reward 1.0."""
    sampler = TransformersSampler(model, tokenizer, batch_size=batch_size)
    completions = sampler.sample(
        list(dataset["prompt"]), n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens, desc="greedy accuracy"
    )
    scores = math_accuracy_reward([samples[0] for samples in completions], list(dataset["answer"]))
    return sum(scores) / max(len(scores), 1)


# ----------------------------------------------------------------------------------------------------------------
# Command lines.


def main(argv: list[str] | None = None) -> int:
    """`rs-trl eval`: sample, grade, and write pass@k JSON + plot."""
    parser = argparse.ArgumentParser(prog="rs-trl eval", description=main.__doc__)
    parser.add_argument("--model", required=True, help="path, Hub id, or offline:SmolLM2-135M-Instruct")
    parser.add_argument(
        "--benchmarks",
        nargs="+",
        default=benchmark_names(paper_only=True),
        help=f"from: {', '.join(benchmark_names())} (default: the paper's six)",
    )
    parser.add_argument("--n", type=int, default=32, help="samples per problem")
    parser.add_argument("--ks", type=int, nargs="+", default=None, help="k values (default 1, 2, 4, ..., n)")
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=4096)
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--plain", action="store_true", help="plain-text prompts (base models without chat template)")
    parser.add_argument("--limit", type=int, default=None, help="first N problems per benchmark")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per generate call (transformers)")
    parser.add_argument("--name", default=None, help="model label in results and plots")
    parser.add_argument("--save-completions", action="store_true")
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args(argv)
    check_model_arg(args.model, "--model")
    results = evaluate_pass_at_k(
        resolve_model(args.model),
        args.benchmarks,
        args.n,
        args.ks,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        backend=args.backend,
        chat=not args.plain,
        limit=args.limit,
        seed=args.seed,
        batch_size=args.batch_size,
        out_dir=args.out,
        name=args.name or args.model,
        save_completions=args.save_completions,
    )
    print(compare_results([results], results["ks"]))
    print(f"wrote {Path(args.out) / RESULTS_FILE} and {Path(args.out) / PLOT_FILE}")
    return 0
