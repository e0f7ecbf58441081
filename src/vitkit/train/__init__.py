"""The training engine: config, presets and the loop behind `vitkit train`."""

from vitkit.train.config import TrainConfig
from vitkit.train.loop import Trainer, TrainingDiverged, train
from vitkit.train.presets import PRESETS, preset_values

__all__ = ["PRESETS", "TrainConfig", "Trainer", "TrainingDiverged", "preset_values", "train"]
