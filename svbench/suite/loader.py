"""Load and validate suite YAML files; every problem is one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

import svbench
from svbench._validate import from_mapping
from svbench.errors import UserError
from svbench.methods import METHODS
from svbench.suite.schema import TASK_KINDS, Suite, TrainTask


def suites_dir() -> Path:
    """The ``suites/`` folder of the svbench checkout (installed with ``pip install -e`` or run from source)."""
    return Path(svbench.__file__).resolve().parent.parent / "suites"


def available_suites() -> list[str]:
    d = suites_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def resolve_suite_path(name_or_path: str) -> Path:
    """A path to a YAML file, or the name of a bundled suite (``default``, ``smoke``, ...)."""
    if not str(name_or_path).strip():  # Path('') is the current folder
        raise UserError("the suite name is empty; pass a suite YAML file or a bundled suite name (svbench ls suites)")
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.exists():
        raise UserError(f"{p} is not a file; pass a suite YAML file or a bundled suite name")
    if p.suffix not in (".yaml", ".yml") and "/" not in name_or_path:
        cand = suites_dir() / f"{name_or_path}.yaml"
        if cand.is_file():
            return cand
        raise UserError(
            f"unknown suite {name_or_path!r}; pass a YAML file or one of: {', '.join(available_suites()) or '(none)'}"
        )
    raise UserError(f"suite file not found: {p}")


def load_suite(name_or_path: str) -> Suite:
    path = resolve_suite_path(name_or_path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read suite file {path}: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}: malformed YAML{where}: {problem}") from None
    return parse_suite(data, str(path))


def parse_suite(data: Any, where: str) -> Suite:
    if not isinstance(data, dict):
        raise UserError(f"{where}: a suite must be a mapping with keys name, tasks, ...; got {type(data).__name__}")
    data = dict(data)
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list):
        raise UserError(f"{where}: key 'tasks' must be a list of task mappings")
    tasks = []
    for i, t in enumerate(raw_tasks):
        tw = f"{where}: tasks[{i}]"
        if not isinstance(t, dict):
            raise UserError(f"{tw}: expected a mapping, got {t!r}")
        kind = t.get("kind", "sv")
        if not isinstance(kind, str) or kind not in TASK_KINDS:
            raise UserError(f"{tw}.kind: unknown task kind {kind!r}; allowed: {', '.join(TASK_KINDS)}")
        task = from_mapping(TASK_KINDS[kind], t, tw)
        _check_methods(task, tw)
        _check_models(task, tw)
        tasks.append(task)
    data["tasks"] = tasks
    return from_mapping(Suite, data, where)


def _check_models(task: Any, where: str) -> None:
    """Every model name a task builds exists (was: found by the cell that builds it, after the cells before it ran).
    Network tasks also take ``torchvision:NAME``; train tasks svbench's own models (they normalise inside). Both take
    a researcher's own, ``FILE.py:NAME`` / ``MODULE:NAME`` (imported here: a missing file or name is found now)."""
    from svbench.models import check_model_name
    from svbench.models.torchvision_models import is_torchvision

    names = [(f"{where}.models[{i}]", m) for i, m in enumerate(getattr(task, "models", []))]
    if isinstance(task, TrainTask):
        names.append((f"{where}.model", task.model))
    for at, name in names:
        if isinstance(task, TrainTask) and is_torchvision(name):
            raise UserError(f"{at}: train tasks take svbench's models (svbench ls models), which normalise their "
                            f"inputs inside; {name!r} works in network tasks and spectrum --model")
        try:
            check_model_name(name)
        except UserError as e:
            raise UserError(f"{at}: {e}") from None


def _check_methods(task: Any, where: str) -> None:
    if isinstance(task.methods, list):
        for i, m in enumerate(task.methods):
            if m not in METHODS:
                raise UserError(f"{where}.methods[{i}]: {METHODS.unknown_message(m)}")
    for i, name in enumerate(getattr(task, "profile", [])):
        if name not in METHODS:
            raise UserError(f"{where}.profile[{i}]: {METHODS.unknown_message(name)}")
        if isinstance(task.methods, list) and name not in task.methods:
            raise UserError(f"{where}.profile[{i}]: {name!r} is not one of this task's methods "
                            f"({', '.join(task.methods)}); profile names methods the task runs")
    for name, configs in getattr(task, "variants", {}).items():
        if name not in METHODS:
            raise UserError(f"{where}.variants: {METHODS.unknown_message(name)}")
        for j, cfg in enumerate(configs):
            METHODS.get(name).from_options(cfg, f"{where}.variants.{name}[{j}]")


def select_methods(spec: str | list[str] | None, task_methods: str | list[str] = "all", *,
                   flag: str = "--methods") -> list[str]:
    """Method names from a CLI value ('all' or 'a,b'; ``flag`` names the option in messages) or, if None, the
    task's own list."""
    if spec is None:
        spec = task_methods
    if isinstance(spec, str):
        if spec.strip() == "all":
            return METHODS.names()
        spec = [s.strip() for s in spec.split(",") if s.strip()]
        if not spec:
            raise UserError(f"{flag} is empty; pass 'all' or a comma-separated list of methods")
        if "all" in spec:
            raise UserError(f"{flag} {','.join(spec)}: 'all' stands alone (every method); pass 'all' or a list "
                            "of methods")
    for m in spec:
        if m not in METHODS:
            raise UserError(f"{flag}: {METHODS.unknown_message(m)}")
    return list(dict.fromkeys(spec))
