"""Compare a source and a target PostgreSQL database table by table: schema, row counts, content.

Plain Python taking two open psycopg2 connections, so the Lambda handler, the tests, the benchmark
and a rehearsal all call the same `validate`.

Content is compared by hashing inside PostgreSQL, on both sides at once (one thread per side;
psycopg2 releases the GIL while a query runs). A first pass over each table yields, for each of up
to 1024 primary-key ranges ("buckets"), the row count and the sum of 64-bit row hashes. Only buckets
whose count or sum differ are looked at again: a large one is split at exact key quantiles and
hashed again, a small one is read as the set of its row hashes on each side, and the rows whose
hash is on one side only are read with their keys, which names the exact keys missing in the
target, extra in the target, or present on both sides with different content. Identical tables
therefore cost one scan per side, and memory stays bounded by the size of a small bucket.

Both sessions pin every setting that changes how a value prints (time zone, date and interval
style, float digits, bytea format, …) and run in one read-only REPEATABLE READ transaction each,
so each side is compared as of a single snapshot and formatting never fakes or hides a difference.

A live replica is behind its source by the replication lag: rows written in the last seconds differ
without being wrong. So keys found different are settled before they are reported: after
`recheck_seconds`, up to `recheck_rounds` times, exactly those keys are read again by key, in fresh
snapshots on both sides (new transactions). A key equal on both sides in some round converged in
flight and is only counted; the keys still different after the last round are the report. A key
written more often than the lag lets it settle (a hot row) can stay different; more rounds only
help once the writes pause, as they do in a fenced cutover. Row counts are those of the first
pass's snapshots: on a live replica they differ and decide nothing.

Tables larger than one invocation can handle are cut by `plan` into chunks (key ranges, from the
first pass's bounds) that `validate` checks one at a time and `merge.merge` joins into one report.

ONLY WHAT CHANGED SINCE A CHECKPOINT (`validate_changes`). A full comparison costs O(rows); the
data cutover's fenced window, when every write is refused, must not. So the full comparison runs
before the fence, on the live replica with settle-and-recheck, after a CHECKPOINT: logical slots
(changes.py) made before that run starts. Inside the fence only the keys the slots decoded since
the checkpoint are compared, by key, as the recheck compares them; plus the sequences (and on
request the exact row counts, which cost O(rows)). Why that proves what a full comparison of the
fenced data would:

  Assumptions. (A1) The run after the checkpoint PASSED: for every key k, in some pair of snapshots
  (the first pass's, or a recheck round's) taken after the checkpoint, source(k) = target(k) (both
  absent counts as equal). (A2) A slot decodes every transaction that commits on its side after the
  slot's creation returned (creation waits for the transactions running then), and its WAL is read
  whole (peeked, up to what is flushed). (A3) The comparison in the fence reads both sides after the
  last change: both are fenced, and the marker proved replication caught up.

  The cutover's checkpoint is a slot on EACH side. Take a key k that neither slot names: no
  transaction changed k on either side since the checkpoint (A2), so source(k) and target(k) have
  been constant since then, and by (A1) they were equal at some moment after it: they are equal
  now. The keys the slots name are compared now, exactly (A3). So every key is equal, which is what
  a full comparison establishes — whoever wrote: the replication apply, or anyone writing to the
  target outside it, whose change its slot names like any other. Equal row counts follow.

  A checkpoint moves forward the same way. A comparison of the keys named up to positions P (read
  before its snapshots were taken) that PASSED makes P a checkpoint for which (A1) holds: the keys
  it compared were equal in snapshots after P, the others unchanged since the earlier run saw them
  equal. Advancing the slots to P then leaves the next comparison only what was written after P
  (the cutover's catch-up round before the fence; the scheduled runs between full passes).

  With a slot on the source alone (the scheduled runs), the argument needs one more assumption:
  (A4) only the replication apply writes to the target, applying the source's committed changes in
  commit order, each setting the target row to the image the change carries (the new row of an
  INSERT or UPDATE, absence for a DELETE), as DMS and PostgreSQL logical replication do. Then for a
  key the source's slot does not name, the target's k changes after the equal moment only by the
  apply of source changes committed before the checkpoint, the last of which leaves the source's
  image S, which has not changed since: equal again. A write on the target outside replication
  breaks (A4): the scheduled full pass (validation.full_every) finds it, and the exact row counts
  (`count_rows`) catch its inserts and deletes at once.

  A table whose changes cannot be enumerated (a TRUNCATE, a DELETE without key) is compared whole;
  past the caller's limit of changed rows, every table is (the report's `scope` says which). On a
  live replica (the scheduled runs), the differing keys are settled by the recheck rounds, and row
  counts decide nothing (`count_rows` off).

  How the named keys are compared. A batch of up to RECHECK_BATCH_KEYS keys is looked up by key on
  each side, and the sides first compare the batch as a first pass compares a bucket: the number of
  rows found and the exact sum (numeric, no wrap-around) of their 64-bit row hashes, which cover
  every compared column and the key. Only a batch whose figures differ is read again key by key to
  name its keys. This is as strong as reading every key's hash: a single differing key goes unseen
  only if its two row hashes collide, exactly as when compared alone; several only if their hash
  differences sum to exactly zero, a chance of the same order (about 2^-64) — and the full
  comparison this argument stands in for rests on the same bucket figures. So the fenced comparison
  keeps the strength it had with a hash per key.

  What a scheduled run over the changes proves, and what it does not. With (A1), (A2) and (A4): every
  row of the compared tables is equal on both sides up to the replication lag, settled by the
  recheck rounds — a change the replication lost, applied wrongly or not yet (stopped), and a write
  on the target to a key the source also changed that leaves the row different, all fail the run.
  It does NOT see a write on the
  target outside replication to a key the source left alone since the checkpoint (an extra row, an
  edit, a deletion): that breaks (A4), which this run cannot check at O(changes) with the source's
  slot alone — no target-side figure is both exact and cheap (its statistics counters are neither
  transactional nor kept across a crash; its exact row counts cost O(rows)). It is caught by the
  next full pass, at most `validation.full_every` later, which also restarts the checkpoint; and at
  the cutover by the fenced comparison, whose slot on the target names every such write. What a run
  costs: the slot's WAL since the checkpoint, decoded once (O(changes), though scattered updates
  bring full-page images with them), the changed keys parsed, one count-and-sum per batch of keys
  per side (an index lookup per key), the catalog (O(tables)) and the sequences (O(sequences)) —
  no statement reads a table whole unless its changes cannot be enumerated.

`validate_sequences` reads only the sequences (O(sequences): a catalog read and an index probe
per owned column), for the check after the cutover advanced them.
"""

