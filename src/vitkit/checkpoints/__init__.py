"""Reading and writing checkpoints: vitkit's own format and converters for other layouts."""

from vitkit.checkpoints.common import CheckpointError, Imported
from vitkit.checkpoints.loader import load_model, read_checkpoint
from vitkit.checkpoints.native import save_model

__all__ = ["CheckpointError", "Imported", "load_model", "read_checkpoint", "save_model"]
