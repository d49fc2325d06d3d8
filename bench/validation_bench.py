"""The validation engine against reladiff 0.6.0 on one payments table (targets: engine wall time
<= 0.5 x reladiff's on 10,000,000 rows, changed key found, engine peak RSS <= 200 MiB).

    .venv/bin/python bench/validation_bench.py [--rows 10000000] [--reladiff .venv-bench/bin/reladiff]
                                               [--threads 2] [--key-order time|random]

Starts its own PostgreSQL server (tests/support/postgres.py), generates a payments table (the
reference schema's columns) inside PostgreSQL with generate_series, showing progress, copies the
database as the target (CREATE DATABASE … TEMPLATE), changes one row's amount there, and then runs,
on the same data in the same run, the engine (in a subprocess, whose peak RSS is read with wait4)
and reladiff (`-j THREADS`, every column, from its own virtualenv). Both connect over TCP with TLS
as the application role, as the Lambda does. Not a test: it prints figures and asserts nothing.

--key-order time (default) makes payment ids time-ordered (UUIDv7 style), so key order matches the
order rows were written: the layout that favours reladiff's key-range queries. --key-order random
uses random (v4-style) ids, scattered over the heap.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "lib" / "lambda" / "validation")]

import psycopg2  # noqa: E402
from psycopg2 import sql  # noqa: E402

from tests.support.postgres import PostgresServer, start_postgres  # noqa: E402

SOURCE_DB, TARGET_DB = "bench_source", "bench_target"
CHUNK_ROWS = 500_000
TARGET_RATIO = 0.5
TARGET_RSS_MIB = 200

TABLE_DDL = """
CREATE TABLE payments (
    payment_id       uuid          NOT NULL,
    customer_id      uuid          NOT NULL,
    amount           numeric(18,2) NOT NULL,
    currency         char(3)       NOT NULL,
    status           text          NOT NULL,
    payment_token    text,
    idempotency_key  text          NOT NULL,
    request_hash     text          NOT NULL,
    created_at       timestamptz   NOT NULL,
    updated_at       timestamptz   NOT NULL
)
"""

# Row i: one payment every 3 s from 2024-01-01; about one in ten has no card token.
# {payment_id} is an expression of i, h (md5 of the payment's name) and created_ms.
INSERT_ROWS = """
INSERT INTO payments
SELECT {payment_id}, md5('customer-' || mod(i, 250000))::uuid, (mod(i * 7919, 1000000) + 1) / 100.0,
       (ARRAY['EUR', 'USD', 'GBP', 'CHF'])[1 + mod(i, 4)],
       (ARRAY['pending', 'authorized', 'captured', 'failed', 'refunded'])[1 + mod(i, 5)],
       CASE WHEN mod(i, 10) = 0 THEN NULL ELSE 'tok_' || substr(h, 9, 24) END,
       'idem-' || i, md5('request-' || i), created_at, created_at + mod(i, 600) * interval '1 second'