from __future__ import annotations

import itertools
import math
import struct
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions

from .catalog import (
    DMS_CONTROL_SCHEMA, Column, TableSchema, comparable_columns, is_dms_control_table, read_tables,
    schema_differences,
)
from .changes import Changes, TableChanges
from .chunks import Chunk
from .queries import Key, KeyRange, Query, RowHash, TableQueries
from .sequences import OwnedSequence, compare_sequences, read_column_extremes, read_owned_sequences

# A bucket this small is read row by row (as the set of its row hashes, 8 bytes a row); a larger
# differing one is split first. Ten times the aimed bucket size: the sample's bounds fall on whole
# pages, so bucket sizes vary (exponentially), and a split costs another pass over the bucket.
LEAF_ROWS = 100_000
# Rows per bucket aimed at when a table or a range is split, and the most buckets in one pass.
# Fewer, larger buckets make each row's bucket cheaper to find (a binary search over the bounds)
# and the sample smaller; a differing bucket still fits one read.
BUCKET_ROWS = 10_000
MAX_BUCKETS = 1_024
# Sampled keys per bucket when choosing the first pass's bounds. The sample is of whole pages, and
# keys often follow the order rows were written in: a few dozen keys per bucket put about one
# sampled page in each bucket, so buckets come out of similar size.
SAMPLED_KEYS_PER_BUCKET = 32
# The sample reads pages of the whole table; when only a range of it (a chunk) is compared, the
# sample is kept to this share of the range's size, and the first pass makes fewer, larger buckets.
MAX_SAMPLE_SHARE = 0.02
# Key ranges read together in one query.
MAX_RANGES_PER_READ = 256
# Differing keys a table remembers for rechecking; further ones are reported without a recheck
# (memory stays bounded when a table really differs everywhere).
MAX_RECHECKED_KEYS = 100_000
# Keys looked up in one recheck query.
RECHECK_BATCH_KEYS = 5_000
# The most chunks `plan` cuts one table into.
MAX_CHUNKS_PER_TABLE = 1_000

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
    # Settle and recheck (module docstring): 0 rounds reports what the first pass finds, as on
    # quiet data; a live replica needs rounds * seconds well above its replication lag.
    recheck_rounds: int = 0
    recheck_seconds: float = 0.0
    # A target sequence that would hand out an id its column already holds fails the table.
    check_sequences: bool = False
    # Compare only this key range of one table (`tables` and `schemas` are then not used).
    chunk: Chunk | None = None


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

    def extend(self, other: Differences) -> None:
        """Append the keys of `other`, which all come after this one's in key order."""
        self.keys += other.keys[:max(0, self.limit - len(self.keys))]
        self.total += other.total


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
    converged_in_flight: int = 0  # keys that differed at first and were equal in a recheck
    sequences: list[OwnedSequence] = field(default_factory=list)

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
            "converged_in_flight": self.converged_in_flight,
            "sequences": [sequence.to_dict() for sequence in self.sequences],
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], limit: int) -> TableResult:
        """The result a `to_dict` made (a chunk's, read back by `merge`)."""
        return cls(
            status=Status(data["status"]),
            message=data["message"],
            schema_differences=list(data["schema_differences"]),
            **{kind: Differences(limit, list(data[kind]), data[f"{kind}_total"]) for kind in DIFFERENCE_KINDS},
            source_rows=data["source_rows"],
            target_rows=data["target_rows"],
            seconds=data["seconds"],
            converged_in_flight=data["converged_in_flight"],
            sequences=[OwnedSequence.from_dict(sequence) for sequence in data["sequences"]],
        )


