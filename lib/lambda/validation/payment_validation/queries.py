"""The SQL the comparison runs against one table: the same statement on source and target.

Identifiers (schemas, tables, columns, types) are composed with psycopg2.sql; key values travel as
text parameters and are cast back to the key column's type inside PostgreSQL, so a key read on one
side can bound a range on the other. Text types in keys are ordered with COLLATE "C" (byte order),
which both sides agree on whatever their locales; other key types have one order everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from psycopg2 import sql

from .catalog import Column, TableSchema

Key = tuple[str, ...]  # a primary key value: the text of each key column, in key order

_BYTE_ORDER = sql.SQL(' COLLATE "C"')
# TABLESAMPLE's seed: bounds only shape the buckets and chunks, never what is compared.
SAMPLE_SEED = 14

# Types whose hash function (the one hash_record_extended calls per column) separates every two
# values that print differently. Any other type is hashed through its text: numeric (1.0 vs 1.00),
# float (-0 vs 0), interval ('1 day' vs '24:00:00'), jsonb (numbers), enums (hashed by OID, which
# differs between databases), domains, arrays and types without a hash function (json, point).
_EXACTLY_HASHED_TYPES = frozenset({
    "bool", "char", "int2", "int4", "int8", "oid", "uuid", "date", "time", "timestamp",
    "timestamptz", "bytea", "text", "varchar", "bpchar", "name",
})
# Of those, the types whose hash function (the same one) SQL can call on the column itself, with a
# seed: such a column is hashed alone, without the row hash_record_extended forms (and takes apart
# again) for its columns; measured about 10 % faster on the payments table. numeric joins them
# when a typmod fixes its scale (`_hashable`).
_SEEDED_HASH_FUNCTIONS = {
    "int2": "hashint2extended", "int4": "hashint4extended", "int8": "hashint8extended", "oid": "hashoidextended",
    "uuid": "uuid_hash_extended", "text": "hashtextextended", "varchar": "hashtextextended",
    "bpchar": "hashbpcharextended", "name": "hashnameextended", "timestamp": "timestamp_hash_extended",
}
# A column hashed alone hashes NULL as this value, not as 0: hash_numeric_extended returns its seed
# for NaN and seed - 1 for zero, so no small number will do. (A value whose hash it is would look
# NULL: as unlikely as two rows sharing a hash.)
_NULL_HASH = -7046029254386353131  # 0x9e3779b97f4a7c15 as int8


class RowHash(Enum):
    """How a row becomes a 64-bit hash, chosen from the older server's version."""

    # PostgreSQL 14+: each column's own binary hash, no formatting: several times faster.
    RECORD = "hash_record_extended"
    # PostgreSQL 11-13: the hash of the row's text (record_out) under the pinned settings.
    TEXT = "hashtextextended"


@dataclass(frozen=True)
class KeyRange:
    """Primary keys k with lower <= k < upper; None leaves that end open."""

    lower: Key | None = None
    upper: Key | None = None


Query = tuple[sql.Composable, list]


