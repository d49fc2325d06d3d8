"""The keys written on a database since a checkpoint, read exactly from a logical replication slot.

A checkpoint is a logical slot with the test_decoding plugin, made on the source before a
validation starts: every transaction that commits after the slot's creation returns is decoded from
it, and nothing before. `read_changes` peeks (never consumes) the slot and collects, per table, the
primary keys of every row inserted, updated (both the old and the new key when the key changed) or
deleted. A TRUNCATE, or a change whose key the WAL does not carry (REPLICA IDENTITY NOTHING), makes
the table's changes unenumerable: it must then be compared whole.

Peeking a slot needs the REPLICATION attribute (rds_replication on RDS/Aurora): the cutover
controller's role has it, the validator's does not. The slot is therefore made, read and dropped by
the controller; the comparison itself is the validation engine's (engine.validate_changes).

Values are the text test_decoding prints (the type's output function); the engine casts them back
to the key column's type on both sides, so their formatting never decides a comparison.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from payment_common.wal import flush_wal

CHECKPOINT_PLUGIN = "test_decoding"


class ChangesUnreadable(Exception):
    """The slot is missing or its WAL cannot be read: what changed since the checkpoint is unknown."""


@dataclass
class TableChanges:
    """One table's changed rows since the checkpoint, as test_decoding printed each tuple (the whole
    row for an INSERT or UPDATE, the key for a DELETE); parsed only as far as the key columns."""

    tuples: list[str] = field(default_factory=list)
    truncated: bool = False  # a TRUNCATE, or a DELETE without key: the keys cannot be enumerated

    @property
    def rows(self) -> list[dict[str, str | None]]:
        """Every changed row's columns, {column: value text}."""
        return [parse_tuple(text) for text in self.tuples]

    def keys(self, key_columns: tuple[str, ...]) -> set[tuple] | None:
        """The distinct keys of the changed rows; None when a row does not carry the whole key.
        A tuple that starts with the key columns, in key order (the usual table), is read with one
        match; any other is parsed column by column."""
        wanted = frozenset(key_columns)
        leading = _leading_key(key_columns).match
        keys = set()
        for text in self.tuples:
            match = leading(text)
            if match is not None:
                groups = match.groups()
                key = tuple([bare if quoted is None else quoted.replace("''", "'") if "'" in quoted else quoted
                             for quoted, bare in zip(groups[::2], groups[1::2])])
                if "null" not in key and "unchanged-toast-datum" not in key:
                    keys.add(key)
                    continue
            values = parse_tuple(text, wanted)
            if len(values) < len(wanted):
                return None
            keys.add(tuple(values[name] for name in key_columns))
        return keys


@dataclass
class Changes:
    """What the slot decoded since the checkpoint, up to `upto_lsn` (None: everything flushed)."""

    tables: dict[str, TableChanges] = field(default_factory=dict)  # "schema.table" → its changes
    rows: int = 0  # changed rows decoded (a row changed twice counts twice)
    overflow: bool = False  # more than `max_rows` changed rows: not all were collected
    upto_lsn: str | None = None

    def table(self, name: str) -> TableChanges:
        return self.tables.setdefault(name, TableChanges())

    def merged(self, other: Changes, max_rows: int) -> Changes:
        """The changes of both (e.g. of the source and of the target since the same checkpoint)."""
        merged = Changes(rows=self.rows + other.rows, overflow=self.overflow or other.overflow
                         or self.rows + other.rows > max_rows)
        for changes in (self, other):
            for name, table in changes.tables.items():
                into = merged.table(name)
                into.tuples += table.tuples
                into.truncated = into.truncated or table.truncated
        return merged


def read_changes(conn, slot: str, *, max_rows: int, upto_lsn: str | None = None) -> Changes:
    """The changes decoded from `slot` (peeked: the slot does not move), collecting at most
    `max_rows` changed rows (beyond that, `overflow`). `conn` is an autocommit connection of a role
    that may read replication slots."""
    with conn.cursor() as cur:
        cur.execute("SELECT plugin FROM pg_catalog.pg_replication_slots WHERE slot_name = %s", (slot,))
        row = cur.fetchone()
        if row is None:
            raise ChangesUnreadable(f"the checkpoint slot {slot} does not exist on {conn.info.dbname}")
        if row[0] != CHECKPOINT_PLUGIN:
            raise ChangesUnreadable(f"slot {slot} decodes with {row[0]}, not {CHECKPOINT_PLUGIN}: not a checkpoint")
        _wait_for_flush(cur, conn.info.dbname)
        # Rows come one at a time from a named cursor would need a transaction; the changes of a
        # fenced window (and of an hour of a payment database) fit in memory as text many times over.
        cur.execute("SELECT data FROM pg_catalog.pg_logical_slot_peek_changes(%s, %s::pg_lsn, NULL, "
                    "'skip-empty-xacts', '1', 'include-xids', '0')", (slot, upto_lsn))
        changes = Changes(upto_lsn=upto_lsn)
        for (data,) in cur:
            if changes.overflow:
                continue  # drain the result
            _collect(changes, data, max_rows)
    return changes


