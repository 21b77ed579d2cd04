"""Errors shown to the user as one line, with the exit code each maps to."""

from __future__ import annotations

from cadenza.base.loader import BasePolicyError
from cadenza.project.config import ConfigError


class CadenzaError(Exception):
    """A problem the user can act on (exit code 1 unless set)."""

    exit_code = 1


class NotBuiltError(CadenzaError):
    exit_code = 1


class UsageError(CadenzaError):
    """A flag value that cannot work (exit code 2, like a command-line usage error); the message names the flag."""

    exit_code = 2


class ArtefactError(CadenzaError):
    """A missing, corrupt or tampered artefact (exit code 2): never loaded."""

    exit_code = 2


USER_ERRORS: tuple[type[Exception], ...] = (CadenzaError, ConfigError, BasePolicyError)


def exit_code_for(exc: Exception) -> int:
    if isinstance(exc, (ConfigError, BasePolicyError)):
        return 2
    return getattr(exc, "exit_code", 1)
