"""One trainer for every model (policies, critics, mappers) and its checkpoints."""

from robopolicy.training.checkpoint import find_checkpoint, load_weights
from robopolicy.training.trainer import Trainer

__all__ = ["Trainer", "find_checkpoint", "load_weights"]
