"""Suite files, validated into frozen dataclasses (YAML is data only: no tags that build objects).

A suite has tasks; an ``sv`` task runs every (method variant x layer shape x seed) cell and records time, peak
memory, sigma_max and the error against the float64 oracle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from svbench.functional.transfer import stride_hw
from svbench.methods.base import LayerSpec
from svbench.metrics.robust import AttackSpec
from svbench.train.config import OptimSpec, ScheduleSpec


@dataclass(frozen=True)
class TimingSpec:
    warmup: int = 1
    min_repeats: int = 10
    max_repeats: int = 100
    budget_s: float = 0.5
    slow_repeats: int = 3  # repeats for an operation so slow that min_repeats would exceed 5 x budget_s

    def __post_init__(self) -> None:
        if self.slow_repeats < 1:
            raise ValueError(f"slow_repeats must be >= 1, got {self.slow_repeats}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if not 1 <= self.min_repeats <= self.max_repeats:
            raise ValueError(f"need 1 <= min_repeats <= max_repeats, got {self.min_repeats}, {self.max_repeats}")
        if not self.budget_s > 0:
            raise ValueError(f"budget_s must be > 0, got {self.budget_s}")


@dataclass(frozen=True)
class GridSpec:
    """A cartesian sweep of layer shapes (c_in = c_out = c), pruned by a work budget."""

    c: list[int]
    n: list[int]
    k: list[int] = field(default_factory=lambda: [3])
    stride: list[int | tuple[int, int]] = field(default_factory=lambda: [1])  # [1, 2, [1, 2]]: [1, 2] per axis
    padding: Literal["circular", "zeros"] = "circular"
    max_work: float | None = None  # skip shapes with (n/s)^2 c^3 above this (the cubic SVD model)
    width: list[int] | None = None  # rectangular inputs: every n x width pair (None: square n x n)

    def __post_init__(self) -> None:
        def positive(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 1

        for s in self.stride:  # checked here: the sweep below divides by them (stride 0 was a ZeroDivisionError)
            if not (positive(s) or (isinstance(s, tuple | list) and len(s) == 2 and all(map(positive, s)))):
                raise ValueError(f"stride: each entry must be a positive integer or [s_height, s_width] of positive "
                                 f"integers, got {list(s) if isinstance(s, tuple | list) else s!r}")

    def shapes(self) -> list[LayerSpec]:
        out = []
        for c in self.c:
            for n in self.n:
                for w in self.width or [n]:
                    for k in self.k:
                        for s in self.stride:
                            s1, s2 = stride_hw(s)
                            if k > min(n, w) or (self.padding == "circular" and (n % s1 or w % s2)):
                                continue
                            if self.max_work is not None and (n // s1) * (w // s2) * c**3 > self.max_work:
                                continue
                            out.append(LayerSpec(c, c, k, n, s, self.padding, width=w))
        return out


@dataclass(frozen=True)
class SVTask:
    """Per-layer SV computation: time, memory, sigma_max, error against the oracle."""

    name: str
    shapes: list[LayerSpec] = field(default_factory=list)
    kind: Literal["sv"] = "sv"
    grid: GridSpec | None = None
    methods: str | list[str] = "all"
    variants: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    timing: TimingSpec = TimingSpec()
    oracle_max_dim: int = 2048
    forward_batch: int = 16
    measure_memory: bool = True
    paired_reference: int = 0  # N > 0: also time against `reference` on the same kernel, N interleaved pairs
    paired_forward: int = 0  # N > 0: also time the eval forward against the plain conv (`none`), N interleaved pairs
    profile: list[str] = field(default_factory=list)  # methods whose timed call is also profiled once (by operator)

    def __post_init__(self) -> None:
        if not self.all_shapes():
            raise ValueError("an sv task needs at least one shape (shapes or grid)")
        if isinstance(self.methods, str) and self.methods != "all":
            raise ValueError(f"methods must be 'all' or a list of names, got {self.methods!r}")
        if self.oracle_max_dim < 0:
            raise ValueError("oracle_max_dim must be >= 0")
        if self.forward_batch < 1:
            raise ValueError("forward_batch must be >= 1")
        if self.paired_reference < 0:
            raise ValueError("paired_reference must be >= 0 (number of interleaved pairs)")
        if self.paired_forward < 0:
            raise ValueError("paired_forward must be >= 0 (number of interleaved pairs)")

    def all_shapes(self) -> list[LayerSpec]:
        """Explicit shapes, then the grid's (duplicates dropped, order kept)."""
        grid = self.grid.shapes() if self.grid is not None else []
        return list(dict.fromkeys([*self.shapes, *grid]))


