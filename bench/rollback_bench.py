"""Wall time of the rollback handler against moto in server mode (target: median <= 1 s for the
DNS-only rollback).

Starts its own moto server and builds the zone / weighted records / writer parameter / topic the
stacks would leave, then times two paths, only the handler call:

- DNS only (writer onprem, before the data cutover): the controller's advance and cutover
  executions listed (none runs), one Route 53 change, the writer read, the weights read again, one
  SNS publish. Before each invocation AWS gets weight again, so every invocation is a real shift.
- writer aws (after the data cutover): the same, plus starting the rollback state machine and
  waiting for it. The stand-in machine only switches the writer parameter back (one aws-sdk:ssm
  task on moto's engine), so the figure is this function's own overhead and polling granularity,
  not the fence: the real machine's steps take what they take.

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
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "lib" / "lambda" / "common"), str(ROOT / "lib" / "lambda" / "rollback")]

TARGET_SECONDS = 1.0


@contextlib.contextmanager
def quiet():
    """Powertools' EMF lines go to stdout; they are part of the work but not of the report."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def time_invocations(
    count: int, prepare: Callable[[int], None], invoke: Callable[[int], dict], expected: str
) -> list[float] | None:
    durations: list[float] = []
    for invocation in range(count):
        prepare(invocation)
        with quiet():
            started = time.perf_counter()
            answer = invoke(invocation)
            durations.append(time.perf_counter() - started)
        if answer["status"] != expected or answer["errors"]:
            print(f"invocation {invocation} did not end {expected}: {answer}", file=sys.stderr)
            return None
    return durations


def report(title: str, durations: list[float], target: float | None, *, first_creates_clients: bool) -> bool:
    median = statistics.median(durations)
    print(f"{title}, {len(durations)} invocations against moto server over HTTP")
    target_text = f"   (target <= {target * 1000:.0f} ms)" if target else ""
    print(f"  median {median * 1000:7.1f} ms{target_text}")
    print(f"  min    {min(durations) * 1000:7.1f} ms")
    print(f"  max    {max(durations) * 1000:7.1f} ms")
    if first_creates_clients:
        print(f"  first  {durations[0] * 1000:7.1f} ms   (creates the boto3 clients)")
    if target is None:
        return True
    print("  within target" if median <= target else "  OVER TARGET")
    return median <= target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=20)
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

    from moto.core.config import default_user_config

    from tests.rollback.world import (
        ADVANCE_MACHINE_NAME,
        CUTOVER_MACHINE_NAME,
        FakeLambdaContext,
        build_world,
        switch_writer_to_onprem,
    )
    from tests.support.moto_server import MotoServer

    server = MotoServer()
    try:
        os.environ.update(server.environment)
        # moto executes the state machines created from here on; its aws-sdk tasks call the
        # server on localhost:$MOTO_PORT.
        default_user_config["stepfunctions"] = {"execute_state_machine": True}
        os.environ["MOTO_PORT"] = str(urlsplit(server.endpoint_url).port)
        world = build_world(subscribe_queue=False)
        os.environ.update(world.environment())
        # Deployed and idle: the rollback lists their executions and finds none running.
        for machine in (ADVANCE_MACHINE_NAME, CUTOVER_MACHINE_NAME):
            world.create_controller_machine(machine, {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
        from payment_rollback.handler import lambda_handler

        context = FakeLambdaContext()

        def rollback(invocation: int) -> dict:
            return lambda_handler({"reason": f"benchmark {invocation}"}, context)

        def traffic_back_on_aws(_: int) -> None:
            world.set_weights(onprem=90, aws=10)

        dns_only = time_invocations(args.invocations, traffic_back_on_aws, rollback, "ROLLED_BACK")
        if dns_only is None:
            return 1

        # Epochs grow by two per round (cutover, rollback): each round is a new writer rollback.
        world.create_rollback_machine(switch_writer_to_onprem(epoch=0))

        def after_cutover(invocation: int) -> None:
            world.set_weights(onprem=0, aws=100)
            world.set_writer("aws", 2 * invocation)

        with_writer = time_invocations(args.invocations, after_cutover, rollback, "ROLLED_BACK")
        if with_writer is None:
            return 1
    finally:
        server.stop()

    within = report("rollback handler, writer onprem (DNS only)", dns_only, TARGET_SECONDS,
                    first_creates_clients=True)
    print()
    report("rollback handler, writer aws (stand-in writer rollback on moto's engine)",
           with_writer, None, first_creates_clients=False)
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
