"""The Colab quickstart notebook: executed end to end on CPU, offline, with a tiny model (what CI runs)."""

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "rs_grpo_quickstart.ipynb"


def test_notebook_is_committed_without_outputs():
    """Outputs and execution counts would bloat diffs and go stale; the notebook is stored clean."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])]
    assert not dirty, f"clear the outputs of code cells {dirty} before committing"


@pytest.mark.slow
def test_notebook_runs_end_to_end_in_smoke_mode(tmp_path, monkeypatch):
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from nbclient import NotebookClient

    # A "python3" kernel spec for this interpreter, found first via JUPYTER_PATH: the run never depends on (or
    # picks up a stale) user-level kernel spec, and works in a fresh venv that only has ipykernel installed.
    write_kernel_spec(tmp_path / "jupyter" / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("RS_TRL_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("RS_TRL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    assert "rs_trl is already installed: skipping the install." in text
    assert "no Hugging Face token: skipping the push." in text
    assert any("image/png" in o.get("data", {}) for o in outputs), "the pass@k plot was not displayed"
    assert any("pass@1" in o.get("data", {}).get("text/markdown", "") for o in outputs), "no pass@k table"
