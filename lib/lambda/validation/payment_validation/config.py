"""What one invocation asks for (the event) and where the databases are (the environment)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from payment_common.database import DatabaseSettings, database_settings
from payment_common.errors import ConfigurationError
from payment_common.sides import AWS, ONPREM

from .chunks import Chunk
from .engine import ValidationOptions

ACTIONS = ("validate", "plan", "validate_chunk", "merge")
DIRECTIONS = ("forward", "reverse")
DEFAULT_MAX_DIFFS_PER_TABLE = 100
MAX_DIFFS_PER_TABLE_LIMIT = 10_000  # keeps the response well below Lambda's 6 MB payload limit
DEFAULT_STATEMENT_TIMEOUT_SECONDS = 300.0
# Settle and recheck: a few seconds of replication lag settle well within the defaults; the waits
# together stay far below the 900 s a Lambda invocation may run.
DEFAULT_RECHECK_SECONDS = 5.0
DEFAULT_RECHECK_ROUNDS = 3
MAX_RECHECK_SECONDS = 300.0
MAX_RECHECK_ROUNDS = 20
MAX_RECHECK_WAIT_SECONDS = 600.0
# Rows per chunk when planning: at the measured per-chunk rate (bench/validation_bench.py), well
# within one invocation's 900 s.
DEFAULT_CHUNK_ROWS = 20_000_000
MAX_CHUNK_ROWS = 10**12
# Seconds to open a connection when DB_CONNECT_TIMEOUT does not say.
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10
_OPTION_KEYS = ("max_diffs_per_table", "recheck_seconds", "recheck_rounds", "check_sequences", "direction")
EVENT_KEYS = {
    "validate": ("action", "tables", "sequences_only", *_OPTION_KEYS),
    "plan": ("action", "tables", "chunk_rows", *_OPTION_KEYS),
    "validate_chunk": ("action", "chunk", *_OPTION_KEYS),
    "merge": ("action", "plan", "results"),
}


class InvalidEventError(Exception):
    """The invocation's event is not one this function accepts; the message names the key."""


def event_action(event: Any) -> str:
    """The event's action ("validate" when it names none)."""
    if event is None:
        return "validate"
    if not isinstance(event, dict):
        raise InvalidEventError(f"the event must be a JSON object, not {type(event).__name__}")
    action = event.get("action", "validate")
    if action not in ACTIONS:
        raise InvalidEventError(f"'action' must be one of {', '.join(ACTIONS)} (or left out to validate), "
                                f"got {action!r}")
    return action


@dataclass(frozen=True)
class ValidationRequest:
    """What to compare and how: the event of the default action ("validate") and of
    "validate_chunk" (which names a `chunk` instead of `tables`)."""

    tables: tuple[str, ...] = ()  # empty: every table of the configured schemas
    max_diffs_per_table: int = DEFAULT_MAX_DIFFS_PER_TABLE
    recheck_seconds: float | None = None  # None: the environment's RECHECK_SECONDS
    recheck_rounds: int | None = None  # None: the environment's RECHECK_ROUNDS
    check_sequences: bool = False
    direction: str = "forward"  # forward: source = ONPREM_DB_*, target = AURORA_DB_*; reverse: swapped
    chunk: Chunk | None = None
    sequences_only: bool = False  # compare only the sequences (O(sequences)), not the content

    @classmethod
    def from_event(cls, event: Any) -> ValidationRequest:
        """{"tables": ["payments", "public.customers"], "max_diffs_per_table": 100, "recheck_seconds": 10,
        "recheck_rounds": 3, "check_sequences": false, "direction": "forward"}, all optional; or the
        same with "action": "validate_chunk" and a "chunk" instead of "tables"."""
        action = event_action(event)
        if action not in ("validate", "validate_chunk"):
            raise InvalidEventError(f"action {action!r} is not a validation")
        event = event or {}
        _refuse_unknown_keys(event, action)
        tables = event.get("tables", [])
        if (not isinstance(tables, list) or "tables" in event and not tables
                or not all(isinstance(name, str) and name.strip() for name in tables)):
            raise InvalidEventError(
                "'tables' must be a non-empty list of table names (\"table\" or \"schema.table\"); "
                f"leave it out to check every table, got {tables!r}"
            )
        chunk = None
        if action == "validate_chunk":
            if "chunk" not in event:
                raise InvalidEventError("'chunk' is required by the validate_chunk action (an item of a plan)")
            try:
                chunk = Chunk.from_dict(event["chunk"])
            except ValueError as error:
                raise InvalidEventError(f"'chunk' is not a chunk of a plan: {error}") from None
        max_diffs = event.get("max_diffs_per_table", DEFAULT_MAX_DIFFS_PER_TABLE)
        if not _is_int(max_diffs) or not 0 <= max_diffs <= MAX_DIFFS_PER_TABLE_LIMIT:
            raise InvalidEventError(
                f"'max_diffs_per_table' must be an integer from 0 to {MAX_DIFFS_PER_TABLE_LIMIT}, got {max_diffs!r}"
            )
        recheck_seconds = event.get("recheck_seconds")
        if recheck_seconds is not None and not _is_seconds(recheck_seconds, MAX_RECHECK_SECONDS):
            raise InvalidEventError(f"'recheck_seconds' must be a number of seconds from 0 to "
                                    f"{MAX_RECHECK_SECONDS:g}, got {recheck_seconds!r}")
        recheck_rounds = event.get("recheck_rounds")
        if recheck_rounds is not None and not (_is_int(recheck_rounds) and 0 <= recheck_rounds <= MAX_RECHECK_ROUNDS):
            raise InvalidEventError(
                f"'recheck_rounds' must be an integer from 0 to {MAX_RECHECK_ROUNDS}, got {recheck_rounds!r}")
        check_sequences = event.get("check_sequences", False)
        if not isinstance(check_sequences, bool):
            raise InvalidEventError(f"'check_sequences' must be true or false, got {check_sequences!r}")
        sequences_only = event.get("sequences_only", False)
        if not isinstance(sequences_only, bool):
            raise InvalidEventError(f"'sequences_only' must be true or false, got {sequences_only!r}")
        direction = event.get("direction", "forward")
        if direction not in DIRECTIONS:
            raise InvalidEventError(
                f"'direction' must be \"forward\" (source = ONPREM_DB_* database, target = AURORA_DB_*) or "
                f"\"reverse\" (the two swapped, after the data cutover), got {direction!r}")
        return cls(tuple(name.strip() for name in tables), max_diffs,
                   None if recheck_seconds is None else float(recheck_seconds), recheck_rounds,
                   check_sequences or sequences_only, direction, chunk, sequences_only)


