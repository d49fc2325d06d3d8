"""Compare a source and a target PostgreSQL database table by table: schema, row counts, content.

Plain Python taking two open psycopg2 connections, so the Lambda handler, the tests, the benchmark
and a rehearsal all call the same `validate`.

Content is compared by hashing inside PostgreSQL, on both sides at once (one thread per side;
psycopg2 releases the GIL while a query runs). A first pass over each table yields, for each of up
to 4096 primary-key ranges ("buckets"), the row count and the sum of 64-bit row hashes. Only buckets
whose count or sum differ are looked at again: a large one is split at exact key quantiles and
hashed again, a small one is read as (key, row hash) pairs, which name the exact keys missing in
the target, extra in the target, or present on both sides with different content. Identical
tables therefore cost one scan per side, and memory stays bounded by the size of a small bucket.

Both sessions pin every setting that changes how a value prints (time zone, date and interval
style, float digits, bytea format, …) and run in one read-only REPEATABLE READ transaction each,
so each side is compared as of a single snapshot and formatting never fakes or hides a difference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions

from .catalog import Column, TableSchema, comparable_columns, read_tables, schema_differences
from .queries import Key, KeyRange, Query, RowHash, TableQueries

# A bucket this small is read row by row; a larger differing one is split first.
LEAF_ROWS = 20_000
# Rows per bucket aimed at when a table or a range is split, and the most buckets in one pass.
BUCKET_ROWS = 2_500
MAX_BUCKETS = 4_096
# Sampled keys per bucket when choosing the first pass's bounds. The sample is of whole pages, and
# keys often follow the order rows were written in: a few dozen keys per bucket put about one
# sampled page in each bucket, so buckets come out of similar size.
SAMPLED_KEYS_PER_BUCKET = 32
# Key ranges read together in one query.
MAX_RANGES_PER_READ = 256

# Everything that changes how a value is printed (and hence hashed, for types hashed through their
# text) is pinned to the same value on both sides.
SESSION_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
    ("xmlbinary", "base64"),
    ("xmloption", "content"),
    ("standard_conforming_strings", "on"),
    # Every name the engine uses is schema-qualified; format_type() then qualifies user types.
    ("search_path", "pg_catalog"),
    # A row-level security policy would silently hide rows; with this off, reading fails instead.
    ("row_security", "off"),
    ("application_name", "payment-validation"),
)


DIFFERENCE_KINDS = ("missing_in_target", "extra_in_target", "mismatched")


class ValidationError(Exception):
    """The comparison could not be carried out; the message says why and what to change."""


class IncompatibleServersError(ValidationError):
    pass


class UnknownTableError(ValidationError):
    pass


class NothingToValidateError(ValidationError):
    pass


class QueryFailed(ValidationError):
    """A statement failed on one side (statement timeout, lost connection, permission, …)."""

    def __init__(self, side: str, error: psycopg2.Error):
        detail = error.diag.message_primary or " ".join(str(error).split()) or type(error).__name__
        super().__init__(f"{side} database: {detail}")
        self.side = side
        self.error = error


class Status(str, Enum):
    PASSED = "PASSED"
    FAILED = "FAILED"  # differences found, or a table that cannot be verified
    UNVERIFIABLE = "UNVERIFIABLE"  # per table only: no primary key to match rows by
    ERROR = "ERROR"  # the comparison itself did not complete


@dataclass(frozen=True)
class ValidationOptions:
    schemas: tuple[str, ...] = ("public",)
    # "schema.table" or "table" (looked up in `schemas`, in order); empty: every table in `schemas`
    tables: tuple[str, ...] = ()
    max_diffs_per_table: int = 100
    statement_timeout_seconds: float = 300.0


@dataclass
class Differences:
    """Keys of one kind of difference: the first `limit` of them in key order, and how many."""

    limit: int
    keys: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    def add(self, key: dict[str, Any]) -> None:
        self.total += 1
        if len(self.keys) < self.limit:
            self.keys.append(key)


@dataclass
class TableResult:
    status: Status
    message: str
    schema_differences: list[str]
    missing_in_target: Differences
    extra_in_target: Differences
    mismatched: Differences
    source_rows: int | None = None  # None: content not compared
    target_rows: int | None = None
    seconds: float = 0.0

    @property
    def rows_checked(self) -> int:
        """Distinct keys whose presence and content were compared."""
        if self.source_rows is None:
            return 0
        return self.source_rows + self.extra_in_target.total

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "message": self.message,
            "schema_differences": list(self.schema_differences),
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "rows_checked": self.rows_checked,
            "missing_in_target": list(self.missing_in_target.keys),
            "missing_in_target_total": self.missing_in_target.total,
            "extra_in_target": list(self.extra_in_target.keys),
            "extra_in_target_total": self.extra_in_target.total,
            "mismatched": list(self.mismatched.keys),
            "mismatched_total": self.mismatched.total,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ValidationReport:
    tables: dict[str, TableResult]
    seconds: float

    @property
    def status(self) -> Status:
        statuses = {result.status for result in self.tables.values()}
        if Status.ERROR in statuses:
            return Status.ERROR
        if statuses & {Status.FAILED, Status.UNVERIFIABLE}:
            return Status.FAILED
        return Status.PASSED

    @property
    def message(self) -> str:
        status = self.status
        if status is Status.PASSED:
            rows = sum(result.source_rows or 0 for result in self.tables.values())
            return f"all {len(self.tables)} tables match ({rows} rows)"
        bad = {name: result for name, result in self.tables.items() if result.status is not Status.PASSED}
        verb = "could not be checked" if status is Status.ERROR else "differ or could not be verified"
        details = "; ".join(f"{name}: {result.message}" for name, result in bad.items())
        return f"{len(bad)} of {len(self.tables)} tables {verb}: {details}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "message": self.message,
            "seconds": round(self.seconds, 3),
            "tables": {name: result.to_dict() for name, result in self.tables.items()},
        }


def validate(source, target, options: ValidationOptions = ValidationOptions()) -> ValidationReport:
    """Compare the tables of `options.schemas` (or just `options.tables`) between two databases.

    Pins the session settings of both connections and leaves them rolled back. Raises
    ValidationError when the comparison cannot start (incompatible servers, unknown table,
    nothing to compare, a lost connection); a failure confined to one table is reported as that
    table's ERROR and the other tables are still compared.
    """
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="validation") as pool:
        sides = _Sides(source, target, pool)
        try:
            source_server, target_server = sides.call(
                lambda conn, side: _prepare_session(conn, side, options.statement_timeout_seconds)
            )
            row_hash = _row_hash_method(source_server, target_server)
            schemas = sorted(set(options.schemas) | {name.split(".", 1)[0] for name in options.tables if "." in name})
            source_tables, target_tables = sides.call(lambda conn, side: _call_on(side, read_tables, conn, schemas))
            results = {
                name: _check_table(sides, source_tables.get(name), target_tables.get(name), row_hash, options)
                for name in _tables_to_check(options, source_tables, target_tables)
            }
        finally:
            sides.rollback()
    return ValidationReport(results, time.monotonic() - started)


# -- sessions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Server:
    version: int  # server_version_num
    encoding: str


def _prepare_session(conn, side: str, statement_timeout_seconds: float) -> _Server:
    timeout_ms = max(1, int(statement_timeout_seconds * 1000))
    settings = [
        *SESSION_SETTINGS,
        ("statement_timeout", str(timeout_ms)),
        # A session left idle in its transaction (the invoking process died) would hold back vacuum
        # on the source; a live one idles at most while the other side runs a statement.
        ("idle_in_transaction_session_timeout", str(2 * timeout_ms + 60_000)),
    ]
    try:
        conn.rollback()
        conn.autocommit = True  # session-level settings, outside the transaction that follows
        conn.set_client_encoding("UTF8")
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_catalog.set_config(name, value, false)"
                " FROM unnest(%s::text[], %s::text[]) AS s(name, value)",
                ([name for name, _ in settings], [value for _, value in settings]),
            )
            cur.execute("SELECT current_setting('server_version_num')::int, current_setting('server_encoding')")
            version, encoding = cur.fetchone()
        conn.set_session(
            isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True, autocommit=False
        )
    except psycopg2.Error as error:
        raise QueryFailed(side, error) from error
    return _Server(version, encoding)


def _row_hash_method(source: _Server, target: _Server) -> RowHash:
    if source.encoding != target.encoding:
        raise IncompatibleServersError(
            f"server encodings differ (source {source.encoding}, target {target.encoding}): text would hash "
            "differently even where it is equal; compare databases with the same encoding"
        )
    oldest = min(source.version, target.version)
    if oldest >= 140000:
        return RowHash.RECORD
    if oldest >= 110000:
        return RowHash.TEXT
    raise IncompatibleServersError(f"PostgreSQL {oldest // 10000} is too old: both servers must run 11 or later")


T = TypeVar("T")


def _call_on(side: str, function: Callable[..., T], *args) -> T:
    """function(*args), its database errors reported as the side's."""
    try:
        return function(*args)
    except psycopg2.Error as error:
        raise QueryFailed(side, error) from error


