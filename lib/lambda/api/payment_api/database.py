"""A database connection: where it is (environment, one set of settings per side), who we are (the
payment_app role's secret), and one connection kept across invocations of a warm Lambda and
re-established when it breaks. Which side to use is payment_api.writer's business."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
from aws_lambda_powertools import Logger

from payment_api.errors import ConfigurationError, DatabaseUnavailable, PrivilegeRefused, WriterFenced

T = TypeVar("T")
logger = Logger(service="payment-api", child=True)

# TLS is not optional: only modes that refuse a plaintext connection are accepted. The default,
# verify-full, also checks the server's certificate and name; "require" (encrypted, server not
# verified) only when DB_SSLMODE says so.
TLS_SSLMODES = ("require", "verify-ca", "verify-full")
DEFAULT_SSLMODE = "verify-full"
# The Amazon RDS CA bundle lib/bundler.py puts at the zip's root (certs/), beside this package:
# what verify-ca / verify-full trust when no DB_SSLROOTCERT / <prefix>SSLROOTCERT names a file.
RDS_CA_BUNDLE = str(Path(__file__).resolve().parents[1] / "certs" / "rds-global-bundle.pem")
APPLICATION_NAME = "payment-api"
# schema/roles.sql: the group role the application roles write through; the fence revokes it.
WRITER_GROUP = "payment_writer"


@dataclass(frozen=True)
class DatabaseSettings:
    secret_arn: str
    host: str
    dbname: str
    port: int = 5432
    sslmode: str = DEFAULT_SSLMODE
    sslrootcert: str | None = RDS_CA_BUNDLE  # CA bundle for verify-ca / verify-full
    connect_timeout_seconds: int = 3
    statement_timeout_ms: int = 5000

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ, prefix: str = "DB_") -> DatabaseSettings:
        """<prefix>SECRET_ARN, <prefix>HOST and <prefix>NAME are required, <prefix>PORT is optional
        (prefix ONPREM_DB_ or AURORA_DB_); shared by both sides and optional: DB_SSLMODE (default
        verify-full), DB_SSLROOTCERT (overridden per side by <prefix>SSLROOTCERT: the on-prem server's
        CA is not the RDS one; default for verify-ca / verify-full: the RDS CA bundle in the zip),
        DB_CONNECT_TIMEOUT (seconds) and DB_STATEMENT_TIMEOUT_MS."""

        def required(name: str) -> str:
            value = environ.get(name, "").strip()
            if not value:
                raise ConfigurationError(f"configuration incomplete: {name} is not set")
            return value

        def integer(name: str, default: int) -> int:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or int(raw) <= 0:
                raise ConfigurationError(f"configuration invalid: {name} must be a positive integer")
            return int(raw)

        sslmode = environ.get("DB_SSLMODE", "").strip() or DEFAULT_SSLMODE
        if sslmode not in TLS_SSLMODES:
            raise ConfigurationError(f"configuration invalid: DB_SSLMODE must be one of {', '.join(TLS_SSLMODES)}")
        sslrootcert = (environ.get(f"{prefix}SSLROOTCERT", "").strip() or environ.get("DB_SSLROOTCERT", "").strip()
                       or (RDS_CA_BUNDLE if sslmode.startswith("verify-") else None))
        return cls(
            secret_arn=required(f"{prefix}SECRET_ARN"),
            host=required(f"{prefix}HOST"),
            port=integer(f"{prefix}PORT", cls.port),
            dbname=required(f"{prefix}NAME"),
            sslmode=sslmode,
            sslrootcert=sslrootcert,
            connect_timeout_seconds=integer("DB_CONNECT_TIMEOUT", cls.connect_timeout_seconds),
            statement_timeout_ms=integer("DB_STATEMENT_TIMEOUT_MS", cls.statement_timeout_ms),
        )


class Database:
    """Hands out one live connection. Credentials are read from Secrets Manager on first use and
    again after a failed connect (the RDS-managed password may have rotated)."""

    def __init__(self, settings: DatabaseSettings, secrets_client: Any = None) -> None:
        self.settings = settings
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
        settings = self.settings
        try:
            return psycopg2.connect(
                host=settings.host,
                port=settings.port,
                dbname=settings.dbname,
                user=user,
                password=password,
                sslmode=settings.sslmode,
                sslrootcert=settings.sslrootcert,
                connect_timeout=settings.connect_timeout_seconds,
                application_name=APPLICATION_NAME,
                options=f"-c statement_timeout={settings.statement_timeout_ms}",
                keepalives=1,
                keepalives_idle=30,
            )
        except psycopg2.OperationalError as exc:
            # Forget the credentials so the next attempt re-reads a possibly rotated secret.
            self._credentials = None
            # psycopg2's message names host and user, never the password; log it, answer generically.
            logger.error("cannot connect to the database", extra={"host": settings.host, "port": settings.port,
                                                                   "detail": str(exc).strip()})
            raise DatabaseUnavailable("database unreachable") from exc

    def _read_credentials(self) -> tuple[str, str]:
        if self._credentials is None:
            self._credentials = self._fetch_credentials()
        return self._credentials

    def _fetch_credentials(self) -> tuple[str, str]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._secrets().get_secret_value(SecretId=self.settings.secret_arn)
        except (BotoCoreError, ClientError) as exc:
            logger.error("cannot read the database secret", extra={"error": type(exc).__name__,
                                                                   "secret_arn": self.settings.secret_arn})
            raise DatabaseUnavailable("database credentials unavailable") from exc
        try:
            secret = json.loads(response["SecretString"])
            return str(secret["username"]), str(secret["password"])
        except (KeyError, TypeError, ValueError):
            # Say nothing about the content: it is a secret.
            raise DatabaseUnavailable("database secret is not JSON with username and password") from None

    def _secrets(self):
        if self._secrets_client is None:
            import boto3  # in the Lambda runtime; imported on first use to keep cold start short

            self._secrets_client = boto3.client("secretsmanager")
        return self._secrets_client

    def _discard(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
            self._conn = None
