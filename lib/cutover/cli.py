"""`python -m lib.cutover status|advance|cutover|rollback`: the operator's commands.

    status [--json]                        one screen: traffic, writer, fence, replication, slots,
                                           validation, alarms, recent executions
    advance <phase> [--bake-minutes N]     an execution of payment-advance-<env>, followed
    cutover                                an execution of payment-cutover-<env>, followed
    rollback --reason "..." [--dry-run]    the rollback Lambda (the one emergency path): DNS to
                                           on-prem, the fenced writer rollback when AWS is the writer
    rollback --resume --reason "..."       the writer rollback state machine again, under a new name,
                                           when the Lambda's (rollback-epoch-<epoch>) ended without
                                           finishing and the cause has been dealt with

advance, cutover and rollback --resume start nothing while any execution of the controller's state
machines runs: the controller does one thing at a time. Following an execution can be interrupted
(Ctrl-C); the execution goes on.

Exit status: 0 done (SUCCEEDED; ROLLED_BACK, ALREADY_ROLLED_BACK, DRY_RUN), 1 it did not succeed
(FAILED, TIMED_OUT, ABORTED; PARTIAL, FAILED) or `status` could not read everything, 2 bad usage,
3 refused (something is running), 4 configuration or AWS unreachable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any, TextIO

from lib.config import PHASE_WEIGHTS, ConfigError, load_config
from lib.cutover import executions, status
from lib.cutover.aws import Aws, CliError, FunctionFailed
from lib.cutover.executions import Refused
from lib.names import MACHINES, Names

OK, NOT_SUCCEEDED, USAGE, REFUSED, UNREACHABLE, INTERRUPTED = 0, 1, 2, 3, 4, 130
ROLLBACK_DONE = ("ROLLED_BACK", "ALREADY_ROLLED_BACK", "DRY_RUN")
BAKE_INTERVAL_SECONDS = 60


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m lib.cutover", description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True, metavar="status|advance|cutover|rollback")
    show = commands.add_parser("status", help="where the migration stands")
    show.add_argument("--json", action="store_true", help="everything gathered, as one JSON document")
    advance = commands.add_parser("advance", help="move traffic to a phase, then bake watching the alarms")
    advance.add_argument("phase", choices=list(PHASE_WEIGHTS))
    advance.add_argument("--bake-minutes", type=_minutes, metavar="N",
                         help="how long to watch the alarms after the shift (default: the config's cutover.bake_minutes)")
    commands.add_parser("cutover", help="the data cutover: the writer moves to AWS behind a fence")
    rollback = commands.add_parser("rollback", help="everything back to on-prem (the rollback Lambda)")
    rollback.add_argument("--reason", required=True, help="why: it goes into the change comments and the notification")
    rollback.add_argument("--dry-run", action="store_true", help="say what would be done; change nothing")
    rollback.add_argument("--resume", action="store_true",
                          help="start the writer rollback state machine again under a new name")
    rollback.add_argument("--json", action="store_true", help="the Lambda's answer as it is")
    return root


def _minutes(text: str) -> int:
    try:
        minutes = int(text)
    except ValueError:
        minutes = 0
    if not 1 <= minutes <= 1440:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of minutes from 1 to 1440")
    return minutes


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    if args.command == "rollback" and args.resume and (args.dry_run or args.json):
        print("rollback --resume starts the state machine itself: --dry-run and --json are for the Lambda",
              file=sys.stderr)
        return USAGE
    try:
        config = load_config()
    except ConfigError as error:
        print(f"configuration: {error}", file=sys.stderr)
        return UNREACHABLE
    aws, names = Aws.of(config), Names(config.name)
    try:
        if args.command == "status":
            return _status(aws, names, args.json, out)
        if args.command == "advance":
            execution_input: dict[str, Any] = {"phase": args.phase}
            if args.bake_minutes:
                execution_input.update(bake_checks=args.bake_minutes, bake_interval_seconds=BAKE_INTERVAL_SECONDS)
            return _run(aws, names, "advance", executions.execution_name("advance", args.phase), execution_input, out)
        if args.command == "cutover":
            return _run(aws, names, "cutover", executions.execution_name("cutover"), {}, out)
        if args.resume:
            return _run(aws, names, "writer-rollback", executions.execution_name("resume"),
                        {"reason": args.reason, "trigger": "operator"}, out)
        return _rollback(aws, names, args.reason, args.dry_run, args.json, out)
    except Refused as refused:
        print(refused, file=sys.stderr)
        return REFUSED
    except FunctionFailed as failed:
        print(failed, file=sys.stderr)
        return NOT_SUCCEEDED
    except CliError as error:
        print(error, file=sys.stderr)
        return UNREACHABLE


def _status(aws: Aws, names: Names, as_json: bool, out: TextIO) -> int:
    # No credentials or no endpoint would fail every part alike: say it once, as exit 4.
    aws.check_reachable()
    gathered = status.gather(aws, names)
    out.write(json.dumps(gathered, indent=2, default=str) + "\n" if as_json else status.render(gathered))
    return NOT_SUCCEEDED if gathered["errors"] else OK


def _run(aws: Aws, names: Names, machine: str, name: str, execution_input: dict[str, Any], out: TextIO) -> int:
    arns = {label: aws.state_machine_arn(names.machines[label]) for label in MACHINES}
    executions.refuse_if_running(aws.stepfunctions, arns)
    arn = executions.start(aws.stepfunctions, arns[machine], name, execution_input)
    print(f"started {name} on {names.machines[machine]}\n  {arn}", file=out, flush=True)
    try:
        description = executions.follow(aws.stepfunctions, arn, out)
    except KeyboardInterrupt:
        print(f"\nstopped following; the execution goes on: {arn}\n"
              "  follow it with `python -m lib.cutover status`", file=out)
        return INTERRUPTED
    took = (description.get("stopDate") or datetime.now(description["startDate"].tzinfo)) - description["startDate"]
    outcome = description["status"]
    if outcome == executions.SUCCEEDED:
        print(f"{outcome} in {took.total_seconds():.1f} s", file=out)
        return OK
    print(f"{outcome} after {took.total_seconds():.1f} s: {description.get('error') or outcome}: "
          f"{description.get('cause') or ''}".rstrip(": "), file=out)
    failed = executions.failure(executions.history(aws.stepfunctions, arn))
    if failed is not None:
        print(f"  failed state: {failed.state or '?'}: {failed.error}: {failed.cause}".rstrip(": "), file=out)
    return NOT_SUCCEEDED


def _rollback(aws: Aws, names: Names, reason: str, dry_run: bool, as_json: bool, out: TextIO) -> int:
    answer = aws.invoke(names.rollback, {"reason": reason, "dry_run": dry_run})
    out.write(json.dumps(answer, indent=2) + "\n" if as_json else render_rollback(answer))
    return OK if answer.get("status") in ROLLBACK_DONE else NOT_SUCCEEDED


def render_rollback(answer: dict[str, Any]) -> str:
    lines = [f"rollback {answer.get('status')}   reason: {answer.get('reason')}"]

    def row(label: str, text: str) -> None:
        lines.append(f"  {label:<17}{text}")

    row("weights", f"{_weights(answer.get('weights_before'))}  →  {_weights(answer.get('weights_after'))}")
    row("writer", f"{_writer(answer.get('writer_before'))}  →  {_writer(answer.get('writer_after'))}")
    rollback = answer.get("writer_rollback")
    if rollback:
        row("writer rollback", f"{rollback.get('status') or 'not started'}  {rollback.get('execution_arn')}")
    controller = answer.get("controller") or {}
    for arn in controller.get("advance_stopped") or []:
        row("advance stopped" if not answer.get("dry_run") else "would stop", arn)
    for arn in controller.get("advance_left_running") or []:
        row("advance left", f"{arn} (it called this rollback)")
    if controller.get("cutover"):
        cutover = controller["cutover"]
        row("cutover", f"{cutover['status']} after waiting {cutover.get('waited_seconds', 0)} s  "
                       f"{cutover['execution_arn']}")
    lines.append("  actions:")
    lines.extend(f"    - {action}" for action in answer.get("actions") or [])
    if answer.get("errors"):
        lines.append("  errors:")
        lines.extend(f"    - {error}" for error in answer["errors"])
    if rollback and rollback.get("status") in ("FAILED", "TIMED_OUT", "ABORTED"):
        # Its name (rollback-epoch-<epoch>) cannot be used again: every later invoke reports it.
        lines.append("  next: deal with the cause, then `python -m lib.cutover rollback --resume --reason \"...\"`")
    return "\n".join(lines) + "\n"


def _weights(weights: dict[str, int] | None) -> str:
    if not weights:
        return "?"
    return f"on-prem {weights.get('onprem', '?')} / aws {weights.get('aws', '?')}"


def _writer(writer: dict[str, Any] | None) -> str:
    return f"{writer['writer']} (epoch {writer['epoch']})" if writer else "?"
