"""Recording the input size each conv of a model really sees (forward hooks), for per-layer control steps."""

from __future__ import annotations

import functools
import warnings
import weakref
from collections.abc import Iterator

from torch import nn


class InputSizes:
    """Forward pre-hooks that remember the spatial input size of every conv (``kind``) in a model.

    Sizes are keyed by module identity (weak references), so nothing leaks and no global state is kept.
    """

    def __init__(self, kind: type[nn.Module] | tuple[type[nn.Module], ...] = nn.Conv2d, *, clips: bool = False,
                 anisotropic: bool = False) -> None:
        self.kind = kind
        self.clips = clips  # the control clips on the circular model on n (sedghi, tt clip): stride | n needed
        self.anisotropic = anisotropic  # the control takes a stride / dilation per axis (sedghi, gram, power)
        self._sizes: weakref.WeakKeyDictionary[nn.Module, int | tuple[int, int]] = weakref.WeakKeyDictionary()
        self._warned: weakref.WeakSet[nn.Module] = weakref.WeakSet()
        self._seen: weakref.WeakKeyDictionary[nn.Module, tuple[int, int]] = weakref.WeakKeyDictionary()
        self._handles: list = []

    def __deepcopy__(self, memo: dict) -> InputSizes:
        """Not copied: a deep copy of a wrapped model keeps hooks that record into this same tracker (sizes are keyed
        by module identity, so the copy's convs get their own entries). Copying it copied torch's hook handles,
        and a copy of that copy failed inside torch ('cannot create weak reference to NoneType'); ``detach``
        removes the original model's hooks only."""
        return self

    def __getstate__(self) -> dict:
        """Pickled empty: ``torch.save(model)`` of a wrapped model pickles its hooks, and with them this tracker, whose
        weak-reference tables cannot be pickled (was: "Can't pickle local object 'WeakKeyDictionary.__init__.<locals>
        .remove'" for every method that controls SVs). The sizes are a cache keyed by module identity, meaningless in
        another process: the unpickled model's hooks record into a fresh one."""
        return {"kind": self.kind, "clips": self.clips, "anisotropic": self.anisotropic}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["kind"], clips=state["clips"], anisotropic=state["anisotropic"])  # type: ignore[misc]

    def attach(self, model: nn.Module) -> None:
        for name, conv in self.convs(model):
            self._handles.append(conv.register_forward_pre_hook(functools.partial(self._hook, name)))

    def _hook(self, name: str, module: nn.Module, args: tuple) -> None:
        """Record the grid the control computes on -- (h, w) for circular padding (the circular conv on that grid;
        an int for a square one), n = max(h, w) otherwise (the circular model on n' contains the zero-padded conv)
        -- or nothing, with one warning per layer, when svbench's circular model does not hold the layer's operator
        on this input (``control_problem``): the control steps then leave it alone."""
        from svbench.functional.transfer import as_grid
        from svbench.methods.base import control_problem

        h, w = (int(v) for v in args[0].shape[-2:])
        if self._seen.get(module) == (h, w):  # every training forward: decided once per input size
            return
        self._seen[module] = (h, w)
        why = control_problem(module, h, w, clips=self.clips, anisotropic=self.anisotropic)
        if why is None:
            circular = getattr(module, "padding_mode", "zeros") == "circular"
            self._sizes[module] = as_grid((h, w)) if circular else max(h, w)
            return
        self._sizes.pop(module, None)
        if module not in self._warned:
            self._warned.add(module)
            warnings.warn(f"conv {name!r} on a {h}x{w} input is left out of the SV control: {why}", stacklevel=2)

    def size_of(self, module: nn.Module) -> int | tuple[int, int] | None:
        return self._sizes.get(module)

    def convs(self, model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        for name, mod in model.named_modules():
            if isinstance(mod, self.kind):
                yield name, mod

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
