"""Sequences on the new writer. DMS and logical replication copy the values identity and serial
columns got, but never advance the sequences behind them: without this step the first insert on the
new writer draws a value the old writer already used (audit_log.audit_id collides and the payment
fails). Each sequence owned by a column of the tables is set on the new writer to at least the larger
of the old writer's position and the column's max on the new writer; never moved backwards."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from psycopg2 import sql

from payment_cutover.errors import SequenceError


@dataclass(frozen=True)
class OwnedSequence:
    schema: str
    name: str
    table: str
    column: str
    increment: int
    minimum: int


@dataclass(frozen=True)
class SequenceAdvance:
    sequence: str
    column: str
    old_writer_last_used: int | None
    new_writer_column_max: int | None
    new_writer_last_used_before: int | None
    set_to: int | None  # None: already past both, nothing set

    def to_dict(self) -> dict:
        return asdict(self)


def owned_sequences(conn, schema: str, tables: list[str]) -> list[OwnedSequence]:
    with conn.cursor() as cur:
        cur.execute(
            """SELECT sn.nspname, s.relname, t.relname, a.attname, q.seqincrement, q.seqmin
               FROM pg_class t
               JOIN pg_namespace tn ON tn.oid = t.relnamespace
               JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid
                               AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
               JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
               JOIN pg_namespace sn ON sn.oid = s.relnamespace
               JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
               JOIN pg_sequence q ON q.seqrelid = s.oid
               WHERE tn.nspname = %s AND t.relname = ANY(%s)
               ORDER BY t.relname, a.attname""",
            (schema, list(tables)),
        )
        return [OwnedSequence(*row) for row in cur.fetchall()]


def advance_sequences(old_writer, new_writer, schema: str, tables: list[str]) -> list[SequenceAdvance]:
    """Advance every sequence owned by a column of `tables` on `new_writer`. Idempotent: a second
    call finds every sequence already far enough and sets nothing."""
    results = []
    for seq in owned_sequences(new_writer, schema, tables):
        if seq.increment < 0:
            raise SequenceError(f"{seq.schema}.{seq.name} counts down (increment {seq.increment}); "
                                "advance it by hand")
        old_used = _last_used(old_writer, seq)
        new_used = _last_used(new_writer, seq)
        with new_writer.cursor() as cur:
            cur.execute(sql.SQL("SELECT max({}) FROM {}.{}").format(
                sql.Identifier(seq.column), sql.Identifier(schema), sql.Identifier(seq.table)))
            column_max = cur.fetchone()[0]
        used = [value for value in (old_used, column_max) if value is not None]
        set_to = None
        if used and (new_used is None or max(used) > new_used):
            set_to = max(used)
            with new_writer.cursor() as cur:
                # is_called = true: the next nextval() returns set_to + increment.
                cur.execute("SELECT setval(%s::regclass, %s, true)", (_qualified(seq), set_to))
        results.append(SequenceAdvance(sequence=_qualified(seq), column=f"{seq.table}.{seq.column}",
                                       old_writer_last_used=old_used, new_writer_column_max=column_max,
                                       new_writer_last_used_before=new_used, set_to=set_to))
    return results


def _last_used(conn, seq: OwnedSequence) -> int | None:
    """The last value the sequence handed out (or cached) on this side; None if it never did."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
            sql.Identifier(seq.schema), sql.Identifier(seq.name)))
        last_value, is_called = cur.fetchone()
    return last_value if is_called else None


def _qualified(seq: OwnedSequence) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in (seq.schema, seq.name))