@dataclass
class ValidationReport:
    tables: dict[str, TableResult]
    seconds: float
    recheck_rounds: int = 0  # rounds run (fewer than asked when every key settled sooner)
    chunk: Chunk | None = None
    # What was compared, when not every row: {"mode": "changes" | "sequences", …} (None: a full comparison)
    scope: dict[str, Any] | None = None

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
        report = {
            "status": self.status.value,
            "message": self.message,
            "seconds": round(self.seconds, 3),
            "recheck_rounds": self.recheck_rounds,
            "tables": {name: result.to_dict() for name, result in self.tables.items()},
        }
        if self.chunk is not None:
            report["chunk"] = self.chunk.to_dict()
        if self.scope is not None:
            report["scope"] = dict(self.scope)
        return report


def validate(source, target, options: ValidationOptions = ValidationOptions()) -> ValidationReport:
    """Compare the tables of `options.schemas` (or just `options.tables`, or one chunk of one table)
    between two databases, then settle the differing keys (`options.recheck_rounds`).

    Pins the session settings of both connections and leaves them rolled back. Raises
    ValidationError when the comparison cannot start (incompatible servers, unknown table,
    nothing to compare, a lost connection); a failure confined to one table is reported as that
    table's ERROR and the other tables are still compared.
    """
    started = time.monotonic()
    with _Session.open(source, target, options) as session:
        checks = [_TableCheck(session, name) for name in session.tables_to_check()]
        for check in checks:
            check.first_pass()
        rounds = _settle(session, checks)
        results = {check.name: check.result() for check in checks}
    return ValidationReport(results, time.monotonic() - started, recheck_rounds=rounds, chunk=options.chunk)


def validate_changes(source, target, changes: Changes, options: ValidationOptions = ValidationOptions(), *,
                     count_rows: bool = True) -> ValidationReport:
    """Compare only the keys `changes` names (the rows changed on the source since a checkpoint, see
    the module docstring for why that suffices), table by table, plus the exact row counts when
    `count_rows` (on quiet data: a difference fails the table) and the sequences. A table whose
    changes could not be enumerated is compared whole. Settles differing keys like `validate`.
    `changes.overflow` is the caller's to handle (compare in full): raises ValueError."""
    if changes.overflow:
        raise ValueError("the changes overflowed their limit: compare in full (validate)")
    started = time.monotonic()
    with _Session.open(source, target, options) as session:
        checks = [_TableCheck(session, name) for name in session.tables_to_check()]
        for check in checks:
            check.changes_pass(changes.tables.get(check.name), count_rows)
        rounds = _settle(session, checks)
        results = {check.name: check.result() for check in checks}
    scope = {"mode": "changes", "changed_rows": changes.rows,
             "keys_compared": sum(check.keys_compared for check in checks),
             "compared_whole": {check.name: check.whole_reason for check in checks if check.whole_reason},
             "row_counts": count_rows}
    return ValidationReport(results, time.monotonic() - started, recheck_rounds=rounds, scope=scope)


