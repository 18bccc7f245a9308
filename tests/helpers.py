"""Helpers shared by tests (tests import from here and from rs_trl, never from each other)."""

from trl import GRPOConfig


def grpo_config_like(rs_args):
    """The GRPOConfig a TRL user would write for the same run (every field RSGRPOConfig shares)."""
    shared = {k: v for k, v in rs_args.to_dict().items() if k in GRPOConfig.__dataclass_fields__}
    shared = {k: getattr(rs_args, k) for k in shared if GRPOConfig.__dataclass_fields__[k].init}
    shared.pop("generation_batch_size", None)
    return GRPOConfig(**shared)
