"""Fault isolation for reward functions: one bad call never kills a training step.

A reward function that raises, hangs past its timeout, or returns None/NaN leaves the affected samples
unscorable (NaN reward, so advantage 0) and the event is counted. A wrong-length result is passed through
untouched so TRL raises its clear error: that is a bug in user code, not a transient fault.
"""

import functools
import inspect
import logging
import math
import threading
from collections import Counter

logger = logging.getLogger(__name__)

# Arguments TRL passes to every reward function itself; anything else required must be a dataset column.
TRL_REWARD_KWARGS = {
    "prompts",
    "completions",
    "completion_ids",
    "trainer_state",
    "log_extra",
    "log_metric",
    "environments",
}


def required_columns(reward_func) -> set[str]:
    """Dataset columns a reward function cannot run without (parameters with no default)."""
    if not callable(reward_func) or isinstance(reward_func, str):
        return set()
    try:
        parameters = inspect.signature(reward_func).parameters.values()
    except (TypeError, ValueError):
        return set()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in kinds and p.default is inspect.Parameter.empty} - TRL_REWARD_KWARGS


def guard_reward_function(reward_func, timeout: float | None, faults: Counter):
    """Wrap a synchronous reward function; counts go to `faults[(name, kind)]` with kind error/timeout/none."""
    name = reward_func.__name__

    @functools.wraps(reward_func)
    def guarded(**kwargs):
        completions = kwargs["completions"]
        result, error = [None], [None]

        def call():
            try:
                result[0] = reward_func(**kwargs)
            except Exception as exc:  # noqa: BLE001 - any user error must stay inside this call
                error[0] = exc

        if timeout is None:
            call()
        else:
            # A daemon thread can be abandoned if it hangs; the step goes on without its rewards.
            worker = threading.Thread(target=call, name=f"reward-{name}", daemon=True)
            worker.start()
            worker.join(timeout)
            if worker.is_alive():
                faults[(name, "timeout")] += 1
                logger.warning("Reward function %r timed out after %ss; its samples are unscored.", name, timeout)
                return [None] * len(completions)
        if error[0] is not None:
            faults[(name, "error")] += 1
            logger.warning("Reward function %r raised %r; its samples are unscored.", name, error[0])
            return [None] * len(completions)
        rewards = result[0]
        if isinstance(rewards, (list, tuple)):
            faults[(name, "none")] += sum(r is None or (isinstance(r, float) and math.isnan(r)) for r in rewards)
        return rewards

    return guarded
