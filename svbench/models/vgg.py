"""VGG-19 with BatchNorm for 32x32 inputs (the TT paper's VGG-19) and LipConvnet-N (Singla & Feizi 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from svbench.models.normalize import Normalize
from svbench.models.registry import MODELS
from svbench.models.resnet import _norm

VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


@MODELS.register("vgg19")
class VGG19Net(nn.Module):
    """VGG-19 with BatchNorm for 32x32 inputs (16 3x3 convs, 5 max pools, one linear layer), the TT paper's VGG-19."""

    is_chain = True
    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int | tuple[int, int] = 32,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.normalize = _norm(in_channels, mean, std)
        layers: list[nn.Module] = []
        c = in_channels
        for v in VGG19:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size  # (H, W): rectangular
        feat = 512 * (h // 32) * (w // 32)
        self.classifier = nn.Sequential(nn.Linear(feat, 512), nn.ReLU(inplace=True), nn.Linear(512, 512),
                                        nn.ReLU(inplace=True), nn.Linear(512, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(self.normalize(x)).flatten(1))


class MaxMin(nn.Module):
    """Gradient-norm-preserving activation: split channels in two halves, output (max, min). 1-Lipschitz."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.cat([a.maximum(b), a.minimum(b)], dim=1)


@MODELS.register("lipconvnet")
class LipConvnet(nn.Module):
    """LipConvnet-N: 5 blocks of N/5 3x3 convs with MaxMin; the last conv of each block has stride 2 and doubles
    the width; a final linear layer. The convs are plain here: the SV method under test (cayley, tt, gram, ...)
    supplies the Lipschitz control. This follows the block structure of Singla & Feizi's LipConvnet, not its
    exact layers (their downsampling and widths differ), so parameter counts do not match the SOC paper's."""

    is_chain = True

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int | tuple[int, int] = 32,
                 depth: int = 5, base: int = 32, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        if depth % 5:
            raise ValueError(f"LipConvnet depth must be a multiple of 5, got {depth}")
        self.normalize = _norm(in_channels, mean, std) if mean is not None or in_channels != 3 else Normalize(
            (0.4914, 0.4822, 0.4465), (1.0, 1.0, 1.0))
        per = depth // 5
        layers: list[nn.Module] = []
        c = in_channels
        width = base
        for _ in range(5):
            for i in range(per):
                last = i == per - 1
                out = width * 2 if last else width
                layers += [nn.Conv2d(c, out, 3, 2 if last else 1, 1), MaxMin()]
                c = out
            width *= 2
        self.features = nn.Sequential(*layers)
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size  # (H, W): rectangular
        self.classifier = nn.Linear(c * max(1, h // 32) * max(1, w // 32), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(self.normalize(x)).flatten(1))
