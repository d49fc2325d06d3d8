"""The validation engine against its physical floor and against reladiff 0.6.0, on one payments table.

Targets: at 10,000,000 rows with one difference the engine takes <= 1.25 x the floor
(process start included); with 1 % of rows different, <= 0.15 x reladiff; engine peak RSS <= 200 MiB.

    .venv/bin/python bench/validation_bench.py [--rows 10000000] [--reladiff .venv-bench/bin/reladiff]
        [--sizes 1000000,30000000] [--repeat 3] [--chunk-rows 2500000] [--concurrency 10]
        [--threads 2] [--key-order time|random]

Starts its own PostgreSQL server (lib/local/postgres/server.py), generates a payments table (the
reference schema's columns) inside PostgreSQL with generate_series, showing progress, and copies it
as targets (CREATE DATABASE … TEMPLATE): one with one row's amount changed, one with 1 % of the
rows' amounts changed. Then, on the same data in the same run:

  floor     the physical floor: count(*) and sum(hash_record_extended(ROW(every column), 0)) over
            the table, on source and target at the same time: reading and hashing every row once
  engine    payment_validation.validate in a subprocess (process start, imports and connections
            included; peak RSS read with wait4), no rechecks (quiet data)
  reladiff  `reladiff -j THREADS`, every column, from its own virtualenv

Floor and engine run --repeat times, interleaved, and the median is printed (a shared machine is
noisy); reladiff once. CPU seconds (both database backends plus the client) are printed beside the
wall times: they vary less than wall time when other work shares the machine.

Then the distributed mode: `plan` cuts the table into chunks of --chunk-rows, each chunk is
validated in its own subprocess (as its own Lambda invocation would be), one at a time, and
`merge` joins them; the per-chunk rate and the projected wall time of a 1,000,000,000-row table at
--concurrency chunks at once are printed, with the formula. Last, for each of --sizes, a table of
that size with one difference: floor and engine, to show how the cost grows (each size needs about
500 MB of disk per million rows; sizes that do not fit are skipped).

Both tools connect over TCP with TLS as the application role, as the Lambda does. Not a test: it
prints figures and asserts nothing.

--key-order time (default) makes payment ids time-ordered (UUIDv7 style), so key order matches the
order rows were written (as for identity and UUIDv7 keys). --key-order random uses random
(v4-style) ids, scattered over the heap: chunked runs then read most of the table per chunk.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "lib" / "lambda" / "common"), str(ROOT / "lib" / "lambda" / "validation")]

import psycopg2  # noqa: E402
from psycopg2 import sql  # noqa: E402

if TYPE_CHECKING:
    from lib.local.postgres.server import PostgresServer

CHUNK_ROWS = 500_000
TARGET_FLOOR_RATIO = 1.25
TARGET_RELADIFF_RATIO = 0.15
TARGET_RSS_MIB = 200
BYTES_PER_ROW_ON_DISK = 500  # a source and two targets, with their primary keys and WAL headroom
PROJECTED_ROWS = 1_000_000_000

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
COLUMNS = ("payment_id", "customer_id", "amount", "currency", "status", "payment_token", "idempotency_key",
           "request_hash", "created_at", "updated_at")

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
# 1 % of the rows, spread evenly over the key space: row i with i mod 100 = 37
ONE_PERCENT = "mod(substr(idempotency_key, 6)::bigint, 100) = 37"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--reladiff", default=str(ROOT / ".venv-bench" / "bin" / "reladiff"))
    parser.add_argument("--threads", type=int, default=2, help="reladiff -j (worker threads per database)")
    parser.add_argument("--key-order", choices=sorted(PAYMENT_ID), default="time")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the floor and the engine (median)")
    parser.add_argument("--sizes", default="1000000,30000000",
                        help="further table sizes for the growth of cost (comma-separated; '' for none)")
    parser.add_argument("--chunk-rows", type=int, default=0, help="rows per chunk (default: a quarter of --rows)")
    parser.add_argument("--concurrency", type=int, default=10, help="chunks at once, for the projection")
    parser.add_argument("--child", choices=["validate", "plan", "chunk"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args.child)
    if not os.access(args.reladiff, os.X_OK):
        log(f"reladiff not found at {args.reladiff}: create it with `make .venv-bench/.installed`")
        return 2

    from lib.local.postgres.server import start_postgres  # not in the measured child: it starts faster

    log("starting PostgreSQL")
    server = start_postgres(extra_conf={
        "autovacuum": "off",  # no background work during the timed runs; the script vacuums itself
        "max_wal_size": "16GB",  # no checkpoints forced by the bulk loads
        "checkpoint_timeout": "1h",
    })
    try:
        figures = measure_main(server, args)
        figures["distributed"] = measure_distributed(server, args, figures["changed_key"])
        figures["sizes"] = measure_sizes(server, args)
    finally:
        server.remove()
    report(args, figures)
    return 0


# -- data ----------------------------------------------------------------------------------------


def prepare_data(server: PostgresServer, prefix: str, rows: int, key_order: str, one_percent: bool) -> dict:
    """{prefix}_source; {prefix}_one: one row changed; {prefix}_pct: 1 % of rows changed."""
    started = time.monotonic()
    source = f"{prefix}_source"
    server.create_database(source)
    generate(server, source, rows, key_order)
    log("  primary key, vacuum, analyze")
    with_connection(server, source, [
        "SET maintenance_work_mem = '1GB'",
        "ALTER TABLE payments ADD PRIMARY KEY (payment_id)",
        "VACUUM (FREEZE, ANALYZE) payments",
    ])
    databases = {"source": source, "one": copy_database(server, source, f"{prefix}_one")}
    row = rows // 2 + 1
    conn = server.app_connect(databases["one"])
    try:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE payments SET amount = amount + 0.01 WHERE idempotency_key = %s "
                        "RETURNING payment_id::text", (f"idem-{row}",))
            (databases["changed_key"],) = cur.fetchone()
    finally:
        conn.close()
    log(f"  {databases['one']}: the amount of payment {databases['changed_key']} (row {row:,}) changed")
    if one_percent:
        databases["pct"] = copy_database(server, source, f"{prefix}_pct")
        conn = server.app_connect(databases["pct"])
        try:
            with conn, conn.cursor() as cur:
                cur.execute(f"UPDATE payments SET amount = amount + 0.01 WHERE {ONE_PERCENT}")
                databases["pct_changed"] = cur.rowcount
        finally:
            conn.close()
        with_connection(server, databases["pct"], ["VACUUM payments"])
        log(f"  {databases['pct']}: the amounts of {databases['pct_changed']:,} payments (1 %) changed")
    log(f"data ready in {time.monotonic() - started:.0f} s")
    return databases


def copy_database(server: PostgresServer, template: str, name: str) -> str:
    log(f"  {name}: a copy of {template}")
    server.admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    server.admin_execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
        sql.Identifier(name), sql.Identifier(template), sql.Identifier(server.app_user)))
    return name


def drop_databases(server: PostgresServer, names) -> None:
    for name in names:
        server.admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def generate(server: PostgresServer, dbname: str, rows: int, key_order: str) -> None:
    """INSERT … SELECT generate_series in chunks from two sessions, reporting progress."""
    conn = server.app_connect(dbname)
    with conn, conn.cursor() as cur:
        cur.execute(TABLE_DDL)
    conn.close()
    insert = INSERT_ROWS.format(payment_id=PAYMENT_ID[key_order])
    chunks = [(lo, min(lo + CHUNK_ROWS - 1, rows)) for lo in range(1, rows + 1, CHUNK_ROWS)]
    lock, done, failures = threading.Lock(), [0], []
    started = time.monotonic()

    def worker() -> None:
        conn = server.app_connect(dbname)
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
                    log(f"  {dbname} rows: {done[0]:>12,} / {rows:,} ({100 * done[0] / rows:3.0f}%), {elapsed:5.0f} s")
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


def warm_up(server: PostgresServer, names) -> None:
    """Read every table once so no run pays for a cold cache the others do not."""
    for dbname in names:
        with_connection(server, dbname, ["SELECT count(*) FROM payments", "SELECT count(*) FROM payments"])


# -- measurements --------------------------------------------------------------------------------


def measure_main(server: PostgresServer, args) -> dict:
    data = prepare_data(server, "main", args.rows, args.key_order, one_percent=True)
    warm_up(server, [data["source"], data["one"], data["pct"]])
    figures = {"rows": args.rows, "changed_key": data["changed_key"], "pct_changed": data["pct_changed"]}
    for scenario, target in (("one", data["one"]), ("pct", data["pct"])):
        floors, engines = [], []
        for attempt in range(args.repeat):
            log(f"{scenario}: floor and engine, run {attempt + 1} of {args.repeat}")
            floors.append(run_floor(server, data["source"], target))
            engines.append(run_engine(server, data["source"], target))
        log(f"{scenario}: reladiff -j {args.threads}")
        figures[scenario] = {
            "floor": median_run(floors),
            "engine": median_run(engines),
            "engine_runs": engines,
            # each engine run against the floor run just before it: the two saw about the same load
            "paired_ratio": statistics.median(e["seconds"] / f["seconds"] for f, e in zip(floors, engines)),
            "paired_cpu_ratio": statistics.median(e["cpu"] / f["cpu"] for f, e in zip(floors, engines)),
            "reladiff": run_reladiff(server, args.reladiff, args.threads, data["source"], target),
        }
    figures["one"]["engine_found"] = all(found_one(run, data["changed_key"]) for run in figures["one"]["engine_runs"])
    figures["pct"]["engine_found"] = all(
        run["table"]["mismatched_total"] == data["pct_changed"] and run["table"]["missing_in_target_total"] == 0
        and run["table"]["extra_in_target_total"] == 0 for run in figures["pct"]["engine_runs"])
    figures["one"]["reladiff_found"] = figures["one"]["reladiff"]["keys"] == {data["changed_key"]}
    figures["pct"]["reladiff_found"] = len(figures["pct"]["reladiff"]["keys"]) == data["pct_changed"]
    drop_databases(server, [data["pct"]])
    figures["databases"] = data
    return figures


def measure_distributed(server: PostgresServer, args, changed_key: str) -> dict:
    """plan, every chunk in its own process one after the other, merge: the per-chunk rate."""
    data = {"source": "main_source", "target": "main_one"}
    chunk_rows = args.chunk_rows or max(1, args.rows // 4)
    log(f"distributed: plan with chunks of {chunk_rows:,} rows")
    planned = child(server, "plan", data["source"], data["target"], {"BENCH_CHUNK_ROWS": str(chunk_rows)})
    chunks = planned["output"]["chunks"]
    results, chunk_runs = [], []
    for chunk in chunks:
        run = child(server, "chunk", data["source"], data["target"], {"BENCH_CHUNK": json.dumps(chunk)})
        results.append(run["output"])
        table = run["output"]["tables"]["public.payments"]
        rows = max(table["source_rows"], table["target_rows"])
        chunk_runs.append({"seconds": run["seconds"], "rows": rows, "rss_mib": run["rss_mib"]})
        log(f"  chunk {chunk['index'] + 1} of {chunk['count']}: {rows:,} rows in {run['seconds']:.2f} s")
    started = time.monotonic()
    from payment_validation import Chunk, merge

    merged = merge([Chunk.from_dict(chunk) for chunk in chunks], results, 100, False).to_dict()
    merge_seconds = time.monotonic() - started
    table = merged["tables"]["public.payments"]
    return {
        "chunk_rows": chunk_rows,
        "chunks": len(chunks),
        "plan_seconds": planned["seconds"],
        "merge_seconds": merge_seconds,
        "runs": chunk_runs,
        "found": table["mismatched"] == [{"payment_id": changed_key}] and table["mismatched_total"] == 1,
        "rate": statistics.median(run["rows"] / run["seconds"] for run in chunk_runs),
        "peak_rss_mib": max(run["rss_mib"] for run in chunk_runs),
    }


def measure_sizes(server: PostgresServer, args) -> list[dict]:
    sizes = sorted({int(size) for size in args.sizes.split(",") if size.strip()} | {args.rows})
    figures = []
    for rows in sizes:
        if rows == args.rows:
            figures.append({"rows": rows, "reuse": True})
            continue
        free = shutil.disk_usage(server.root).free
        if rows * BYTES_PER_ROW_ON_DISK > free:
            log(f"size {rows:,}: skipped, {free / 2**30:.0f} GiB free on {server.root} "
                f"(needs about {rows * BYTES_PER_ROW_ON_DISK / 2**30:.0f} GiB)")
            figures.append({"rows": rows, "skipped": f"{free / 2**30:.0f} GiB free"})
            continue
        data = prepare_data(server, f"size{rows}", rows, args.key_order, one_percent=False)
        warm_up(server, [data["source"], data["one"]])
        floors, engines = [], []
        for attempt in range(args.repeat):
            log(f"size {rows:,}: floor and engine, run {attempt + 1} of {args.repeat}")
            floors.append(run_floor(server, data["source"], data["one"]))
            engines.append(run_engine(server, data["source"], data["one"]))
        figures.append({"rows": rows, "floor": median_run(floors), "engine": median_run(engines),
                        "found": all(found_one(run, data["changed_key"]) for run in engines)})
        drop_databases(server, [data["source"], data["one"]])
    return figures


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time (the lower one of an even count; its other figures with it),
    and the largest peak RSS of all runs."""
    middle = dict(sorted(runs, key=lambda run: run["seconds"])[(len(runs) - 1) // 2])
    if "rss_mib" in middle:
        middle["rss_mib"] = max(run["rss_mib"] for run in runs)
    return middle


def found_one(run: dict, changed_key: str) -> bool:
    table = run["table"]
    return table["mismatched"] == [{"payment_id": changed_key}] and table["mismatched_total"] == 1 \
        and table["missing_in_target_total"] == 0 and table["extra_in_target_total"] == 0


def dsn(server: PostgresServer, dbname: str) -> str:
    return (f"host={server.host} port={server.port} dbname={dbname} user={server.app_user} "
            f"password={server.app_password} sslmode=require")


def child(server: PostgresServer, mode: str, source: str, target: str, extra: dict[str, str] | None = None) -> dict:
    """`mode` in a subprocess: wall time, peak RSS and CPU (its own, from wait4) and its output."""
    env = {**os.environ, "BENCH_SOURCE_DSN": dsn(server, source), "BENCH_TARGET_DSN": dsn(server, target),
           **(extra or {})}  # not argv: the password stays out of `ps`
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, __file__, "--child", mode], env=env, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{mode} run failed with exit code {os.waitstatus_to_exitcode(status)}")
    result = json.loads(output)
    # not wait4's ru_maxrss: Linux carries into it the parent's size at the fork, before the exec
    return {"seconds": seconds, "rss_mib": result.pop("peak_rss_kib") / 1024,
            "client_cpu": usage.ru_utime + usage.ru_stime, "output": result}


def run_engine(server: PostgresServer, source: str, target: str) -> dict:
    run = child(server, "validate", source, target)
    output = run["output"]
    return {"seconds": run["seconds"], "rss_mib": run["rss_mib"],
            "cpu": run["client_cpu"] + output["server_cpu"], "server_cpu": output["server_cpu"],
            "status": output["status"], "table": output["tables"]["public.payments"]}


def run_floor(server: PostgresServer, source: str, target: str) -> dict:
    """Both sides hash every row once, at the same time, from this process (no process start)."""
    row = ", ".join(COLUMNS)
    query = f"SELECT count(*), sum(pg_catalog.hash_record_extended(ROW({row}), 0)) FROM public.payments"
    connections = [psycopg2.connect(dsn(server, dbname)) for dbname in (source, target)]
    try:
        pids = []
        for conn in connections:
            with conn.cursor() as cur:
                # one process per side, as the engine's scans: parallel workers would take a larger
                # share of a busy machine and escape the CPU count below
                cur.execute("SET max_parallel_workers_per_gather = 0")
                cur.execute("SELECT pg_backend_pid()")
                pids.append(cur.fetchone()[0])
        cpu_before = sum(backend_cpu(pid) for pid in pids)
        results, started = [None, None], time.monotonic()

        def scan(index: int) -> None:
            with connections[index].cursor() as cur:
                cur.execute(query)
                results[index] = cur.fetchone()

        threads = [threading.Thread(target=scan, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - started
        server_cpu = sum(backend_cpu(pid) for pid in pids) - cpu_before
    finally:
        for conn in connections:
            conn.close()
    return {"seconds": seconds, "cpu": server_cpu, "rows": results[0][0]}


def backend_cpu(pid: int) -> float:
    """CPU seconds a server process has used (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(mode: str) -> int:
    """The measured subprocess: prints its result as JSON."""
    from payment_validation import Chunk, ValidationOptions, plan, validate

    source = psycopg2.connect(os.environ["BENCH_SOURCE_DSN"])
    target = psycopg2.connect(os.environ["BENCH_TARGET_DSN"])
    pids = []
    for conn in (source, target):
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pids.append(cur.fetchone()[0])
        conn.rollback()
    cpu_before = sum(backend_cpu(pid) for pid in pids)
    options = ValidationOptions(tables=("public.payments",))
    if mode == "plan":
        chunks = plan(source, target, options, int(os.environ["BENCH_CHUNK_ROWS"]))
        output = {"chunks": [chunk.to_dict() for chunk in chunks]}
    else:
        if mode == "chunk":
            options = ValidationOptions(chunk=Chunk.from_dict(json.loads(os.environ["BENCH_CHUNK"])))
        output = validate(source, target, options).to_dict()
    output["server_cpu"] = sum(backend_cpu(pid) for pid in pids) - cpu_before
    output["peak_rss_kib"] = peak_rss_kib()
    print(json.dumps(output))
    return 0


def peak_rss_kib() -> int:
    """This process's peak resident set since its exec (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_reladiff(server: PostgresServer, reladiff: str, threads: int, source: str, target: str) -> dict:
    def uri(dbname: str) -> str:
        return f"postgresql://{server.app_user}:{server.app_password}@{server.host}:{server.port}/{dbname}"

    command = [reladiff, uri(source), "payments", uri(target), "payments",
               "-k", "payment_id", "-c", "%", "-j", str(threads), "--json"]
    # PGSSLMODE: TLS, as for the engine. COLUMNS: reladiff prints through rich, which would
    # otherwise wrap its JSON lines at the terminal width.
    env = {**os.environ, "PGSSLMODE": "require", "COLUMNS": "100000"}
    started = time.monotonic()
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if completed.returncode != 0:
        raise RuntimeError(f"reladiff failed ({completed.returncode}): {completed.stderr[-2000:]}")
    keys = set()
    for line in completed.stdout.splitlines():
        try:
            operation, values = json.loads(line)
        except (ValueError, TypeError):
            continue
        if operation in ("-", "+"):
            keys.add(values[0])
    return {"seconds": seconds, "keys": keys}


# -- report --------------------------------------------------------------------------------------


def report(args, figures: dict) -> None:
    from payment_validation.config import DEFAULT_CHUNK_ROWS

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    rows = figures["rows"]
    print(f"\nvalidation benchmark: payments, {rows:,} rows, {args.key_order} key order, "
          f"{os.cpu_count()} CPUs shared by both databases and the client; medians of {args.repeat} runs; "
          f"load average at the end {os.getloadavg()[0]:.1f} (other work on the machine inflates wall times)")
    for scenario, title in (("one", f"one row changed (payment {figures['changed_key']})"),
                            ("pct", f"1 % of rows changed ({figures['pct_changed']:,} payments)")):
        numbers = figures[scenario]
        floor, engine, reladiff = numbers["floor"], numbers["engine"], numbers["reladiff"]
        print(f"\n  {title}")
        print(f"    floor     {floor['seconds']:8.2f} s   cpu {floor['cpu']:7.2f} s   "
              "(count + sum of hash_record_extended over every row, both sides at once)")
        print(f"    engine    {engine['seconds']:8.2f} s   cpu {engine['cpu']:7.2f} s   "
              f"found exactly the changed keys: {'yes' if numbers['engine_found'] else 'NO'}   "
              f"peak RSS {engine['rss_mib']:.0f} MiB   (runs: "
              + ", ".join(f"{run['seconds']:.2f}" for run in numbers["engine_runs"]) + " s)")
        print(f"    reladiff  {reladiff['seconds']:8.2f} s   found exactly the changed keys: "
              f"{'yes' if numbers['reladiff_found'] else 'NO'}")
        print(f"    engine / floor {engine['seconds'] / floor['seconds']:.2f} (median of paired runs "
              f"{numbers['paired_ratio']:.2f}; cpu {numbers['paired_cpu_ratio']:.2f})   "
              f"engine / reladiff {engine['seconds'] / reladiff['seconds']:.3f}")
    one, pct = figures["one"], figures["pct"]
    ratio_floor = one["paired_ratio"]
    ratio_reladiff = pct["engine"]["seconds"] / pct["reladiff"]["seconds"]
    rss = max(one["engine"]["rss_mib"], pct["engine"]["rss_mib"])
    print(f"\n  targets: one difference, engine <= {TARGET_FLOOR_RATIO} x floor (paired runs): {ratio_floor:.2f} "
          f"{verdict(ratio_floor <= TARGET_FLOOR_RATIO)}; 1 % different, engine <= {TARGET_RELADIFF_RATIO} x "
          f"reladiff: {ratio_reladiff:.3f} {verdict(ratio_reladiff <= TARGET_RELADIFF_RATIO)}; "
          f"peak RSS <= {TARGET_RSS_MIB} MiB: {rss:.0f} {verdict(rss <= TARGET_RSS_MIB)}; "
          f"keys found {verdict(one['engine_found'] and pct['engine_found'])}")

    distributed = figures["distributed"]
    rate, chunk_rows = distributed["rate"], distributed["chunk_rows"]
    chunk_seconds = statistics.median(run["seconds"] for run in distributed["runs"])
    print(f"\n  distributed: {distributed['chunks']} chunks of about {chunk_rows:,} rows, one at a time, each in its "
          f"own process; plan {distributed['plan_seconds']:.2f} s, merge {distributed['merge_seconds'] * 1000:.0f} ms, "
          f"merged report right: {'yes' if distributed['found'] else 'NO'}, peak RSS "
          f"{distributed['peak_rss_mib']:.0f} MiB")
    print(f"    per chunk: median {chunk_seconds:.2f} s, {rate:,.0f} rows/s ("
          + ", ".join(f"{run['seconds']:.1f}" for run in distributed["runs"]) + " s)")
    print(f"    projection for {PROJECTED_ROWS:,} rows at concurrency C = {args.concurrency}, chunks of the "
          f"handler's default {DEFAULT_CHUNK_ROWS:,} rows, r the measured per-chunk rate:\n"
          f"      T = T_plan + ceil(N / C) * chunk_rows / r + T_merge, N = ceil(rows / chunk_rows)")
    for rows_per_chunk in (DEFAULT_CHUNK_ROWS, chunk_rows):
        chunks = math.ceil(PROJECTED_ROWS / rows_per_chunk)
        waves = math.ceil(chunks / args.concurrency)
        projected = distributed["plan_seconds"] + waves * rows_per_chunk / rate + distributed["merge_seconds"]
        print(f"        chunks of {rows_per_chunk:,}: N = {chunks}, T = {distributed['plan_seconds']:.1f} + {waves} * "
              f"{rows_per_chunk:,} / {rate:,.0f} + {distributed['merge_seconds']:.1f} = {projected:,.0f} s "
              f"({projected / 60:.1f} min)")
    print("      assuming each database serves C chunk scans at once at the measured rate (C cores and the I/O for "
          "them on each side; with K < C cores, put K for C), and time-ordered keys (a chunk is a contiguous part "
          "of the table)")

    print("\n  cost by table size (one row changed):")
    for size in figures["sizes"]:
        if size.get("skipped"):
            print(f"    {size['rows']:>12,} rows: skipped ({size['skipped']})")
            continue
        numbers = figures["one"] if size.get("reuse") else size
        floor, engine = numbers["floor"], numbers["engine"]
        found = numbers["engine_found"] if size.get("reuse") else numbers["found"]
        print(f"    {size['rows']:>12,} rows: floor {floor['seconds']:7.2f} s, engine {engine['seconds']:7.2f} s "
              f"({engine['seconds'] / floor['seconds']:.2f} x floor, {1e6 * engine['seconds'] / size['rows']:.2f} "
              f"µs/row, cpu {engine['cpu']:.1f} s), peak RSS {engine['rss_mib']:.0f} MiB, key found: "
              f"{'yes' if found else 'NO'}")


if __name__ == "__main__":
    sys.exit(main())