def current_lsn(conn) -> str:
    """Where the server's WAL ends now: every transaction committed so far lies before it. The
    insert position, not pg_current_wal_lsn (the write position): an asynchronous commit, such as a
    replication apply's, may still sit in the WAL buffers, behind the write position — a checkpoint
    moved there would leave it to be compared again."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_catalog.pg_current_wal_insert_lsn()::text")
        return cur.fetchone()[0]


def _wait_for_flush(cur, where: str) -> None:
    """Everything committed so far is decodable once this returns (payment_common.wal says how)."""
    try:
        flush_wal(cur, "flush")
    except Exception as error:  # noqa: BLE001 - any refusal makes the changes unreadable, said as such
        raise ChangesUnreadable(f"the WAL of {where} could not be flushed before reading: {error}") from error


_OPERATIONS = (": INSERT: ", ": UPDATE: ", ": DELETE: ", ": TRUNCATE:")


def _collect(changes: Changes, data: str, max_rows: int) -> None:
    if not data.startswith("table "):
        return  # BEGIN, COMMIT, messages
    for operation in _OPERATIONS:
        at = data.find(operation)
        if at > 0:
            break
    else:
        return
    names = data[len("table "):at]
    if operation == ": TRUNCATE:":
        for name in names.split(", "):
            changes.table(_unquote_qualified(name)).truncated = True
        return
    table = changes.table(_unquote_qualified(names))
    body = data[at + len(operation):]
    if body.startswith("(no-tuple-data)"):
        table.truncated = True
        return
    tuples = [body]
    if body.startswith("old-key: "):
        old, _, new = body[len("old-key: "):].partition(" new-tuple: ")
        tuples = [old, new]
    for text in tuples:
        if changes.rows >= max_rows:
            changes.overflow = True
            return
        table.tuples.append(text)
        changes.rows += 1


# One column of a test_decoding tuple: `name[type]:value`, the name quoted as quote_identifier
# quotes it (doubled quotes inside), the type up to the first "]:" (array types end in "[]"), the
# value quoted with doubled quotes inside or bare (a number, a boolean, null,
# unchanged-toast-datum). Matched column by column from the tuple's start, never searched for: a
# quoted value may contain text that looks like a column.
_COLUMN = re.compile(r'''(?:"([^"]*(?:""[^"]*)*)"|([^\["]*))\[(?:[^\]]|\](?!:))*\]:(?:'([^']*(?:''[^']*)*)'|([^ ]*)) ?''', re.DOTALL)


@functools.lru_cache(maxsize=256)
def _leading_key(key_columns: tuple[str, ...]) -> re.Pattern:
    """A tuple's first columns when they are `key_columns` in this order: (quoted, bare) value per
    column. Anchored at the tuple's start, so a column name inside a quoted value never matches."""
    def column(name: str) -> str:
        printed = name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'
        return re.escape(printed) + r"""\[(?:[^\]]|\](?!:))*\]:(?:'([^']*(?:''[^']*)*)'|([^ ']*))(?: |$)"""
    return re.compile("".join(column(name) for name in key_columns), re.DOTALL)


def parse_tuple(text: str, wanted: frozenset[str] | None = None) -> dict[str, str | None]:
    """{column: value text} of a test_decoding tuple `name[type]:value name[type]:value …`; a NULL
    is None; a TOASTed value left unchanged by an UPDATE is left out (keys are never TOASTed).
    With `wanted`, only those columns, and the parsing stops once it has them all (keys usually
    come first: one match per key column)."""
    values: dict[str, str | None] = {}
    position, length = 0, len(text)
    match_column = _COLUMN.match
    while position < length and (wanted is None or len(values) < len(wanted)):
        column = match_column(text, position)
        if column is None:
            raise ValueError(f"not a test_decoding tuple at character {position}: {text[position:position + 80]!r}")
        quoted_name, name, quoted_value, value = column.groups()
        position = column.end()
        if quoted_name is not None:
            name = quoted_name.replace('""', '"')
        if quoted_value is not None:
            value = quoted_value.replace("''", "'")
        elif value == "null":
            value = None
        elif value == "unchanged-toast-datum":
            continue
        if wanted is None or name in wanted:
            values[name] = value
    return values


def _quoted(text: str, position: int, quote: str) -> tuple[str, int]:
    """The text between `quote`s at `position` (a doubled quote inside stands for one), and the
    position after the closing quote."""
    parts, position = [], position + 1
    while True:
        end = text.index(quote, position)
        parts.append(text[position:end])
        if text.startswith(quote, end + 1):
            parts.append(quote)
            position = end + 2
            continue
        return "".join(parts), end + 1


def _unquote_qualified(name: str) -> str:
    """"schema.table" from quote_qualified_identifier's output."""
    schema, position = _qualified_part(name, 0)
    table, _ = _qualified_part(name, position + 1)
    return f"{schema}.{table}"


def _qualified_part(name: str, position: int) -> tuple[str, int]:
    if name.startswith('"', position):
        return _quoted(name, position, '"')
    end = name.find(".", position)
    end = len(name) if end < 0 else end
    return name[position:end], end
