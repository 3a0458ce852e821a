"""The one error hierarchy of edgekit, each class mapped to a process exit code.

Library code raises these; only the CLI turns them into a one-line message and
an exit code. Every error carries a ``hint`` telling the user what to do.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base class: a problem the user can act on. ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.one_line()

    def one_line(self) -> str:
        """The message and hint as a single line, as the CLI prints it."""
        return f"{self.message}" + (f" ({self.hint})" if self.hint else "")


class InputError(EdgekitError):
    """A missing, unreadable or malformed input file, or a bad option value (exit 2)."""

    exit_code = 2


class BudgetError(EdgekitError):
    """The model does not fit the target's flash or RAM (exit 3)."""

    exit_code = 3


class UnsupportedOpError(EdgekitError):
    """The model uses an op the chosen runtime cannot run (exit 4)."""

    exit_code = 4


class ConversionError(EdgekitError):
    """The TFLite converter or a compression stage failed (exit 5)."""

    exit_code = 5


class VerificationError(EdgekitError):
    """A verification step produced outputs that break a promise (exit 6)."""

    exit_code = 6


class ToolchainError(EdgekitError):
    """An external tool (cross-compiler, QEMU, linker) is missing or failed (exit 7)."""

    exit_code = 7
