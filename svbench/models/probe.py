"""One forward pass with pre-hooks: which modules run, in what order, on what input shape."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def probe_inputs(
    model: nn.Module, input_shape: tuple[int, ...], select: Callable[[str, nn.Module], bool],
    device: torch.device | str | None = None,
) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """(name, module, input shape without batch) of every selected module, in forward order, each once.

    Runs one zero input through the model in eval mode under no_grad and restores the training flag. The hooks
    return None (a pre-hook that returns a value would replace the module's input).
    """
    seen: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    ids: set[int] = set()

    def make(name: str) -> Callable:
        def hook(mod: nn.Module, args: tuple) -> None:
            if id(mod) not in ids:
                ids.add(id(mod))
                seen.append((name, mod, tuple(args[0].shape[1:])))
        return hook

    handles = [m.register_forward_pre_hook(make(n)) for n, m in model.named_modules() if select(n, m)]
    p = next(model.parameters(), None)
    dev = device if device is not None else (p.device if p is not None else "cpu")
    dtype = p.dtype if p is not None else torch.float32
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=dev, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return seen
