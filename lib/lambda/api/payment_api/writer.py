"""Which database accepts writes: the writer parameter the cutover controller owns (SSM, a JSON
String {"writer": "onprem"|"aws", "epoch": n, ...}), read through a short cache, and one connection
to that side, dropped when the writer changes.

Safety does not rest on the cache being fresh: the side that is not the writer is fenced at the
database, so a stale answer only costs a 503 `writer_fenced`, after which the cache is dropped.
The fence refuses a write in one of two ways (payment_cutover.fence): read_only_sql_transaction
(the read-only default) or, for a session that started before the fence or turned read-only off,
insufficient_privilege (payment_writer revoked). The second is a fence only if this role lost
payment_writer or the writer parameter moved; any other privilege refusal is a missing grant,
answered 500 and logged as such, never turned into a retry."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aws_lambda_powertools import Logger

from payment_api.database import AWS_CLIENT_CONFIG, DEFAULT_CONNECT_TIMEOUT_SECONDS, WRITER_GROUP, Database
from payment_api.errors import DatabaseUnavailable, PrivilegeRefused, WriterFenced
from payment_common.database import DatabaseSettings, database_settings
from payment_common.errors import ConfigurationError
from payment_common.writer import parse_writer

T = TypeVar("T")
logger = Logger(service="payment-api", child=True)

DEFAULT_CACHE_SECONDS = 5.0


class WriterDirectory:
    """The current writer, read from SSM at most every `cache_seconds` (and again after invalidate()).
    If SSM cannot be read, the last known writer keeps serving: the fence keeps that safe."""

    def __init__(self, parameter_name: str, cache_seconds: float = DEFAULT_CACHE_SECONDS, ssm_client: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.parameter_name = parameter_name
        self.cache_seconds = cache_seconds
        self._ssm = ssm_client
        self._clock = clock
        self._writer: str | None = None
        self._read_at = 0.0

    def current(self) -> str:
        if self._writer is not None and self._clock() - self._read_at < self.cache_seconds:
            return self._writer
        try:
            value = self._client().get_parameter(Name=self.parameter_name)["Parameter"]["Value"]
        except Exception as exc:  # noqa: BLE001 - botocore's errors, or no endpoint at all
            if self._writer is not None:
                logger.warning("cannot read the writer parameter; keeping the last writer",
                               extra={"error": type(exc).__name__, "writer": self._writer})
                return self._writer
            logger.error("cannot read the writer parameter", extra={"error": type(exc).__name__,
                                                                    "parameter": self.parameter_name})
            raise DatabaseUnavailable("writer parameter unavailable") from exc
        # The record as every function reads it: a malformed one (an unknown side, a bad epoch) is a
        # ConfigurationError naming the parameter, never taken for a writer.
        self._writer, self._read_at = parse_writer(self.parameter_name, value).writer, self._clock()
        return self._writer

    def invalidate(self) -> None:
        self._read_at = float("-inf")

    def _client(self):
        if self._ssm is None:
            import boto3

            self._ssm = boto3.client("ssm", config=AWS_CLIENT_CONFIG)
        return self._ssm


class WriterDatabase:
    """Runs each operation on the current writer's database (see Database.run)."""

    def __init__(self, settings: Mapping[str, DatabaseSettings], directory: WriterDirectory,
                 secrets_client: Any = None, *, statement_timeout_ms: int | None = None) -> None:
        self.directory = directory
        options = {} if statement_timeout_ms is None else {"statement_timeout_ms": statement_timeout_ms}
        self._databases = {side: Database(side_settings, secrets_client, **options)
                           for side, side_settings in settings.items()}
        self.side: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> WriterDatabase:
        """WRITER_PARAMETER (required), WRITER_CACHE_SECONDS (default 5), DB_STATEMENT_TIMEOUT_MS
        (default 5000), and each side's settings (ONPREM_DB_*, AURORA_DB_*, DB_SSLMODE, ...:
        payment_common.database; DB_CONNECT_TIMEOUT defaults to 3 s here)."""
        parameter = environ.get("WRITER_PARAMETER", "").strip()
        if not parameter:
            raise ConfigurationError("configuration incomplete: WRITER_PARAMETER is not set")
        raw = environ.get("WRITER_CACHE_SECONDS", "").strip()
        try:
            cache_seconds = float(raw) if raw else DEFAULT_CACHE_SECONDS
        except ValueError:
            cache_seconds = -1.0
        if not 0 <= cache_seconds <= 60:
            raise ConfigurationError("configuration invalid: WRITER_CACHE_SECONDS must be a number of seconds, 0 to 60")
        settings = database_settings(environ, connect_timeout_seconds=DEFAULT_CONNECT_TIMEOUT_SECONDS)
        raw = environ.get("DB_STATEMENT_TIMEOUT_MS", "").strip()
        if raw and (not raw.isdigit() or int(raw) <= 0):
            raise ConfigurationError("configuration invalid: DB_STATEMENT_TIMEOUT_MS must be a positive integer")
        return cls(settings, WriterDirectory(parameter, cache_seconds), statement_timeout_ms=int(raw) if raw else None)

    def run(self, operation: Callable[[Any], T], *, write: bool = False) -> T:
        side = self.directory.current()
        if side != self.side:
            if self.side is not None:
                logger.info("the writer changed; dropping the old connection", extra={"from": self.side, "to": side})
                self._databases[self.side].close()
            self.side = side
        try:
            return self._databases[side].run(operation, write=write)
        except WriterFenced:
            self.directory.invalidate()  # the next request asks SSM where the writer is now
            raise
        except PrivilegeRefused as refused:
            refused.side = side
            reason = self._fenced_because(side, refused)
            if reason is None:
                raise  # a missing grant: the handler logs it as such and answers 500
            logger.info("write refused for lack of privilege on a fenced side", extra={
                "side": side, "reason": reason, "detail": refused.detail})
            self.directory.invalidate()
            raise WriterFenced() from refused

    def _fenced_because(self, side: str, refused: PrivilegeRefused) -> str | None:
        """Why a write refused for lack of privilege is the fence, or None if it is not: the role lost
        its payment_writer membership (the fence's privilege part), its session was ended before that
        could be checked (the fence's next part), or the writer parameter, read afresh, no longer
        names this side (a stale cache met the old writer)."""
        if not refused.write:
            return None  # the fence never takes a read privilege
        if refused.writer_member is False:
            return f"the role is not a member of {WRITER_GROUP} on {side} (fenced)"
        if refused.session_ended:  # the fence revokes the membership, then ends the sessions
            return f"the session on {side} was ended right after the refusal (a fence ends sessions)"
        self.directory.invalidate()
        try:
            writer = self.directory.current()
        except (DatabaseUnavailable, ConfigurationError):
            return None
        if writer != side:
            return f"the writer parameter names {writer} now"
        return None

    def close(self) -> None:
        for database in self._databases.values():
            database.close()