FROM (
    SELECT i, md5('payment-' || i) AS h,
           timestamptz '2024-01-01 00:00:00+00' + i * interval '3 seconds' AS created_at,
           1704067200000 + i * 3000 AS created_ms
    FROM generate_series(%s::bigint, %s::bigint) AS i
) AS generated
"""
PAYMENT_ID = {
    # UUIDv7 layout: 48-bit millisecond timestamp, version 7, variant 8, random rest
    "time": "(lpad(to_hex(created_ms), 12, '0') || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid",
    "random": "h::uuid",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--reladiff", default=str(ROOT / ".venv-bench" / "bin" / "reladiff"))
    parser.add_argument("--threads", type=int, default=2, help="reladiff -j (worker threads per database)")
    parser.add_argument("--key-order", choices=sorted(PAYMENT_ID), default="time")
    parser.add_argument("--engine-only", action="store_true", help=argparse.SUPPRESS)  # the measured child
    args = parser.parse_args()
    if args.engine_only:
        return run_engine_child()
    if not os.access(args.reladiff, os.X_OK):
        log(f"reladiff not found at {args.reladiff}: create it with\n"
            "  python3 -m venv .venv-bench && .venv-bench/bin/pip install reladiff==0.6.0 psycopg2-binary")
        return 2

    log("starting PostgreSQL")
    server = start_postgres(extra_conf={
        "autovacuum": "off",  # no background work during the timed runs; the script vacuums itself
        "max_wal_size": "8GB",  # no checkpoints forced by the bulk load
    })
    try:
        changed_key = prepare_data(server, args.rows, args.key_order)
        warm_up(server)
        engine = run_engine(server, changed_key)
        reladiff = run_reladiff(server, args.reladiff, args.threads, changed_key)
    finally:
        server.remove()
    report(args.rows, changed_key, engine, reladiff)
    return 0


# -- data ----------------------------------------------------------------------------------------


def prepare_data(server: PostgresServer, rows: int, key_order: str) -> str:
    started = time.monotonic()
    server.create_database(SOURCE_DB)
    generate(server, rows, key_order)
    log("  primary key, vacuum, analyze")
    with_connection(server, SOURCE_DB, [
        "SET maintenance_work_mem = '1GB'",
        "ALTER TABLE payments ADD PRIMARY KEY (payment_id)",
        "VACUUM (FREEZE, ANALYZE) payments",
    ])
    log("  target database: a copy of the source")
    server.admin_execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
        sql.Identifier(TARGET_DB), sql.Identifier(SOURCE_DB), sql.Identifier(server.app_user)))
    row = rows // 2 + 1
    conn = server.app_connect(TARGET_DB)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE payments SET amount = amount + 0.01 WHERE idempotency_key = %s RETURNING payment_id::text",
                (f"idem-{row}",),
            )
            (changed_key,) = cur.fetchone()
    finally:
        conn.close()
    log(f"  changed the amount of payment {changed_key} (row {row:,}) in the target")
    log(f"data ready in {time.monotonic() - started:.0f} s")
    return changed_key


def generate(server: PostgresServer, rows: int, key_order: str) -> None:
    """INSERT … SELECT generate_series in chunks from two sessions, reporting progress."""
    conn = server.app_connect(SOURCE_DB)
    with conn, conn.cursor() as cur:
        cur.execute(TABLE_DDL)
    conn.close()
    insert = INSERT_ROWS.format(payment_id=PAYMENT_ID[key_order])
    chunks = [(lo, min(lo + CHUNK_ROWS - 1, rows)) for lo in range(1, rows + 1, CHUNK_ROWS)]
    lock, done, failures = threading.Lock(), [0], []
    started = time.monotonic()

    def worker() -> None:
        conn = server.app_connect(SOURCE_DB)
        try:
            while True:
                with lock:
                    if not chunks or failures:
                        return
                    lo, hi = chunks.pop(0)
                with conn, conn.cursor() as cur:
                    cur.execute(insert, (lo, hi))
                with lock:
                    done[0] += hi - lo + 1
                    elapsed = time.monotonic() - started
                    log(f"  source rows: {done[0]:>12,} / {rows:,} ({100 * done[0] / rows:3.0f}%), {elapsed:5.0f} s")
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)
        finally:
            conn.close()

    log(f"generating {rows:,} payments ({key_order} key order)")
    workers = [threading.Thread(target=worker) for _ in range(2)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    if failures:
        raise failures[0]


def with_connection(server: PostgresServer, dbname: str, statements: list[str]) -> None:
    conn = server.app_connect(dbname)
    conn.autocommit = True  # VACUUM cannot run in a transaction block
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def warm_up(server: PostgresServer) -> None:
    """Read both tables once so neither tool pays for a cold cache the other does not."""
    for dbname in (SOURCE_DB, TARGET_DB):
        with_connection(server, dbname, ["SELECT count(*) FROM payments", "SELECT count(*) FROM payments"])


# -- the two tools -------------------------------------------------------------------------------


def dsn_environment(server: PostgresServer) -> dict[str, str]:
    def dsn(dbname: str) -> str:
        return (f"host={server.host} port={server.port} dbname={dbname} user={server.app_user} "
                f"password={server.app_password} sslmode=require")
    return {"BENCH_SOURCE_DSN": dsn(SOURCE_DB), "BENCH_TARGET_DSN": dsn(TARGET_DB)}


def run_engine(server: PostgresServer, changed_key: str) -> dict:
    log("running the engine")
    env = {**os.environ, **dsn_environment(server)}  # not argv: the password stays out of `ps`
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, __file__, "--engine-only"], env=env, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"engine run failed with exit code {child.returncode}")
    result = json.loads(output)
    table = result["tables"]["public.payments"]
    found = table["mismatched"] == [{"payment_id": changed_key}] and table["mismatched_total"] == 1 \
        and table["missing_in_target_total"] == 0 and table["extra_in_target_total"] == 0
    return {"seconds": seconds, "found": found, "peak_rss_mib": usage.ru_maxrss / 1024, "status": result["status"]}


def run_engine_child() -> int:
    from payment_validation import ValidationOptions, validate

    source = psycopg2.connect(os.environ["BENCH_SOURCE_DSN"])
    target = psycopg2.connect(os.environ["BENCH_TARGET_DSN"])
    report = validate(source, target, ValidationOptions(tables=("public.payments",)))
    print(json.dumps(report.to_dict()))
    return 0


def run_reladiff(server: PostgresServer, reladiff: str, threads: int, changed_key: str) -> dict:
    log(f"running reladiff -j {threads}")

    def uri(dbname: str) -> str:
        return f"postgresql://{server.app_user}:{server.app_password}@{server.host}:{server.port}/{dbname}"

    command = [reladiff, uri(SOURCE_DB), "payments", uri(TARGET_DB), "payments",
               "-k", "payment_id", "-c", "%", "-j", str(threads), "--json"]
    # PGSSLMODE: TLS, as for the engine. COLUMNS: reladiff prints through rich, which would
    # otherwise wrap its JSON lines at the terminal width.
    env = {**os.environ, "PGSSLMODE": "require", "COLUMNS": "100000"}
    started = time.monotonic()
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if completed.returncode != 0:
        raise RuntimeError(f"reladiff failed ({completed.returncode}): {completed.stderr[-2000:]}")
    diff_keys = set()
    for line in completed.stdout.splitlines():
        try:
            operation, values = json.loads(line)
        except (ValueError, TypeError):
            continue
        if operation in ("-", "+"):
            diff_keys.add(values[0])
    return {"seconds": seconds, "found": diff_keys == {changed_key}}


def report(rows: int, changed_key: str, engine: dict, reladiff: dict) -> None:
    ratio = engine["seconds"] / reladiff["seconds"]

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(f"\nvalidation benchmark: {rows:,} rows, one changed row (payment {changed_key})")
    print(f"  engine    {engine['seconds']:8.2f} s   found the key: {'yes' if engine['found'] else 'no'}   "
          f"peak RSS {engine['peak_rss_mib']:.0f} MiB")
    print(f"  reladiff  {reladiff['seconds']:8.2f} s   found the key: {'yes' if reladiff['found'] else 'no'}")
    print(f"  ratio engine / reladiff: {ratio:.2f}")
    print(f"  targets: ratio <= {TARGET_RATIO} {verdict(ratio <= TARGET_RATIO)}, "
          f"key found {verdict(engine['found'])}, "
          f"peak RSS <= {TARGET_RSS_MIB} MiB {verdict(engine['peak_rss_mib'] <= TARGET_RSS_MIB)}")


if __name__ == "__main__":
    sys.exit(main())
