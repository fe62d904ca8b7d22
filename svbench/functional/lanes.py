"""Independent solver calls run side by side: one host thread and one CUDA stream per lane.

Why: cuSOLVER's batched gesvda costs about the same per CALL whatever its batch (H200, reports/gpu/nvidia-h200), so
a call with few matrices (e.g. the 640-channel layers of WRN-16-10 at 8 x 8: 34 frequencies) may leave most of the
GPU idle while the next call waits. And torch synchronises the host after every gesvda call (it copies the
convergence infos to the host), so calls issued from ONE host thread never overlap, whatever stream they are on.
Here each lane is a worker thread with its own CUDA stream (torch keeps cuSOLVER / cuBLAS handles per thread), so
one lane's call runs while another waits for its sync. Results are identical to running the calls in order (each
call is the same computation on the same inputs); what changes is time and peak memory (the lanes' working sets
add up).

``streams=1`` runs the calls in order in the caller's thread and stream; ``None`` takes the device's default
(``DEFAULT_STREAMS``: 4 on CUDA, else 1). On a CPU, lanes are plain threads (each op still uses torch's intra-op
thread setting): they use more cores, so CPU benchmarks keep ``streams=1``. Autograd works across lanes (the
caller's grad mode is carried into each worker).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any, TypeVar

import torch
from torch import Tensor

from svbench.errors import UserError

T = TypeVar("T")


# Lanes when the caller does not say: on CUDA 4 (NVIDIA H200, torch 2.11, same run, reports/gpu/nvidia-h200/run3:
# all SVs of WRN-16-10's 13 convs 382 ms in order, 318 ms on 2 lanes, 301 ms on 4; its clipping pass 435 / 370 /
# 355 ms; tt rank 192 155.5 -> 128.6 ms on 4); elsewhere 1 (CPU timings are taken on one thread).
DEFAULT_STREAMS = {"cuda": 4}


def resolve_streams(streams: int | None, device: torch.device | str) -> int:
    """``streams``, or the device's default (``DEFAULT_STREAMS``, else 1) for None. Validates."""
    if streams is None:
        return DEFAULT_STREAMS.get(torch.device(device).type, 1)
    if not isinstance(streams, int) or isinstance(streams, bool) or streams < 1:
        raise UserError(f"streams must be an integer >= 1, got {streams!r}")
    return streams


def assign_lanes(costs: Sequence[float], lanes: int) -> list[list[int]]:
    """Indices of the items per lane: largest cost first onto the least-loaded lane (longest-processing-time
    rule); each lane keeps its items in the original order. Empty lanes are dropped."""
    load = [0.0] * lanes
    out: list[list[int]] = [[] for _ in range(lanes)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        j = min(range(lanes), key=lambda j: (load[j], j))
        out[j].append(i)
        load[j] += costs[i]
    return [sorted(lane) for lane in out if lane]


def _tensors(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    return []


def run_lanes(
    items: Sequence[T], work: Callable[[T], Any], *, streams: int | None = 1, costs: Sequence[float] | None = None,
    device: torch.device | str = "cpu",
) -> list[Any]:
    """``[work(item) for item in items]``, with the items spread over up to ``streams`` lanes (see the module
    docstring). ``costs`` (one per item, any unit) balance the lanes; equal costs by default. Exceptions of a lane
    propagate to the caller. ``streams=None``: the device's default (:func:`resolve_streams`)."""
    streams = resolve_streams(streams, device)
    if streams == 1 or len(items) < 2:
        return [work(item) for item in items]
    device = torch.device(device)
    lanes = assign_lanes(list(costs) if costs is not None else [1.0] * len(items), streams)
    results: list[Any] = [None] * len(items)
    grad = torch.is_grad_enabled()
    cuda = device.type == "cuda"
    if cuda:
        main = torch.cuda.current_stream(device)
        side = [torch.cuda.Stream(device) for _ in lanes]
        for s in side:
            s.wait_stream(main)  # the inputs were made on the caller's stream

    def lane_job(j: int) -> None:
        with ExitStack() as ctx:
            if cuda:
                ctx.enter_context(torch.cuda.device(device))
                ctx.enter_context(torch.cuda.stream(side[j]))
            ctx.enter_context(torch.set_grad_enabled(grad))
            for i in lanes[j]:
                results[i] = work(items[i])

    errors: list[BaseException | None] = [None] * len(lanes)

    def guarded(j: int) -> None:
        try:
            lane_job(j)
        except BaseException as exc:  # re-raised in the caller's thread below
            errors[j] = exc

    threads = [threading.Thread(target=guarded, args=(j,), name=f"svbench-lane-{j}", daemon=True)
               for j in range(len(lanes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for exc in errors:
        if exc is not None:
            raise exc
    if cuda:
        for s in side:
            main.wait_stream(s)
        for r in results:  # the caller's stream uses them now: the allocator must not hand them to a lane early
            for t in _tensors(r):
                if t.is_cuda:
                    t.record_stream(main)
    return results
