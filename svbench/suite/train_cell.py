"""One train cell: build the model, train it with the method's hooks, evaluate, return records."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Any

import torch

from svbench.data import CORRUPTIONS_15, CORRUPTIONS_19, Split, load_corruption, load_dataset
from svbench.errors import UserError
from svbench.metrics.calibration import calibration_metrics
from svbench.metrics.certified import certified_accuracy, lipschitz_bound
from svbench.metrics.robust import autoattack_accuracy, foolbox_pgd_accuracy
from svbench.metrics.sigma import layer_sigmas
from svbench.models import build_model
from svbench.train import predict, train


def _eps_label(eps: float) -> str:
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 and eps < 1 else f"{eps:g}"


def load_task_data(task: Any, seed: int, cache: dict) -> Any:
    key = (task.dataset, task.data_root, task.val_fraction, seed)
    if key not in cache:
        cache[key] = load_dataset(task.dataset, task.data_root, val_fraction=task.val_fraction, seed=seed)
    return cache[key]


def run_train_cell(cell: Any, ctx: Any, base: dict[str, Any], records: Any) -> list[dict[str, Any]]:
    task, method, seed = cell.task, cell.method, cell.seed
    data = load_task_data(task, seed, ctx.data_cache)
    base["extra"] = {"dataset": data.describe(), "model": task.model}
    torch.manual_seed(seed)
    try:
        model = build_model(task.model, num_classes=data.num_classes, in_channels=data.in_channels,
                            image_size=data.image_size, mean=data.mean, std=data.std, **task.model_args)
    except TypeError as e:
        raise UserError(f"task {task.name!r}: bad model_args for {task.model!r}: {e}") from None
    model = model.to(ctx.device, ctx.dtype)

    def status(text: str) -> None:
        if ctx.status is not None:
            ctx.status(f"{cell.cell_id}: {text}")

    res = train(model, method, data, epochs=task.epochs, batch_size=task.batch_size, optim=task.optimizer,
                schedule=task.schedule, seed=seed, device=ctx.device, augment=task.augment,
                max_batches=task.max_batches, eval_batch_size=task.eval_batch_size, status=status)
    model = res.model
    items: list[dict[str, Any]] = []
    items.append({"metric": "train_time_s", "value": sum(res.epoch_times_s),
                  "extra": {"epoch_times_s": res.epoch_times_s, "steps": res.steps}})
    items.append({"metric": "epoch_time_s", "value": sum(res.epoch_times_s) / len(res.epoch_times_s)})
    items.append({"metric": "control_time_s", "value": res.control_time_s,
                  "extra": {"control_steps": res.control_steps}})
    items.append({"metric": "nonfinite_steps", "value": res.nonfinite_steps, "extra": {"diverged": res.diverged}})
    items.append({"metric": "val_accuracy_best", "value": max(res.val_accuracy) if res.val_accuracy else None,
                  "extra": {"best_epoch": res.best_val_epoch, "per_epoch": res.val_accuracy,
                            "note": "selection on validation only; test metrics are last-epoch"}})

    logits = predict(model, data.test, task.eval_batch_size, ctx.device)
    cal = calibration_metrics(logits, data.test.y)
    items.append({"metric": "test_accuracy", "value": cal["accuracy"], "extra": {"n": len(data.test)}})
    items.append({"metric": "ece", "value": cal["ece"],
                  "extra": {"impl": "torchmetrics MulticlassCalibrationError(n_bins=15, norm=l1) on probabilities",
                            "ece_reference": cal["ece_reference"]}})
    items.append({"metric": "nll", "value": cal["nll"]})
    items.append({"metric": "brier", "value": cal["brier"]})

    shape = (data.in_channels, data.image_size, data.image_size)
    target = method.control_target()
    try:
        sig = layer_sigmas(model, shape, target, ctx.device)
    except UserError as e:  # a layer no bound route covers at its size: say so, keep every other metric
        sig = []
        items.append({"metric": "sigma_max_after", "status": "skipped", "reason": str(e)})
    for row in sig:
        items.append({"metric": "layer_sigma_max", "value": row["upper"], "extra": row})
    if sig:
        items.append({"metric": "sigma_max_after", "value": max(r["upper"] for r in sig),
                      "extra": {"target": target, "what": "max over convs of the guaranteed upper value"}})
        if target:
            items.append({"metric": "overshoot_max", "value": max(r["upper"] for r in sig) / target,
                          "extra": {"target": target}})

    lip = None  # a certified bound of this model: the attacks below are checked against it
    if task.certify:
        try:
            lip, layers = lipschitz_bound(model, shape, ctx.device)
            items.append({"metric": "lipschitz_bound", "value": lip, "extra": {"layers": layers}})
            for eps in task.cert_eps:
                items.append({"metric": f"certified_accuracy@{_eps_label(eps)}",
                              "value": certified_accuracy(logits, data.test.y, lip, eps),
                              "extra": {"eps": eps, "lipschitz": lip}})
        except UserError as e:
            items.append({"metric": "lipschitz_bound", "status": "skipped", "reason": str(e)})

    for spec in task.attacks:
        x = data.test.images(slice(0, spec.n_examples))
        y = data.test.y[: spec.n_examples]
        tag = f"{spec.norm}:{_eps_label(spec.eps)}"
        aa = autoattack_accuracy(model, x, y, spec, seed=seed, device=ctx.device, lipschitz=lip)
        cert = aa.pop("certificate", None)
        items.append({"metric": f"robust_accuracy@{tag}", "value": aa["robust_accuracy"], "extra": aa})
        if cert is not None:
            items.append({"metric": f"certificate_violations@{tag}", "value": cert["violations"], "extra": cert})
            if cert["violations"]:
                print(f"svbench: warning: {cell.cell_id}: {cert['violations']} of {cert['checked']} successful "
                      f"{tag} attacks lie inside the certified l2 radius: the Lipschitz bound {lip:.6g} is not a "
                      "bound of this model (a bug; please report it)", file=sys.stderr)
        items.append({"metric": f"clean_accuracy_subset@{tag}", "value": aa["clean_accuracy_subset"],
                      "extra": {"n_examples": aa["n_examples"]}})
        if spec.foolbox_check:
            try:
                fb = foolbox_pgd_accuracy(model, x, y, spec, ctx.device)
                items.append({"metric": f"robust_accuracy_pgd@{tag}", "value": fb["robust_accuracy_pgd"],
                              "extra": fb})
            except UserError as e:
                items.append({"metric": f"robust_accuracy_pgd@{tag}", "status": "skipped", "reason": str(e)})

    if task.corruptions != "none":
        names = CORRUPTIONS_15 if task.corruptions == "15" else CORRUPTIONS_19
        accs = {}
        for c in names:
            xc, yc = load_corruption(task.data_root, task.dataset, c)
            lc = predict(model, Split(xc, yc), task.eval_batch_size, ctx.device)
            accs[c] = float((lc.argmax(1) == yc).float().mean())
        items.append({"metric": "corruption_accuracy", "value": sum(accs.values()) / len(accs),
                      "extra": {"per_corruption": accs, "n_corruptions": len(accs), "severities": 5}})

    if task.checkpoint:
        slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", cell.cell_id)
        path = Path(ctx.run_dir) / "checkpoints" / f"{slug}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
        items.append({"metric": "checkpoint", "value": None, "extra": {"path": str(path)}})
    for it in items:
        v = it.get("value")
        if isinstance(v, float) and not math.isfinite(v):
            it["status"] = "nonfinite"
    return records(base, items)
