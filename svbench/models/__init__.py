"""Models registered by name; inputs are images in [0, 1] with the normalisation inside the model."""

from svbench.models import small_cnn  # noqa: F401  (registration)
from svbench.models.registry import MODELS, build_model

__all__ = ["MODELS", "build_model"]
