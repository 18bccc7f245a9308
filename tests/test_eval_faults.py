"""Issue 24's faults of `rs-trl eval` and `rs-trl compare`: resume keyed by the weights, per-file setting checks,
corrupt result files, and bad sizes, outputs and unreachable Hub datasets as one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from rs_trl.cli import main as cli_main
from rs_trl.evaluation import score_benchmark
from rs_trl.tiny import build_tiny_model

EVAL_ARGS = ["--benchmarks", "arithmetic-test", "--limit", "2", "--n", "2", "--max-new-tokens", "4"]


@pytest.fixture
def recorded_samples(monkeypatch):
    """Benchmarks sampled, in order; sampling itself is stubbed (every completion wrong), the model still loads."""
    from rs_trl import generation

    sampled = []

    def record(self, prompts, n, temperature, top_p, max_new_tokens, desc):
        sampled.append(desc)
        return [[""] * n for _ in prompts]

    monkeypatch.setattr(generation.TransformersSampler, "sample", record)
    return sampled


def test_eval_rerun_after_retraining_in_place_evaluates_the_new_weights(tmp_path, recorded_samples, capsys):
    model, out = tmp_path / "model", tmp_path / "results"
    build_tiny_model(model)
    argv = ["eval", "--model", str(model), *EVAL_ARGS, "--backend", "transformers", "--out", str(out)]
    assert cli_main(argv) == 0 and recorded_samples == ["arithmetic-test"]

    capsys.readouterr()
    assert cli_main(argv) == 0 and recorded_samples == ["arithmetic-test"]  # same weights: reused, and said so
    assert f"reusing arithmetic-test from {out / 'pass_at_k.json'}" in capsys.readouterr().out

    build_tiny_model(model, seed=1)  # retrained in place
    weights = model / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**10))  # a retrain takes > 10 s
    assert cli_main(argv) == 0 and recorded_samples == ["arithmetic-test"] * 2
    said = capsys.readouterr().out
    assert f"{out / 'pass_at_k.json'} holds results for other weights" in said and "model.safetensors" in said


def test_eval_with_a_loaded_model_never_reuses_results(tiny_model_dir, tmp_path, recorded_samples):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rs_trl.evaluation import evaluate_pass_at_k

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for _ in range(2):  # a live model may have trained in between: its results are not reused
        evaluate_pass_at_k(model, ["arithmetic-test"], n=2, limit=2, tokenizer=tokenizer, out_dir=tmp_path)
    assert recorded_samples == ["arithmetic-test"] * 2


# ---------------------------------------------------------------------------------------------- rs-trl compare


def _write_result(path, model="A", correct=(0, 1, 2), n=2, ks=(1, 2), **settings):
    problems = [{"id": str(i), "answer": "1", "correct": c, "n": n} for i, c in enumerate(correct)]
    curve = score_benchmark(list(correct), n, list(ks))
    result = {
        "model": model,
        "settings": {"n": n, "limit": None, "chat": True, "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 8}
        | settings,
        "ks": list(ks),
        "benchmarks": {"arithmetic-test": {"num_problems": len(problems), "pass_at_k": curve, "problems": problems}},
        "average": dict(curve),
        "unfinished": [],
    }
    path.write_text(json.dumps(result))
    return result


@pytest.mark.parametrize(
    "setting, values, message",
    [
        ("n", (2, 4), "different n"),
        ("chat", (True, False), "different chat"),
        ("temperature", (0.6, 1.0), "different temperature"),
    ],
)
def test_compare_warns_about_different_settings_under_one_label(tmp_path, capsys, setting, values, message):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    _write_result(a, **{setting: values[0]})
    _write_result(b, **{setting: values[1]})
    with pytest.warns(UserWarning, match=message) as caught:
        assert cli_main(["compare", str(a), str(b)]) == 0
    text = str(caught[0].message)
    assert f"{a}: {values[0]!r}" in text and f"{b}: {values[1]!r}" in text
    table = capsys.readouterr().out
    assert f"A ({a}) pass@1" in table and f"A ({b}) pass@1" in table  # one label, two columns told apart


def _bench(result):
    return result["benchmarks"]["arithmetic-test"]


# Ways a results file can be wrong: an edit of a valid one, and what the error must say.
CORRUPTIONS = {
    "correct above n": (lambda r: _bench(r)["problems"][0].update(correct=5), "correct = 5 > n = 2"),
    "negative count": (lambda r: _bench(r)["problems"][0].update(correct=-1), "non-negative integer `correct`"),
    "pass@k inconsistent": (lambda r: _bench(r)["pass_at_k"].update({"1": 0.99}), "pass@1 is 0.99"),
    "average inconsistent": (lambda r: r["average"].update({"2": 0.01}), "average pass@2 is 0.01"),
    "missing key": (lambda r: r.pop("benchmarks"), "missing key(s) ['benchmarks']"),
    "missing average": (lambda r: r.pop("average"), "missing key 'average'"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_compare_rejects_corrupt_result_files_naming_them(tmp_path, capsys, case):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    _write_result(good)
    result = _write_result(bad, model="B")
    edit, message = CORRUPTIONS[case]
    edit(result)
    bad.write_text(json.dumps(result))
    assert cli_main(["compare", str(good), str(bad)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{bad}: " in error and message in error


@pytest.mark.parametrize("text", ['{"model": "A", "ks": [1', "[1, 2, 3]", '"a string"'])
def test_compare_rejects_files_that_are_not_results_naming_them(tmp_path, capsys, text):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    _write_result(good)
    bad.write_text(text)
    assert cli_main(["compare", str(good), str(bad)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{bad}:" in error


# ---------------------------------------------------------------------------------------------- one-line errors


def _eval_error(argv, capsys):
    assert cli_main(["eval", *argv]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    return error


@pytest.mark.parametrize("size", ["0", "-4"])
def test_eval_non_positive_batch_size_is_one_line(tmp_path, capsys, size):
    # The model directory is empty: an error about it would mean the model was loaded before the arguments checked.
    (tmp_path / "model").mkdir()
    argv = ["--model", str(tmp_path / "model"), *EVAL_ARGS, "--batch-size", size, "--out", str(tmp_path / "r")]
    assert f"`batch_size` (--batch-size) must be a positive integer, got {size}" in _eval_error(argv, capsys)


def test_eval_out_that_is_a_file_or_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    for out in (taken, taken / "sub"):
        error = _eval_error(["--model", str(tmp_path / "model"), *EVAL_ARGS, "--out", str(out)], capsys)
        assert f"--out {out}" in error and "directory" in error


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_eval_read_only_out_is_one_line(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    out = tmp_path / "r"
    out.mkdir(mode=0o555)
    error = _eval_error(["--model", str(tmp_path / "model"), *EVAL_ARGS, "--out", str(out)], capsys)
    assert f"--out {out}" in error and "not writable" in error


def test_eval_default_benchmarks_offline_is_one_line(tmp_path):
    """The paper's six are Hub datasets: offline and not cached, the error names the first and the ways out."""
    (tmp_path / "model").mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path)}
    command = [sys.executable, "-m", "rs_trl.cli", "eval", "--model", str(tmp_path / "model"), "--out", str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    for said in ("aime24", "HuggingFaceH4/aime_2024", "HF_HUB_OFFLINE", "--benchmarks arithmetic-test"):
        assert said in done.stderr