def _fetch(conn, side: str, query: Query) -> list[tuple]:
    statement, params = query
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()
    except psycopg2.Error as error:
        raise QueryFailed(side, error) from error


class _Sides:
    """The source and the target connection, run side by side."""

    def __init__(self, source, target, pool: ThreadPoolExecutor):
        self._connections = {"source": source, "target": target}
        self._pool = pool

    def call(self, function: Callable[[Any, str], T]) -> tuple[T, T]:
        """function(connection, side) on both sides at once. When one side fails, the other's
        running statement is cancelled rather than waited for."""
        futures = {side: self._pool.submit(function, conn, side) for side, conn in self._connections.items()}
        results, failure = {}, None
        for side, future in futures.items():
            try:
                results[side] = future.result()
            except BaseException as error:  # noqa: BLE001 - re-raised below once both sides stopped
                if failure is None:
                    failure = error
                    for other, conn in self._connections.items():
                        if other != side and not futures[other].done() and not conn.closed:
                            conn.cancel()
        if failure is not None:
            raise failure
        return results["source"], results["target"]

    def query(self, query: Query) -> tuple[list[tuple], list[tuple]]:
        """The same query on both sides at once."""
        return self.call(lambda conn, side: _fetch(conn, side, query))

    def query_one(self, side: str, query: Query) -> list[tuple]:
        return _fetch(self._connections[side], side, query)

    @property
    def broken(self) -> bool:
        return any(conn.closed for conn in self._connections.values())

    def rollback(self) -> None:
        """End both transactions (after a failed statement, the next query starts a new one)."""
        for conn in self._connections.values():
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg2.Error:
                    pass


