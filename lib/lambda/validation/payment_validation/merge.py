"""Join the reports of a plan's chunks into the report a single run over the same tables gives.

Plain Python over the chunks' JSON reports (a Step Functions map's results), no database. A table
cut into chunks reports its rows and totals summed, its keys concatenated in chunk order (chunks are
consecutive key ranges, so that is key order) and capped as one run caps them, its sequences from
the chunk holding the table's start, and a status recomputed from all that the way a single run
computes it. A chunk without a result, or whose run failed, makes its table ERROR: a table is never
PASSED on the word of only some of its chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .chunks import Chunk
from .engine import DIFFERENCE_KINDS, Differences, Status, TableResult, ValidationReport, verdict


def merge(chunks: Sequence[Chunk], results: Sequence[dict[str, Any]], max_diffs_per_table: int,
          check_sequences: bool) -> ValidationReport:
    """`chunks`: the plan, in its order; `results`: the reports of validate runs, one per chunk
    (each names its chunk), in any order."""
    found: dict[tuple[str, int], tuple[Chunk, dict[str, Any]]] = {}
    for result in results:
        try:
            chunk = Chunk.from_dict(result.get("chunk"))
        except ValueError:
            continue  # not attributable to a chunk: its chunk is reported without a result
        found.setdefault((chunk.table, chunk.index), (chunk, result))
    planned: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        planned.setdefault(chunk.table, []).append(chunk)
    tables = {name: _merge_table(name, table_chunks, found, max_diffs_per_table, check_sequences)
              for name, table_chunks in planned.items()}
    seconds = sum(float(result.get("seconds") or 0) for _, result in found.values())
    rounds = max((int(result.get("recheck_rounds") or 0) for _, result in found.values()), default=0)
    return ValidationReport(tables, seconds, recheck_rounds=rounds)


def failed_plan(message: str) -> dict[str, Any]:
    """The report of a validation whose plan failed: nothing was compared."""
    return {"status": Status.ERROR.value, "message": f"planning failed: {message}", "tables": {}}


def _merge_table(name: str, chunks: list[Chunk], found: dict, limit: int, check_sequences: bool) -> TableResult:
    parts: list[TableResult] = []
    for chunk in chunks:
        got = found.get((name, chunk.index))
        if got is None:
            return _error(f"{chunk.describe()}: no result")
        got_chunk, result = got
        if got_chunk != chunk:
            return _error(f"{chunk.describe()}: the result is for other key bounds (a different plan)")
        table = (result.get("tables") or {}).get(name)
        if table is None:
            return _error(f"{chunk.describe()}: {result.get('message') or 'no result for the table'}")
        parts.append(TableResult.from_dict(table, limit))
    if len(parts) == 1:
        return parts[0]
    for chunk, part in zip(chunks, parts):
        if part.status is Status.ERROR:
            return _error(f"{chunk.describe()}: {part.message}", part.schema_differences)
    uncompared = [part for part in parts if part.source_rows is None]
    if uncompared:  # the table changed under the plan (dropped, key altered): its verdict stands alone
        return uncompared[0]
    differences = {kind: Differences(limit) for kind in DIFFERENCE_KINDS}
    for part in parts:
        for kind in DIFFERENCE_KINDS:
            differences[kind].extend(getattr(part, kind))
    first = parts[0]
    status, message = verdict(first.schema_differences, differences, first.sequences, check_sequences)
    return TableResult(
        status, message, list(first.schema_differences), **differences,
        source_rows=sum(part.source_rows for part in parts),
        target_rows=sum(part.target_rows for part in parts),
        seconds=sum(part.seconds for part in parts),
        converged_in_flight=sum(part.converged_in_flight for part in parts),
        sequences=first.sequences,
    )


def _error(message: str, schema_differences: Sequence[str] = ()) -> TableResult:
    empty = {kind: Differences(0) for kind in DIFFERENCE_KINDS}
    return TableResult(Status.ERROR, message, list(schema_differences), **empty)
