"""Domain errors. The class name is the error name Step Functions sees (`errorType`), so a state
machine can Retry or Catch by it; the message says what is wrong and what to check.

Retryable (the state machine retries the step): ReplicationBehind, SwitchPending, and the shared
runtime's DatabaseUnavailable and AwsUnavailable (payment_common.errors, with ConfigurationError: the
same in every function). Not retryable (the state machine aborts): everything else; LeaseHeld and LeaseLost change nothing in
Abort (it needs the lease too), and FenceBreached leaves both sides fenced."""

from __future__ import annotations

from payment_common.errors import MigrationError


class CutoverError(MigrationError):
    """Base class of every error a step raises on purpose."""


class InvalidEvent(CutoverError):
    """The event is not one the step Lambda accepts; nothing was changed."""


class WriterMismatch(CutoverError):
    """The writer parameter does not name the side the step expects."""


class FenceIncomplete(CutoverError):
    """A side that must be fenced is open (or its fence could not be completed)."""


class ReplicationNotRunning(CutoverError):
    """The replication direction the step needs is not running, or cannot be proven caught up."""


class ReplicationLoop(CutoverError):
    """Both directions run at once: each replicates the other's changes back. Stop one by hand."""


class ReplicationBehind(CutoverError):
    """The marker has not reached the new writer within this invocation's bound. Retryable."""

    retryable = True


class SwitchPending(CutoverError):
    """A replication task or worker has not reached the state the switch waits for within this
    invocation's bound (stopping, starting, a slot still in use). Retryable: the step resumes."""

    retryable = True


class SequenceError(CutoverError):
    """A sequence cannot be advanced safely (e.g. a descending sequence)."""


class FenceBreached(CutoverError):
    """A change reached a replicated table on a fenced side after its fence (the witness saw it), or
    the witness that should prove otherwise is gone. Both sides stay fenced; never retried."""


class LeaseHeld(CutoverError):
    """Another execution holds the switch lease: one switch at a time. Nothing was changed."""


class LeaseLost(CutoverError):
    """This invocation's lease was taken over (a retried invoke, another execution, a rollback):
    it stops before its next change."""


class RoutingNotSettled(CutoverError):
    """A legacy on-prem application writes to its own database whoever is the writer: the data
    cutover starts only with all traffic on the new writer's side. Nothing was changed."""
