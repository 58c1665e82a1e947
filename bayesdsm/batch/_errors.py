"""The batch layer's exception."""

from __future__ import annotations

from bayesdsm.errors import BayesDSMError

__all__ = ["BatchError"]


class BatchError(BayesDSMError, RuntimeError):
    """A batch run cannot start or go on (scheduler unreachable, foreign output directory).

    Attributes:
        failures: ``(partition name, reason)`` pairs, when the error is about partitions.
    """

    def __init__(self, message: str, *, failures=()):
        super().__init__(message)
        self.failures = tuple(failures)