def validate_sequences(source, target, options: ValidationOptions = ValidationOptions()) -> ValidationReport:
    """Only the sequences of the tables (O(sequences)): a target sequence whose next value its
    column already holds fails its table. Content is not compared (the tables' source_rows are None)."""
    started = time.monotonic()
    with _Session.open(source, target, options) as session:
        checks = [_TableCheck(session, name) for name in session.tables_to_check()]
        for check in checks:
            check.sequences_pass()
        results = {check.name: check.result() for check in checks}
    return ValidationReport(results, time.monotonic() - started, scope={"mode": "sequences"})


def plan(source, target, options: ValidationOptions, chunk_rows: int) -> list[Chunk]:
    """Cut each table `validate` would compare into chunks of about `chunk_rows` rows, in key
    order, at bounds of the first pass's sample. A table whose content cannot be compared by key
    (missing on one side, no or different primary keys) is one whole-table chunk, which reports
    what a single run reports for it."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be positive")
    chunks: list[Chunk] = []
    with _Session.open(source, target, options) as session:
        for name in session.tables_to_check():
            queries = session.content_queries(name)
            bounds = _chunk_bounds(session.sides, queries, chunk_rows) if queries else []
            edges = [None, *bounds, None]
            chunks += [Chunk(name, index, len(edges) - 1, edges[index], edges[index + 1])
                       for index in range(len(edges) - 1)]
    return chunks


def _chunk_bounds(sides: _Sides, queries: TableQueries, chunk_rows: int) -> list[Key]:
    (source_plan,), (target_plan,) = sides.query(queries.estimated_rows())
    estimates = {"source": queries.parse_estimate(source_plan[0]), "target": queries.parse_estimate(target_plan[0])}
    side = max(estimates, key=estimates.get)
    wanted = min(MAX_CHUNKS_PER_TABLE, math.ceil(estimates[side] / chunk_rows))
    if wanted < 2:
        return []
    bounds = _sampled_bounds(sides, side, queries, KeyRange(), estimates[side], estimates[side])
    count = min(wanted, len(bounds) + 1)
    step = (len(bounds) + 1) / count
    return [bounds[round(index * step) - 1] for index in range(1, count)]


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

    def on(self, side: str):
        return self._connections[side]

    @property
    def broken(self) -> bool:
        return any(conn.closed for conn in self._connections.values())

    def rollback(self) -> None:
        """End both transactions: the next statement on each side starts a new one, with a fresh
        snapshot (after a failed statement, or to see what was committed since)."""
        for conn in self._connections.values():
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg2.Error:
                    pass


class _Session:
    """Both connections prepared, the tables each side holds, and what the run asked for."""

    def __init__(self, sides: _Sides, options: ValidationOptions, row_hash: RowHash,
                 source_tables: dict[str, TableSchema], target_tables: dict[str, TableSchema]):
        self.sides = sides
        self.options = options
        self.row_hash = row_hash
        self.source_tables = source_tables
        self.target_tables = target_tables

    @classmethod
    @contextmanager
    def open(cls, source, target, options: ValidationOptions) -> Iterator[_Session]:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="validation") as pool:
            sides = _Sides(source, target, pool)
            try:
                source_server, target_server = sides.call(
                    lambda conn, side: _prepare_session(conn, side, options.statement_timeout_seconds)
                )
                row_hash = _row_hash_method(source_server, target_server)
                named = options.tables if options.chunk is None else (options.chunk.table,)
                schemas = sorted(set(options.schemas) | {name.split(".", 1)[0] for name in named if "." in name})
                source_tables, target_tables = sides.call(
                    lambda conn, side: _call_on(side, read_tables, conn, schemas))
                yield cls(sides, options, row_hash, source_tables, target_tables)
            finally:
                sides.rollback()

    def tables_to_check(self) -> list[str]:
        options = self.options
        known = set(self.source_tables) | set(self.target_tables)
        if options.chunk is not None:
            if options.chunk.table not in known:
                raise UnknownTableError(f"chunk table {options.chunk.table} not found in source or target")
            return [options.chunk.table]
        if not options.tables:
            if not known:
                raise NothingToValidateError(
                    f"no tables in schemas {', '.join(options.schemas)} on either database: check SCHEMAS"
                )
            return sorted(known)
        selected, unknown, control = [], [], []
        for name in options.tables:
            candidates = [name] if "." in name else [f"{schema}.{name}" for schema in options.schemas]
            found = next((candidate for candidate in candidates if candidate in known), None)
            if found is None:
                (control if is_dms_control_table(*_split_name(candidates[0])) else unknown).append(name)
            elif found not in selected:
                selected.append(found)
        if control:
            raise UnknownTableError(
                f"{', '.join(control)}: AWS DMS control tables (schema {DMS_CONTROL_SCHEMA} or awsdms_*) "
                "are never compared"
            )
        if unknown:
            raise UnknownTableError(
                f"tables not found in source or target (schemas {', '.join(options.schemas)}): {', '.join(unknown)}"
            )
        return selected

    def content_queries(self, name: str) -> TableQueries | None:
        """The queries comparing the table's content by key; None when rows cannot be matched by key."""
        source, target = self.source_tables.get(name), self.target_tables.get(name)
        if source is None or target is None or not source.primary_key or source.primary_key != target.primary_key:
            return None
        columns = comparable_columns(source, target)
        if not set(source.primary_key) <= {column.name for column in columns}:
            return None
        return TableQueries(source, columns, self.row_hash)


