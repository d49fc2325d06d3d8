"""What tables a database holds, with their columns and primary keys, and how two of them differ."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): "numeric(18,2)", "character(3)", "public.status_kind", …
    type_schema: str  # schema and name of the type itself, to CAST(… AS schema.name)
    type_name: str
    collatable: bool

    @property
    def is_integer(self) -> bool:
        return self.type_schema == "pg_catalog" and self.type_name in ("int2", "int4", "int8")


@dataclass(frozen=True)
class TableSchema:
    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]  # column names in key order; empty when the table has none

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> Column | None:
        return next((column for column in self.columns if column.name == name), None)


# Ordinary and partitioned tables; a partition is checked through its parent.
_TABLES_QUERY = """
SELECT n.nspname, c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
       tn.nspname, t.typname, t.typcollation <> 0, pk.position
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN LATERAL (
    SELECT k.position
    FROM pg_catalog.pg_constraint p,
         unnest(p.conkey) WITH ORDINALITY AS k(attnum, position)
    WHERE p.conrelid = c.oid AND p.contype = 'p' AND k.attnum = a.attnum
) AS pk ON true
WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY n.nspname, c.relname, a.attnum
"""


# AWS DMS keeps its own state in tables of the databases it replicates: control tables on the target
# (awsdms_apply_exceptions, awsdms_validation_failures_v1, …), a heartbeat on the source. Where the
# task settings put them (ControlSchema, the heartbeat schema: `awsdms` here, `public` by default),
# they exist on one side only and change all the time: they are never application data to compare.
DMS_CONTROL_SCHEMA = "awsdms"
DMS_CONTROL_TABLE_PREFIX = "awsdms_"


def is_dms_control_table(schema: str, table: str) -> bool:
    return schema == DMS_CONTROL_SCHEMA or table.startswith(DMS_CONTROL_TABLE_PREFIX)


def read_tables(conn, schemas: Iterable[str]) -> dict[str, TableSchema]:
    """Every table in `schemas`, by qualified name (`schema.table`), except DMS's control tables."""
    with conn.cursor() as cur:
        cur.execute(_TABLES_QUERY, (list(schemas),))
        rows = cur.fetchall()
    columns: dict[tuple[str, str], list[Column]] = {}
    key_positions: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for schema, table, name, type_, type_schema, type_name, collatable, key_position in rows:
        if is_dms_control_table(schema, table):
            continue
        columns.setdefault((schema, table), []).append(Column(name, type_, type_schema, type_name, collatable))
        if key_position is not None:
            key_positions.setdefault((schema, table), []).append((key_position, name))
    tables = {}
    for (schema, table), table_columns in columns.items():
        primary_key = tuple(name for _, name in sorted(key_positions.get((schema, table), [])))
        tables[f"{schema}.{table}"] = TableSchema(schema, table, tuple(table_columns), primary_key)
    return tables


def schema_differences(source: TableSchema, target: TableSchema) -> list[str]:
    """Human-readable differences in columns, types and primary key; empty when they agree.
    Column order is not compared: rows are hashed column by column in the source's order."""
    differences = []
    for column in source.columns:
        other = target.column(column.name)
        if other is None:
            differences.append(f"column {column.name} ({column.type}) is missing in target")
        elif other.type != column.type:
            differences.append(f"column {column.name} is {column.type} in source but {other.type} in target")
    differences += [
        f"column {column.name} ({column.type}) exists only in target"
        for column in target.columns
        if source.column(column.name) is None
    ]
    if source.primary_key != target.primary_key:
        differences.append(
            f"primary key is {_describe_key(source.primary_key)} in source "
            f"but {_describe_key(target.primary_key)} in target"
        )
    return differences


def comparable_columns(source: TableSchema, target: TableSchema) -> tuple[Column, ...]:
    """Columns present on both sides with the same type, in the source's order."""
    return tuple(
        column for column in source.columns
        if (other := target.column(column.name)) is not None and other.type == column.type
    )


def _describe_key(columns: Sequence[str]) -> str:
    return f"({', '.join(columns)})" if columns else "absent"
