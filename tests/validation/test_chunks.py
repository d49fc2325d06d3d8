"""Scale-out building blocks: `plan` cuts tables into key-range chunks, `validate` checks one chunk,
`merge` joins the chunks' reports. The joined report is the report of a single run: same
statuses, totals, keys (capped in key order across chunks), sequences and messages."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from payment_validation import Chunk, ValidationOptions, merge, plan, validate
from payment_validation import engine
from payment_validation.engine import ValidationError
from payment_validation.queries import KeyRange
from tests.validation.conftest import Databases, ledger_databases

CHUNK_ROWS = 10_000
FEW_CHUNKS_ROWS = 34_000  # three chunks, for the tests of what merge does with a bad result


def without_timings(report: dict) -> dict:
    """The report minus what two runs never share: wall times, and the chunk a run was given."""
    report = json.loads(json.dumps(report))
    report.pop("seconds")
    report.pop("chunk", None)
    for table in report["tables"].values():
        table.pop("seconds")
    return report


def chunked(connect, databases, options: ValidationOptions, chunk_rows: int = CHUNK_ROWS) -> tuple[list, dict]:
    """plan -> validate each chunk (in its own connections, as its own invocation would) -> merge."""
    chunks = plan(connect(databases.source), connect(databases.target), options, chunk_rows)
    results = [
        validate(connect(databases.source), connect(databases.target),
                 ValidationOptions(**{**options.__dict__, "chunk": chunk})).to_dict()
        for chunk in chunks
    ]
    merged = merge(chunks, list(reversed(results)), options.max_diffs_per_table, options.check_sequences)
    return chunks, merged.to_dict()


@pytest.fixture(scope="module")
def ledger(postgres, database_pool) -> Iterator[Databases]:
    yield from ledger_databases(postgres, database_pool, "chunks")


@pytest.mark.parametrize("buckets", ["as shipped", "small and sampled in chunks"])
def test_a_chunked_run_reports_exactly_what_a_single_run_reports(connect, ledger, monkeypatch, buckets):
    """Keys capped at 10: the merged lists are the first ten in key order, across chunks. With the
    shipped sizes a chunk of this table is one bucket; with small buckets and the sample's share
    uncapped, each chunk samples its own bounds and splits."""
    sampled_in_chunks = []
    if buckets != "as shipped":
        for name, value in {"BUCKET_ROWS": 500, "LEAF_ROWS": 1_500, "SAMPLED_KEYS_PER_BUCKET": 4,
                            "MAX_SAMPLE_SHARE": 1.0}.items():
            monkeypatch.setattr(engine, name, value)
        sampled_bounds = engine._sampled_bounds

        def recording(sides, side, queries, key_range, *estimates):
            bounds = sampled_bounds(sides, side, queries, key_range, *estimates)
            if key_range != KeyRange():
                sampled_in_chunks.append(len(bounds))
            return bounds

        monkeypatch.setattr(engine, "_sampled_bounds", recording)
    options = ValidationOptions(max_diffs_per_table=10, check_sequences=True)
    single = validate(connect(ledger.source), connect(ledger.target), options).to_dict()

    chunks, merged = chunked(connect, ledger, options)

    ledger_chunks = [chunk for chunk in chunks if chunk.table == "public.ledger"]
    assert len(ledger_chunks) >= 8, f"the ledger was cut into only {len(ledger_chunks)} chunks"
    assert all(chunk.count == 1 for chunk in chunks if chunk.table != "public.ledger")
    assert without_timings(merged) == without_timings(single)
    # and the single run found what was planted, so the equality above is not of two empty reports
    table = single["tables"]["public.ledger"]
    assert (table["missing_in_target_total"], table["extra_in_target_total"], table["mismatched_total"]) == (4, 3, 23)
    assert single["tables"]["public.audit_log"]["status"] == "FAILED"  # its sequence, behind
    assert single["tables"]["public.customers"]["message"] == "table is missing in target"
    assert single["tables"]["public.notes"]["status"] == "UNVERIFIABLE"
    if buckets != "as shipped":
        assert sum(sampled_in_chunks) > 0, "no chunk sampled bounds of its own: the variant tested nothing more"


def test_chunks_are_consecutive_key_ranges_that_travel_as_json(connect, ledger):
    chunks = plan(connect(ledger.source), connect(ledger.target), ValidationOptions(tables=("ledger",)), CHUNK_ROWS)

    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert chunks[0].lower is None and chunks[-1].upper is None
    assert all(before.upper == after.lower for before, after in zip(chunks, chunks[1:]))
    assert [Chunk.from_dict(json.loads(json.dumps(chunk.to_dict()))) for chunk in chunks] == chunks


def test_a_plan_made_again_cuts_the_same_chunks(connect, ledger):
    """A retried execution plans again: the sampled bounds come from a seeded sample."""
    options = ValidationOptions(tables=("ledger",))
    first, again = (plan(connect(ledger.source), connect(ledger.target), options, CHUNK_ROWS) for _ in range(2))

    assert len(first) >= 8 and again == first


def test_a_small_table_is_one_chunk(connect, databases):
    chunks = plan(connect(databases.source), connect(databases.target), ValidationOptions(), CHUNK_ROWS)

    assert [(chunk.table, chunk.index, chunk.count, chunk.lower, chunk.upper) for chunk in chunks] == [
        (name, 0, 1, None, None)
        for name in ("public.audit_log", "public.customers", "public.payments", "public.transactions")]


def test_a_missing_chunk_result_makes_its_table_an_error(connect, ledger):
    options = ValidationOptions(tables=("ledger", "payments"))
    chunks = plan(connect(ledger.source), connect(ledger.target), options, FEW_CHUNKS_ROWS)
    results = [validate(connect(ledger.source), connect(ledger.target),
                        ValidationOptions(chunk=chunk)).to_dict() for chunk in chunks if chunk.index != 2
               or chunk.table != "public.ledger"]

    report = merge(chunks, results, 100, False).to_dict()

    assert report["status"] == "ERROR"
    assert report["tables"]["public.ledger"]["status"] == "ERROR"
    assert report["tables"]["public.ledger"]["message"] == "public.ledger chunk 3 of 3: no result"
    assert report["tables"]["public.payments"]["status"] == "PASSED"


def test_a_failed_chunk_makes_its_table_an_error_with_its_message(connect, ledger):
    options = ValidationOptions(tables=("ledger",))
    chunks = plan(connect(ledger.source), connect(ledger.target), options, FEW_CHUNKS_ROWS)
    results = [validate(connect(ledger.source), connect(ledger.target),
                        ValidationOptions(chunk=chunk)).to_dict() for chunk in chunks[1:]]
    # what the state machine's catcher returns for an invocation that crashed or timed out
    results.append({"status": "ERROR", "message": "Task timed out after 900.00 seconds", "tables": {},
                    "chunk": chunks[0].to_dict()})

    report = merge(chunks, results, 100, False).to_dict()

    assert (report["status"], report["tables"]["public.ledger"]["message"]) == (
        "ERROR", "public.ledger chunk 1 of 3: Task timed out after 900.00 seconds")


def test_a_result_for_other_bounds_is_not_taken(connect, ledger):
    chunks = plan(connect(ledger.source), connect(ledger.target), ValidationOptions(tables=("ledger",)), FEW_CHUNKS_ROWS)
    results = [validate(connect(ledger.source), connect(ledger.target),
                        ValidationOptions(chunk=chunk)).to_dict() for chunk in chunks]
    results[0]["chunk"]["upper"] = list(chunks[1].upper)  # as from another plan of the same table

    report = merge(chunks, results, 100, False).to_dict()

    assert report["tables"]["public.ledger"]["message"] == (
        "public.ledger chunk 1 of 3: the result is for other key bounds (a different plan)")


def test_chunk_bounds_that_do_not_fit_the_key_are_refused(connect, ledger):
    chunk = Chunk("public.ledger", 0, 2, None, ("acct-0100",))  # the key has two columns

    with pytest.raises(ValidationError, match="have 1 values but the primary key has 2 columns"):
        validate(connect(ledger.source), connect(ledger.target), ValidationOptions(chunk=chunk))


@pytest.mark.parametrize("data, named", [
    ({"table": "ledger", "index": 0, "count": 1, "lower": None, "upper": None}, "'table'"),
    ({"table": "public.ledger", "index": 2, "count": 2, "lower": ["a", "1"], "upper": None}, "'index'"),
    ({"table": "public.ledger", "index": 0, "count": 2, "lower": None, "upper": "acct"}, "'upper'"),
    ({"table": "public.ledger", "index": 1, "count": 3, "lower": None, "upper": ["b", "1"]}, "open exactly"),
    ({"table": "public.ledger", "index": 0, "count": 1, "lower": None, "upper": None, "x": 1}, "'x'"),
])
def test_malformed_chunks_are_refused_naming_the_field(data, named):
    with pytest.raises(ValueError, match=named):
        Chunk.from_dict(data)
