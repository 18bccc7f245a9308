"""The README's offline quickstart runs as written, on a machine without the Hub."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_offline_quickstart_runs_as_written(tmp_path):
    quickstart = README.read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    snippets = re.findall(r"```python\n(.*?)```", quickstart, flags=re.S)
    offline = [code for code in snippets if "offline:" in code]
    assert len(snippets) == 2 and len(offline) == 1, "the quickstart must show the Hub code and its offline twin"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", offline[0]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train_runtime" in result.stdout + result.stderr
