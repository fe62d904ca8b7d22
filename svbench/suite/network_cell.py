"""One network cell: all SVs of every conv of a model by one method, timed as one operation."""

from __future__ import annotations

from typing import Any

import torch

from svbench.functional.clip import clip_kernel
from svbench.functional.spectrum import conv_singular_values
from svbench.functional.transfer import Grid, Stride, as_grid, as_stride
from svbench.measure import peak_memory, time_callable, timed_call, warm_timing
from svbench.methods.base import conv_inputs
from svbench.models import build_model
from svbench.suite.profiling import profile_item, wants_profile


def run_network_cell(cell: Any, ctx: Any, base: dict[str, Any], records: Any) -> list[dict[str, Any]]:
    task, method = cell.task, cell.method
    shape = tuple(task.input_shape)
    torch.manual_seed(cell.seed)
    model = build_model(cell.model, num_classes=task.num_classes, in_channels=shape[0],
                        image_size=as_grid(shape[1:]))
    model = method.wrap(model).to(ctx.device, ctx.dtype).eval()
    base["extra"] = {"what": "circular model of every conv on its own input grid"}

    def compute() -> dict[str, torch.Tensor]:
        return method.network_svs(model, shape)

    first, first_ms = timed_call(compute, ctx.device)
    t = time_callable(compute, ctx.device, **warm_timing(task.timing, first_ms))
    items: list[dict[str, Any]] = [
        {"metric": "network_sv_time_ms", "value": t.median_ms, "iqr": t.iqr_ms, "repeats": t.repeats,
         "extra": {"clock": t.clock, "first_call_timed": t.first_call_timed, "n_layers": len(first),
                   "n_values": int(sum(v.numel() for v in first.values())), "input_shape": list(shape)}},
        {"metric": "network_sigma_max", "value": max(float(v[0]) for v in first.values()) if first else None},
    ]
    if wants_profile(cell):
        items.append(profile_item(cell, ctx, compute, "network_profile_busy_ms"))
    if task.measure_memory:
        mem = peak_memory(compute, ctx.device)
        items.append({"metric": "network_peak_mem_bytes", "value": mem.bytes, "extra": {"how": mem.how}})
    if task.clip_to is not None:
        def clip() -> object:
            return method.network_clip(model, shape, task.clip_to)

        clipped, clip_ms = timed_call(clip, ctx.device)  # also the warm-up
        if clipped is not None:
            ct = time_callable(clip, ctx.device, **warm_timing(task.timing, clip_ms))
            items.append({"metric": "network_clip_time_ms", "value": ct.median_ms, "iqr": ct.iqr_ms,
                          "repeats": ct.repeats, "extra": {"clock": ct.clock, "first_call_timed": ct.first_call_timed,
                                    "target": task.clip_to}})
            if wants_profile(cell):
                items.append(profile_item(cell, ctx, clip, "network_clip_profile_busy_ms"))
            if task.check_error and isinstance(clipped, dict) and clipped:
                items.append({"metric": "network_clip_err_rel", "value": _clip_error(ctx, model, shape, clipped,
                                                                                    task.clip_to),
                              "extra": {"oracle": "clip_float64", "what": "max over layers of ||K - K64||_F / "
                                        "||K64||_F, K64 the same clip-and-crop pass in float64"}})
    if task.check_error and method.provides in ("all_svs", "upper_bound", "estimate"):
        errs, how = [], "fft_float64"
        # the grids the method's network_svs computed on
        found = conv_inputs(model, shape, rectangular=True, anisotropic=True)
        layers = {name: m for name, m, _ in found}
        sizes = {name: n for name, _, n in found}
        for name, got in first.items():
            kernel = method.dense_kernel(layers[name])
            if kernel is None:
                continue
            exact = _oracle(ctx, kernel, sizes[name], as_stride(layers[name].stride))
            s1 = float(exact[0])
            if method.provides == "all_svs":
                errs.append(float((got.double().cpu() - exact.cpu()).abs().max()) / s1)
            else:
                errs.append((float(got[0]) - s1) / s1)
        if errs:
            # all SVs: the largest error; a bound: its lowest (bound - exact) / exact, >= 0; an estimate: its highest,
            # <= 0, with how far below the exact value the worst layer's estimate lies
            metric, value, extra = {
                "all_svs": ("network_max_err_rel", max(errs), {}),
                "upper_bound": ("network_min_bound_rel_err", min(errs), {}),
                "estimate": ("network_max_est_rel_err", max(errs), {"min_est_rel_err": min(errs)}),
            }[method.provides]
            items.append({"metric": metric, "value": value, "extra": {"oracle": how, **extra}})
        base["oracle"] = how
    return records(base, items)


def _clip_error(ctx: Any, model: Any, shape: tuple[int, int, int], clipped: dict[str, torch.Tensor],
                target: float) -> float:
    """Largest relative Frobenius distance of a method's clipped kernels to the float64 clip-and-crop pass."""
    layers = {name: (m, n) for name, m, n in conv_inputs(model, shape, rectangular=True, anisotropic=True)}
    errs = []
    for name, got in clipped.items():
        layer, n = layers[name]
        dilation = as_stride(layer.dilation)
        exact = _cached(ctx, ("network-clip-oracle", target, layer.groups, dilation), layer.weight, n,
                        as_stride(layer.stride), lambda w, n, s, layer=layer, d=dilation: clip_kernel(
                            w.double(), n, target, s, route="gram", groups=layer.groups, dilation=d))
        errs.append(float((got.double() - exact).norm() / exact.norm().clamp_min(1e-300)))
    return max(errs)


def _oracle(ctx: Any, kernel: torch.Tensor, n: Grid, stride: Stride) -> torch.Tensor:
    """float64 FFT SVs of a conv, cached across the cells of a run by the kernel's content.

    Methods that leave the weights alone (reference, sedghi, gram, ...) build the same seeded model, so the oracle
    of a big network is computed once per run instead of once per method.
    """
    return _cached(ctx, ("network-oracle",), kernel, n, stride,
                   lambda k, n, s: conv_singular_values(k.double(), n, s, backend="svdvals64"))


def _cached(ctx: Any, tag: tuple, kernel: torch.Tensor, n: int, stride: int, compute: Any) -> torch.Tensor:
    """``compute(kernel, n, stride)`` without grad, cached in ``ctx.oracle_cache`` by ``tag`` and the kernel's
    content (shape, device and three sums: the seeded models of the cells of one run share their kernels)."""
    k = kernel.detach()
    key = (*tag, tuple(k.shape), n, stride, str(k.device), k.double().sum().item(),
           k.double().square().sum().item(), k.flatten()[:: max(1, k.numel() // 64)].double().sum().item())
    cache = getattr(ctx, "oracle_cache", None)
    if cache is not None and key in cache:
        return cache[key]
    with torch.no_grad():
        exact = compute(k, n, stride)
    if cache is not None:
        cache[key] = exact
    return exact