@dataclass(frozen=True)
class PlanRequest:
    """{"action": "plan", "chunk_rows": 20000000, ...}: the tables of a validation, cut into chunks
    of about `chunk_rows` rows, each item an event of the validate_chunk action."""

    validation: ValidationRequest
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    @classmethod
    def from_event(cls, event: dict) -> PlanRequest:
        _refuse_unknown_keys(event, "plan")
        chunk_rows = event.get("chunk_rows", DEFAULT_CHUNK_ROWS)
        if not (_is_int(chunk_rows) and 1 <= chunk_rows <= MAX_CHUNK_ROWS):
            raise InvalidEventError(f"'chunk_rows' must be an integer from 1 to {MAX_CHUNK_ROWS}, got {chunk_rows!r}")
        validation = ValidationRequest.from_event({key: value for key, value in event.items()
                                                   if key not in ("action", "chunk_rows")})
        return cls(validation, chunk_rows)


@dataclass(frozen=True)
class MergeRequest:
    """{"action": "merge", "plan": <the plan action's result>, "results": [<each item's result>]}."""

    chunks: tuple[Chunk, ...]
    results: tuple[dict, ...]
    max_diffs_per_table: int
    check_sequences: bool
    direction: str
    plan_error: str | None = None  # the plan's message when planning failed

    @classmethod
    def from_event(cls, event: dict) -> MergeRequest:
        _refuse_unknown_keys(event, "merge")
        plan, results = event.get("plan"), event.get("results")
        if not isinstance(results, list) or not all(isinstance(result, dict) for result in results):
            raise InvalidEventError(f"'results' must be the list of the plan's items' results, got {_brief(results)}")
        if not isinstance(plan, dict) or plan.get("status") not in ("PLANNED", "ERROR"):
            raise InvalidEventError(f"'plan' must be the result of the plan action, got {_brief(plan)}")
        if plan["status"] == "ERROR":
            return cls((), tuple(results), DEFAULT_MAX_DIFFS_PER_TABLE, False, plan.get("direction", "forward"),
                       plan_error=str(plan.get("message", "planning failed")))
        items = plan.get("items")
        try:
            if not isinstance(items, list) or not items:
                raise InvalidEventError(f"'items' must be a non-empty list, got {_brief(items)}")
            requests = [ValidationRequest.from_event(item) for item in items]
        except InvalidEventError as error:
            raise InvalidEventError(f"'plan' is not a result of the plan action: {error}") from None
        first = requests[0]
        if any(request.chunk is None for request in requests) or len({
                (r.max_diffs_per_table, r.check_sequences, r.direction) for r in requests}) != 1:
            raise InvalidEventError("'plan' is not a result of the plan action: its items must all be "
                                    "validate_chunk events of one validation")
        return cls(tuple(request.chunk for request in requests), tuple(results), first.max_diffs_per_table,
                   first.check_sequences, first.direction)


Request = ValidationRequest | PlanRequest | MergeRequest


def parse_event(event: Any) -> Request:
    """The request an event makes; InvalidEventError naming the offending key otherwise."""
    action = event_action(event)
    if action == "plan":
        return PlanRequest.from_event(event)
    if action == "merge":
        return MergeRequest.from_event(event)
    return ValidationRequest.from_event(event)


