"""A spectrogram CNN: the convolutional front end of Deep Speech 2 with a classification head.

Amodei et al., "Deep Speech 2: End-to-End Speech Recognition in English and Mandarin", ICML 2016 (arXiv:1512.02595),
section 3.5: two 2-D convolutions over (frequency x time) before the recurrent layers, the second striding along
frequency only. As widely reimplemented: 41 x 11 taps at stride (2, 2), then 21 x 11 taps at stride (2, 1), 32
channels each, BatchNorm and a clipped ReLU (hardtanh to [0, 20]). Here the recurrent part is replaced by a global
average pool and a linear classifier, so the model fits svbench's network tasks, ``spectrum --model`` and train
tasks; what it is for is the conv geometry real speech models have and image models lack: a rectangular input and
a stride that differs between the axes.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from svbench.models.normalize import Normalize
from svbench.models.registry import MODELS


@MODELS.register("ds2_frontend")
class DeepSpeech2Frontend(nn.Module):
    """conv(c->32, 41x11, stride (2, 2)) - BN - hardtanh(0, 20) - conv(32->32, 21x11, stride (2, 1)) - BN -
    hardtanh(0, 20) - global average pool - linear. Inputs (C, F, T): frequency bins x time frames (default
    1 x 160 x 128; the circular model needs the strides to divide F and T: F % 4 == 0, T % 2 == 0)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int | tuple[int, int] = (160, 128),
        width: int = 32,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean or [0.5] * in_channels, std or [0.5] * in_channels)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, (41, 11), stride=(2, 2), padding=(20, 5)), nn.BatchNorm2d(width),
            nn.Hardtanh(0, 20),
            nn.Conv2d(width, width, (21, 11), stride=(2, 1), padding=(10, 5)), nn.BatchNorm2d(width),
            nn.Hardtanh(0, 20),
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(width, num_classes)
        self.image_size = image_size

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(self.normalize(x))))
