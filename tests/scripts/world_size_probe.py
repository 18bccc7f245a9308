"""A reward function that reports, from inside each training process, the world size it runs in (reward 0).

For `rs-trl train` launched by tests: `--reward_funcs math_accuracy_reward world_size_probe.world_size_probe` with
this directory on PYTHONPATH and RS_TRL_PROBE_DIR set. Reward functions run guarded (an assertion here would become
a logged fault), so each process writes what it saw to RS_TRL_PROBE_DIR/rank<R>.json and the test asserts on it.
"""

import json
import os
from pathlib import Path

import torch.distributed as dist
from accelerate import PartialState


def world_size_probe(completions, **kwargs) -> list[float]:
    state = PartialState()
    seen = {
        "num_processes": state.num_processes,
        "world_size": dist.get_world_size() if dist.is_initialized() else 1,
        "distributed_type": state.distributed_type.name,
    }
    Path(os.environ["RS_TRL_PROBE_DIR"], f"rank{state.process_index}.json").write_text(json.dumps(seen))
    return [0.0] * len(completions)
