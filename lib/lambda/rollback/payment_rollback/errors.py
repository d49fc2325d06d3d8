"""Domain errors of the rollback and traffic handlers. Each message says what is wrong and what to
check.

The class names are part of the contract: when a handler raises, Lambda reports the class name as
the error type, and Step Functions matches it in `Retry`/`Catch` (`ErrorEquals`). Errors a retry
can cure (AwsUnavailable, TrafficShiftError) are kept apart from those it cannot (InvalidEventError,
ConfigurationError — a malformed writer parameter too —, RecordSetNotFoundError,
RecordSetNotWeightedError, AlarmNotFoundError). ConfigurationError and AwsUnavailable are the shared
runtime's (payment_common.errors), the same in every function.
"""

from __future__ import annotations

from payment_common.errors import MigrationError, describe_aws_error


class RollbackError(MigrationError):
    """Base class: anything that stops the rollback or a traffic step from doing its job."""


class InvalidEventError(RollbackError):
    """The invocation payload is not one the handler accepts. Nothing was changed."""


class RecordSetNotFoundError(RollbackError):
    """The weighted record set, or one of its two members, does not exist in the hosted zone."""


class RecordSetNotWeightedError(RollbackError):
    """A member exists but is not a weighted record, so there is no weight to shift."""


class TrafficShiftError(RollbackError):
    """Route 53 did not accept the change, and the records do not show the requested weights."""

    retryable = True


class AlarmNotFoundError(RollbackError):
    """An alarm named in the function's environment does not exist. Fail safe: an alarm that
    cannot be read is never taken for an alarm that is OK."""


class RollbackIncompleteError(RollbackError):
    """Raised by the rollback handler on an SNS-triggered invocation that ended FAILED, PARTIAL or
    NO_WRITER,
    after the notification went out: the failed invocation makes Lambda retry the event and, once
    every attempt has failed, send it to the dead-letter queue, whose alarm calls a human."""


class IgnoredEvent(Exception):
    """An SNS message that must not trigger a rollback (an OK transition, the function's own
    notification coming back through the topic). Not an error: the invocation does nothing."""


def describe_error(error: BaseException) -> str:
    """One line for an answer or a log: the message alone for a domain error, the AWS operation,
    code and message for a ClientError, the exception type and message for anything else."""
    if isinstance(error, MigrationError):
        return str(error)
    return describe_aws_error(error)
