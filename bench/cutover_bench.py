"""The data cutover's write pause as the database grows, under a steady payment load.

Two real PostgreSQL servers joined by logical replication (the tests' harness). For each size, the
same rows are loaded on both sides server-side (generate_series; payments N rows, customers N/10,
transactions N, audit_log N) and forward replication is made again; then a client writes `--rate`
payments per second as payment_app — to whichever side accepts (the fence guarantees one does at a
time), retrying a refused write every 10 ms — while the data cutover's steps run in the state
machine's order, as the controller runs them, validations included:

    preflight, checkpoint, live validation (every row, settle-and-recheck, as payment_validator),
    catch_up (what was written meanwhile, compared; the checkpoint moved past it), fence, wait_replication, validate_changes (what changed since the checkpoint), advance_sequences,
    the sequences' validation (as payment_validator), switch_replication, prove_fence, open, set_writer

The write pause is the longest gap between two acknowledged payments that overlaps the switch (from
the fence to the open); the fenced window is the time from the fence step's start to the open
step's end. Before the cutover, each size also measures the scheduled validation's two costs on
quiet data: a full pass, and a pass over what changed since a checkpoint after 1 % of each table's
rows were updated (read from the slot, compared by key, counts not compared).

    .venv/bin/python bench/cutover_bench.py [--rows 1000000 10000000] [--rate 200]

Prints one line per step and a summary per size, and writes build/bench/cutover.json:
{"runs": [{"rows", "rate", "write_pause_seconds", "fenced_window_seconds", "steps": {name: seconds},
"scheduled_validation": {...}}]}. A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), *(str(ROOT / "lib" / "lambda" / name) for name in ("common", "cutover", "validation"))]

import boto3  # noqa: E402
import psycopg2  # noqa: E402

from tests.support.moto_server import MotoServer  # noqa: E402
from lib.local.postgres.replication import AWS, ONPREM, acquire_servers, release_servers, shared_pair  # noqa: E402
from tests.support.handlers import create_writer_parameter  # noqa: E402

OUTPUT = ROOT / "build" / "bench" / "cutover.json"
# The live validation's settle-and-recheck: local replication lags milliseconds.
RECHECK_ROUNDS, RECHECK_SECONDS = 3, 1.0
RETRY_SECONDS = 0.01

LOAD_SQL = """
-- the rows are consistent by construction: no foreign-key trigger per row (a superuser's setting)
SET session_replication_role = replica;
INSERT INTO customers (customer_id, external_ref, display_name, created_at)
SELECT md5('customer-' || i)::uuid, 'CUST-' || i, 'Customer ' || i, timestamptz '2024-01-01 00:00:00+00'
FROM generate_series(1, {customers}) AS i;
INSERT INTO payments (payment_id, customer_id, amount, currency, status, payment_token, idempotency_key,
                      request_hash, created_at, updated_at)
SELECT md5('payment-' || i)::uuid, md5('customer-' || (1 + i % {customers}))::uuid, (i % 5000 + 1) / 100.0,
       (ARRAY['EUR', 'USD', 'GBP'])[1 + i % 3], 'captured', 'tok_' || substr(md5('token-' || i), 1, 16),
       'idem-' || i, md5('request-' || i), timestamptz '2024-02-01 00:00:00+00' + i * interval '1 second',
       timestamptz '2024-02-01 00:00:00+00' + i * interval '1 second'
FROM generate_series(1, {payments}) AS i;
INSERT INTO transactions (payment_id, seq, kind, amount, processor_ref, occurred_at)
SELECT md5('payment-' || i)::uuid, 1, 'capture', (i % 5000 + 1) / 100.0, 'proc-' || i,
       timestamptz '2024-02-01 00:00:00+00' + i * interval '1 second'
FROM generate_series(1, {payments}) AS i;
INSERT INTO audit_log (audit_id, entity, entity_id, action, recorded_at)
SELECT i, 'payment', md5('payment-' || i), 'created', timestamptz '2024-02-01 00:00:00+00' + i * interval '1 second'
FROM generate_series(1, {payments}) AS i;
SELECT setval(pg_get_serial_sequence('audit_log', 'audit_id'), {payments});
ANALYZE;
"""

# 1 % of each table's rows, spread over the key space
CHANGE_ONE_PERCENT_SQL = """
UPDATE customers SET display_name = display_name || ' (moved)' WHERE external_ref LIKE '%00';
UPDATE payments SET status = 'refunded', updated_at = now() WHERE idempotency_key LIKE '%00';
UPDATE transactions SET processor_ref = processor_ref || '-r' WHERE processor_ref LIKE '%00';
UPDATE audit_log SET action = 'reviewed' WHERE audit_id % 100 = 0;
"""

INSERT_PAYMENT = """INSERT INTO payments (payment_id, customer_id, amount, currency, idempotency_key, request_hash)
                    VALUES (%s, md5('customer-1')::uuid, 12.5, 'EUR', %s, 'bench')"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--rate", type=int, default=200, help="payments written per second during the cutover")
    parser.add_argument("--scheduled-only", action="store_true",
                        help="measure only the scheduled validation's two kinds of run, not the cutover")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: the servers are still removed
    moto = MotoServer()
    os.environ.update(moto.environment)
    runs = []
    # measured alone, the scheduled validation's figures do not replace the cutover's
    output = OUTPUT.with_name("scheduled_validation.json") if args.scheduled_only else OUTPUT
    servers = acquire_servers()
    try:
        pair = shared_pair(servers)
        for rows in args.rows:
            runs.append(run_size(pair, rows, args.rate, scheduled_only=args.scheduled_only))
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
            pair.reset()
    finally:
        release_servers()
        moto.stop()
    if len(runs) > 1 and not args.scheduled_only:
        first, last = runs[0], runs[-1]
        print(f"write pause {last['rows']:,} / {first['rows']:,} rows: "
              f"{last['write_pause_seconds'] / first['write_pause_seconds']:.2f}")
    print(f"wrote {output.relative_to(ROOT)}")
    return 0


