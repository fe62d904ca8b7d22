"""A researcher's own architecture, named by where it is defined: ``FILE.py:NAME`` or ``MODULE:NAME``.

``--model models/resnet.py:ResNet20`` (spectrum), ``model: my_pkg.nets:WideResNet(depth=16, widen_factor=4)``
(suites): NAME is a class, a factory or an nn.Module instance in that file or module; an optional call part gives
its arguments as Python literals (numbers, strings, tuples, lists, dicts, True / False / None) -- parsed with
``ast.literal_eval``, never evaluated; a train task's ``model_args`` are passed too. svbench's own keyword
arguments (``num_classes``, ``in_channels``, ``image_size``, ``mean``, ``std``: the data's) are passed only to a
callable whose signature names them and only where the spec does not set them.

The file or module is imported because the user named it: its code runs, as ``python FILE`` would run it. A file's
folder goes first on ``sys.path`` (its sibling imports work, as for a script); a module is looked up from the
current folder too (as ``python -m`` does). Every failure -- no such file, module or name, an argument that is no
literal, the import or the call raising, something other than an nn.Module coming back -- is one line naming the
spec (``--debug`` shows the traceback).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from svbench.errors import UserError, first_line

# the keyword arguments svbench's builders take (the data's classes, channels, image size and normalisation); a user
# callable gets each only if its signature names it
SVBENCH_KWARGS = ("num_classes", "in_channels", "image_size", "mean", "std")


@dataclass(frozen=True)
class ImportSpec:
    """``target:attr(args, kwargs)`` parsed: target a file (``.py``) or a dotted module, attr a dotted name in it."""

    text: str
    target: str
    attr: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    called: bool = False  # the spec has a call part, ``Net()`` included

    @property
    def is_file(self) -> bool:
        return self.target.endswith(".py") or "/" in self.target or os.sep in self.target


def is_imported(name: str) -> bool:
    """Whether a model name is an import spec (``FILE.py:NAME`` / ``MODULE:NAME``), not a registered name or
    ``torchvision:NAME``."""
    from svbench.models.torchvision_models import is_torchvision

    return isinstance(name, str) and ":" in name.split("(", 1)[0] and not is_torchvision(name)


def parse_spec(text: str) -> ImportSpec:
    """Split and check an import spec without importing anything; a malformed one is one line."""
    head, paren, call = text.partition("(")
    target, _, attr = head.strip().rpartition(":")
    target, attr = target.strip(), attr.strip()
    form = "FILE.py:NAME or MODULE:NAME, optionally with literal arguments: models/resnet.py:ResNet(depth=20)"
    if not target or not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise UserError(f"model {text!r}: expected {form}")
    if not paren:
        return ImportSpec(text, target, attr)
    try:
        node = ast.parse(f"f({call}", mode="eval").body
    except SyntaxError:
        raise UserError(f"model {text!r}: its arguments do not parse; expected {form}") from None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):  # e.g. Net(a=1)(b=2)
        raise UserError(f"model {text!r}: one call with its arguments expected; expected {form}")
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
        raise UserError(f"model {text!r}: *args / **kwargs are not taken; write each argument out")
    try:
        args = tuple(ast.literal_eval(a) for a in node.args)
        kwargs = tuple((k.arg, ast.literal_eval(k.value)) for k in node.keywords)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        raise UserError(f"model {text!r}: arguments must be Python literals (numbers, strings, tuples, lists, "
                        f"dicts, True / False / None); they are read, never run") from None
    return ImportSpec(text, target, attr, args, kwargs, called=True)  # type: ignore[arg-type]


def _import_file(spec: ImportSpec) -> ModuleType:
    path = Path(spec.target).expanduser().resolve()
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not found"
        raise UserError(f"model {spec.text!r}: {spec.target} is {what}; pass the .py file that defines "
                        f"{spec.attr}")
    # one module per file per process (a second build reuses it: the same classes, and its code runs once)
    name = f"svbench_user_model_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise UserError(f"model {spec.text!r}: {spec.target} cannot be imported as Python source")
    module = importlib.util.module_from_spec(loader_spec)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # as `python FILE` runs it: its sibling modules import
    sys.modules[name] = module  # before it runs: dataclasses and pickling look the module up
    try:
        with torch.device("cpu"):  # not the meta device of a shape pass: a module-level instance is built for real
            loader_spec.loader.exec_module(module)
    except BaseException as e:
        del sys.modules[name]
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        raise UserError(f"model {spec.text!r}: importing {spec.target} failed: {type(e).__name__}: "
                        f"{first_line(e)} (--debug for the traceback)") from e
    return module


@contextlib.contextmanager
def current_folder_importable() -> Iterator[None]:
    """The current folder on ``sys.path`` (after the installed packages) while the block runs, as ``python -m`` and
    ``python script.py`` have it and the ``svbench`` console script does not; put back as it was afterwards. For
    a module spec, and for unpickling a model whose class lives in the folder it was saved from."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _import_module(spec: ImportSpec) -> ModuleType:
    try:
        # as for a file: module-level instances are real, whoever imports first
        with current_folder_importable(), torch.device("cpu"):
            return importlib.import_module(spec.target)
    except ModuleNotFoundError as e:
        if e.name and spec.target.split(".")[0] == e.name.split(".")[0] and spec.target.startswith(e.name):
            raise UserError(f"model {spec.text!r}: no module {e.name!r} (from the current folder or the installed "
                            f"packages); for a file write path/to/file.py:{spec.attr}") from None
        raise UserError(f"model {spec.text!r}: importing {spec.target} failed: {type(e).__name__}: "
                        f"{first_line(e)}") from e
    except Exception as e:  # noqa: BLE001 - the user's module raised while importing
        raise UserError(f"model {spec.text!r}: importing {spec.target} failed: {type(e).__name__}: "
                        f"{first_line(e)} (--debug for the traceback)") from e


