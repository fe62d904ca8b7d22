"""Suite files, validated into frozen dataclasses (YAML is data only: no tags that build objects).

A suite has tasks; an ``sv`` task runs every (method variant x layer shape x seed) cell and records time, peak
memory, sigma_max and the error against the float64 oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from svbench.methods.base import LayerSpec


@dataclass(frozen=True)
class TimingSpec:
    warmup: int = 1
    min_repeats: int = 10
    max_repeats: int = 100
    budget_s: float = 0.5

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if not 1 <= self.min_repeats <= self.max_repeats:
            raise ValueError(f"need 1 <= min_repeats <= max_repeats, got {self.min_repeats}, {self.max_repeats}")
        if not self.budget_s > 0:
            raise ValueError(f"budget_s must be > 0, got {self.budget_s}")


@dataclass(frozen=True)
class SVTask:
    """Per-layer SV computation: time, memory, sigma_max, error against the oracle."""

    name: str
    shapes: list[LayerSpec]
    kind: Literal["sv"] = "sv"
    methods: str | list[str] = "all"
    variants: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    timing: TimingSpec = TimingSpec()
    oracle_max_dim: int = 2048
    forward_batch: int = 16
    measure_memory: bool = True

    def __post_init__(self) -> None:
        if not self.shapes:
            raise ValueError("an sv task needs at least one shape")
        if isinstance(self.methods, str) and self.methods != "all":
            raise ValueError(f"methods must be 'all' or a list of names, got {self.methods!r}")
        if self.oracle_max_dim < 0:
            raise ValueError("oracle_max_dim must be >= 0")
        if self.forward_batch < 1:
            raise ValueError("forward_batch must be >= 1")


TASK_KINDS: dict[str, type] = {"sv": SVTask}


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: list[Any]
    description: str = ""
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    dtype: Literal["float32", "float64"] = "float32"
    threads: int = 1
    seeds: list[int] = field(default_factory=lambda: [0])
    tolerances: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("a suite needs at least one task")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
