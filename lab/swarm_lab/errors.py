"""The lab's single error type: a step failed, with enough context to fix it."""

from __future__ import annotations

from autoscaler.errors import AutoscalerError


class LabError(AutoscalerError, RuntimeError):
    """A lab step failed. The message says which step, why, and (when known) how to fix it."""
