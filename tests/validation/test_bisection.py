"""The range splitting, exercised on a small table by shrinking the engine's bucket sizes: whatever
the target holds, the engine reports exactly the keys a full row-by-row comparison finds."""

from __future__ import annotations

import random

import pytest

from payment_validation import ValidationOptions, validate
from payment_validation import engine

LEDGER = """
CREATE TABLE ledger (
    account text {collation} NOT NULL,
    entry   integer NOT NULL,
    amount  numeric(12,2) NOT NULL,
    note    text,
    PRIMARY KEY (account, entry)
);
INSERT INTO ledger
SELECT account, entry, (entry * 7 + length(account)) / 4.0, CASE WHEN entry % 5 = 0 THEN NULL ELSE 'n' || entry END
FROM (SELECT 'acct-' || lpad(i::text, 3, '0') AS account FROM generate_series(0, 99) AS i
      UNION ALL VALUES ('Acct-5'), ('ácct-7'), ('acct_x'), ('ACCT')) AS accounts,
     generate_series(1, 30) AS entry;
"""


@pytest.fixture(params=[4, 200], ids=["tiny-sample", "large-sample"])
def small_buckets(monkeypatch, request):
    """Buckets of a few rows, so a few thousand rows need several levels of splitting. The first
    pass samples about 1% of the pages (often none: one bucket) or half of them."""
    for name, value in {"LEAF_ROWS": 40, "BUCKET_ROWS": 16, "MAX_BUCKETS": 8, "SAMPLED_KEYS_PER_BUCKET": request.param,
                        "MAX_RANGES_PER_READ": 3, "MAX_SAMPLE_SHARE": 1.0}.items():
        monkeypatch.setattr(engine, name, value)
    splits = []
    original_split = engine._ContentComparison._split

    def counting_split(self, *args):
        bounds = original_split(self, *args)
        splits.append(len(bounds))
        return bounds

    monkeypatch.setattr(engine._ContentComparison, "_split", counting_split)
    return splits


def read_ledger(postgres, dbname: str) -> dict[tuple[str, int], tuple]:
    conn = postgres.app_connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT account, entry, amount::text, note FROM ledger")
            return {(account, entry): (amount, note) for account, entry, amount, note in cur.fetchall()}
    finally:
        conn.close()


def icu_available(postgres, dbname: str) -> bool:
    conn = postgres.app_connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_collation WHERE collname = 'en-x-icu'")
            return cur.fetchone()[0] > 0
    finally:
        conn.close()


@pytest.mark.parametrize("target_collation", ["", 'COLLATE "en-x-icu"'])
@pytest.mark.parametrize("seed", [1, 2])
def test_reported_keys_equal_a_full_comparison(postgres, databases, connect, small_buckets, target_collation, seed):
    """The target's key column may even sort differently (ICU): ranges are cut in byte order."""
    if target_collation and not icu_available(postgres, databases.target):
        pytest.skip("PostgreSQL built without ICU")
    databases.on_source(LEDGER.format(collation=""))
    databases.on_target(LEDGER.format(collation=target_collation))
    keys = sorted(read_ledger(postgres, databases.source))
    rng = random.Random(seed)
    deleted, updated = rng.sample(keys, 40), rng.sample(keys, 40)
    databases.on_target("""
        DELETE FROM ledger WHERE (account, entry) IN (SELECT * FROM unnest(%(del_a)s::text[], %(del_e)s::int[]));
        UPDATE ledger SET note = CASE WHEN note IS NULL THEN '' WHEN mod(entry, 2) = 0 THEN NULL ELSE note || '!' END
        WHERE (account, entry) IN (SELECT * FROM unnest(%(upd_a)s::text[], %(upd_e)s::int[]));
        -- scattered extras, a dense block inside the key space and one past its end
        INSERT INTO ledger SELECT account, 30 + entry, 1, NULL
        FROM unnest(%(ext_a)s::text[]) AS account, generate_series(1, 3) AS entry;
        INSERT INTO ledger SELECT 'acct-050b', entry, 2, 'block' FROM generate_series(1, 200) AS entry;
        INSERT INTO ledger SELECT 'zzz', entry, 3, 'tail' FROM generate_series(1, 300) AS entry;
    """, {
        "del_a": [a for a, _ in deleted], "del_e": [e for _, e in deleted],
        "upd_a": [a for a, _ in updated], "upd_e": [e for _, e in updated],
        "ext_a": rng.sample(sorted({a for a, _ in keys}), 10),
    })
    source, target = read_ledger(postgres, databases.source), read_ledger(postgres, databases.target)

    report = validate(connect(databases.source), connect(databases.target),
                      ValidationOptions(tables=("ledger",), max_diffs_per_table=10_000))

    ledger = report.to_dict()["tables"]["public.ledger"]

    def as_keys(found):
        return [(key["account"], key["entry"]) for key in found]

    # byte order of UTF-8 is code point order: Python's sort order for str
    assert as_keys(ledger["missing_in_target"]) == sorted(set(source) - set(target))
    assert as_keys(ledger["extra_in_target"]) == sorted(set(target) - set(source))
    assert as_keys(ledger["mismatched"]) == sorted(k for k in set(source) & set(target) if source[k] != target[k])
    assert (ledger["source_rows"], ledger["target_rows"]) == (len(source), len(target))
    assert ledger["extra_in_target_total"] == 530
    assert small_buckets, "the ranges were never split: the test did not exercise splitting"
