"""Errors a user can fix.

A :class:`UserError` carries one line that says what was wrong and what to do. The CLI prints that line and
exits with code 2 (no traceback unless ``--debug``). Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message is one line, shown to the user as is."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message.strip().replace("\n", " "))


class CellInputError(UserError):
    """Bad input found while running one cell of a suite; the cells finished before it are saved in ``run_dir``."""

    def __init__(self, message: str, run_dir: object) -> None:
        super().__init__(message)
        self.run_dir = run_dir


class UnsupportedShape(UserError):
    """A method cannot handle a layer shape (stride, padding, groups, dilation); cells are skipped, not crashed."""


def out_of_memory_message(exc: BaseException) -> str | None:
    """One line if ``exc`` is an allocation failure (host or CUDA), else None.

    torch reports a failed host allocation as a RuntimeError ("DefaultCPUAllocator: can't allocate memory: you
    tried to allocate N bytes"), not as MemoryError; CUDA as ``torch.cuda.OutOfMemoryError``.
    """
    import re

    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "CUDA out of memory"
    text = str(exc)
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "can't allocate memory" in text):
        m = re.search(r"allocate (\d+) bytes", text)
        return "host out of memory" + (f" (tried to allocate {int(m.group(1)) / 2**30:.1f} GiB)" if m else "")
    return None


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, without terminal colour codes, cut to ``limit`` characters (its
    type's name when the message is empty): what a one-line error quotes of a library's error."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
    return text[0][:limit] if text else type(e).__name__
