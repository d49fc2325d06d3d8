"""How long the fence and its proof take with many application sessions connected.

Two real PostgreSQL servers joined by logical replication (the tests' harness), `--sessions`
application sessions connected to the old writer (half of them idle, half with an open
transaction that wrote: the ones the fence must end), a writer thread inserting payments'
audit rows meanwhile; then, `--runs` times: preflight, the fence step (write-path check, revoke,
sessions ended, witness slot made), a marker through replication, and the proof (the witness read)
— each timed — and the side reopened by `abort` for the next run.

    .venv/bin/python bench/fence_bench.py --sessions 50 --runs 5

Prints one line per run and the medians; a benchmark, never a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "lib" / "lambda" / "common"), str(ROOT / "lib" / "lambda" / "cutover")]

import boto3  # noqa: E402
import psycopg2  # noqa: E402

from tests.support.moto_server import MotoServer  # noqa: E402
from lib.local.postgres.replication import AWS, ONPREM, acquire_servers, release_servers, shared_pair  # noqa: E402
from tests.support.handlers import create_writer_parameter  # noqa: E402

AUDIT = "INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', %s, 'created')"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from payment_cutover import steps

    moto = MotoServer()
    os.environ.update(moto.environment)
    servers = acquire_servers()
    try:
        pair = shared_pair(servers)
        ssm = boto3.client("ssm")
        controller = pair.controller(ssm=ssm, writer_parameter=create_writer_parameter(ssm, "/bench/writer"))
        figures: dict[str, list[float]] = {"preflight": [], "fence": [], "marker": [], "proof": []}
        for run in range(1, args.runs + 1):
            sessions = _connect_sessions(pair, args.sessions, run)
            stop = threading.Event()
            writer = threading.Thread(target=_write, args=(pair, stop, run), daemon=True)
            writer.start()
            time.sleep(0.2)
            timed = {}
            for name, step in (("preflight", steps.preflight), ("fence", steps.fence),
                               ("marker", steps.wait_replication), ("proof", steps.prove_fence)):
                started = time.perf_counter()
                result = step(controller, ONPREM, AWS)
                timed[name] = time.perf_counter() - started
                figures[name].append(timed[name])
                if name == "fence":
                    ended = result["terminated_sessions"]
            stop.set()
            writer.join()
            steps.abort(controller, ONPREM, AWS)
            for conn in sessions:
                conn.close()
            print(f"run {run}: " + ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in timed.items())
                  + f"; {ended} sessions ended", flush=True)
        print(f"fence with {args.sessions} application sessions, median of {args.runs}: "
              + ", ".join(f"{name} {statistics.median(values) * 1000:.0f} ms" for name, values in figures.items()))
    finally:
        release_servers()
        moto.stop()
    return 0


def _connect_sessions(pair, count: int, run: int) -> list:
    sessions = []
    for n in range(count):
        conn = pair.sides[ONPREM].connect("payment_app", autocommit=n % 2 == 0)
        if n % 2:  # an open transaction that wrote: holds a transaction id
            with conn.cursor() as cur:
                cur.execute(AUDIT, (f"bench-{run}-open-{n}",))
        sessions.append(conn)
    return sessions


def _write(pair, stop: threading.Event, run: int) -> None:
    conn, n = None, 0
    while not stop.is_set():
        n += 1
        try:
            if conn is None or conn.closed:
                conn = pair.sides[ONPREM].connect("payment_app")
            with conn.cursor() as cur:
                cur.execute(AUDIT, (f"bench-{run}-{n}",))
        except psycopg2.Error:
            conn = None
            time.sleep(0.01)


if __name__ == "__main__":
    sys.exit(main())
