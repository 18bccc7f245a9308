"""pass@k estimator vs brute force, argument errors, and an offline end-to-end eval of the tiny model."""

import itertools
import json

import pytest

from rs_trl.evaluation import (
    compare_results,
    default_ks,
    evaluate_pass_at_k,
    main,
    pass_at_k,
    score_benchmark,
)
from rs_trl.reporting import compare_main


@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_matches_brute_force(n):
    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            expected = sum(any(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "args, message",
    [
        ((4, 1, 5), "<= `n`"),
        ((4, 5, 1), "more correct"),
        ((4, 1, 0), ">= 1"),
        ((-1, 0, 1), "non-negative"),
        ((4.0, 1, 1), "integer"),
        ((True, 1, 1), "integer"),
    ],
)
def test_pass_at_k_errors(args, message):
    with pytest.raises(ValueError, match=message):
        pass_at_k(*args)


def test_pass_at_k_large_n_and_helpers():
    assert 0 < pass_at_k(20000, 3, 16) < 1
    assert default_ks(32) == [1, 2, 4, 8, 16, 32] and default_ks(6) == [1, 2, 4, 6] and default_ks(1) == [1]
    assert score_benchmark([0, 4, 2], 4, [1, 4]) == {"1": pytest.approx(0.5), "4": pytest.approx(2 / 3)}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n=0), "`n`"),
        (dict(n=4, ks=[8]), "`ks`"),
        (dict(temperature=-1), "temperature"),
        (dict(top_p=0), "top_p"),
        (dict(backend="tgi"), "backend"),
        (dict(benchmarks=["aime23"]), "allowed: aime24"),
        (dict(max_new_tokens=0), "max_new_tokens"),
    ],
)
def test_evaluate_rejects_bad_arguments_before_loading(kwargs, message):
    kwargs = {"model": "does/not-exist", "benchmarks": ["arithmetic-test"], **kwargs}
    with pytest.raises(ValueError, match=message):
        evaluate_pass_at_k(**kwargs)


def test_end_to_end_offline_eval_and_compare(tiny_model_dir, tmp_path, capsys):
    out_a = tmp_path / "a"
    assert (
        main(
            [
                "--model",
                tiny_model_dir,
                "--benchmarks",
                "arithmetic-test",
                "--limit",
                "3",
                "--n",
                "4",
                "--max-new-tokens",
                "6",
                "--backend",
                "transformers",
                "--name",
                "A",
                "--out",
                str(out_a),
            ]
        )
        == 0
    )
    results = json.loads((out_a / "pass_at_k.json").read_text())
    assert (out_a / "pass_at_k.png").read_bytes()[:4] == b"\x89PNG"
    bench = results["benchmarks"]["arithmetic-test"]
    assert results["ks"] == [1, 2, 4] and bench["num_problems"] == 3
    assert [p["n"] for p in bench["problems"]] == [4, 4, 4]
    assert bench["pass_at_k"] == score_benchmark([p["correct"] for p in bench["problems"]], 4, [1, 2, 4])
    assert results["average"] == bench["pass_at_k"]

    # A second "model" that solves everything: compare lists the problems it newly solves.
    better = json.loads(json.dumps(results))
    better["model"] = "B"
    for problem in better["benchmarks"]["arithmetic-test"]["problems"]:
        problem["correct"] = 4
    better["benchmarks"]["arithmetic-test"]["pass_at_k"] = better["average"] = {"1": 1.0, "2": 1.0, "4": 1.0}
    (tmp_path / "b.json").write_text(json.dumps(better))
    unsolved = [p["id"] for p in bench["problems"] if p["correct"] == 0]
    assert f"B newly solves {len(unsolved)} problem(s) {unsolved}" in compare_results([results, better])
    capsys.readouterr()
    assert (
        compare_main([str(out_a), str(tmp_path / "b.json"), "--ks", "1", "4", "--plot", str(tmp_path / "c.png")]) == 0
    )
    table = capsys.readouterr().out
    assert "| arithmetic-test |" in table and "B pass@4" in table and "100.0" in table
    assert (tmp_path / "c.png").exists()


def test_evaluate_with_loaded_model_and_custom_dataset(tiny_model_dir):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).train()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    custom = Dataset.from_dict({"prompt": ["1 + 1 =", "2 + 2 ="], "answer": ["2", "4"]})
    results = evaluate_pass_at_k(model, {"mine": custom}, n=2, temperature=0.0, max_new_tokens=4, tokenizer=tokenizer)
    assert results["settings"]["backend"] == "transformers" and set(results["benchmarks"]) == {"mine"}
    assert model.training  # a trainer's live model is handed back in training mode
    with pytest.raises(ValueError, match="lacks column"):
        evaluate_pass_at_k(model, {"bad": Dataset.from_dict({"prompt": ["x"]})}, n=1, tokenizer=tokenizer)


