"""vitkit: the Vision Transformer of Dosovitskiy et al. (ICLR 2021), fast and faithful."""

from vitkit.checkpoints import CheckpointError, load_model
from vitkit.config import ViTConfig
from vitkit.model import VisionTransformer
from vitkit.variants import create_model, list_models, model_config

__version__ = "0.1.0"
__all__ = ["CheckpointError", "ViTConfig", "VisionTransformer", "create_model", "list_models",
           "load_model", "model_config", "__version__"]
