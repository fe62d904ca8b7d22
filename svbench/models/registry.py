"""Model registry: ``build_model(name, num_classes=..., in_channels=..., image_size=...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from svbench._registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def build_model(name: str, **kwargs: Any) -> nn.Module:
    return MODELS.get(name)(**kwargs)
