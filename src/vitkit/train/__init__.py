"""The training engine: config, presets and the loop behind `vitkit train` and `vitkit finetune`."""

from vitkit.train.config import TrainConfig
from vitkit.train.finetune import finetune, finetune_config, pretrained_model
from vitkit.train.loop import Trainer, TrainingDiverged, train
from vitkit.train.presets import PRESETS, preset_values

__all__ = ["PRESETS", "TrainConfig", "Trainer", "TrainingDiverged", "finetune", "finetune_config", "preset_values",
           "pretrained_model", "train"]
