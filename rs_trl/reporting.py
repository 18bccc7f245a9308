"""Reading pass@k results: tables with bootstrap intervals, paired differences, transitions, and plots.

`compare_results` is what `rs-trl compare` (`compare_main`) and `rs-trl eval` print: per benchmark and model,
pass@k with its 95% bootstrap interval over problems; for every model after the first, the paired difference to the
first with its interval (beyond noise when the interval excludes 0) and the problems newly solved and lost
(`rs_trl.intervals`).
"""

import argparse
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

from .estimators import unbiased_pass_at_k
from .intervals import bootstrap_interval, paired_difference, transitions
from .plots import pyplot

RESULTS_FILE = "pass_at_k.json"
_TOLERANCE = 1e-6  # stored pass@k against the one recomputed from the counts: JSON keeps floats exactly


def plot_pass_at_k(results: Sequence[dict], path: str | Path) -> Path:
    """pass@k against k (log2 axis), one panel per benchmark plus the average, one line per model."""
    plt = pyplot()
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


def results_path(path: str | Path) -> Path:
    """The results file `path` names: the file itself, or `pass_at_k.json` in a directory."""
    path = Path(path)
    return path / RESULTS_FILE if path.is_dir() else path


def load_results(path: str | Path) -> dict:
    """Read a results JSON (a file, or a directory containing `pass_at_k.json`); a file that is not one, or whose
    numbers contradict each other, is a ValueError naming it."""
    path = results_path(path)
    if not path.is_file():
        raise ValueError(f"no results file at {path}; pass a `{RESULTS_FILE}` written by `rs-trl eval`.")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        problem = f"not valid JSON ({error})"
    else:
        problem = _results_problem(result)
    if problem:
        raise ValueError(
            f"{path}: {problem}; it is not a valid `rs-trl eval` results file: rerun `rs-trl eval` to rewrite it, "
            "or leave it out."
        )
    return result


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _results_problem(result) -> str | None:
    """What is wrong with a results dict (shape, counts, pass@k against its counts), or None."""
    if not isinstance(result, dict):
        return f"expected a JSON object, got {type(result).__name__}"
    missing = [key for key in ("model", "ks", "benchmarks") if key not in result]
    if missing:
        return f"missing key(s) {missing}"
    ks, benchmarks = result["ks"], result["benchmarks"]
    if not isinstance(ks, list) or not ks or not all(_is_count(k) and k >= 1 for k in ks):
        return f"`ks` must be a non-empty list of positive integers, got {ks!r}"
    if not isinstance(benchmarks, dict) or not isinstance(result.get("settings", {}), dict):
        return "`benchmarks` and `settings` must be JSON objects"
    for name, bench in benchmarks.items():
        if not isinstance(bench, dict) or not isinstance(bench.get("pass_at_k"), dict):
            return f"benchmark {name!r} has no `pass_at_k` object"
        if not isinstance(bench.get("problems"), list):
            return f"benchmark {name!r} has no `problems` list"
        correct, samples = [], []
        for problem in bench["problems"]:
            n = problem.get("n", result.get("n")) if isinstance(problem, dict) else None
            if not isinstance(problem, dict) or "id" not in problem or not _is_count(problem.get("correct")):
                return f"{name}: each problem needs an `id` and a non-negative integer `correct`, got {problem!r}"
            if not _is_count(n) or n < 1:
                return f"{name}: problem {problem['id']} needs a positive integer `n` (samples), got {n!r}"
            if problem["correct"] > n:
                return f"{name}: problem {problem['id']} has correct = {problem['correct']} > n = {n}"
            if max(ks) > n:
                return f"{name}: problem {problem['id']} has n = {n} samples, fewer than k = {max(ks)}"
            correct.append(problem["correct"])
            samples.append(n)
        for k in ks:
            stored = bench["pass_at_k"].get(str(k))
            expected = unbiased_pass_at_k(correct, samples, k).mean().item() if correct else 0.0
            if not isinstance(stored, (int, float)) or not abs(stored - expected) <= _TOLERANCE:
                return f"{name}: pass@{k} is {stored!r}, but its per-problem counts give {expected!r}"
    if "average" not in result and not result.get("unfinished"):  # written last, once every benchmark is done
        return "missing key 'average'"
    if "average" in result:
        average = result["average"]
        for k in ks:
            expected = sum(b["pass_at_k"][str(k)] for b in benchmarks.values()) / max(len(benchmarks), 1)
            stored = average.get(str(k)) if isinstance(average, dict) else None
            if not isinstance(stored, (int, float)) or not abs(stored - expected) <= _TOLERANCE:
                return f"average pass@{k} is {stored!r}, but its benchmarks' mean is {expected!r}"
    return None


