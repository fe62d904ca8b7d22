"""Models registered by name; inputs are images in [0, 1] with the normalisation inside the model."""

from svbench.models import resnet, small_cnn, speech, vgg  # noqa: F401  (registration)
from svbench.models.registry import MODELS, build_model, check_model_name

__all__ = ["MODELS", "build_model", "check_model_name"]
