"""A database connection: where it is and who we are (payment_common.database: one set of settings
per side, the payment_app role's secret), and one connection kept across invocations of a warm
Lambda and re-established when it breaks. Which side to use is payment_api.writer's business."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
from aws_lambda_powertools import Logger

from payment_api.errors import DatabaseUnavailable, PrivilegeRefused, WriterFenced
from payment_common.aws import client_config
from payment_common.database import DatabaseSettings, connect, read_credentials
from payment_common.errors import ConfigurationError, MigrationError

T = TypeVar("T")
logger = Logger(service="payment-api", child=True)

APPLICATION_NAME = "payment-api"
# schema/roles.sql: the group role the application roles write through; the fence revokes it.
WRITER_GROUP = "payment_writer"
DEFAULT_CONNECT_TIMEOUT_SECONDS = 3
DEFAULT_STATEMENT_TIMEOUT_MS = 5000
# A request waits on these calls: a few seconds' bound, not botocore's default minute.
AWS_CLIENT_CONFIG = client_config(total_max_attempts=2)


class Database:
    """Hands out one live connection. Credentials are read from Secrets Manager on first use and
    again after a failed connect (the RDS-managed password may have rotated)."""

    def __init__(self, settings: DatabaseSettings, secrets_client: Any = None, *,
                 statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS) -> None:
        self.settings = settings
        self.statement_timeout_ms = statement_timeout_ms
        self._secrets_client = secrets_client
        self._credentials: tuple[str, str] | None = None
        self._conn = None

    def run(self, operation: Callable[[Any], T], *, write: bool = False) -> T:
        """Call `operation(connection)`. If a kept connection turns out to be broken (the server
        restarted, a failover, an idle timeout), reconnect and call it once more: every operation
        of the core is a single transaction that is safe to repeat (create is idempotent by key).
        `write`: the operation writes, so a refusal for lack of privilege may be the fence (its
        privilege part): the role's payment_writer membership is checked and reported."""
        conn, reused = self._connection()
        try:
            return operation(conn)
        except psycopg2.errors.ReadOnlySqlTransaction as exc:
            raise WriterFenced() from exc
        except psycopg2.errors.InsufficientPrivilege as exc:
            raise self._privilege_refused(conn, exc, write) from exc
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            if not conn.closed:
                # The connection still works: the statement failed (e.g. statement timeout).
                raise DatabaseUnavailable(f"database query failed ({type(exc).__name__})") from exc
            self._discard()
            if not reused:
                if isinstance(exc, psycopg2.errors.AdminShutdown):  # ended by a fence (or an operator)
                    raise WriterFenced() from exc
                raise DatabaseUnavailable("database connection lost") from exc
            logger.warning("kept database connection was broken; reconnecting", extra={"error": type(exc).__name__})
        conn, _ = self._connection()
        try:
            return operation(conn)
        except psycopg2.errors.ReadOnlySqlTransaction as exc:
            raise WriterFenced() from exc
        except psycopg2.errors.InsufficientPrivilege as exc:
            raise self._privilege_refused(conn, exc, write) from exc
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            if conn.closed:
                self._discard()
                if isinstance(exc, psycopg2.errors.AdminShutdown):
                    raise WriterFenced() from exc
            raise DatabaseUnavailable(f"database query failed ({type(exc).__name__})") from exc

    def _privilege_refused(self, conn, exc: psycopg2.Error, write: bool) -> PrivilegeRefused:
        """What the refusal means: on a write, whether this role still has payment_writer (the fence
        revokes it; schema/roles.sql). The operation's transaction was rolled back already."""
        detail = (getattr(exc, "diag", None) and exc.diag.message_primary) or type(exc).__name__
        member = None
        if write:
            try:
                with conn, conn.cursor() as cur:
                    cur.execute("SELECT pg_has_role(current_user, to_regrole(%s), 'MEMBER')", (WRITER_GROUP,))
                    member = cur.fetchone()[0]  # NULL when the role does not exist (roles.sql before version 2)
            except psycopg2.Error as probe_error:
                ended = conn.closed or isinstance(probe_error, psycopg2.errors.AdminShutdown)
                logger.warning("cannot check payment_writer membership after a refused write",
                               extra={"error": type(probe_error).__name__, "session_ended": ended})
                if conn.closed:
                    self._discard()
                if not ended:
                    raise DatabaseUnavailable(f"database query failed ({type(probe_error).__name__})") from exc
                # The fence revokes, then ends the sessions: this one was ended right after its refusal.
                return PrivilegeRefused(write=write, writer_member=None, detail=detail, session_ended=True)
        return PrivilegeRefused(write=write, writer_member=member, detail=detail)

    def close(self) -> None:
        self._discard()

    def _connection(self) -> tuple[Any, bool]:
        if self._conn is not None and not self._conn.closed:
            return self._conn, True
        self._conn = self._connect()
        return self._conn, False

    def _connect(self):
        user, password = self._read_credentials()
        try:
            return connect(self.settings, user, password, application_name=APPLICATION_NAME,
                           options=f"-c statement_timeout={self.statement_timeout_ms}", keepalives=1,
                           keepalives_idle=30)
        except MigrationError as exc:
            # Forget the credentials so the next attempt re-reads a possibly rotated secret.
            self._credentials = None
            # The message names host and user, never the password; log it, answer generically.
            logger.error("cannot connect to the database", extra={"detail": str(exc)})
            raise DatabaseUnavailable("database unreachable") from exc

    def _read_credentials(self) -> tuple[str, str]:
        if self._credentials is None:
            try:
                self._credentials = read_credentials(self._secrets(), self.settings.secret_arn)
            except MigrationError as exc:
                logger.error("cannot read the database secret", extra={"detail": str(exc),
                                                                       "secret_arn": self.settings.secret_arn})
                # Say nothing about the secret to the caller; retryable or not, as the runtime decided.
                if exc.retryable:
                    raise DatabaseUnavailable("database credentials unavailable") from exc
                raise ConfigurationError("database credentials unavailable") from exc
        return self._credentials

    def _secrets(self):
        if self._secrets_client is None:
            import boto3  # in the Lambda runtime; imported on first use to keep cold start short

            self._secrets_client = boto3.client("secretsmanager", config=AWS_CLIENT_CONFIG)
        return self._secrets_client

    def _discard(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
            self._conn = None
