"""One forward pass with pre-hooks: which modules run, in what order, on what input shape."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn


def probe_inputs(
    model: nn.Module, input_shape: tuple[int, ...], select: Callable[[str, nn.Module], bool],
    device: torch.device | str | None = None, *, every_call: bool = False, training: bool = False,
) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """(name, module, input shape without batch) of every selected module, in forward order: each once (its first
    call), or with ``every_call`` once per call (a module the forward applies twice -- tied weights -- is two
    layers of a chain). A module called again on another input shape is named in one warning unless
    ``every_call``: what is computed for it holds for its first input only.

    Runs one zero input through the model in eval mode under no_grad and restores the training flag. The hooks
    return None (a pre-hook that returns a value would replace the module's input). With ``training``, the pass is
    in train mode on a batch of 2 (a BN layer refuses one value per channel there), which reaches the modules only
    training runs (inception_v3's / googlenet's auxiliary classifiers); the buffers it updates (BN running
    statistics) are put back.
    """
    seen: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    first: dict[int, tuple[int, ...]] = {}
    again: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def make(name: str) -> Callable:
        def hook(mod: nn.Module, args: tuple) -> None:
            shape = tuple(args[0].shape[1:])
            if every_call or id(mod) not in first:
                first.setdefault(id(mod), shape)
                seen.append((name, mod, shape))
            elif shape != first[id(mod)]:
                again.setdefault(name, (first[id(mod)], shape))
        return hook

    handles = [m.register_forward_pre_hook(make(n)) for n, m in model.named_modules() if select(n, m)]
    p = next(model.parameters(), None)
    dev = device if device is not None else (p.device if p is not None else "cpu")
    dtype = p.dtype if p is not None else torch.float32
    was = model.training
    model.train(training)
    kept = [(b, b.clone()) for b in model.buffers()] if training else []
    try:
        with torch.no_grad():
            model(torch.zeros(2 if training else 1, *input_shape, device=dev, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
        with torch.no_grad():
            for b, v in kept:
                b.copy_(v)
    if again:
        shown = ", ".join(f"{n} ({'x'.join(map(str, a[1:]))} then {'x'.join(map(str, b[1:]))})"
                          for n, (a, b) in list(again.items())[:4])
        warnings.warn(f"{len(again)} layer(s) run more than once on different inputs: {shown}; the values given are "
                      f"for each one's first input", stacklevel=3)
    return seen
