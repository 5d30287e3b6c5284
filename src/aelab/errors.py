"""Errors a user can act on.

The CLI turns every AelabError into one line on stderr and exit code 2; anything
else is a bug and keeps its traceback.
"""


class AelabError(Exception):
    """Base class: the message is the whole story, shown as one line."""


class ConfigError(AelabError, ValueError):
    """A config key is unknown, mistyped or impossible; the message names the key."""


class DataError(AelabError, ValueError):
    """A data file is missing, damaged or of the wrong shape; the message names the file."""


class RunError(AelabError):
    """A run directory is missing, incomplete or does not match its config."""


class TrainingError(AelabError):
    """Training cannot go on (NaN loss, nothing to train on)."""


def one_line(message: str) -> str:
    """The message as one printable line: control characters (a newline or \\x1e in a file name or a --set
    value, which splitlines() breaks on) are written as escapes, so an error stays one line on stderr."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
