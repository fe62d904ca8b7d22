"""The environment stamp every record carries: device name, versions, threads, TF32 flags, git SHA."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import cache
from pathlib import Path

import torch

import svbench


@cache
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def resolve_device(requested: str) -> torch.device:
    """``cpu``, ``cuda[:i]`` or ``auto`` (CUDA when available) as a torch device; one-line errors otherwise."""
    from svbench.errors import UserError

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("CUDA was requested but no GPU is available; use --device cpu")
    if requested.split(":")[0] not in ("cpu", "cuda"):
        raise UserError(f"unknown device {requested!r}; use cpu, cuda or auto")
    return torch.device(requested)


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_name()


@cache
def git_sha() -> str:
    """``SVBENCH_GIT_SHA`` when set, else HEAD of the svbench checkout (with '+dirty' if tracked files changed), or
    'unknown' outside git. The variable wins: a copy of the tree can carry a stale .git (the GPU machine's copy had
    the session's first commit while the tree was a later one, so git answered '<old sha>+dirty')."""
    if os.environ.get("SVBENCH_GIT_SHA"):
        return os.environ["SVBENCH_GIT_SHA"]
    root = Path(svbench.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: torch.device | str) -> dict:
    """Fields stamped on every record (see svbench.results.schema)."""
    device = torch.device(device)
    return {
        "device": device.type,
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "num_threads": torch.get_num_threads(),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "python_version": platform.python_version(),
        "svbench_version": svbench.__version__,
        "git_sha": git_sha(),
    }
