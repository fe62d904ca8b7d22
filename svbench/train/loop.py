"""The trainer: a method's hooks (wrap, penalty, after_step) around a plain supervised loop.

Steps are counted from 1; ``after_step`` runs under no_grad right after ``optimizer.step()``. Model selection uses
the validation split only (the best validation epoch is recorded, not used to pick test numbers); test metrics
are taken at the LAST epoch. Wall time per epoch and the time spent inside control steps are measured
separately (synchronised on CUDA).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from svbench.data.splits import DataSplits, Split, batches
from svbench.methods.base import Method
from svbench.train.config import OptimSpec, ScheduleSpec


@dataclass
class TrainResult:
    model: nn.Module
    epochs: int
    steps: int
    epoch_times_s: list[float]
    control_time_s: float
    control_steps: int
    val_accuracy: list[float]
    train_loss: list[float]
    nonfinite_steps: int
    last_control: list[dict[str, Any]] = field(default_factory=list)
    diverged: bool = False

    @property
    def best_val_epoch(self) -> int:
        return 1 + max(range(len(self.val_accuracy)), key=lambda i: self.val_accuracy[i]) if self.val_accuracy else 0


def make_optimizer(model: nn.Module, spec: OptimSpec) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
                           nesterov=spec.nesterov and spec.momentum > 0)


def make_schedule(opt: torch.optim.Optimizer, spec: ScheduleSpec, epochs: int, steps_per_epoch: int):
    if spec.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * steps_per_epoch))
    if spec.name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, [m * steps_per_epoch for m in spec.milestones], spec.gamma)
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def predict(model: nn.Module, split: Split, batch_size: int, device: torch.device) -> Tensor:
    model.eval()
    outs = [model(x) for x, _ in batches(split, batch_size, shuffle=False, device=device)]
    return torch.cat(outs).cpu() if outs else torch.empty(0)


def train(
    model: nn.Module,
    method: Method,
    data: DataSplits,
    *,
    epochs: int,
    batch_size: int,
    optim: OptimSpec,
    schedule: ScheduleSpec,
    seed: int,
    device: torch.device,
    augment: bool = False,
    max_batches: int | None = None,
    eval_batch_size: int = 500,
    status: Callable[[str], None] | None = None,
) -> TrainResult:
    torch.manual_seed(seed)
    model = method.wrap(model.to(device)).to(device)  # wrap BEFORE the optimizer: new parameters are seen
    opt = make_optimizer(model, optim)
    n_batches = math.ceil(len(data.train) / batch_size)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    sched = make_schedule(opt, schedule, epochs, n_batches)
    gen = torch.Generator().manual_seed(seed)
    res = TrainResult(model, epochs, 0, [], 0.0, 0, [], [], 0)
    step = 0
    for epoch in range(1, epochs + 1):
        model.train()
        _sync(device)
        t0 = time.perf_counter()
        control_in_epoch = 0.0
        losses = []
        for i, (x, y) in enumerate(batches(data.train, batch_size, shuffle=True, generator=gen, augment=augment,
                                           device=device)):
            if i >= n_batches:
                break
            step += 1
            loss = F.cross_entropy(model(x), y)
            pen = method.penalty(model)
            total = loss + pen if pen is not None else loss
            if not torch.isfinite(total):
                res.nonfinite_steps += 1
                opt.zero_grad(set_to_none=True)
                if res.nonfinite_steps > 10:
                    res.diverged = True
                    break
                continue
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            if sched is not None:
                sched.step()
            _sync(device)
            tc = time.perf_counter()
            with torch.no_grad():
                reports = method.after_step(model, step, report=False)  # the control's own time, no reporting SVs
            _sync(device)
            if reports:
                control_in_epoch += time.perf_counter() - tc
                res.control_steps += 1
                res.last_control = reports
            losses.append(float(loss.detach()))
        _sync(device)
        res.epoch_times_s.append(time.perf_counter() - t0)
        res.control_time_s += control_in_epoch
        res.train_loss.append(sum(losses) / max(1, len(losses)))
        val_logits = predict(model, data.val, eval_batch_size, device)
        val_acc = float((val_logits.argmax(1) == data.val.y).float().mean()) if len(data.val) else float("nan")
        res.val_accuracy.append(val_acc)
        if status is not None:
            status(f"epoch {epoch}/{epochs} loss {res.train_loss[-1]:.3f} val {val_acc:.3f}")
        if res.diverged:
            break
    res.steps = step
    return res
