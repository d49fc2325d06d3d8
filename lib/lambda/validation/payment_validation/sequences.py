"""The sequences a table's columns own (identity columns and serials), on both sides, and whether the
target's next value would collide with a row it already holds.

Replication (DMS among others) copies the ids rows carry but never advances the sequence that made
them: on the new writer after a cutover, the first insert then takes an id that is already used.
The cutover advances the sequences, then validates with `check_sequences` to prove it did.

A sequence's position is not transactional: it is read as it is at that moment, whatever snapshot
the session holds; the column's extremes are read in the table's snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

# Sequences owned by a column: identity ('i') and serial / OWNED BY ('a').
_OWNED_SEQUENCES_QUERY = """
SELECT a.attname, sn.nspname, s.relname, q.seqincrement, pg_catalog.has_sequence_privilege(s.oid, 'SELECT')
FROM pg_catalog.pg_class t
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = t.oid
     AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')
JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_catalog.pg_sequence q ON q.seqrelid = s.oid
JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
WHERE tn.nspname = %s AND t.relname = %s
ORDER BY a.attnum, sn.nspname, s.relname
"""


@dataclass(frozen=True)
class SequenceState:
    """One side's sequence owned by `column`."""

    column: str
    name: str  # schema.sequence
    increment: int
    next_value: int | None  # what the next nextval() returns; None: not readable (no SELECT privilege)


def read_owned_sequences(conn, schema: str, table: str) -> dict[str, SequenceState]:
    """The sequences the table's columns own, by column."""
    with conn.cursor() as cur:
        cur.execute(_OWNED_SEQUENCES_QUERY, (schema, table))
        owned = cur.fetchall()
        readable = [(seq_schema, seq_name) for _, seq_schema, seq_name, _, can_read in owned if can_read]
        positions = {}
        if readable:
            # last_value and is_called are only in the sequence relation itself
            cur.execute(sql.SQL(" UNION ALL ").join(
                sql.SQL("SELECT %s, last_value, is_called FROM {}").format(sql.Identifier(*name)) for name in readable
            ), [f"{seq_schema}.{seq_name}" for seq_schema, seq_name in readable])
            positions = {name: (last_value, is_called) for name, last_value, is_called in cur.fetchall()}
    states = {}
    for column, seq_schema, seq_name, increment, _ in owned:
        name, next_value = f"{seq_schema}.{seq_name}", None
        if name in positions:
            last_value, is_called = positions[name]
            next_value = last_value + increment if is_called else last_value
        states.setdefault(column, SequenceState(column, name, increment, next_value))
    return states


def read_column_extremes(conn, schema: str, table: str, columns: list[str]) -> dict[str, tuple[Any, Any]]:
    """{column: (min, max)} over the table's rows (an index probe each when the column is indexed)."""
    if not columns:
        return {}
    aggregates = sql.SQL(", ").join(
        sql.SQL("pg_catalog.min({0}), pg_catalog.max({0})").format(sql.Identifier(column)) for column in columns
    )
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {}").format(aggregates, sql.Identifier(schema, table)))
        row = cur.fetchone()
    return {column: (row[2 * i], row[2 * i + 1]) for i, column in enumerate(columns)}


@dataclass(frozen=True)
class OwnedSequence:
    """What the report says about the sequence owned by one column. Positions are the value the
    next nextval() returns on that side (None: no such sequence there, or not readable)."""

    column: str
    name: str  # the target's sequence; the source's where the target has none
    source_position: int | None
    target_position: int | None
    target_column_max: int | None
    problem: str | None  # why the target's next nextval() may collide; None: it will not

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "name": self.name,
            "source_position": self.source_position,
            "target_position": self.target_position,
            "target_column_max": self.target_column_max,
            "problem": self.problem,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OwnedSequence:
        return cls(data["column"], data["name"], data["source_position"], data["target_position"],
                   data["target_column_max"], data["problem"])


def compare_sequences(source: dict[str, SequenceState], target: dict[str, SequenceState],
                      target_extremes: dict[str, tuple[Any, Any]]) -> list[OwnedSequence]:
    """One entry per column owning a sequence on either side, in the target's column order."""
    reported = []
    for column in [*target, *(column for column in source if column not in target)]:
        on_source, on_target = source.get(column), target.get(column)
        low, high = target_extremes.get(column, (None, None))
        problem = None
        if on_target is None:
            problem = f"column {column} owns sequence {on_source.name} on source but no sequence on target"
        elif on_target.next_value is None:
            problem = f"sequence {on_target.name} cannot be read on target (grant SELECT on it)"
        elif on_target.increment > 0 and high is not None and on_target.next_value <= high:
            problem = (f"sequence {on_target.name} is behind column {column} on target: "
                       f"next value {on_target.next_value} <= max {high}")
        elif on_target.increment < 0 and low is not None and on_target.next_value >= low:
            problem = (f"sequence {on_target.name} is behind column {column} on target: "
                       f"next value {on_target.next_value} >= min {low}")
        reported.append(OwnedSequence(
            column=column,
            name=(on_target or on_source).name,
            source_position=on_source.next_value if on_source else None,
            target_position=on_target.next_value if on_target else None,
            target_column_max=_as_int(high),
            problem=problem,
        ))
    return reported


def _as_int(value: Any) -> int | None:
    return None if value is None else int(value)
