"""vitkit: the Vision Transformer of Dosovitskiy et al. (ICLR 2021), fast and faithful, with the
paper's baselines (BiT ResNets, hybrid ViTs) for its comparisons."""

from vitkit.checkpoints import CheckpointError, load_model
from vitkit.config import BackboneConfig, ResNetConfig, ViTConfig
from vitkit.model import VisionTransformer
from vitkit.resnet import ResNetV2
from vitkit.variants import create_model, list_models, model_config

__version__ = "0.1.0"
__all__ = ["BackboneConfig", "CheckpointError", "ResNetConfig", "ResNetV2", "ViTConfig", "VisionTransformer",
           "create_model", "list_models", "load_model", "model_config", "__version__"]
