"""A reward that holds training in its first call until the file named by $RS_TRL_RELEASE exists (tests use it to
keep a real `rs-trl train` run alive while they probe its output directory); it writes $RS_TRL_RELEASE.started first."""

import os
import time
from pathlib import Path


def blocking_reward(completions, **kwargs):
    release = Path(os.environ["RS_TRL_RELEASE"])
    Path(f"{release}.started").touch()
    deadline = time.monotonic() + 300
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return [float(len(str(c)) % 3) for c in completions]