def resolve(spec: ImportSpec) -> Any:
    """The object the spec names (imported, not called)."""
    module = _import_file(spec) if spec.is_file else _import_module(spec)
    obj: Any = module
    for part in spec.attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n, v in vars(module).items() if not n.startswith("_") and (
                isinstance(v, nn.Module) or (isinstance(v, type) and issubclass(v, nn.Module))))
            hint = f"; its nn.Module classes: {', '.join(names[:8])}" if names else ""
            raise UserError(f"model {spec.text!r}: {spec.target} has no {spec.attr!r}{hint}")
        obj = getattr(obj, part)
    return obj


def _checked(spec: ImportSpec) -> Any:
    obj = resolve(spec)
    if isinstance(obj, nn.Module):
        if spec.called:
            raise UserError(f"model {spec.text!r}: {spec.attr} is an nn.Module instance, not a class or factory; "
                            f"drop the arguments")
    elif not callable(obj):
        raise UserError(f"model {spec.text!r}: {spec.attr} is a {type(obj).__name__}, not an nn.Module, a class or "
                        f"a factory")
    return obj


def check_imported(name: str) -> None:
    """Raise the one-line UserError :func:`build_imported` would for a bad spec, a missing file, module or name
    (importing runs the module's code; nothing is built)."""
    _checked(parse_spec(name))


def build_imported(name: str, **svbench_kwargs: Any) -> nn.Module:
    """The model an import spec names: its class or factory called with the spec's arguments, the other keyword
    arguments given (a train task's ``model_args``) and those of :data:`SVBENCH_KWARGS` its signature names and the
    spec does not set; or a copy of the nn.Module instance it names (nothing passed)."""
    spec = parse_spec(name)
    obj = _checked(spec)
    if isinstance(obj, nn.Module):
        given = sorted(k for k in svbench_kwargs if k not in SVBENCH_KWARGS)
        if given:
            raise UserError(f"model {name!r}: {spec.attr} is an nn.Module instance; it takes no model_args "
                            f"({', '.join(given)}): name its class or a factory instead")
        return copy.deepcopy(obj)  # a fresh one per build: loading weights into it leaves the module's own alone
    kwargs = dict(spec.kwargs)
    for key, value in svbench_kwargs.items():  # a suite's model_args: passed as given
        if key in SVBENCH_KWARGS:
            continue
        if key in kwargs:
            raise UserError(f"model {name!r}: {key} is set both in the spec and in model_args; set it in one place")
        kwargs[key] = value
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        params = {}
    names = list(params)
    for key in SVBENCH_KWARGS:  # offered: only to a signature that names them, where the spec leaves them open
        if key in params and key not in kwargs and svbench_kwargs.get(key) is not None and not (
                params[key].kind is inspect.Parameter.POSITIONAL_ONLY or len(spec.args) > names.index(key)):
            kwargs[key] = svbench_kwargs[key]
    call = f"{spec.attr}({', '.join([*map(repr, spec.args), *(f'{k}={v!r}' for k, v in kwargs.items())])})"
    try:
        model = obj(*spec.args, **kwargs)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - the user's code raised
        if isinstance(e, NotImplementedError | RuntimeError) and _on_meta():
            raise  # the meta-device shape pass retries on the CPU (a builder that computes with tensors)
        raise UserError(f"model {name!r}: {call} raised {type(e).__name__}: {first_line(e)} (--debug for the "
                        f"traceback)") from e
    if not isinstance(model, nn.Module):
        raise UserError(f"model {name!r}: {call} returned a {type(model).__name__}, not an nn.Module")
    return model


def _on_meta() -> bool:
    return torch.empty(0).device.type == "meta"
