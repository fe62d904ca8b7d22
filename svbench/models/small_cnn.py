"""The embedded default model: a small CNN for 28x28 (MNIST) and 32x32 (CIFAR) inputs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from svbench.models.normalize import Normalize
from svbench.models.registry import MODELS


@MODELS.register("small_cnn")
class SmallCNN(nn.Module):
    """conv(c->w, s1) - conv(w->2w, s2) - conv(2w->2w, s1) - conv(2w->4w, s2) - flatten - linear.

    Every conv is 3x3 with 'same' zero padding and ReLU; no BatchNorm, so a layer's SVs are the layer's. A chain
    (no residual sums), so certified bounds multiply.
    """

    is_chain = True  # a sequence of layers: certified bounds multiply

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int | tuple[int, int] = 28,
        width: int = 16,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        mean = mean or [0.5] * in_channels
        std = std or [0.5] * in_channels
        self.normalize = Normalize(mean, std)
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.ReLU(),
        )
        h, w_ = (image_size, image_size) if isinstance(image_size, int) else image_size  # (H, W): rectangular
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(4 * w * ((h + 3) // 4) * ((w_ + 3) // 4), num_classes)
        self.image_size = image_size

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.features(self.normalize(x))))
