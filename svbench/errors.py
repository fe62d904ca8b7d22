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


class UnsupportedShape(UserError):
    """A method cannot handle a layer shape (stride, padding, groups, dilation); cells are skipped, not crashed."""
