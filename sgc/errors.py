"""Exceptions raised for bad input, each naming the file or value at fault."""

from __future__ import annotations

from pathlib import Path


class SgcError(Exception):
    """Base class of every error sgc raises on purpose."""


class InputFileError(SgcError, ValueError):
    """A file that entered sgc is unreadable or not what its name promises.

    Attributes:
        path: the offending file.
        reason: what is wrong with it, in words.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        # One line, whatever the library that failed said (wcslib's messages run over several).
        self.reason = " ".join(line.strip() for line in reason.splitlines() if line.strip())
        super().__init__(f"{self.path}: {self.reason}")


class OutputFileError(SgcError, OSError):
    """A file sgc could not write (a full disk, no permission); what was there before is kept.

    Attributes:
        path: the file that could not be written.
        reason: why, in words.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
