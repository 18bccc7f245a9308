"""`rs-trl passk --quick`: the GRPO vs RS-GRPO pass@k experiment's whole pipeline on SmolLM2, at a tiny budget."""

import json

import pytest

from rs_trl.experiments import passk


@pytest.mark.slow
def test_quick_passk_experiment_trains_evaluates_and_compares(tmp_path):
    assert passk.main(["--quick", "--out", str(tmp_path), "--betas", "0", "2"]) == 0
    results = {
        path.parent.name: json.loads(path.read_text()) for path in (tmp_path / "results").glob("*/pass_at_k.json")
    }
    assert set(results) == {"base", "GRPO", "RS-GRPO_b=2"}
    for result in results.values():
        assert result["settings"]["n"] == 4 and len(result["benchmarks"][passk.BENCHMARK]["problems"]) == 4
    comparison = (tmp_path / "comparison.md").read_text()
    assert "GRPO − base" in comparison and "RS-GRPO b=2 − base" in comparison and "newly solves" in comparison
    assert (tmp_path / "pass_at_k.png").stat().st_size > 0