def _split_name(name: str) -> tuple[str, str]:
    schema, _, table = name.rpartition(".")
    return schema, table


# -- tables --------------------------------------------------------------------------------------


class _TableCheck:
    """One table: its first pass (schema, content, sequences), its rechecks, its result."""

    def __init__(self, session: _Session, name: str):
        self.name = name
        self._session = session
        self._options = session.options
        self._source = session.source_tables.get(name)
        self._target = session.target_tables.get(name)
        self._seconds = 0.0
        self._schema_differences: list[str] = []
        self._sequences: list[OwnedSequence] = []
        self._content: _ContentComparison | None = None
        self._decided: tuple[Status, str] | None = None  # the verdict when content is not (or no longer) compared
        self._count_problem: str | None = None
        self.keys_compared = 0
        self.whole_reason: str | None = None  # a changes pass that compared the table whole, and why

    @property
    def unsettled(self) -> bool:
        return self._decided is None and self._content is not None and bool(self._content.unsettled)

    def first_pass(self) -> None:
        self._timed(self._first_pass)

    def recheck(self) -> None:
        self._timed(self._content.recheck)

    def changes_pass(self, changes: TableChanges | None, count_rows: bool) -> None:
        self._timed(lambda: self._changes_pass(changes, count_rows))

    def sequences_pass(self) -> None:
        self._timed(self._sequences_pass)

    def _timed(self, step: Callable[[], None]) -> None:
        started = time.monotonic()
        try:
            step()
        except QueryFailed as error:
            if self._session.sides.broken:
                raise
            self._session.sides.rollback()  # the failed transaction; the next table starts a fresh one
            self._decided = (Status.ERROR, str(error))
        finally:
            self._seconds += time.monotonic() - started

    def _first_pass(self) -> None:
        source, target = self._source, self._target
        if source is None or target is None:
            where = "missing in target" if target is None else "missing in source (exists only in target)"
            self._schema_differences = [f"table is {where}"]
            self._decided = (Status.FAILED, f"table is {where}")
            return
        self._schema_differences = schema_differences(source, target)
        chunk = self._options.chunk
        if chunk is not None and (chunk.lower or chunk.upper) and len(chunk.lower or chunk.upper) != len(source.primary_key):
            raise ValidationError(
                f"chunk bounds of {chunk.describe()} have {len(chunk.lower or chunk.upper)} values but the "
                f"primary key has {len(source.primary_key)} columns: plan again"
            )
        queries = self._session.content_queries(self.name)
        if queries is not None:
            self._content = _ContentComparison(
                self._session.sides, queries, self._options.max_diffs_per_table,
                MAX_RECHECKED_KEYS if self._options.recheck_rounds else 0,
            )
            self._content.run(chunk.key_range if chunk else KeyRange())
        elif not source.primary_key and not target.primary_key:
            status = Status.FAILED if self._schema_differences else Status.UNVERIFIABLE
            self._decided = (status, "no primary key: rows cannot be matched by key, content not compared")
        else:
            self._decided = (Status.FAILED, "primary keys differ: content not compared")
        if chunk is None or chunk.holds_table_start:
            self._sequences = self._read_sequences(source, target)

    def _changes_pass(self, changes: TableChanges | None, count_rows: bool) -> None:
        source, target = self._source, self._target
        queries = self._session.content_queries(self.name) if source and target else None
        if queries is None:
            self._first_pass()  # what a full pass reports for a table that cannot be compared by key
            return
        self._schema_differences = schema_differences(source, target)
        self._content = _ContentComparison(
            self._session.sides, queries, self._options.max_diffs_per_table,
            MAX_RECHECKED_KEYS if self._options.recheck_rounds else 0,
        )
        keys: set | None = set()
        if changes is not None and changes.truncated:
            self.whole_reason = "truncated, or deleted without its key, since the checkpoint"
        elif changes is not None:
            keys = changes.keys(source.primary_key)
            if keys is None:
                self.whole_reason = "a change since the checkpoint does not carry the whole primary key"
        if self.whole_reason:
            self._content.run(KeyRange())
        else:
            self.keys_compared = len(keys)
            self._content.compare_keys(sorted(keys))
            if count_rows:
                (source_count,), (target_count,) = self._session.sides.query(queries.row_count())
                self._content.source_rows, self._content.target_rows = source_count[0], target_count[0]
                if source_count[0] != target_count[0]:
                    self._count_problem = (
                        f"row counts differ (source {source_count[0]}, target {target_count[0]}) though every key "
                        "changed since the checkpoint matches: a side was written outside replication; compare in full")
        self._sequences = self._read_sequences(source, target)

    def _sequences_pass(self) -> None:
        source, target = self._source, self._target
        if source is None or target is None:
            where = "missing in target" if target is None else "missing in source (exists only in target)"
            self._decided = (Status.FAILED, f"table is {where}")
            return
        self._sequences = self._read_sequences(source, target)
        self._decided = (Status.PASSED, f"{len(self._sequences)} sequences checked; content not compared")

    def _read_sequences(self, source: TableSchema, target: TableSchema) -> list[OwnedSequence]:
        sides, tables = self._session.sides, {"source": source, "target": target}
        source_owned, target_owned = sides.call(lambda conn, side: _call_on(
            side, read_owned_sequences, conn, tables[side].schema, tables[side].name))
        extremes = _call_on("target", read_column_extremes, sides.on("target"), target.schema, target.name,
                            list(target_owned))
        return compare_sequences(source_owned, target_owned, extremes)

    def result(self) -> TableResult:
        limit = self._options.max_diffs_per_table
        differences = {kind: Differences(limit) for kind in DIFFERENCE_KINDS}
        content = {}
        if self._content is not None and (self._decided is None or self._decided[0] is not Status.ERROR):
            differences = self._content.final_differences()
            content = dict(source_rows=self._content.source_rows, target_rows=self._content.target_rows,
                           converged_in_flight=self._content.converged)
        if self._decided is not None:
            status, message = self._decided
            problems = [sequence.problem for sequence in self._sequences if sequence.problem]
            if status is not Status.ERROR and self._options.check_sequences and problems:
                status, message = Status.FAILED, "; ".join([message, *problems])
        else:
            status, message = verdict(self._schema_differences, differences, self._sequences,
                                      self._options.check_sequences, self._content.not_rechecked)
            if self._count_problem:
                status, message = Status.FAILED, f"{message}; {self._count_problem}"
        return TableResult(status, message, list(self._schema_differences), **differences, **content,
                           seconds=self._seconds, sequences=self._sequences)