def run_size(pair, rows: int, rate: int, *, scheduled_only: bool = False) -> dict:
    from payment_cutover import steps

    started = time.perf_counter()
    pair.load_both(LOAD_SQL.format(payments=rows, customers=max(1, rows // 10)))
    # as a database that has lived with its rows: vacuumed, so autovacuum does not rewrite the fresh
    # tables (and fill the WAL every slot reads) in the middle of the measurement
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda db: db.postgres.admin_execute("VACUUM (FREEZE, ANALYZE)", dbname=db.dbname),
                      pair.sides.values()))
    print(f"{rows:,} payments rows (and {3 * rows + rows // 10:,} in the other tables) loaded on both sides "
          f"in {time.perf_counter() - started:.0f} s", flush=True)
    scheduled = scheduled_validation(pair, rows)
    if scheduled_only:
        return {"rows": rows, "scheduled_validation": scheduled}

    ssm = boto3.client("ssm")
    controller = pair.controller(ssm=ssm, writer_parameter=create_writer_parameter(ssm, "/bench/cutover-writer"),
                                 wait_seconds=60)
    controller.recheck_rounds, controller.recheck_seconds = RECHECK_ROUNDS, RECHECK_SECONDS
    load = Load(pair, rate)
    load.start()
    time.sleep(3)  # steady state first
    timed: dict[str, float] = {}
    moments: dict[str, tuple[float, float]] = {}

    def step(name: str, call):
        began = time.monotonic()
        result = call()
        ended = time.monotonic()
        timed[name], moments[name] = ended - began, (began, ended)
        print(f"  {name:<20} {timed[name]:8.3f} s", flush=True)
        return result

    live = None
    try:
        step("preflight", lambda: steps.preflight(controller, ONPREM, AWS))
        step("checkpoint", lambda: steps.checkpoint(controller, ONPREM, AWS))
        live = step("validate_live", lambda: validation(pair, recheck_rounds=RECHECK_ROUNDS))
        assert live["status"] == "PASSED", live["message"]
        step("catch_up", lambda: steps.catch_up(controller, ONPREM, AWS))
        step("fence", lambda: steps.fence(controller, ONPREM, AWS))
        step("wait_replication", lambda: steps.wait_replication(controller, ONPREM, AWS))
        fenced = step("validate_changes", lambda: steps.validate_changes(controller, ONPREM, AWS,
                                                                           live_validation=live["status"]))
        assert fenced["status"] == "PASSED", fenced["message"]
        step("advance_sequences", lambda: steps.advance_sequences(controller, ONPREM, AWS))
        sequences = step("validate_sequences", lambda: validation(pair, sequences_only=True))
        assert sequences["status"] == "PASSED", sequences["message"]
        step("switch_replication", lambda: steps.switch_replication(controller, ONPREM, AWS))
        step("prove_fence", lambda: steps.prove_fence(controller, ONPREM, AWS))
        step("open", lambda: steps.open_writer(controller, ONPREM, AWS))
        step("set_writer", lambda: steps.set_writer(controller, ONPREM, AWS, "bench"))
        time.sleep(2)
    finally:
        load.stop()
        pair.close_connections()
    switch = (moments["fence"][0], moments["open"][1])
    pause = load.longest_gap(*switch)
    if os.environ.get("CUTOVER_BENCH_TRACE"):
        for at, side in zip(load.acks, load.sides):
            if switch[0] - 0.5 <= at <= switch[1] + 0.5:
                print(f"    ack {at - switch[0]:+.3f} s on {side}")
    result = {
        "rows": rows,
        "rate": rate,
        "write_pause_seconds": round(pause, 3),
        "fenced_window_seconds": round(switch[1] - switch[0], 3),
        "steps": {name: round(seconds, 3) for name, seconds in timed.items()},
        "fenced_validation": {"mode": fenced["scope"]["mode"], "keys_compared": fenced["scope"].get("keys_compared"),
                              "changed_rows": fenced["scope"].get("changed_rows")},
        "payments_acknowledged": load.acknowledged,
        "achieved_rate": round(load.acknowledged / (load.stopped_at - load.started_at), 1),
        "scheduled_validation": scheduled,
    }
    print(f"{rows:,} rows at {rate} payments/s: write pause {pause:.3f} s, fenced window "
          f"{result['fenced_window_seconds']:.3f} s ({fenced['scope']['mode']} comparison of "
          f"{fenced['scope'].get('keys_compared')} keys inside the fence)", flush=True)
    return result


def validation(pair, **options) -> dict:
    """The validation Lambda's engine, as its role on both sides."""
    from payment_validation import ValidationOptions, validate
    from payment_validation.engine import validate_sequences

    source, target = pair.sides[ONPREM].connect("payment_validator"), pair.sides[AWS].connect("payment_validator")
    try:
        if options.pop("sequences_only", False):
            return validate_sequences(source, target, ValidationOptions(check_sequences=True)).to_dict()
        return validate(source, target, ValidationOptions(recheck_seconds=RECHECK_SECONDS, **options)).to_dict()
    finally:
        source.close()
        target.close()


def scheduled_validation(pair, rows: int) -> dict:
    """A full pass, then a pass over what changed since a checkpoint after 1 % of every table's rows
    changed (replicated first): the scheduled validation's two kinds of run."""
    from payment_validation import ValidationOptions
    from payment_validation.changes import CHECKPOINT_PLUGIN, read_changes
    from payment_validation.engine import validate_changes

    started = time.perf_counter()
    full = validation(pair)
    full_seconds = time.perf_counter() - started
    assert full["status"] == "PASSED", full["message"]
    admin = pair.admin_connection(ONPREM)
    admin.autocommit = True
    slot = "bench_scheduled_checkpoint"
    with admin.cursor() as cur:
        cur.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (slot, CHECKPOINT_PLUGIN))
        cur.execute(CHANGE_ONE_PERCENT_SQL)
    marker = str(uuid.uuid4())
    with admin.cursor() as cur:
        cur.execute("INSERT INTO payment_control.cutover_marker (marker_id, from_side, to_side) "
                    "VALUES (%s, 'onprem', 'aws')", (marker,))
    pair.wait_until(lambda: pair.aws.scalar("SELECT count(*) FROM payment_control.cutover_marker WHERE marker_id = %s",
                                            (marker,)), "the 1 % changes to reach aws", timeout=600)

    def incremental_pass() -> tuple[float, float, object]:
        """(slot read seconds, comparison seconds, changes) of one pass over what changed."""
        started = time.perf_counter()
        changes = read_changes(admin, slot, max_rows=10 * rows)
        read = time.perf_counter() - started
        source, target = pair.sides[ONPREM].connect("payment_validator"), pair.sides[AWS].connect("payment_validator")
        try:
            report = validate_changes(source, target, changes, ValidationOptions(recheck_rounds=RECHECK_ROUNDS,
                                                                                recheck_seconds=RECHECK_SECONDS),
                                      count_rows=False).to_dict()
        finally:
            source.close()
            target.close()
        assert report["status"] == "PASSED", report["message"]
        return read, time.perf_counter() - started - read, changes

    with admin.cursor() as cur:
        # what the slot read decodes (scattered updates write a full-page image per page they first
        # touch after a checkpoint) beside what a full pass reads on each side
        cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots "
                    "WHERE slot_name = %s", (slot,))
        wal_bytes = cur.fetchone()[0]
        cur.execute("SELECT sum(pg_relation_size(relid))::bigint FROM pg_stat_user_tables WHERE schemaname = 'public'")
        table_bytes = cur.fetchone()[0]
    # the first pass is the first to read the changed rows and their WAL since they were written (it
    # sets their hint bits, decodes WAL not in memory); the repeat shows what is left without that
    read_seconds, compare_seconds, changes = incremental_pass()
    repeat_read, repeat_compare, _ = incremental_pass()
    incremental_seconds = read_seconds + compare_seconds
    with admin.cursor() as cur:
        cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    # what CHECKPOINT_COUNT_ROWS=true would add to the fenced window: every table counted on both sides
    started = time.perf_counter()
    pair.sides[ONPREM].query("SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM payments) + "
                             "(SELECT count(*) FROM transactions) + (SELECT count(*) FROM audit_log)")
    count_seconds = time.perf_counter() - started
    figures = {"row_counts_seconds_one_side": round(count_seconds, 3), "full_seconds": round(full_seconds, 3),
               "changed_rows": changes.rows, "wal_bytes_since_checkpoint": wal_bytes, "table_bytes": table_bytes,
               "incremental_seconds": round(incremental_seconds, 3),
               "slot_read_seconds": round(read_seconds, 3), "compare_seconds": round(compare_seconds, 3),
               "ratio": round(incremental_seconds / full_seconds, 3),
               "repeat_seconds": round(repeat_read + repeat_compare, 3), "repeat_slot_read_seconds": round(repeat_read, 3),
               "repeat_ratio": round((repeat_read + repeat_compare) / full_seconds, 3)}
    print(f"  scheduled validation: full pass {full_seconds:.2f} s; {changes.rows:,} changed rows (1 %) since a "
          f"checkpoint {incremental_seconds:.2f} s (slot read {read_seconds:.2f} s, comparison {compare_seconds:.2f} s): "
          f"{figures['ratio']:.3f} of a full pass; the same again {figures['repeat_seconds']:.2f} s "
          f"(slot read {repeat_read:.2f} s): {figures['repeat_ratio']:.3f}; the slot decoded {wal_bytes / 2**20:.0f} MiB "
          f"of WAL, the tables hold {table_bytes / 2**20:.0f} MiB a side", flush=True)
    return figures


