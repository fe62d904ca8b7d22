"""Training with a method's hooks; model selection on the validation split, last-epoch test metrics."""

from svbench.train.config import OptimSpec, ScheduleSpec
from svbench.train.loop import TrainResult, predict, train

__all__ = ["OptimSpec", "ScheduleSpec", "TrainResult", "predict", "train"]
