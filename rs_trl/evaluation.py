"""pass@k evaluation: sample n completions per problem, grade them with Math-Verify, report unbiased pass@k.

`evaluate_pass_at_k` is the library entry point; `rs-trl eval` (`main`) and `rs-trl compare` (`compare_main`) are
its command lines. Results are one JSON file per model (per-benchmark and averaged pass@k, and per-problem correct
counts, so two models can be compared problem by problem) plus a pass@k-vs-k plot.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS_FILE = "pass_at_k.json"
PLOT_FILE = "pass_at_k.png"
BACKENDS = ("auto", "vllm", "transformers")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator 1 − C(n−c, k) / C(n, k) (Chen et al., 2021).

    Computed as 1 − Π_{i=n−c+1}^{n} (1 − k/i), which never forms a binomial coefficient, so it is
    exact and stable for n in the tens of thousands.
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
    if k < 1:
        raise ValueError(f"`k` must be >= 1, got {k}.")
    if k > n:
        raise ValueError(f"`k` ({k}) must be <= `n` ({n}), the number of samples.")
    if c > n:
        raise ValueError(f"`c` ({c}) must be <= `n` ({n}): more correct samples than samples.")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def default_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n (n itself included): the x axis of the paper's pass@k curves."""
    ks = [2**i for i in range(int(math.log2(n)) + 1)]
    return ks if ks[-1] == n else ks + [n]


# ----------------------------------------------------------------------------------------------------------------
# Generation backends: both turn a list of prompts into n completions each.


class TransformersSampler:
    """Sampling with `model.generate` (CPU or one GPU): each prompt repeated n times, in batches of sequences."""

    def __init__(self, model: Any, tokenizer: Any = None, batch_size: int = 32, **model_kwargs):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if isinstance(model, (str, Path)):
            device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model))
            model = AutoModelForCausalLM.from_pretrained(str(model), dtype=dtype, **model_kwargs).to(device)
        elif tokenizer is None:
            raise ValueError("`tokenizer` is required when `model` is a loaded model rather than a path or Hub id.")
        if tokenizer.pad_token is None:  # e.g. Llama 3.1: batches need a pad token; TRL uses eos for training too
            tokenizer.pad_token = tokenizer.eos_token
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def sample(self, prompts: list, n: int, temperature: float, top_p: float, max_new_tokens: int, desc: str):
        from tqdm.auto import tqdm

        texts = [
            self.tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
            if isinstance(p, list)
            else p
            for p in prompts
        ]
        sampling = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
        jobs = [index for index in range(len(texts)) for _ in range(n)]
        completions: list[list[str]] = [[] for _ in texts]
        was_training = self.model.training  # a trainer's live model goes back to training mode afterwards
        self.model.eval()
        try:
            with tqdm(total=len(jobs), desc=desc, unit="sample") as progress:
                for start in range(0, len(jobs), self.batch_size):
                    batch = jobs[start : start + self.batch_size]
                    for index, text in zip(batch, self._generate([texts[i] for i in batch], max_new_tokens, sampling)):
                        completions[index].append(text)
                    progress.update(len(batch))
        finally:
            self.model.train(was_training)
        return completions

    def _generate(self, texts: list[str], max_new_tokens: int, sampling: dict) -> list[str]:
        import torch

        tokenizer = self.tokenizer
        padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # decoder-only batches pad left
        try:
            inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tokenizer.padding_side = padding_side
        with torch.no_grad():
            output = self.model.generate(
                **inputs.to(self.model.device),
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                **sampling,
            )
        return tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


class VLLMSampler:
    """Sampling with vLLM: one request per prompt asking for all n samples (prefix computed once, batched)."""

    def __init__(self, model: str, seed: int = 0, **llm_kwargs):
        if importlib.util.find_spec("vllm") is None:
            raise ImportError("backend='vllm' needs vLLM: pip install 'rs_trl[vllm]' (GPU), or use 'transformers'.")
        if not isinstance(model, (str, Path)):
            raise ValueError("backend='vllm' needs `model` as a path or Hub id, not a loaded model.")
        from vllm import LLM

        self.llm = LLM(model=str(model), seed=seed, **llm_kwargs)

    def sample(self, prompts: list, n: int, temperature: float, top_p: float, max_new_tokens: int, desc: str):
        from vllm import SamplingParams

        # No per-request seed: it would replay the same random stream for every problem. LLM(seed=...) fixes the run.
        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens)
        print(f"{desc}: {len(prompts)} prompts x {n} samples")
        if all(isinstance(p, list) for p in prompts):
            outputs = self.llm.chat(prompts, params, use_tqdm=True)  # applies the model's chat template
        else:
            outputs = self.llm.generate(prompts, params, use_tqdm=True)
        return [[sample.text for sample in output.outputs] for output in outputs]


