"""In-memory image datasets as uint8 tensors, split into train / validation / test, and batch iteration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Split:
    x: Tensor  # uint8 (N, C, H, W) or float in [0, 1]
    y: Tensor  # int64 (N,)

    def __len__(self) -> int:
        return int(self.y.numel())

    def images(self, idx: Tensor | slice | None = None) -> Tensor:
        """Float images in [0, 1]."""
        x = self.x if idx is None else self.x[idx]
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()

    def head(self, n: int) -> Split:
        """The first n examples (a fixed order, as RobustBench's subsets)."""
        return Split(self.x[:n], self.y[:n])


@dataclass
class DataSplits:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str  # where the data came from (path or package)

    def describe(self) -> dict:
        return {"dataset": self.name, "source": self.source, "n_train": len(self.train), "n_val": len(self.val),
                "n_test": len(self.test), "num_classes": self.num_classes}


def split_train_val(x: Tensor, y: Tensor, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Deterministic split of a training set: a seeded permutation, the last ``val_fraction`` for validation."""
    n = y.numel()
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(val_fraction * n))
    tr, va = perm[: n - n_val], perm[n - n_val:]
    return Split(x[tr], y[tr]), Split(x[va], y[va])


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of images in [0, 1] (computed on the training split)."""
    xf = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def batches(
    split: Split, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
    augment: bool = False, device: torch.device | str = "cpu",
) -> Iterator[tuple[Tensor, Tensor]]:
    """(images in [0, 1], labels) batches; ``augment``: random crop (pad 4) and horizontal flip (CIFAR)."""
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        x = split.images(idx)
        if augment:
            x = _augment(x, generator)
        yield x.to(device), split.y[idx].to(device)


def _augment(x: Tensor, generator: torch.Generator | None) -> Tensor:
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dx = torch.randint(0, 9, (b,), generator=generator)
    dy = torch.randint(0, 9, (b,), generator=generator)
    rows = (dy.view(-1, 1) + torch.arange(h).view(1, -1))  # (b, h)
    cols = (dx.view(-1, 1) + torch.arange(w).view(1, -1))
    bi = torch.arange(b).view(-1, 1, 1)
    out = padded.permute(0, 2, 3, 1)[bi, rows.view(b, h, 1), cols.view(b, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()