class Load:
    """`rate` payments a second, each sent when due (a backlog after a pause is sent at once), to the
    side that accepts it; the time of every acknowledgement."""

    def __init__(self, pair, rate: int):
        self.pair, self.rate = pair, rate
        self.acks: list[float] = []
        self.sides: list[str] = []  # where each acknowledged payment was written
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started_at = self.stopped_at = 0.0

    @property
    def acknowledged(self) -> int:
        return len(self.acks)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.stopped_at = time.monotonic()

    def longest_gap(self, begin: float, end: float) -> float:
        """The longest gap between consecutive acknowledgements that overlaps [begin, end]."""
        acks = sorted(self.acks) + [self.stopped_at]  # no acknowledgement until the end: a pause as long
        return max((later - earlier for earlier, later in zip(acks, acks[1:]) if later >= begin and earlier <= end),
                   default=0.0)

    def _run(self) -> None:
        connections: dict[str, object] = {}
        order = [ONPREM, AWS]
        sent = 0
        while not self._stop.is_set():
            due = self.started_at + sent / self.rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            payment = str(uuid.uuid4())
            while not self._stop.is_set():
                side = order[0]
                try:
                    conn = connections.get(side)
                    if conn is None or conn.closed:
                        conn = connections[side] = self.pair.sides[side].connect("payment_app")
                    with conn.cursor() as cur:
                        cur.execute(INSERT_PAYMENT, (payment, f"bench-{payment}"))
                    self.acks.append(time.monotonic())
                    self.sides.append(side)
                    break
                except psycopg2.Error:
                    # refused (fenced: read-only or no privilege) or the session was ended: the
                    # other side may be the writer now. A session keeps the read-only default it
                    # started with, so a refused one is not used again.
                    connections.pop(side).close()
                    order.reverse()
                    time.sleep(RETRY_SECONDS / 2)
            sent += 1
        for conn in connections.values():
            conn.close()


if __name__ == "__main__":
    sys.exit(main())