# -- tables --------------------------------------------------------------------------------------


def _tables_to_check(options: ValidationOptions, source: dict, target: dict) -> list[str]:
    known = set(source) | set(target)
    if not options.tables:
        if not known:
            raise NothingToValidateError(
                f"no tables in schemas {', '.join(options.schemas)} on either database: check SCHEMAS"
            )
        return sorted(known)
    selected, unknown = [], []
    for name in options.tables:
        candidates = [name] if "." in name else [f"{schema}.{name}" for schema in options.schemas]
        found = next((candidate for candidate in candidates if candidate in known), None)
        if found is None:
            unknown.append(name)
        elif found not in selected:
            selected.append(found)
    if unknown:
        raise UnknownTableError(
            f"tables not found in source or target (schemas {', '.join(options.schemas)}): {', '.join(unknown)}"
        )
    return selected


def _check_table(
    sides: _Sides, source: TableSchema | None, target: TableSchema | None, row_hash: RowHash,
    options: ValidationOptions,
) -> TableResult:
    started = time.monotonic()

    def result(status: Status, message: str, differences: Sequence[str] = (), **content) -> TableResult:
        empty = {kind: Differences(options.max_diffs_per_table) for kind in DIFFERENCE_KINDS}
        return TableResult(status, message, list(differences), **{**empty, **content},
                           seconds=time.monotonic() - started)

    if source is None or target is None:
        where = "missing in target" if target is None else "missing in source (exists only in target)"
        return result(Status.FAILED, f"table is {where}", [f"table is {where}"])
    differences = schema_differences(source, target)
    if not source.primary_key and not target.primary_key:
        status = Status.FAILED if differences else Status.UNVERIFIABLE
        return result(status, "no primary key: rows cannot be matched by key, content not compared", differences)
    columns = comparable_columns(source, target)
    if source.primary_key != target.primary_key or not set(source.primary_key) <= {c.name for c in columns}:
        return result(Status.FAILED, "primary keys differ: content not compared", differences)
    try:
        content = _ContentComparison(sides, TableQueries(source, columns, row_hash), options.max_diffs_per_table)
        content.run()
    except QueryFailed as error:
        if sides.broken:
            raise
        sides.rollback()  # the failed transaction; the next table starts a fresh one
        return result(Status.ERROR, str(error), differences)
    found = [f"{d.total} {kind}" for kind, d in content.differences.items() if d.total]
    if differences:
        message = "schema differs" + (f"; {', '.join(found)}" if found else "")
    elif found:
        message = ", ".join(found)
    else:
        message = "match"
    return result(
        Status.FAILED if differences or found else Status.PASSED, message, differences,
        **content.differences, source_rows=content.source_rows, target_rows=content.target_rows,
    )