def test_transformers_backend_pads_with_eos_when_the_tokenizer_has_no_pad_token(tmp_path):
    """Llama-3.1-Instruct's tokenizer has no pad token; batched sampling must still work (pad = eos, as TRL)."""
    from transformers import AutoTokenizer

    from rs_trl.generation import TransformersSampler
    from rs_trl.tiny import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(model_dir)
    assert AutoTokenizer.from_pretrained(model_dir).pad_token is None
    sampler = TransformersSampler(str(model_dir), batch_size=4)
    completions = sampler.sample(["1 + 1 =", "a much longer prompt: 2 + 2 ="], 2, 1.0, 1.0, 4, desc="no pad")
    assert [len(c) for c in completions] == [2, 2]
    assert sampler.tokenizer.pad_token == sampler.tokenizer.eos_token


EVAL_ARGS = ["--limit", "2", "--n", "2", "--max-new-tokens", "4", "--benchmarks", "arithmetic-test"]


def test_eval_writes_each_benchmark_as_it_finishes_and_a_rerun_skips_it(tiny_model_dir, tmp_path, monkeypatch):
    from rs_trl import generation

    out = tmp_path / "run"
    argv = ["--model", tiny_model_dir, *EVAL_ARGS, "gsm_symbolic-test", "--backend", "transformers", "--out", str(out)]
    real_sample = generation.TransformersSampler.sample

    def crash_on_second_benchmark(self, prompts, n, temperature, top_p, max_new_tokens, desc):
        if desc == "gsm_symbolic-test":
            raise KeyboardInterrupt  # Ctrl-C during benchmark 2
        return real_sample(self, prompts, n, temperature, top_p, max_new_tokens, desc)

    monkeypatch.setattr(generation.TransformersSampler, "sample", crash_on_second_benchmark)
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    partial = json.loads((out / "pass_at_k.json").read_text())
    assert list(partial["benchmarks"]) == ["arithmetic-test"] and partial["unfinished"] == ["gsm_symbolic-test"]
    assert partial["settings"]["model_path"] == tiny_model_dir and partial["settings"]["n"] == 2

    sampled = []

    def record(self, prompts, *args):
        sampled.append(args[-1])
        return [[""] * 2] * len(prompts)

    monkeypatch.setattr(generation.TransformersSampler, "sample", record)
    assert main(argv) == 0
    assert sampled == ["gsm_symbolic-test"]  # the finished benchmark is not run again
    final = json.loads((out / "pass_at_k.json").read_text())
    assert final["benchmarks"]["arithmetic-test"] == partial["benchmarks"]["arithmetic-test"]
    assert final["unfinished"] == [] and set(final["benchmarks"]) == {"arithmetic-test", "gsm_symbolic-test"}

    other_settings = r"pass_at_k.json holds results of an evaluation with other settings \(n: 2 there, 4 now"
    with pytest.raises(ValueError, match=other_settings):
        main([*argv, "--n", "4"])
    with pytest.raises(
        ValueError, match=r"holds results for \['gsm_symbolic-test'\], which this run does not ask for"
    ):
        main(["--model", tiny_model_dir, *EVAL_ARGS, "--backend", "transformers", "--out", str(out)])


def _result(model, benchmarks=("arithmetic-test",), **settings):
    base = {"n": 4, "limit": None, "chat": True, "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 64}
    curve = {"1": 0.5, "4": 0.9}
    return {
        "model": model,
        "settings": {**base, **settings, "model_path": model},
        "ks": [1, 4],
        "benchmarks": {b: {"pass_at_k": curve, "problems": []} for b in benchmarks},
        "average": curve,
    }


def test_compare_refuses_different_benchmark_sets_and_warns_on_different_settings():
    with pytest.raises(ValueError, match="different benchmark sets.*B: arithmetic-test, champ"):
        compare_results([_result("A"), _result("B", ("arithmetic-test", "champ"))])
    with pytest.warns(UserWarning, match=r"different n \(A: 4, B: 8\)"):
        compare_results([_result("A"), _result("B", n=8)])
    with pytest.warns(UserWarning, match="different limit"):
        compare_results([_result("A"), _result("B", limit=20)])
    with pytest.warns(UserWarning, match="different chat"):
        compare_results([_result("A"), _result("B", chat=False)])


def test_eval_nonexistent_model_path_is_one_line(tmp_path, capsys):
    from rs_trl.cli import main as cli_main

    missing = tmp_path / "outputs" / "grpo"
    assert cli_main(["eval", "--model", str(missing), *EVAL_ARGS, "--out", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"--model '{missing}': no such directory" in error
