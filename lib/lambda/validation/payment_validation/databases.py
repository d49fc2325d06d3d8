"""Open the source and target connections with credentials from Secrets Manager (payment_common.database:
a secret that cannot be read is ConfigurationError or AwsUnavailable, a server that cannot be reached
DatabaseUnavailable, as in every function)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from payment_common.database import connect, read_credentials

from .config import Settings

APPLICATION_NAME = "payment-validation"


@contextmanager
def open_databases(settings: Settings, secrets_manager, direction: str = "forward") -> Iterator[tuple]:
    """(source, target) connections, closed on exit; `direction` as in Settings.databases."""
    with ExitStack() as stack:
        connections = []
        for database in settings.databases(direction):
            username, password = read_credentials(secrets_manager, database.secret_arn)
            conn = connect(database, username, password, application_name=APPLICATION_NAME)
            stack.callback(conn.close)
            connections.append(conn)
        yield tuple(connections)
