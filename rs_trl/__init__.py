"""Risk-Sensitive GRPO for Hugging Face TRL."""

from .advantages import risk_sensitive_advantages
from .config import RSGRPOConfig
from .trainer import RSGRPOTrainer

__all__ = ["RSGRPOConfig", "RSGRPOTrainer", "risk_sensitive_advantages"]
__version__ = "0.1.0"