def verdict(schema_differences: Sequence[str], differences: dict[str, Differences], sequences: Sequence[OwnedSequence],
            check_sequences: bool, not_rechecked: int = 0) -> tuple[Status, str]:
    """Status and message of a table whose content was compared."""
    found = [f"{d.total} {kind}" for kind, d in differences.items() if d.total]
    if schema_differences:
        message = "schema differs" + (f"; {', '.join(found)}" if found else "")
    elif found:
        message = ", ".join(found)
    else:
        message = "match"
    if not_rechecked:
        message += f" ({not_rechecked} of them beyond the first {MAX_RECHECKED_KEYS} differing keys, not rechecked)"
    problems = [sequence.problem for sequence in sequences if sequence.problem] if check_sequences else []
    if problems:
        message = "; ".join([message, *problems])
    failed = schema_differences or found or problems
    return (Status.FAILED if failed else Status.PASSED), message


def _settle(session: _Session, checks: Sequence[_TableCheck]) -> int:
    """Recheck the differing keys of every table, round after round; the number of rounds run."""
    options, rounds = session.options, 0
    while rounds < options.recheck_rounds and any(check.unsettled for check in checks):
        session.sides.rollback()  # no snapshot held while waiting; each round reads in fresh ones
        _wait(options.recheck_seconds)
        rounds += 1
        for check in checks:
            if check.unsettled:
                check.recheck()
    return rounds


def _wait(seconds: float) -> None:
    """The pause before a recheck round, while replication catches up (a seam for tests, which act
    on the databases there)."""
    time.sleep(seconds)


