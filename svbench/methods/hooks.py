"""Recording the input size each conv of a model really sees (forward hooks), for per-layer control steps."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

from torch import nn


class InputSizes:
    """Forward pre-hooks that remember the spatial input size of every conv (``kind``) in a model.

    Sizes are keyed by module identity (weak references), so nothing leaks and no global state is kept.
    """

    def __init__(self, kind: type[nn.Module] | tuple[type[nn.Module], ...] = nn.Conv2d) -> None:
        self.kind = kind
        self._sizes: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()
        self._handles: list = []

    def __deepcopy__(self, memo: dict) -> InputSizes:
        """Not copied: a deep copy of a wrapped model keeps hooks that record into this same tracker (sizes are keyed
        by module identity, so the copy's convs get their own entries). Copying it copied torch's hook handles,
        and a copy of that copy failed inside torch ('cannot create weak reference to NoneType'); ``detach``
        removes the original model's hooks only."""
        return self

    def attach(self, model: nn.Module) -> None:
        for _, conv in self.convs(model):
            self._handles.append(conv.register_forward_pre_hook(self._hook))

    def _hook(self, module: nn.Module, args: tuple) -> None:
        x = args[0]
        h, w = x.shape[-2:]
        self._sizes[module] = int(h) if h == w else int(max(h, w))

    def size_of(self, module: nn.Module) -> int | None:
        return self._sizes.get(module)

    def convs(self, model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        for name, mod in model.named_modules():
            if isinstance(mod, self.kind):
                yield name, mod

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
