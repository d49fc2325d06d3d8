"""The errors every function shares, and the one rule they follow: `retryable` says whether trying
again later may succeed. The class name is what Lambda reports as the error type, so a state
machine can Retry or Catch by it (lib/workflows/cutover.py retries the retryable ones).

Not retryable: ConfigurationError (the environment, a secret's content, the writer parameter is
missing or malformed: a human fixes the deployment). Retryable: DatabaseUnavailable (a database
cannot be reached or a statement failed on a transient error), AwsUnavailable (an AWS API call
failed after the client's own bounded retries: throttling, 5xx, the network)."""

from __future__ import annotations


class MigrationError(Exception):
    """Base class of every error a function raises on purpose; the message says what to check."""

    retryable = False


class ConfigurationError(MigrationError):
    """The function's environment, a secret it names or the writer parameter is incomplete or
    malformed. Nothing was changed; retrying cannot cure it."""


class Unavailable(MigrationError):
    """Something the function depends on cannot be reached right now. Retryable."""

    retryable = True


class DatabaseUnavailable(Unavailable):
    """A database could not be reached or a statement failed on a transient error. Retryable."""


class AwsUnavailable(Unavailable):
    """An AWS API call failed after the client's own bounded retries. Retryable."""


def describe_aws_error(error: BaseException) -> str:
    """One line for an answer or a log: the AWS operation, code and message for a ClientError, the
    exception type and message for anything else."""
    response = getattr(error, "response", None)
    if isinstance(response, dict) and hasattr(error, "operation_name"):
        details = response.get("Error", {})
        return f"{error.operation_name} {details.get('Code', 'error')}: {details.get('Message', error)}"
    return f"{type(error).__name__}: {error}"