class _ContentComparison:
    """Finds the keys that differ between the two sides of one table (see the module docstring)."""

    def __init__(self, sides: _Sides, queries: TableQueries, max_diffs: int, recheck_limit: int):
        self._sides = sides
        self._queries = queries
        self._max_diffs = max_diffs
        self._recheck_limit = recheck_limit
        # The first keys found different, in key order, with their kind as last seen: rechecked.
        self.unsettled: dict[Key, str] = {}
        # Keys found different beyond the recheck limit (all of them when not rechecking).
        self._beyond = {kind: Differences(max_diffs) for kind in DIFFERENCE_KINDS}
        self.converged = 0
        self.source_rows = 0
        self.target_rows = 0

    @property
    def not_rechecked(self) -> int:
        return sum(d.total for d in self._beyond.values()) if self._recheck_limit else 0

    def final_differences(self) -> dict[str, Differences]:
        """The keys still different, per kind, in key order."""
        final = {kind: Differences(self._max_diffs) for kind in DIFFERENCE_KINDS}
        for key, kind in self.unsettled.items():
            final[kind].add(self._describe(key))
        for kind, beyond in self._beyond.items():
            final[kind].extend(beyond)
        return final

    def run(self, key_range: KeyRange) -> None:
        table_estimate = range_estimate = 0
        if key_range != KeyRange():
            (source_plan,), (target_plan,) = self._sides.query(self._queries.estimated_rows())
            table_estimate = max(self._queries.parse_estimate(source_plan[0]),
                                 self._queries.parse_estimate(target_plan[0]))
        (source_plan,), (target_plan,) = self._sides.query(self._queries.estimated_rows(key_range))
        estimates = {"source": self._queries.parse_estimate(source_plan[0]),
                     "target": self._queries.parse_estimate(target_plan[0])}
        side = max(estimates, key=estimates.get)
        range_estimate = estimates[side]
        bounds = _sampled_bounds(self._sides, side, self._queries, key_range, range_estimate,
                                 max(table_estimate, range_estimate))
        source_buckets, target_buckets = self._hash(key_range, bounds)
        self.source_rows = sum(count for count, _ in source_buckets.values())
        self.target_rows = sum(count for count, _ in target_buckets.values())
        self._descend(key_range, bounds, source_buckets, target_buckets)

    def compare_keys(self, keys: Sequence[Key]) -> None:
        """Compare exactly these keys on both sides (by key, in the sides' current snapshots); a key
        absent from both is equal. The row counts are the keys found on each side.

        A batch of keys is first compared as a first pass compares a bucket: the count and the sum
        of the row hashes of its rows on each side, one row back per side. Only a batch where they
        differ is read again key by key, which names the keys."""
        for start in range(0, len(keys), RECHECK_BATCH_KEYS):
            batch = keys[start:start + RECHECK_BATCH_KEYS]
            (source_sum,), (target_sum,) = self._sides.query(self._queries.row_hash_sum_of(batch))
            if tuple(source_sum) == tuple(target_sum):
                self.source_rows += source_sum[0]
                self.target_rows += target_sum[0]
                continue
            source_rows, target_rows = self._sides.query(self._queries.row_hashes_of(batch))
            # keyed by the text each side prints for the key (the same pinned settings on both), not
            # by the text the caller gave, which may be formatted otherwise
            source = {row[:-1]: row[-1] for row in source_rows}
            target = {row[:-1]: row[-1] for row in target_rows}
            self.source_rows += len(source)
            self.target_rows += len(target)
            for key in sorted(source.keys() | target.keys()):
                kind = _difference(source.get(key), target.get(key))
                if kind is not None:
                    self._found(key, kind)

    def recheck(self) -> None:
        """Read the unsettled keys again on both sides (by key, in the sides' current snapshots)."""
        keys = list(self.unsettled)
        for start in range(0, len(keys), RECHECK_BATCH_KEYS):
            batch = keys[start:start + RECHECK_BATCH_KEYS]
            source_rows, target_rows = self._sides.query(self._queries.row_hashes_of(batch))
            source = {row[:-1]: row[-1] for row in source_rows}
            target = {row[:-1]: row[-1] for row in target_rows}
            for key in batch:
                kind = _difference(source.get(key), target.get(key))
                if kind is None:
                    del self.unsettled[key]
                    self.converged += 1
                else:
                    self.unsettled[key] = kind

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
        """Compare the rows of the ranges on both sides, a bounded number of rows at a time.
        Adjacent ranges (where most buckets differ) are read as one."""
        batch, batch_rows = [], 0
        for key_range, rows in ranges:
            if batch and (batch_rows + rows > LEAF_ROWS or len(batch) >= MAX_RANGES_PER_READ):
                self._compare_rows(batch)
                batch, batch_rows = [], 0
            if batch and batch[-1].upper is not None and batch[-1].upper == key_range.lower:
                batch[-1] = KeyRange(batch[-1].lower, key_range.upper)
            else:
                batch.append(key_range)
            batch_rows += rows
        if batch:
            self._compare_rows(batch)

    def _compare_rows(self, ranges: list[KeyRange]) -> None:
        """Compare the rows of the ranges as two sets of row hashes, then read just the rows whose
        hash is on one side only, by their ctids: a batch where 1 % of rows differ costs little more
        than one where none do, and no tuple is made per row."""
        (source_set,), (target_set,) = self._sides.query(self._queries.row_hash_set(ranges))
        # {row hash: its position}, made in C; the two key views give the one-sided hashes
        positions = {side: dict(zip(_int8s(packed[0]), itertools.count()))
                     for side, packed in (("source", source_set), ("target", target_set))}
        ctids = {"source": source_set[1], "target": target_set[1]}
        only = {"source": positions["source"].keys() - positions["target"].keys(),
                "target": positions["target"].keys() - positions["source"].keys()}
        if not only["source"] and not only["target"]:
            return

        def one_sided_rows(conn, side: str) -> list[tuple]:
            if not only[side]:
                return []
            at = [_ctid(ctids[side], positions[side][row_hash]) for row_hash in only[side]]
            return _fetch(conn, side, self._queries.rows_at(at, sorted(only[side])))

        source_rows, target_rows = self._sides.call(one_sided_rows)
        source_rows = [(row[:-1], row[-1]) for row in source_rows]  # key order
        target = {row[:-1]: row[-1] for row in target_rows}
        for key, row_hash in source_rows:
            target_hash = target.pop(key, None)
            if target_hash is None:
                self._found(key, "missing_in_target")
            elif target_hash != row_hash:
                self._found(key, "mismatched")
        for key in target:  # left over: only in target, in key order
            self._found(key, "extra_in_target")

    def _found(self, key: Key, kind: str) -> None:
        if len(self.unsettled) < self._recheck_limit:
            self.unsettled[key] = kind
        else:
            self._beyond[kind].add(self._describe(key))

    def _describe(self, key: Key) -> dict[str, Any]:
        return {column.name: _key_value(column, value) for column, value in zip(self._queries.key_columns, key)}