class _ContentComparison:
    """Finds the keys that differ between the two sides of one table (see the module docstring)."""

    def __init__(self, sides: _Sides, queries: TableQueries, max_diffs: int):
        self._sides = sides
        self._queries = queries
        self.differences = {kind: Differences(max_diffs) for kind in DIFFERENCE_KINDS}
        self.source_rows = 0
        self.target_rows = 0

    def run(self) -> None:
        source_plan, target_plan = self._sides.query(self._queries.estimated_rows())
        bounds = self._first_bounds(self._queries.parse_estimate(source_plan[0][0]),
                                    self._queries.parse_estimate(target_plan[0][0]))
        source_buckets, target_buckets = self._hash(KeyRange(), bounds)
        self.source_rows = sum(count for count, _ in source_buckets.values())
        self.target_rows = sum(count for count, _ in target_buckets.values())
        self._descend(KeyRange(), bounds, source_buckets, target_buckets)

    def _first_bounds(self, source_estimate: int, target_estimate: int) -> list[Key]:
        """Bucket bounds for the first pass, from a sample of the larger side's pages."""
        side, estimate = max(("source", source_estimate), ("target", target_estimate), key=lambda pair: pair[1])
        buckets = min(MAX_BUCKETS, estimate // BUCKET_ROWS)
        if buckets < 2:
            return []
        percent = min(100.0, 100.0 * buckets * SAMPLED_KEYS_PER_BUCKET / estimate)
        query = self._queries.boundaries(KeyRange(), SAMPLED_KEYS_PER_BUCKET, sample_percent=percent)
        return [tuple(row) for row in self._sides.query_one(side, query)]

    def _hash(self, key_range: KeyRange, bounds: list[Key]) -> tuple[dict, dict]:
        """{bucket: (rows, sum of row hashes)} for each side."""
        source_rows, target_rows = self._sides.query(self._queries.bucket_hashes(key_range, bounds))
        return ({bucket: (count, total) for bucket, count, total in source_rows},
                {bucket: (count, total) for bucket, count, total in target_rows})

    def _descend(self, key_range: KeyRange, bounds: list[Key], source: dict, target: dict) -> None:
        """Compare bucket by bucket in key order: read small differing buckets, split large ones."""
        small: list[tuple[KeyRange, int]] = []
        for bucket in range(len(bounds) + 1):
            source_bucket, target_bucket = source.get(bucket, (0, "0")), target.get(bucket, (0, "0"))
            if source_bucket == target_bucket:
                continue
            bucket_range = KeyRange(
                key_range.lower if bucket == 0 else bounds[bucket - 1],
                key_range.upper if bucket == len(bounds) else bounds[bucket],
            )
            rows = max(source_bucket[0], target_bucket[0])
            sub_bounds = self._split(bucket_range, source_bucket[0], target_bucket[0]) if rows > LEAF_ROWS else []
            if not sub_bounds:
                small.append((bucket_range, rows))
                continue
            self._read(small)  # keep the reported keys in key order
            small = []
            self._descend(bucket_range, sub_bounds, *self._hash(bucket_range, sub_bounds))
        self._read(small)

    def _split(self, key_range: KeyRange, source_rows: int, target_rows: int) -> list[Key]:
        """Exact quantiles of the larger side's keys in the range."""
        side, rows = ("source", source_rows) if source_rows >= target_rows else ("target", target_rows)
        every = max(BUCKET_ROWS, math.ceil(rows / MAX_BUCKETS))
        return [tuple(row) for row in self._sides.query_one(side, self._queries.boundaries(key_range, every))]

    def _read(self, ranges: Sequence[tuple[KeyRange, int]]) -> None:
        """Read (key, row hash) of the ranges on both sides, a bounded number of rows at a time."""
        batch, batch_rows = [], 0
        for key_range, rows in ranges:
            if batch and (batch_rows + rows > LEAF_ROWS or len(batch) >= MAX_RANGES_PER_READ):
                self._compare_rows(batch)
                batch, batch_rows = [], 0
            batch.append(key_range)
            batch_rows += rows
        if batch:
            self._compare_rows(batch)

    def _compare_rows(self, ranges: list[KeyRange]) -> None:
        source_rows, target_rows = self._sides.query(self._queries.row_hashes(ranges))
        target = {row[:-1]: row[-1] for row in target_rows}
        missing, extra, mismatched = (self.differences[kind] for kind in DIFFERENCE_KINDS)
        for row in source_rows:
            key, row_hash = row[:-1], row[-1]
            target_hash = target.pop(key, None)
            if target_hash is None:
                missing.add(self._describe(key))
            elif target_hash != row_hash:
                mismatched.add(self._describe(key))
        for key in target:  # left over: only in target, in key order
            extra.add(self._describe(key))

    def _describe(self, key: Key) -> dict[str, Any]:
        return {column.name: _key_value(column, value) for column, value in zip(self._queries.key_columns, key)}


def _key_value(column: Column, text: str) -> Any:
    return int(text) if column.is_integer else text
