"""Typed training configuration: optimizer and schedule presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class OptimSpec:
    name: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError("weight_decay must be >= 0 and momentum in [0, 1)")


@dataclass(frozen=True)
class ScheduleSpec:
    name: Literal["none", "multistep", "cosine"] = "cosine"
    milestones: list[int] = field(default_factory=list)  # epochs, for multistep
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.name == "multistep" and not self.milestones:
            raise ValueError("a multistep schedule needs milestones (epochs)")
