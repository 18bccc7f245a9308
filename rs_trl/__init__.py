"""Risk-Sensitive GRPO for Hugging Face TRL."""

import importlib

__version__ = "0.1.0"
__all__ = [
    "RSGRPOConfig",
    "RSGRPOTrainer",
    "TrainingInterrupted",
    "register_estimator",
    "risk_sensitive_advantages",
]

# Imported on first use: TRL takes seconds to import, which `rs-trl bandit` or `rs-trl compare` never need.
_LAZY = {
    "RSGRPOConfig": "rs_trl.config",
    "RSGRPOTrainer": "rs_trl.trainer",
    "TrainingInterrupted": "rs_trl.preemption",
    "register_estimator": "rs_trl.estimators",
    "risk_sensitive_advantages": "rs_trl.advantages",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rs_trl' has no attribute {name!r}")
