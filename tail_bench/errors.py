"""Errors a user can fix: the CLI prints them as one line. Anything else is a bug (or an
error inside a plugin) and keeps its traceback."""

from __future__ import annotations


class TailBenchError(Exception):
    """Base of every error whose message tells the user what to change."""


class ConfigError(TailBenchError, ValueError):
    """A bad option value; the message names the option and what is expected."""


class DataError(TailBenchError, ValueError):
    """Bad data under --data-root (or a bad cache of it); the message names file and row."""


class BackboneError(TailBenchError, ValueError):
    """A checkpoint directory that cannot be used; the message names the file."""


class RunFileError(TailBenchError, ValueError):
    """A run directory or run file that cannot be read; the message names the file."""


class Diverged(TailBenchError):
    """A method's loss or embeddings became non-finite; the run goes on with the next one."""

    def __init__(self, message: str, **where: int | str) -> None:
        super().__init__(message)
        self.where = where


class Interrupted(TailBenchError):
    """Ctrl-C during a run: the finished steps are on disk."""


class WriteFailed(TailBenchError):
    """A run's file could not be written (a full disk, a read-only mount): the method is
    `interrupted` and its finished steps are on disk."""
