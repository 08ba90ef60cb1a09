"""Training a DetNet detector (single process or DDP): :func:`~.trainer.train`.
"""

from .trainer import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
