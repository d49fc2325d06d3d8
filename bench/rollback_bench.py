"""Wall time of the rollback handler against moto in server mode (target: median <= 1 s).

Starts its own moto server, builds the zone / weighted records / DMS tasks / topic the stacks would
leave, then invokes the handler 20 times. Before each invocation AWS gets weight again and the
forward task runs again, so every invocation is a real rollback (one Route 53 change, one DMS
stop, one SNS publish). Only the handler call is timed.

    .venv/bin/python bench/rollback_bench.py [--invocations N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "lib" / "lambda" / "rollback")]

TARGET_SECONDS = 1.0


@contextlib.contextmanager
def quiet():
    """Powertools' EMF lines go to stdout; they are part of the work but not of the report."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=20)
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

    from tests.rollback.world import FakeLambdaContext, build_world
    from tests.support.moto_server import MotoServer

    server = MotoServer()
    try:
        os.environ.update(server.environment)
        world = build_world(subscribe_queue=False)
        os.environ.update(world.environment())
        from payment_rollback.handler import lambda_handler

        context = FakeLambdaContext()
        durations: list[float] = []
        for invocation in range(args.invocations):
            world.set_weights(onprem=90, aws=10)
            if world.task_status(world.forward_task_arn) != "running":
                world.start_forward_task()
            with quiet():
                started = time.perf_counter()
                answer = lambda_handler({"reason": f"benchmark {invocation}"}, context)
                durations.append(time.perf_counter() - started)
            if answer["status"] != "ROLLED_BACK" or answer["errors"]:
                print(f"invocation {invocation} did not roll back: {answer}", file=sys.stderr)
                return 1
    finally:
        server.stop()

    median = statistics.median(durations)
    print(f"rollback handler, {len(durations)} invocations against moto server over HTTP")
    print(f"  median {median * 1000:7.1f} ms   (target <= {TARGET_SECONDS * 1000:.0f} ms)")
    print(f"  min    {min(durations) * 1000:7.1f} ms")
    print(f"  max    {max(durations) * 1000:7.1f} ms")
    print(f"  first  {durations[0] * 1000:7.1f} ms   (creates the boto3 clients)")
    print("  within target" if median <= TARGET_SECONDS else "  OVER TARGET")
    return 0 if median <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
