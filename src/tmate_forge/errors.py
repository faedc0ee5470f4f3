"""The fatal errors of tmate-forge, one class per kind, each with its own exit code.

Every message says what failed, where (file and field), what was expected and what was
found, and ends with the next step to take. `cli.main` catches them once.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'x'?" for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(value, sorted(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class ForgeError(Exception):
    """Base of every error tmate-forge reports to the user instead of a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, tip: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.tip = tip

    def __str__(self) -> str:
        return f"{self.message}\nTIP: {self.tip}" if self.tip else self.message


class UsageError(ForgeError):
    """A command-line argument is wrong, such as an unknown --arch."""

    exit_code = 2


class RecipeError(ForgeError):
    """A recipe file is malformed: unknown key, wrong type or missing field."""

    exit_code = 3


class SourceError(ForgeError):
    """A source could not be found anywhere, or failed its integrity check."""

    exit_code = 4


class PatchError(ForgeError):
    """A patch does not apply strictly to the pinned source."""

    exit_code = 5


class ToolMissingError(ForgeError):
    """A host tool the stage needs is not installed."""

    exit_code = 6


class BuildError(ForgeError):
    """A build step failed; the message carries the tail of its log."""

    exit_code = 7


class VerifyError(ForgeError):
    """A built artifact failed one of its checks (static, no undefined symbols, ...)."""

    exit_code = 8


class SigningKeyError(ForgeError):
    """The package signing key is unreadable, not RSA or too short."""

    exit_code = 11


class BusyError(ForgeError):
    """Another run holds the build folder of the same architecture."""

    exit_code = 10


# Not a ForgeError: an OSError from the file system (an unwritable cache, a file where a
# folder should be), which cli.main reports with its path.
FILE_SYSTEM_EXIT_CODE = 9