def _sampled_bounds(sides: _Sides, side: str, queries: TableQueries, key_range: KeyRange, range_estimate: int,
                    table_estimate: int) -> list[Key]:
    """Bucket bounds for a first pass over the range, from a sample of `side`'s pages.

    The sample reads a share of the whole table's pages, of which the range holds
    range_estimate / table_estimate: for a small range (a chunk) the share is capped so the sample
    costs a small part of hashing the range, and the buckets come out fewer and larger."""
    buckets = min(MAX_BUCKETS, range_estimate // BUCKET_ROWS)
    if buckets < 2 or table_estimate <= 0:
        return []
    fraction = 100.0 * buckets * SAMPLED_KEYS_PER_BUCKET / range_estimate
    percent = min(100.0, fraction, 100.0 * MAX_SAMPLE_SHARE * range_estimate / table_estimate)
    buckets = min(buckets, int(percent / 100.0 * range_estimate / SAMPLED_KEYS_PER_BUCKET))
    if buckets < 2:
        return []
    query = queries.boundaries(key_range, SAMPLED_KEYS_PER_BUCKET, sample_percent=percent)
    return [tuple(row) for row in sides.query_one(side, query)]


def _int8s(packed: bytes | memoryview | None) -> array:
    """The int8 values sent back to back (big-endian, as int8send writes them)."""
    values = array("q")
    if packed is not None:
        values.frombytes(packed)
        if sys.byteorder == "little":
            values.byteswap()
    return values


def _ctid(packed: bytes | memoryview, index: int) -> str:
    """The index-th of the ctids sent back to back (block and offset, as tidsend writes them)."""
    block, offset = struct.unpack_from(">IH", packed, 6 * index)
    return f"({block},{offset})"


def _difference(source_hash: Any, target_hash: Any) -> str | None:
    """The kind of difference between one key's row hashes (None: absent), None when equal."""
    if source_hash == target_hash:
        return None
    if target_hash is None:
        return "missing_in_target"
    if source_hash is None:
        return "extra_in_target"
    return "mismatched"


def _key_value(column: Column, text: str) -> Any:
    return int(text) if column.is_integer else text
