"""The project's exception tree.

Borrowed from kopf: an error is either *temporary* (retry later) or *permanent* (retrying
the same thing cannot help; report it and move on).
Sources and targets map their library's exceptions onto these so the reconciler never
has to know about aiohttp, requests or Docker error shapes (the httpx habit).

Every exception class of the three programs derives from ``AutoscalerError``: the settings'
``SettingsError``, the IPVS agent's ``IpvsFormatError``/``NetlinkError``/``IpvsUnavailableError``
and the lab's ``LabError`` (each keeps its builtin base too: ValueError, OSError, RuntimeError).
"""

from __future__ import annotations


class AutoscalerError(Exception):
    """Base of every error this project raises on purpose."""


class TemporaryError(AutoscalerError):
    """Retrying later may succeed (network blip, 5xx, version conflict)."""


class PermanentError(AutoscalerError):
    """Retrying the same call cannot succeed (bad query, unknown service, 4xx)."""


class PolicyError(PermanentError):
    """A policy file or document is invalid. ``problems`` lists every error found."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class SourceError(AutoscalerError):
    """A metric source failed. Subclassed by temporary/permanent below."""


class TemporarySourceError(SourceError, TemporaryError):
    pass


class PermanentSourceError(SourceError, PermanentError):
    pass


class TargetError(AutoscalerError):
    """The scaling target (Swarm) failed."""


class TemporaryTargetError(TargetError, TemporaryError):
    pass


class PermanentTargetError(TargetError, PermanentError):
    pass


class VersionConflictError(TemporaryTargetError):
    """The service spec changed between read and update (Swarm's Version.Index CAS)."""