class TableQueries:
    def __init__(self, table: TableSchema, columns: Sequence[Column], row_hash: RowHash):
        """`columns`: the columns to hash (those both sides share), which include the key."""
        self._table = sql.Identifier(table.schema, table.name)
        self._schema_and_table = (table.schema, table.name)
        self._key_columns = tuple(table.column(name) for name in table.primary_key)
        self._columns = tuple(columns)
        self._row_hash_method = row_hash

    @property
    def key_columns(self) -> tuple[Column, ...]:
        return self._key_columns

    def estimated_rows(self, key_range: KeyRange = KeyRange()) -> Query:
        """The planner's row estimate for the range (reads no rows); its JSON plan is parsed by
        `parse_estimate`."""
        condition, params = self._range_condition(key_range)
        return sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {} WHERE {}").format(self._table, condition), params

    def row_count(self) -> Query:
        """The exact number of rows of the table."""
        return sql.SQL("SELECT pg_catalog.count(*) FROM {}").format(self._table), []

    @staticmethod
    def parse_estimate(plan) -> int:
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])

    def boundaries(self, key_range: KeyRange, every: int, sample_percent: float | None = None) -> Query:
        """Every `every`-th key of the range in key order: bounds of buckets of about `every` rows.
        With `sample_percent`, of a sample of that share of the table's pages (reads only those),
        chosen with a fixed seed: the same table gives the same bounds, so a plan made again (a
        retried execution) cuts the same chunks."""
        condition, params = self._range_condition(key_range)
        sample = (sql.SQL(" TABLESAMPLE SYSTEM (%s) REPEATABLE ({})").format(sql.Literal(SAMPLE_SEED))
                  if sample_percent is not None else sql.SQL(""))
        aliases = [sql.Identifier(f"k{i}") for i in range(len(self._key_columns))]
        query = sql.SQL(
            "SELECT {aliases} FROM ("
            " SELECT {key_text}, row_number() OVER (ORDER BY {order}) AS position"
            " FROM {table}{sample} WHERE {condition}"
            ") AS numbered WHERE mod(position, %s) = 0 ORDER BY position"
        ).format(
            aliases=sql.SQL(", ").join(aliases),
            key_text=sql.SQL(", ").join(
                sql.SQL("{} AS {}").format(text, alias) for text, alias in zip(self._key_texts(), aliases)
            ),
            order=self._key_order(),
            table=self._table,
            sample=sample,
            condition=condition,
        )
        return query, [*([sample_percent] if sample_percent is not None else []), *params, every]

    def bucket_hashes(self, key_range: KeyRange, bounds: Sequence[Key]) -> Query:
        """Per bucket of the range: (bucket, row count, sum of row hashes as text). Bucket i holds
        the keys from bounds[i-1] (inclusive) to bounds[i] (exclusive), width_bucket's numbering:
        0 is below bounds[0], len(bounds) from bounds[-1] on. One pass over the range."""
        condition, params = self._range_condition(key_range)
        if bounds:
            bucket = sql.SQL("pg_catalog.width_bucket({}, {})").format(self._key(), self._bounds_array())
            bucket_params = [[key[i] for key in bounds] for i in range(len(self._key_columns))]
        else:
            bucket, bucket_params = sql.SQL("0"), []
        # OFFSET 0 keeps the hashing in the scan below the aggregate (measured: faster).
        query = sql.SQL(
            "SELECT bucket, count(*), sum(row_hash)::text FROM ("
            " SELECT {bucket} AS bucket, {row_hash} AS row_hash FROM {table} WHERE {condition} OFFSET 0"
            ") AS hashed GROUP BY bucket"
        ).format(bucket=bucket, row_hash=self._row_hash(), table=self._table, condition=condition)
        return query, [*bucket_params, *params]

    def row_hash_set(self, key_ranges: Sequence[KeyRange]) -> Query:
        """Two byteas, in one row order: the 8-byte row hash of every row in the ranges, and its
        6-byte ctid. A row hash covers the key, so comparing the sides' sets of hashes finds the
        rows that differ at about a byte per row of client work (no tuple, no text per row); the
        ctids then fetch just those rows (`rows_at`), without hashing the ranges again."""
        condition, params = self._ranges_condition(key_ranges)
        query = sql.SQL(
            "SELECT pg_catalog.string_agg(pg_catalog.int8send({}), ''::bytea),"
            " pg_catalog.string_agg(pg_catalog.tidsend(ctid), ''::bytea) FROM {} WHERE {}"
        ).format(self._row_hash(), self._table, condition)
        return query, params

    def rows_at(self, ctids: Sequence[str], row_hashes: Sequence[int]) -> Query:
        """(key text…, row hash) of the rows at these ctids (in the transaction's snapshot, where a
        visible row keeps its place) whose row hash is one of `row_hashes` (of a partitioned table
        every partition has its own ctids), in key order."""
        query = sql.SQL("SELECT {}, {} FROM {} WHERE ctid = ANY(%s::tid[]) AND {} = ANY(%s::int8[]) ORDER BY {}").format(
            self._key_text(), self._row_hash(), self._table, self._row_hash(), self._key_order()
        )
        return query, [list(ctids), list(row_hashes)]

    def row_hashes_of(self, keys: Sequence[Key]) -> Query:
        """(key text…, row hash) of the rows with these keys, looked up by key (the primary key's
        index), whatever their number and wherever they are. Each key is one index probe (a lateral
        subquery the planner cannot flatten: OFFSET 0), never a scan of the table joined to the
        keys, which a planner may prefer for a few thousand keys and which costs O(rows)."""
        return self._rows_of(keys, sql.SQL("found.*"), self._key_text())

    def row_hash_sum_of(self, keys: Sequence[Key]) -> Query:
        """(row count, sum of row hashes as text) of the rows with these keys: what a first pass's
        bucket holds, for a set of keys — one row back, no key printed as text.

        A one-column key is looked up as `key = ANY(array)`: one index scan that walks the sorted
        array (about a quarter of the executor's work of a lateral probe per key, measured). The
        array is a literal, so the planner knows its length: it scans the table instead only when
        that is cheaper than the lookups, which bounds the cost by the keys' either way. A composite
        key is looked up as `row_hashes_of` does (a row comparison with ANY is no index condition)."""
        select = sql.SQL("count(*), sum(found.row_hash)::text")
        if len(self._key_columns) > 1:
            return self._rows_of(keys, select, None)
        (column,) = self._key_columns
        query = sql.SQL(
            "SELECT {select} FROM (SELECT {row_hash} AS row_hash FROM {table}"
            " WHERE {column} = ANY(CAST(%s::text[] AS {type}[])) OFFSET 0) AS found"
        ).format(select=select, row_hash=self._row_hash(), table=self._table, column=self._column(column),
                 type=_type(column))
        return query, [text_array([key[0] for key in keys])]

    def _rows_of(self, keys: Sequence[Key], select: sql.Composable, key_text: sql.Composable | None) -> Query:
        aliases = [sql.Identifier(f"k{i}") for i in range(len(self._key_columns))]
        # Equality in the column's own collation (the index's): for keys, deterministic collations
        # make it byte equality, and the literal's default collation yields to the column's.
        matches = sql.SQL(" AND ").join(
            sql.SQL("{} = CAST(u.{} AS {})").format(self._column(column), alias, _type(column))
            for alias, column in zip(aliases, self._key_columns)
        )
        columns = sql.SQL("{} AS row_hash").format(self._row_hash())
        if key_text is not None:
            columns = sql.SQL("{}, {}").format(key_text, columns)
        query = sql.SQL(
            "SELECT {select} FROM unnest({arrays}) AS u({aliases}) CROSS JOIN LATERAL ("
            " SELECT {columns} FROM {table} WHERE {matches} OFFSET 0) AS found"
        ).format(
            select=select, columns=columns, table=self._table, matches=matches,
            arrays=sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in aliases),
            aliases=sql.SQL(", ").join(aliases),
        )
        return query, [text_array([key[i] for key in keys]) for i in range(len(self._key_columns))]

    # -- pieces ---------------------------------------------------------------------------------

    def _column(self, column: Column) -> sql.Identifier:
        """schema.table.column: never mistaken for an output column of the same name in ORDER BY."""
        return sql.Identifier(*self._schema_and_table, column.name)

    def _ordered(self, column: Column) -> sql.Composable:
        identifier = self._column(column)
        return sql.Composed([identifier, _BYTE_ORDER]) if column.collatable else identifier

    def _key(self) -> sql.Composable:
        """The key as one comparable value: the column, or ROW(…) of a composite key."""
        parts = [self._ordered(column) for column in self._key_columns]
        return parts[0] if len(parts) == 1 else sql.SQL("ROW({})").format(sql.SQL(", ").join(parts))

    def _key_literal(self) -> sql.Composable:
        """Placeholders for one key value, cast to the key's types."""
        parts = [sql.SQL("CAST(%s AS {})").format(_type(column)) for column in self._key_columns]
        return parts[0] if len(parts) == 1 else sql.SQL("ROW({})").format(sql.SQL(", ").join(parts))

    def _bounds_array(self) -> sql.Composable:
        """An array of keys rebuilt from one text array per key column, in their given order."""
        columns = [sql.Identifier(f"k{i}") for i in range(len(self._key_columns))]
        elements = [
            sql.Composed([sql.SQL("CAST(u.{} AS {})").format(name, _type(column)),
                          _BYTE_ORDER if column.collatable else sql.SQL("")])
            for name, column in zip(columns, self._key_columns)
        ]
        element = elements[0] if len(elements) == 1 else sql.SQL("ROW({})").format(sql.SQL(", ").join(elements))
        return sql.SQL(
            "(SELECT pg_catalog.array_agg({element} ORDER BY u.position)"
            " FROM unnest({arrays}) WITH ORDINALITY AS u({columns}, position))"
        ).format(
            element=element,
            arrays=sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in columns),
            columns=sql.SQL(", ").join(columns),
        )

    def _ranges_condition(self, key_ranges: Sequence[KeyRange]) -> Query:
        conditions, params = [], []
        for key_range in key_ranges:
            condition, range_params = self._range_condition(key_range)
            conditions.append(sql.SQL("({})").format(condition))
            params += range_params
        return sql.SQL(" OR ").join(conditions), params

    def _range_condition(self, key_range: KeyRange) -> Query:
        parts, params = [], []
        if key_range.lower is not None:
            parts.append(sql.SQL("{} >= {}").format(self._key(), self._key_literal()))
            params += key_range.lower
        if key_range.upper is not None:
            parts.append(sql.SQL("{} < {}").format(self._key(), self._key_literal()))
            params += key_range.upper
        return (sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")), params

    def _key_texts(self) -> list[sql.Composable]:
        return [sql.SQL("CAST({} AS text)").format(self._column(column)) for column in self._key_columns]

    def _key_text(self) -> sql.Composable:
        return sql.SQL(", ").join(self._key_texts())

    def _key_order(self) -> sql.Composable:
        return sql.SQL(", ").join(self._ordered(column) for column in self._key_columns)

    def _row_hash(self) -> sql.Composable:
        """A 64-bit hash of the compared columns that tells NULL from '' and any two values that
        print differently under the pinned session settings."""
        if self._row_hash_method is RowHash.TEXT:
            columns = sql.SQL(", ").join(self._column(column) for column in self._columns)
            return sql.SQL('pg_catalog.hashtextextended(CAST(ROW({}) AS text) COLLATE "C", 0)').format(columns)
        # Each column hashed alone gets its own seed (its position), so the hashes of two columns
        # do not cancel out when combined by XOR; hash_record_extended hashes the rest (NULL as
        # 0, every value with its type's hash function) with seed 0.
        alone, in_record = [], []
        for position, column in enumerate(self._columns, start=1):
            function = self._seeded_hash_function(column)
            if function is None:
                in_record.append(self._hashable(column))
            else:
                value_hash = sql.SQL("pg_catalog.{}({}, {})").format(
                    sql.Identifier(function), self._ordered(column), sql.Literal(position))
                if function == "hashint8extended":
                    # hashint8extended folds the high 32 bits into the low ones first (0 and
                    # 4294967297 hash alike); the high half's own hash tells such values apart.
                    value_hash = sql.SQL("({} OPERATOR(pg_catalog.#) pg_catalog.hashint4extended("
                                         "CAST({} OPERATOR(pg_catalog.>>) 32 AS pg_catalog.int4), {}))").format(
                        value_hash, self._column(column), sql.Literal(-position))
                alone.append(sql.SQL("COALESCE({}, {})").format(value_hash, sql.Literal(_NULL_HASH)))
        if in_record:
            alone.insert(0, sql.SQL("pg_catalog.hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(in_record)))
        return sql.SQL("({})").format(sql.SQL(" OPERATOR(pg_catalog.#) ").join(alone))

    def _seeded_hash_function(self, column: Column) -> str | None:
        """The function hashing the column alone, None when it goes into hash_record_extended's row."""
        if column.type_schema != "pg_catalog":
            return None
        if column.type_name == "numeric":
            return "hash_numeric_extended" if _has_typmod(column) else None
        return _SEEDED_HASH_FUNCTIONS.get(column.type_name)

    def _hashable(self, column: Column) -> sql.Composable:
        if column.type_schema == "pg_catalog" and column.type_name in _EXACTLY_HASHED_TYPES:
            # byte-wise hashing for text, whatever collation the column has
            return self._ordered(column)
        if column.type_schema == "pg_catalog" and column.type_name == "numeric":
            # numeric's hash ignores trailing zeros (1.0 and 1.00 alike); beside its scale it tells
            # apart exactly what its text would, without printing every amount. A typmod
            # ("numeric(18,2)", the same on both sides: comparable_columns) rounds every stored
            # value to its scale, so there the scale says nothing more and costs a call per row.
            if _has_typmod(column):
                return self._column(column)
            return sql.SQL("{0}, pg_catalog.scale({0})").format(self._column(column))
        return sql.SQL('CAST({} AS text) COLLATE "C"').format(self._column(column))


def text_array(values: Sequence[str | None]) -> str:
    """A text[] as one literal in the array input syntax ('{"a","b"}'): the server reads it with
    array_in, where a list sent as ARRAY['a', 'b'] is one expression per element to parse and fold
    (measured: half the time of a lookup of 5,000 keys)."""
    def element(value: str | None) -> str:
        if value is None:
            return "NULL"
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if None not in values:
        joined = '","'.join(values)
        if '"' not in joined and "\\" not in joined:
            return '{"' + joined + '"}' if values else "{}"
    return "{" + ",".join(element(value) for value in values) + "}"


def _type(column: Column) -> sql.Composable:
    return sql.Identifier(column.type_schema, column.type_name)


def _has_typmod(column: Column) -> bool:
    """format_type() names a type modifier in parentheses: numeric(18,2), but numeric alone."""
    return column.type.endswith(")")