def _resolve_backend(backend: str, model: Any) -> str:
    if backend != "auto":
        return backend
    import torch

    vllm_usable = importlib.util.find_spec("vllm") is not None and isinstance(model, (str, Path))
    return "vllm" if vllm_usable and torch.cuda.is_available() else "transformers"


# ----------------------------------------------------------------------------------------------------------------
# Evaluation.


def _check_args(n: int, ks: Sequence[int] | None, temperature: float, top_p: float, max_new_tokens: int, backend: str):
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"`n` must be a positive integer (samples per problem), got {n!r}.")
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
    from .data import BENCHMARKS, OFFLINE_BENCHMARKS

    if isinstance(benchmarks, Mapping):  # {name: Dataset with `prompt` and `answer` columns}
        for name, dataset in benchmarks.items():
            missing = {"prompt", "answer"} - set(dataset.column_names)
            if missing:
                raise ValueError(
                    f"benchmark {name!r} lacks column(s) {sorted(missing)}; it has {dataset.column_names}."
                )
        return benchmarks
    names = [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
    allowed = tuple(BENCHMARKS) + OFFLINE_BENCHMARKS
    unknown = [name for name in names if name not in allowed]
    if not names or unknown:
        raise ValueError(f"unknown benchmark(s) {unknown or names!r}; allowed: {', '.join(allowed)}.")
    return names


def score_benchmark(correct: Sequence[int], n: int, ks: Sequence[int]) -> dict[str, float]:
    """Mean unbiased pass@k over problems, for each k (keys are str(k) so the dict survives JSON)."""
    return {str(k): sum(pass_at_k(n, c, k) for c in correct) / max(len(correct), 1) for k in ks}


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
        benchmarks: names from `rs_trl.data` (`BENCHMARKS`, `OFFLINE_BENCHMARKS`) or {name: Dataset} with
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
        {"model", "settings": {"model_path", "backend", "benchmarks", "limit", "n", "ks", "temperature", "top_p",
        "max_new_tokens", "seed", "chat"}, "ks", "benchmarks": {name: {"num_problems", "pass_at_k": {k: value},
        "problems": [{"id", "answer", "correct", "n"}]}}, "average": {k: mean over benchmarks}}.

    With `out_dir`, `pass_at_k.json` is rewritten as each benchmark finishes (with "unfinished": the benchmarks still
    to run), so an interruption loses at most the benchmark in progress; a rerun with the same `out_dir` and settings
    skips the benchmarks already there, and one with other settings is refused.
    """
    _check_args(n, ks, temperature, top_p, max_new_tokens, backend)
    ks = list(ks) if ks is not None else default_ks(n)
    selected = _resolve_benchmarks(benchmarks)
    backend = _resolve_backend(backend, model)
    settings = {
        "model_path": str(model) if isinstance(model, (str, Path)) else type(model).__name__,
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
        out_dir.mkdir(parents=True, exist_ok=True)
        results["benchmarks"] = _finished_benchmarks(out_dir / RESULTS_FILE, settings)

    from .data import load_benchmark
    from .rewards import default_verifier

    todo = [bench for bench in selected if bench not in results["benchmarks"]]
    if len(todo) < len(selected):
        print(f"{out_dir / RESULTS_FILE}: reusing finished benchmark(s) {[b for b in selected if b not in todo]}")
    verifier = verifier or default_verifier()
    sampler = None
    for bench in todo:
        if isinstance(selected, Mapping):
            dataset = selected[bench]
            dataset = dataset.select(range(min(limit, len(dataset)))) if limit else dataset
        else:
            dataset = load_benchmark(bench, chat=chat, limit=limit)
        if sampler is None:  # loaded only when a benchmark is left to run
            sampler = _make_sampler(backend, model, tokenizer, seed, batch_size, backend_kwargs)
        if backend == "transformers":
            import torch

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


def _make_sampler(backend, model, tokenizer, seed, batch_size, backend_kwargs):
    if backend == "vllm":
        return VLLMSampler(model, seed=seed, **(backend_kwargs or {}))
    return TransformersSampler(model, tokenizer, batch_size=batch_size, **(backend_kwargs or {}))


def _finished_benchmarks(path: Path, settings: dict) -> dict:
    """Benchmarks an earlier run with the same settings already wrote to `path` (none if there is no such file)."""
    if not path.is_file():
        return {}
    previous = load_results(path)
    old = previous.get("settings", {})
    differing = [key for key in settings if key != "benchmarks" and old.get(key) != settings[key]]
    if differing:
        changes = ", ".join(f"{key}: {old.get(key)!r} there, {settings[key]!r} now" for key in differing)
        raise ValueError(
            f"{path} holds results of an evaluation with other settings ({changes}); use another --out, or delete "
            "the file to start over."
        )
    dropped = [bench for bench in previous["benchmarks"] if bench not in settings["benchmarks"]]
    if dropped:  # rewriting the file without them would lose them
        raise ValueError(
            f"{path} holds results for {dropped}, which this run does not ask for; add them to --benchmarks, use "
            "another --out, or delete the file to start over."
        )
    return previous["benchmarks"]


def _write_results(path: Path, results: dict, unfinished: list[str]) -> None:
    """Write atomically (temporary file + rename), so an interruption never leaves a truncated results file."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps({**results, "unfinished": unfinished}, indent=1), encoding="utf-8")
    os.replace(partial, path)


def _grade(verifier: Any, completions: list[str], answers: list[str], desc: str) -> list[float]:
    from tqdm.auto import tqdm

    scores: list[float] = []
    chunk = 256  # progress granularity; the verifier parallelizes within a chunk
    with tqdm(total=len(completions), desc=f"{desc} grade", unit="sample") as progress:
        for start in range(0, len(completions), chunk):
            scores += verifier(completions[start : start + chunk], answers[start : start + chunk])
            progress.update(min(chunk, len(completions) - start))
    return scores


# ----------------------------------------------------------------------------------------------------------------
# Reporting.


def plot_pass_at_k(results: Sequence[dict], path: str | Path) -> Path:
    """pass@k against k (log2 axis), one panel per benchmark plus the average, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(b for r in results for b in r["benchmarks"]))
    if len(panels) > 1:
        panels.append("average")
    cols = min(len(panels), 4)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for result in results:
            curve = result["average"] if panel == "average" else result["benchmarks"].get(panel, {}).get("pass_at_k")
            if curve:
                ks = sorted(int(k) for k in curve)
                ax.plot(ks, [100 * curve[str(k)] for k in ks], marker="o", markersize=3, label=result["model"])
        ax.set_xscale("log", base=2)
        ax.set_ylim(bottom=0)
        ax.set_title(panel)
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def load_results(path: str | Path) -> dict:
    """Read a results JSON (a file, or a directory containing `pass_at_k.json`)."""
    path = Path(path)
    path = path / RESULTS_FILE if path.is_dir() else path
    if not path.is_file():
        raise ValueError(f"no results file at {path}; pass a `{RESULTS_FILE}` written by `rs-trl eval`.")
    return json.loads(path.read_text(encoding="utf-8"))


def compare_results(results: Sequence[dict], ks: Sequence[int] | None = None) -> str:
    """Markdown: a pass@k table (rows: benchmarks + average; one column per model and k), then, for each model
    after the first, the problems it solves (any of its samples correct) that the first model never solved, and
    the reverse."""
    _check_comparable(results)
    ks = [str(k) for k in (ks or [min(results[0]["ks"]), max(results[0]["ks"])])]
    for result in results:
        missing = [k for k in ks if k not in result["average"]]
        if missing:
            raise ValueError(f"{result['model']} has no pass@k for k={missing}; it has k={result['ks']}.")
    benches = list(dict.fromkeys(b for r in results for b in r["benchmarks"]))
    header = ["benchmark"] + [f"{r['model']} pass@{k}" for r in results for k in ks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for bench in benches + ["average"]:
        cells = [bench]
        for result in results:
            curve = result["average"] if bench == "average" else result["benchmarks"].get(bench, {}).get("pass_at_k")
            cells += [f"{100 * curve[k]:.1f}" if curve else "-" for k in ks]
        lines.append("| " + " | ".join(cells) + " |")
    base = results[0]
    for other in results[1:]:
        for bench in benches:
            if bench not in base["benchmarks"] or bench not in other["benchmarks"]:
                continue
            before = {p["id"]: p["correct"] for p in base["benchmarks"][bench]["problems"]}
            after = {p["id"]: p["correct"] for p in other["benchmarks"][bench]["problems"]}
            gained = [i for i in after if after[i] > 0 and before.get(i, 0) == 0]
            lost = [i for i in after if after[i] == 0 and before.get(i, 0) > 0]
            lines.append(
                f"\n{bench}: {other['model']} newly solves {len(gained)} problem(s) {gained} "
                f"and no longer solves {len(lost)} {lost} compared with {base['model']}."
            )
    return "\n".join(lines)


# Settings that change what pass@k measures; models, backends and seeds may differ between compared results.
_COMPARED_SETTINGS = ("n", "limit", "chat", "temperature", "top_p", "max_new_tokens")


def _check_comparable(results: Sequence[dict]) -> None:
    """Refuse averages over different benchmark sets; warn when the settings behind the numbers differ."""
    benches = [sorted(r["benchmarks"]) for r in results]
    if any(b != benches[0] for b in benches):
        listed = "; ".join(f"{r['model']}: {', '.join(b)}" for r, b in zip(results, benches))
        raise ValueError(
            f"the results cover different benchmark sets ({listed}), so their averages are not comparable; evaluate "
            "every model with the same --benchmarks (a rerun with the same --out runs only the missing ones)."
        )
    for result in results:
        if "settings" not in result:
            warnings.warn(f"{result['model']}: no eval settings recorded (an older rs-trl wrote it).", stacklevel=3)
        elif result.get("unfinished"):
            warnings.warn(f"{result['model']}: unfinished benchmarks {result['unfinished']}.", stacklevel=3)
    recorded = [r for r in results if "settings" in r]
    for key in _COMPARED_SETTINGS:
        values = {r["model"]: r["settings"].get(key) for r in recorded}
        if len(set(map(repr, values.values()))) > 1:
            warnings.warn(f"results were evaluated with different {key}: {values}.", stacklevel=3)


# ----------------------------------------------------------------------------------------------------------------
# Command lines.


def main(argv: list[str] | None = None) -> int:
    """`rs-trl eval`: sample, grade, and write pass@k JSON + plot."""
    from .data import BENCHMARKS, OFFLINE_BENCHMARKS, PAPER_BENCHMARKS

    parser = argparse.ArgumentParser(prog="rs-trl eval", description=main.__doc__)
    parser.add_argument("--model", required=True, help="path, Hub id, or offline:SmolLM2-135M-Instruct")
    parser.add_argument(
        "--benchmarks",
        nargs="+",
        default=list(PAPER_BENCHMARKS),
        help=f"from: {', '.join(tuple(BENCHMARKS) + OFFLINE_BENCHMARKS)} (default: the paper's six)",
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

    from .offline import resolve_model

    _check_model_arg(args.model)
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


def _check_model_arg(model: str) -> None:
    """A missing local model must be one line naming it, not a Hub lookup's traceback."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from .offline import OFFLINE_PREFIX

    if model.startswith(OFFLINE_PREFIX) or Path(model).exists():
        return
    parent = Path(model).parent
    if parent == Path(".") or not parent.is_dir():  # e.g. org/name, unless ./org exists: then it is a local path
        try:
            validate_repo_id(model)
            return  # a valid Hub id is left to the Hub
        except HFValidationError:
            pass
    raise ValueError(
        f"--model {model!r}: no such directory, and not a Hub id; pass a local model directory, a Hub id (org/name) "
        "or offline:SmolLM2-135M-Instruct."
    )


def compare_main(argv: list[str] | None = None) -> int:
    """`rs-trl compare`: pass@k table of several result files and the problems each newly solves vs the first."""
    parser = argparse.ArgumentParser(prog="rs-trl compare", description=compare_main.__doc__)
    parser.add_argument("results", nargs="+", help=f"{RESULTS_FILE} files (or directories holding one)")
    parser.add_argument("--ks", type=int, nargs="+", default=None, help="k columns (default: smallest and largest)")
    parser.add_argument("--plot", default=None, help="also write a pass@k-vs-k PNG with every model")
    args = parser.parse_args(argv)
    results = [load_results(path) for path in args.results]
    print(compare_results(results, args.ks))
    if args.plot:
        print(f"wrote {plot_pass_at_k(results, args.plot)}")
    return 0
