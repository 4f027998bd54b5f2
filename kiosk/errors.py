"""The one family of errors meant for people: a message, a hint, an exit code.

The CLI and the UI print these; nothing else does. Anything else that escapes
is a bug and is reported as such (with a traceback only under ``--debug``).
"""

from __future__ import annotations


class KioskError(Exception):
    """An error a user can act on. ``exit_code`` 1: the operation failed."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(KioskError):
    """Wrong command line or settings: exit code 2."""

    exit_code = 2


class ConfigError(UsageError):
    """One or more problems in the configuration file, one line each."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__("\n".join(head + p for p in problems))