def compare_results(
    results: Sequence[dict], ks: Sequence[int] | None = None, seed: int = 0, sources: Sequence[str] | None = None
) -> str:
    """Markdown: a pass@k table (rows: benchmarks + average; one column per model and k) with 95% bootstrap intervals
    over problems, then for each model after the first and each benchmark: its paired pass@k difference to the first
    model with its interval, and the problems it newly solves (no correct sample from the first model, at least one
    of its own) and no longer solves. `sources` names each result in errors and warnings (default: its label)."""
    _check_comparable(results, sources or [r["model"] for r in results])
    ks = [int(k) for k in (ks or [min(results[0]["ks"]), max(results[0]["ks"])])]
    for result in results:
        missing = [k for k in ks if str(k) not in result["average"]]
        if missing:
            raise ValueError(f"{result['model']} has no pass@k for k={missing}; it has k={result['ks']}.")
    benches = list(dict.fromkeys(b for r in results for b in r["benchmarks"]))
    header = ["benchmark"] + [f"{r['model']} pass@{k}" for r in results for k in ks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for bench in benches + ["average"]:
        cells = [bench]
        for result in results:
            if bench == "average":
                cells += [f"{100 * result['average'][str(k)]:.1f}" for k in ks]
                continue
            scored = result["benchmarks"][bench]
            correct = [p["correct"] for p in scored["problems"]]
            n = _samples_per_problem(result)
            intervals = bootstrap_interval(correct, n, ks, seed=seed) if n else {}
            cells += [f"{100 * scored['pass_at_k'][str(k)]:.1f} [{_percent_range(intervals.get(k))}]" for k in ks]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\n[low, high]: 95% bootstrap interval over problems (2000 resamples, seeded).")
    base = results[0]
    for other in results[1:]:
        for bench in benches:
            before = {p["id"]: p["correct"] for p in base["benchmarks"][bench]["problems"]}
            after = {p["id"]: p["correct"] for p in other["benchmarks"][bench]["problems"]}
            shared = [i for i in after if i in before]
            gained, lost = transitions([before[i] for i in shared], [after[i] for i in shared])
            lines.append(
                f"\n{bench}: {other['model']} newly solves {len(gained)} problem(s) {[shared[i] for i in gained]} "
                f"and no longer solves {len(lost)} {[shared[i] for i in lost]} compared with {base['model']}."
            )
            n = _samples_per_problem(base)
            if n is None or _samples_per_problem(other) != n:
                continue  # the paired difference needs one estimator for both
            differences = paired_difference([before[i] for i in shared], [after[i] for i in shared], n, ks, seed=seed)
            for k, (difference, low, high) in differences.items():
                verdict = "beyond noise" if low > 0 or high < 0 else "within noise"
                lines.append(
                    f"  pass@{k}: {other['model']} − {base['model']} = {100 * difference:+.1f} points "
                    f"[{100 * low:+.1f}, {100 * high:+.1f}], {verdict}"
                )
    return "\n".join(lines)


def _samples_per_problem(result: dict) -> int | None:
    """n, the samples drawn per problem (results written before it was stored at the top carry it per problem)."""
    problems = (p for bench in result["benchmarks"].values() for p in bench["problems"])
    return result.get("n") or next((p["n"] for p in problems), None)


def _percent_range(interval: tuple[float, float, float] | None) -> str:
    if interval is None or math.isnan(interval[1]):
        return "-"
    return f"{100 * interval[1]:.1f}, {100 * interval[2]:.1f}"


# Settings that change what pass@k measures; models, backends and seeds may differ between compared results.
_COMPARED_SETTINGS = ("n", "limit", "chat", "temperature", "top_p", "max_new_tokens")


def _check_comparable(results: Sequence[dict], sources: Sequence[str]) -> None:
    """Refuse unfinished results and averages over different benchmark sets; warn, naming each result's source, when
    the settings behind the numbers differ (per result: two files may carry the same label)."""
    for result, source in zip(results, sources):
        if result.get("unfinished"):
            raise ValueError(
                f"{source}: an unfinished evaluation (still to run: {result['unfinished']}); rerun the same "
                "`rs-trl eval` command to finish it."
            )
    benches = [sorted(r["benchmarks"]) for r in results]
    if any(b != benches[0] for b in benches):
        listed = "; ".join(f"{s}: {', '.join(b)}" for s, b in zip(sources, benches))
        raise ValueError(
            f"the results cover different benchmark sets ({listed}), so their averages are not comparable; evaluate "
            "every model with the same --benchmarks (a rerun with the same --out runs only the missing ones)."
        )
    for result, source in zip(results, sources):
        if "settings" not in result:
            warnings.warn(f"{source}: no eval settings recorded (an older rs-trl wrote it).", stacklevel=3)
    recorded = [(s, r["settings"]) for s, r in zip(sources, results) if "settings" in r]
    for key in _COMPARED_SETTINGS:
        if len({repr(settings.get(key)) for _, settings in recorded}) > 1:
            listed = ", ".join(f"{s}: {settings.get(key)!r}" for s, settings in recorded)
            warnings.warn(f"results were evaluated with different {key} ({listed}).", stacklevel=3)


def compare_main(argv: list[str] | None = None) -> int:
    """`rs-trl compare`: pass@k table of several result files with intervals, differences and transitions."""
    parser = argparse.ArgumentParser(prog="rs-trl compare", description=compare_main.__doc__)
    parser.add_argument("results", nargs="+", help=f"{RESULTS_FILE} files (or directories holding one)")
    parser.add_argument("--ks", type=int, nargs="+", default=None, help="k columns (default: smallest and largest)")
    parser.add_argument("--plot", default=None, help="also write a pass@k-vs-k PNG with every model")
    args = parser.parse_args(argv)
    paths = [results_path(path) for path in args.results]
    results = [load_results(path) for path in paths]
    labels = [result["model"] for result in results]
    if len(set(labels)) < len(labels):  # e.g. one --model path evaluated before and after retraining
        for result, path in zip(results, paths):
            result["model"] = f"{result['model']} ({path})"
    print(compare_results(results, args.ks, sources=[str(path) for path in paths]))
    if args.plot:
        print(f"wrote {plot_pass_at_k(results, args.plot)}")
    return 0
