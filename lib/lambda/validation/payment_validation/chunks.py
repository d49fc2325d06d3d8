"""A chunk: one key range of one table, the unit of work when a table is too large for one
invocation. `engine.plan` cuts tables into chunks, `engine.validate` checks one chunk (its
options' `chunk`), and `merge.merge` puts the chunks' reports back together.

A chunk travels as JSON (a Step Functions map item, a Lambda event), so its bounds are the key's
text, exactly as the engine reads and binds keys: a key read on one side bounds a range on the
other, and the text of a key is the same on both sides under the pinned session settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .queries import Key, KeyRange


@dataclass(frozen=True)
class Chunk:
    """Keys k of `table` with lower <= k < upper (None: that end open), piece `index` of `count`."""

    table: str  # "schema.table"
    index: int = 0
    count: int = 1
    lower: Key | None = None
    upper: Key | None = None

    @property
    def key_range(self) -> KeyRange:
        return KeyRange(self.lower, self.upper)

    @property
    def holds_table_start(self) -> bool:
        """The one chunk of a table that reports what belongs to the whole table (its sequences)."""
        return self.lower is None

    def describe(self) -> str:
        return f"{self.table} chunk {self.index + 1} of {self.count}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "index": self.index,
            "count": self.count,
            "lower": None if self.lower is None else list(self.lower),
            "upper": None if self.upper is None else list(self.upper),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Chunk:
        """The chunk a `to_dict` made; ValueError with a message naming the bad field otherwise."""
        if not isinstance(data, dict):
            raise ValueError(f"a chunk is a JSON object, not {type(data).__name__}")
        unknown = sorted(set(data) - {"table", "index", "count", "lower", "upper"})
        if unknown:
            raise ValueError(f"unknown chunk field {', '.join(map(repr, unknown))}")
        table, index, count = data.get("table"), data.get("index"), data.get("count")
        if not (isinstance(table, str) and "." in table.strip(".") and table == table.strip()):
            raise ValueError(f"chunk 'table' must be a qualified table name (\"schema.table\"), got {table!r}")
        if not (_is_int(count) and count >= 1 and _is_int(index) and 0 <= index < count):
            raise ValueError(f"chunk 'index' and 'count' must be integers with 0 <= index < count, "
                             f"got index {index!r}, count {count!r}")
        lower, upper = (_bound(data.get(name), name) for name in ("lower", "upper"))
        if lower is not None and upper is not None and len(lower) != len(upper):
            raise ValueError("chunk 'lower' and 'upper' must have one value per key column each")
        if (lower is None) != (index == 0) or (upper is None) != (index == count - 1):
            raise ValueError("chunk bounds must be open exactly at the table's ends: 'lower' null only for "
                             "index 0, 'upper' null only for the last index")
        return cls(table, index, count, lower, upper)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bound(value: Any, name: str) -> Key | None:
    if value is None:
        return None
    if not (isinstance(value, list) and value and all(isinstance(part, str) for part in value)):
        raise ValueError(f"chunk {name!r} must be null or a non-empty list of key column values as text, got {value!r}")
    return tuple(value)
