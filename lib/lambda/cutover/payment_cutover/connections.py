"""Connections for one invocation: the controller role on each side (credentials from Secrets Manager),
and for the postgres-logical driver the subscription managers and publisher connection strings."""

from __future__ import annotations

from contextlib import ExitStack, closing
from typing import Any

from payment_common.database import CredentialCache, DatabaseSettings
from payment_common.errors import MigrationError
from payment_cutover.postgres_logical import conninfo
from payment_cutover.settings import Settings

APPLICATION_NAME = "payment-cutover"
# ALTER ROLE waits for no one for long; a stuck statement is a fault to report, not to wait out. An
# invocation frozen or killed with a session open (it may hold the switch mutex, an advisory lock:
# payment_cutover.control) loses that session after idle_session_timeout.
SESSION_OPTIONS = ("-c statement_timeout=60000 -c lock_timeout=5000 -c idle_in_transaction_session_timeout=60000 "
                   "-c idle_session_timeout=120000")


# Kept across the invocations of a warm function: a step reads four to six secrets otherwise.
CREDENTIALS = CredentialCache()


def connect_as(side: DatabaseSettings, secrets: Any, secret_arn: str):
    """An autocommit session on `side` as the role of `secret_arn`."""
    conn = CREDENTIALS.connect(side, secrets, secret_arn, application_name=APPLICATION_NAME, options=SESSION_OPTIONS)
    conn.autocommit = True
    return conn


def open_connections(settings: Settings, secrets: Any, stack: ExitStack) -> tuple[dict, dict, dict]:
    """(controller connections, subscription-admin connections, publisher conninfos) per side; every
    connection is closed when `stack` closes."""
    controller, admin, publishers = {}, {}, {}
    for name, side in settings.sides.items():
        controller[name] = stack.enter_context(closing(connect_as(side, secrets, side.secret_arn)))
        if settings.driver != "postgres-logical":
            continue
        admin[name] = controller[name]
        if side.subscription_secret_arn:
            admin[name] = stack.enter_context(closing(connect_as(side, secrets, side.subscription_secret_arn)))
        publisher_user, publisher_password = CREDENTIALS.read(secrets, side.replication_secret_arn)
        publishers[name] = conninfo(host=side.host, port=side.port, dbname=side.dbname, user=publisher_user,
                                    password=publisher_password, sslmode=side.sslmode, sslrootcert=side.sslrootcert)
    return controller, admin, publishers



def open_controller_connections(settings: Settings, secrets: Any, stack: ExitStack) -> tuple[dict, dict[str, str]]:
    """The controller role's connection to each side that can be reached, and why the others cannot
    (publish_metrics measures what it can)."""
    connections, errors = {}, {}
    for name, side in settings.sides.items():
        try:
            connections[name] = stack.enter_context(closing(connect_as(side, secrets, side.secret_arn)))
        except MigrationError as error:
            errors[name] = f"{type(error).__name__}: {error}"
    return connections, errors