@dataclass(frozen=True)
class TrainTask:
    """Train a model with each method's hooks; clean / robust / certified accuracy, ECE, sigma after control."""

    name: str
    kind: Literal["train"] = "train"
    dataset: str = "mnist_embedded"
    data_root: str | None = None
    model: str = "small_cnn"
    model_args: dict[str, Any] = field(default_factory=dict)
    methods: str | list[str] = "all"
    variants: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    epochs: int = 3
    batch_size: int = 64
    max_batches: int | None = None  # per epoch; for smoke tests
    optimizer: OptimSpec = OptimSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    val_fraction: float = 0.1
    augment: bool = False
    eval_batch_size: int = 500
    attacks: list[AttackSpec] = field(default_factory=list)
    certify: bool = False
    cert_eps: list[float] = field(default_factory=lambda: [36 / 255, 72 / 255, 108 / 255, 1.0])
    corruptions: Literal["none", "15", "19"] = "none"
    checkpoint: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("epochs, batch_size and eval_batch_size must be >= 1")
        if self.max_batches is not None and self.max_batches < 1:
            raise ValueError("max_batches must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if isinstance(self.methods, str) and self.methods != "all":
            raise ValueError(f"methods must be 'all' or a list of names, got {self.methods!r}")


@dataclass(frozen=True)
class NetworkTask:
    """All SVs of every conv of whole models (circular model of each conv on its input grid)."""

    name: str
    models: list[str]
    kind: Literal["network"] = "network"
    input_shape: list[int] = field(default_factory=lambda: [3, 32, 32])
    num_classes: int = 10
    methods: str | list[str] = "all"
    variants: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    timing: TimingSpec = TimingSpec(warmup=1, min_repeats=3, max_repeats=20, budget_s=2.0)
    check_error: bool = True  # compare every layer with the float64 FFT SVD (costly for big nets)
    measure_memory: bool = True
    clip_to: float | None = None  # also time one clipping pass over every conv (methods with network_clip)
    profile: list[str] = field(default_factory=list)  # methods whose timed calls are also profiled once (by operator)

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("a network task needs at least one model")
        repeated_models = sorted({x for x in self.models if self.models.count(x) > 1})
        if repeated_models:
            raise ValueError(f"models repeats {repeated_models}; each model runs once")
        if self.clip_to is not None and not self.clip_to > 0:
            raise ValueError(f"clip_to must be > 0, got {self.clip_to}")
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ValueError(f"input_shape must be [C, H, W] of positive integers (e.g. [3, 32, 32]), got "
                             f"{self.input_shape}")
        if isinstance(self.methods, str) and self.methods != "all":
            raise ValueError(f"methods must be 'all' or a list of names, got {self.methods!r}")


TASK_KINDS: dict[str, type] = {"sv": SVTask, "train": TrainTask, "network": NetworkTask}


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


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
        if not _SAFE_NAME.fullmatch(str(self.name)):
            raise ValueError(f"name {self.name!r} must be letters, digits, '.', '_' or '-' (it names the run "
                             f"folder reports/runs/<name>/), starting with a letter or digit")
        if not self.tasks:
            raise ValueError("a suite needs at least one task")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        repeated = sorted({x for x in self.seeds if self.seeds.count(x) > 1})
        if repeated:  # a repeated seed runs the same cells again, their records under the same ids
            raise ValueError(f"seeds repeats {repeated}; each seed runs once")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        from svbench.report.compare import DEFAULT_TOLERANCES  # said at validation, not when compare first reads it

        unknown = sorted(set(self.tolerances) - set(DEFAULT_TOLERANCES))
        if unknown:
            raise ValueError(f"unknown tolerance(s) {unknown}; allowed: {', '.join(DEFAULT_TOLERANCES)}")
        for key, value in self.tolerances.items():
            if not value >= 0:  # also NaN
                raise ValueError(f"tolerance {key} must be a number >= 0, got {value!r}")