def _refuse_unknown_keys(event: dict, action: str) -> None:
    unknown = sorted(set(event) - set(EVENT_KEYS[action]))
    if unknown:
        raise InvalidEventError(f"unknown event key {', '.join(map(repr, unknown))}: the {action} action accepts "
                                f"only {', '.join(key for key in EVENT_KEYS[action] if key != 'action')}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seconds(value: Any, maximum: float) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0 <= value <= maximum)


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Settings:
    """From the environment the stack sets:

    ONPREM_DB_*, AURORA_DB_*, DB_SSLMODE, DB_SSLROOTCERT, DB_CONNECT_TIMEOUT (default 10 s here)
                                the on-prem (source) and Aurora (target) databases, their TLS and
                                secrets, as every function reads them (payment_common.database)
    SCHEMAS                     optional: comma-separated schemas to compare (default public)
    STATEMENT_TIMEOUT_SECONDS   optional: per statement, on both sides (default 300)
    RECHECK_SECONDS             optional: wait before each recheck of differing keys (default 5;
                                0 to 300); an event's recheck_seconds overrides it
    RECHECK_ROUNDS              optional: rechecks at most (default 3; 0 to 20, 0: report what the
                                first pass finds); an event's recheck_rounds overrides it
    """

    source: DatabaseSettings
    target: DatabaseSettings
    schemas: tuple[str, ...]
    statement_timeout_seconds: float
    recheck_seconds: float = DEFAULT_RECHECK_SECONDS
    recheck_rounds: int = DEFAULT_RECHECK_ROUNDS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        databases = database_settings(environ, connect_timeout_seconds=DEFAULT_CONNECT_TIMEOUT_SECONDS)
        schemas = tuple(schema.strip() for schema in environ.get("SCHEMAS", "public").split(","))
        if not all(schemas):
            raise ConfigurationError(
                f"SCHEMAS must be a comma-separated list of schema names, got {environ['SCHEMAS']!r}")
        return cls(
            source=databases[ONPREM],
            target=databases[AWS],
            schemas=schemas,
            statement_timeout_seconds=_positive_number(environ, "STATEMENT_TIMEOUT_SECONDS",
                                                       DEFAULT_STATEMENT_TIMEOUT_SECONDS),
            **_recheck(environ),
        )

    def databases(self, direction: str) -> tuple[DatabaseSettings, DatabaseSettings]:
        """(source, target) of a validation in that direction: after the data cutover the old
        writer is the Aurora database, and what has to be proven is on the on-prem one."""
        return (self.source, self.target) if direction == "forward" else (self.target, self.source)

    def options(self, request: ValidationRequest) -> ValidationOptions:
        """The engine's options: the request's, with the environment's defaults where it has none."""
        recheck_seconds = self.recheck_seconds if request.recheck_seconds is None else request.recheck_seconds
        recheck_rounds = self.recheck_rounds if request.recheck_rounds is None else request.recheck_rounds
        if recheck_seconds * recheck_rounds > MAX_RECHECK_WAIT_SECONDS:
            raise InvalidEventError(
                f"'recheck_rounds' ({recheck_rounds}) times 'recheck_seconds' ({recheck_seconds:g}) must not exceed "
                f"{MAX_RECHECK_WAIT_SECONDS:g} seconds of waiting (the event's values, or RECHECK_ROUNDS and "
                "RECHECK_SECONDS where it has none)")
        return ValidationOptions(
            schemas=self.schemas,
            tables=request.tables,
            max_diffs_per_table=request.max_diffs_per_table,
            statement_timeout_seconds=self.statement_timeout_seconds,
            recheck_rounds=recheck_rounds,
            recheck_seconds=recheck_seconds,
            check_sequences=request.check_sequences,
            chunk=request.chunk,
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


def _recheck(environ: Mapping[str, str]) -> dict[str, Any]:
    seconds, rounds = _recheck_seconds(environ), _recheck_rounds(environ)
    if seconds * rounds > MAX_RECHECK_WAIT_SECONDS:
        raise ConfigurationError(f"RECHECK_ROUNDS ({rounds}) times RECHECK_SECONDS ({seconds:g}) must not exceed "
                                 f"{MAX_RECHECK_WAIT_SECONDS:g} seconds of waiting")
    return {"recheck_seconds": seconds, "recheck_rounds": rounds}


def _recheck_seconds(environ: Mapping[str, str]) -> float:
    text = environ.get("RECHECK_SECONDS", "").strip()
    if not text:
        return DEFAULT_RECHECK_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not _is_seconds(value, MAX_RECHECK_SECONDS):
        raise ConfigurationError(f"RECHECK_SECONDS must be a number of seconds from 0 to {MAX_RECHECK_SECONDS:g}, "
                                 f"got {text!r}")
    return value


def _recheck_rounds(environ: Mapping[str, str]) -> int:
    text = environ.get("RECHECK_ROUNDS", "").strip()
    if not text:
        return DEFAULT_RECHECK_ROUNDS
    if not text.isdigit() or int(text) > MAX_RECHECK_ROUNDS:
        raise ConfigurationError(f"RECHECK_ROUNDS must be an integer from 0 to {MAX_RECHECK_ROUNDS}, got {text!r}")
    return int(text)
