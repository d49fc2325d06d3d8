"""What one invocation asks for (the event) and where the databases are (the environment)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .engine import ValidationOptions

DEFAULT_MAX_DIFFS_PER_TABLE = 100
MAX_DIFFS_PER_TABLE_LIMIT = 10_000  # keeps the response well below Lambda's 6 MB payload limit
DEFAULT_STATEMENT_TIMEOUT_SECONDS = 300.0
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
EVENT_KEYS = ("tables", "max_diffs_per_table")


class InvalidEventError(Exception):
    """The invocation's event is not one this function accepts; the message names the key."""


class ConfigurationError(Exception):
    """The function's environment (or a secret it names) is incomplete or malformed."""


@dataclass(frozen=True)
class ValidationRequest:
    tables: tuple[str, ...] = ()  # empty: every table of the configured schemas
    max_diffs_per_table: int = DEFAULT_MAX_DIFFS_PER_TABLE

    @classmethod
    def from_event(cls, event: Any) -> ValidationRequest:
        """{"tables": ["payments", "public.customers"], "max_diffs_per_table": 100}, both optional."""
        if event is None:
            return cls()
        if not isinstance(event, dict):
            raise InvalidEventError(f"the event must be a JSON object, not {type(event).__name__}")
        unknown = sorted(set(event) - set(EVENT_KEYS))
        if unknown:
            raise InvalidEventError(f"unknown event key {', '.join(map(repr, unknown))}: "
                                    f"the event accepts only {', '.join(EVENT_KEYS)}")
        tables = event.get("tables", [])
        if (not isinstance(tables, list) or "tables" in event and not tables
                or not all(isinstance(name, str) and name.strip() for name in tables)):
            raise InvalidEventError(
                "'tables' must be a non-empty list of table names (\"table\" or \"schema.table\"); "
                f"leave it out to check every table, got {tables!r}"
            )
        max_diffs = event.get("max_diffs_per_table", DEFAULT_MAX_DIFFS_PER_TABLE)
        if isinstance(max_diffs, bool) or not isinstance(max_diffs, int) \
                or not 0 <= max_diffs <= MAX_DIFFS_PER_TABLE_LIMIT:
            raise InvalidEventError(
                f"'max_diffs_per_table' must be an integer from 0 to {MAX_DIFFS_PER_TABLE_LIMIT}, got {max_diffs!r}"
            )
        return cls(tuple(name.strip() for name in tables), max_diffs)


@dataclass(frozen=True)
class DatabaseSettings:
    host: str
    port: int
    name: str
    secret_arn: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port}/{self.name}"


@dataclass(frozen=True)
class Settings:
    """From the environment the stack sets:

    SOURCE_DB_HOST, SOURCE_DB_PORT, SOURCE_DB_NAME, SOURCE_SECRET_ARN   the on-prem database
    TARGET_DB_HOST, TARGET_DB_PORT, TARGET_DB_NAME, TARGET_SECRET_ARN   the Aurora database
        each secret a JSON object with "username" and "password" (as RDS-managed secrets are)
    DB_SSLMODE                  libpq sslmode for both connections (require, verify-full, …)
    DB_SSLROOTCERT              optional: CA bundle file for verify-ca / verify-full
    SCHEMAS                     optional: comma-separated schemas to compare (default public)
    STATEMENT_TIMEOUT_SECONDS   optional: per statement, on both sides (default 300)
    """

    source: DatabaseSettings
    target: DatabaseSettings
    sslmode: str
    sslrootcert: str | None
    schemas: tuple[str, ...]
    statement_timeout_seconds: float

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        required = [f"{side}_{name}" for side in ("SOURCE", "TARGET")
                    for name in ("DB_HOST", "DB_PORT", "DB_NAME", "SECRET_ARN")] + ["DB_SSLMODE"]
        missing = [name for name in required if not environ.get(name, "").strip()]
        if missing:
            raise ConfigurationError(f"missing environment variable {', '.join(missing)}")
        sslmode = environ["DB_SSLMODE"].strip()
        if sslmode not in SSL_MODES:
            raise ConfigurationError(f"DB_SSLMODE must be one of {', '.join(SSL_MODES)}, got {sslmode!r}")
        schemas = tuple(schema.strip() for schema in environ.get("SCHEMAS", "public").split(","))
        if not all(schemas):
            raise ConfigurationError(
                f"SCHEMAS must be a comma-separated list of schema names, got {environ['SCHEMAS']!r}")
        return cls(
            source=_database(environ, "SOURCE"),
            target=_database(environ, "TARGET"),
            sslmode=sslmode,
            sslrootcert=environ.get("DB_SSLROOTCERT", "").strip() or None,
            schemas=schemas,
            statement_timeout_seconds=_positive_number(environ, "STATEMENT_TIMEOUT_SECONDS",
                                                       DEFAULT_STATEMENT_TIMEOUT_SECONDS),
        )

    def options(self, request: ValidationRequest) -> ValidationOptions:
        return ValidationOptions(
            schemas=self.schemas,
            tables=request.tables,
            max_diffs_per_table=request.max_diffs_per_table,
            statement_timeout_seconds=self.statement_timeout_seconds,
        )


def _database(environ: Mapping[str, str], side: str) -> DatabaseSettings:
    port_text = environ[f"{side}_DB_PORT"].strip()
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigurationError(f"{side}_DB_PORT must be a port number (1-65535), got {port_text!r}")
    return DatabaseSettings(
        host=environ[f"{side}_DB_HOST"].strip(),
        port=int(port_text),
        name=environ[f"{side}_DB_NAME"].strip(),
        secret_arn=environ[f"{side}_SECRET_ARN"].strip(),
    )


def _positive_number(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {text!r}")
    return value
