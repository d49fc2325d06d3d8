"""Domain errors of the rollback. Each message says what is wrong and what to check."""

from __future__ import annotations


class RollbackError(Exception):
    """Base class: anything that stops the rollback from doing its job."""


class InvalidEventError(RollbackError):
    """The invocation payload is not one the rollback accepts."""


class ConfigurationError(RollbackError):
    """The environment the stack sets on the function is incomplete or inconsistent."""


class RecordSetNotFoundError(RollbackError):
    """The weighted record set, or one of its two members, does not exist in the hosted zone."""


class RecordSetNotWeightedError(RollbackError):
    """A member exists but is not a weighted record, so there is no weight to shift."""


class TrafficShiftError(RollbackError):
    """Route 53 did not accept the change, and the records do not show the rollback weights."""


class IgnoredEvent(Exception):
    """An SNS message that must not trigger a rollback (an OK transition, the function's own
    notification coming back through the topic). Not an error: the invocation does nothing."""
