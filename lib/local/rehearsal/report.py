"""The end of a rehearsal, whatever happened: the load stopped, every payment counted in the final
writer, the ledger files and report.json written, the functions' invocations and the executions'
histories kept, the servers and the emulator stopped, a summary printed."""

from __future__ import annotations

import json
import os
import time
import traceback
from typing import Any

from lib.local.rehearsal.ledger import count, longest_wait, rate, slowest_rate
from lib.terraform import shown

MAX_EVENT_CHARS = 2000

# What the rehearsal runs differently from AWS, and why: the report's "driven" list.
DRIVEN = (
    {"part": "Lambda functions (payment-api, -validation, -rollback, -cutover-steps, -cutover-traffic)",
     "how": "in-process (lib/local/lambdas.py InProcessLambdas): moto keeps each function's configuration; its "
            "Invoke API, Step Functions lambda:invoke tasks and SNS deliveries run the handler from the source tree "
            "(lib/lambda/*) with the function's deployed environment plus overrides",
     "why": "moto runs function code only in Docker, which this machine has not"},
    {"part": "the ALB in front of the payment API",
     "how": "client threads call payment_api.handler.lambda_handler with ALB events, one execution environment "
            "(a private copy of the payment_api package) per client",
     "why": "moto's ELB does not invoke Lambda targets"},
    {"part": "DNS",
     "how": "the controller and the rollback move the weighted records in moto's Route 53, and the rehearsal reads "
            "them; the load always goes through the AWS API handler, which writes to whichever database the writer "
            "parameter names (the on-prem application has the same contract and is not simulated)",
     "why": "no resolver answers from moto's Route 53; the one-writer invariant does not depend on where clients go"},
    {"part": "Aurora",
     "how": "a PostgreSQL 15 server on 127.0.0.1; AURORA_DB_HOST/PORT (every "
            "function's) overridden, because the deployed value is moto's fake cluster endpoint",
     "why": "moto's RDS has no database behind it"},
    {"part": "DMS replication tasks (forward and fallback)",
     "how": "PostgreSQL logical replication (publication/subscription); REPLICATION_DRIVER=postgres-logical in the "
            "cutover step function; the forward direction is started by the rehearsal (full copy, then streaming) "
            "as the operator starts the forward task once; the controller's switch step swaps directions",
     "why": "moto's DMS tasks move no data"},
    {"part": "subscription management on PostgreSQL 15",
     "how": "a superuser role subscription_admin per server, its credentials in a secret the rehearsal creates "
            "(payment-migration/<env>/<side>/subscription_admin), given to the step function as "
            "*_SUBSCRIPTION_SECRET_ARN",
     "why": "PostgreSQL 15 lets only a superuser create a subscription; on AWS the DMS tasks need none"},
    {"part": "the composite alarm payment-cutover-unhealthy",
     "how": "the child alarm payment-api-errors is put into ALARM with SetAlarmState; the composite's notification "
            "(CloudWatch's JSON) is published to the rollback topic by the rehearsal; moto's SNS delivers it to the "
            "subscribed rollback function (asynchronously, in-process)",
     "why": "moto has no PutCompositeAlarm (lib/local/limits.py leaves the composite out of the local stacks)"},
    {"part": "EventBridge schedules (validation every hour, slot metrics every minute)",
     "how": "not fired; the controller runs validation itself, and the rehearsal runs one at the end",
     "why": "moto does not run schedules"},
    {"part": "Lambda's asynchronous retries and dead-letter queue",
     "how": "an SNS-triggered invocation runs once; a failure is recorded (invocations.jsonl), not retried",
     "why": "InProcessLambdas runs Event invocations once, in a thread"},
)


# What the rehearsal adds to moto in its process (lib/local/rehearsal/shims.py); the Step Functions
# action belongs in lib/local/emulator.py's SHIMS, where `make deploy-local` gets it too.
EMULATOR_ADDITIONS = {
    "request-log": "every request moto serves (service, action, status, seconds) to logs/moto.log",
    "sfn-validate-state-machine-definition": "moto has no ValidateStateMachineDefinition, which the AWS provider "
                                             "calls before it creates a state machine: answered with moto's own ASL "
                                             "parser",
}




def finish(rehearsal: Any) -> dict:
    say, work = rehearsal.say, rehearsal.work
    problems: list[str] = []
    # A rehearsal that failed in its preflight (a port in use, a tool missing) has made no work
    # folder yet: the report must still be written, naming that failure.
    (work / "logs").mkdir(parents=True, exist_ok=True)

    def attempt(what: str, action) -> Any:
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - the end must run to its end
            problems.append(f"{what}: {type(error).__name__}: {error}")
            with open(work / "logs" / "finish-errors.log", "a") as handle:
                handle.write(f"{what}\n{traceback.format_exc()}\n")
            return None

    load = rehearsal.load
    if load is not None and load.stopped_at is None:
        attempt("stopping the load", load.stop)
    if rehearsal.one_writer is not None:
        attempt("stopping the one-writer watch", rehearsal.one_writer.stop)
    counted = attempt("counting the payments", lambda: _count(rehearsal))
    attempt("writing the ledger files", lambda: _write_ledger(rehearsal, counted))
    attempt("writing the functions' invocations", lambda: _write_invocations(rehearsal))
    attempt("keeping the executions' histories", lambda: _keep_histories(rehearsal))
    report = _report(rehearsal, counted, problems)
    (work / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    for server in rehearsal.servers.values():
        attempt(f"stopping the {server.side} server", server.postgres.remove_data)
    if rehearsal.emulator is not None:
        attempt("stopping the emulator", rehearsal.emulator.stop)
    _summary(rehearsal, report, say)
    return report


def _count(rehearsal: Any):
    from lib.local.rehearsal.databases import payment_ids, payment_keys

    if not rehearsal.servers:
        return None
    writer = "onprem"
    if rehearsal.controls is not None:
        try:
            writer = rehearsal.controls.writer()["writer"]
        except Exception:  # noqa: BLE001 - the emulator may be the thing that failed
            pass
    server = rehearsal.servers[writer]
    keys = payment_keys(server)
    ids = payment_ids(server)
    rehearsal.final_writer_side = writer
    rehearsal.final_keys = keys
    acknowledged = rehearsal.load.ledger.acknowledged_ids() if rehearsal.load is not None else {}
    return count(acknowledged, keys, ids, rehearsal.legacy_keys)


def _write_ledger(rehearsal: Any, counted) -> None:
    work = rehearsal.work
    acknowledged = [] if rehearsal.load is None else sorted(
        rehearsal.load.ledger.acks.values(), key=lambda ack: ack.acknowledged)
    (work / "acknowledged.txt").write_text("".join(f"{ack.key}\n" for ack in acknowledged))
    final = getattr(rehearsal, "final_keys", [])
    (work / "final_payments.txt").write_text("".join(f"{key}\n" for key in final))


def _write_invocations(rehearsal: Any) -> None:
    if rehearsal.lambdas is None:
        return
    with open(rehearsal.work / "logs" / "invocations.jsonl", "w") as handle:
        for invocation in list(rehearsal.lambdas.invocations):
            handle.write(json.dumps({
                "function": invocation.function_name, "asynchronous": invocation.asynchronous,
                "seconds": round(invocation.seconds, 3), "error": invocation.error,
                "event": _clip(invocation.event), "result": _clip(invocation.result)}, default=str) + "\n")


def _clip(value: Any) -> Any:
    text = json.dumps(value, default=str)
    return value if len(text) <= MAX_EVENT_CHARS else text[:MAX_EVENT_CHARS] + "…"


def _keep_histories(rehearsal: Any) -> None:
    controls = rehearsal.controls
    if controls is None:
        return
    names = controls.names
    for machine in (names.advance, names.cutover, names.writer_rollback):
        for execution in controls.executions(machine):
            controls.save_history(execution["executionArn"])


def _report(rehearsal: Any, counted, problems: list[str]) -> dict:
    from lib.local.rehearsal.ledger import longest_gap
    from lib.local.rehearsal.runbook import (
        MAX_ALARM_TO_ONPREM_SECONDS,
        MAX_CUTOVER_UNAVAILABLE_SECONDS,
        MAX_REHEARSAL_SECONDS,
        MAX_WRITE_PAUSE_SECONDS,
        MIN_WRITE_RATE,
    )

    total = time.monotonic() - rehearsal.origin
    load = rehearsal.load
    ledger = load.ledger if load else None
    times = ledger.ack_times() if ledger else []
    pauses, waits = {}, {}
    for name in ("cutover", "rollback"):
        # the rollback's pause counts from the alarm: before it the fault itself (detection) runs
        window = rehearsal.windows.get(f"{name}-alarm", rehearsal.windows.get(name))
        if window and ledger:
            start, end = window
            gap, at = longest_gap(times, start, end)
            if name == "rollback" and at is not None and at < start:
                # the AWS side was already failing before the alarm (detection): that is the
                # fault's cost (fault_to_clients_onprem_seconds), not the switch's
                gap, at = gap - (start - at), start
            pauses[name] = round(gap, 2)
            waits[name] = {"longest_gap_started_seconds": None if at is None else round(at - rehearsal.origin, 1),
                           "longest_single_payment_wait": round(longest_wait(ledger.acks.values(), start, end), 2),
                           "window_seconds": round(end - start, 1)}
        else:
            pauses[name] = None
    excluded = [(start - 1, end + 5) for start, end in rehearsal.windows.values()]
    rates = {"average": round(rate(times), 2), "slowest_10s_outside_the_switches": round(
        slowest_rate(times, 10.0, exclude=excluded), 2), "clients": rehearsal.client_count,
        "target_rate": rehearsal.rate} if times else {}
    alarm = rehearsal.alarm or {}
    clients = _clients(rehearsal)
    legacy = rehearsal.config.cutover.legacy
    cutover_unavailable = (clients.get("unavailability_seconds") or {}).get("data_cutover")
    counts = counted.to_dict() if counted else {}
    one_writer = rehearsal.one_writer.to_dict() if rehearsal.one_writer is not None else {}
    targets = [
        _target("moments with two writable databases", "0", one_writer.get("both_writable_samples"),
                lambda v: v == 0),
        _target("lost payments", "0", counts.get("lost"), lambda v: v == 0),
        _target("duplicated payments", "0", counts.get("duplicated"), lambda v: v == 0),
        _target("payments answered with another payment_id", "0", counts.get("answered_with_other_payment"),
                lambda v: v == 0),
        _target("pre-migration payments missing", "0", counts.get("seeded_missing"), lambda v: v == 0),
        _target("write pause at the cutover (s)", f"<= {MAX_WRITE_PAUSE_SECONDS:g}", pauses.get("cutover"),
                lambda v: v <= MAX_WRITE_PAUSE_SECONDS),
        _target("write pause at the rollback (s)", f"<= {MAX_WRITE_PAUSE_SECONDS:g}", pauses.get("rollback"),
                lambda v: v <= MAX_WRITE_PAUSE_SECONDS),
        _target("fault → every client writing on on-prem: detection (configured) + action + follow (s)",
                f"<= {MAX_ALARM_TO_ONPREM_SECONDS:g}", alarm.get("total"), lambda v: v <= MAX_ALARM_TO_ONPREM_SECONDS),
        _target("false alarms of the 10-s api-failures alarm under the steady load", "0",
                clients.get("steady_load_false_alarms"), lambda v: v == 0),
        _target("write unavailability seen by any client at the data cutover (s)",
                f"<= {MAX_CUTOVER_UNAVAILABLE_SECONDS:g}" if legacy else f"<= {MAX_WRITE_PAUSE_SECONDS:g}",
                cutover_unavailable,
                lambda v: v <= (MAX_CUTOVER_UNAVAILABLE_SECONDS if legacy else MAX_WRITE_PAUSE_SECONDS)),
        _target("write rate outside the switches, slowest 10 s (payments/s)", f">= {MIN_WRITE_RATE:g}",
                rates.get("slowest_10s_outside_the_switches"), lambda v: v >= MIN_WRITE_RATE),
        _target("whole rehearsal (s)", f"< {MAX_REHEARSAL_SECONDS:g}", round(total, 1),
                lambda v: v < MAX_REHEARSAL_SECONDS),
    ]
    failure = rehearsal.failure
    passed = failure is None and not problems and all(target["met"] for target in targets)
    deploy_seconds = rehearsal.deploy_summary.get("seconds")
    return {
        "result": "PASSED" if passed else "FAILED",
        "failed_step": failure.step if failure else None,
        "error": failure.message if failure else None,
        "problems_at_the_end": problems,
        "environment": rehearsal.config.name,
        "started_at": rehearsal.started_at,
        "payments_acknowledged": counts.get("payments_acknowledged"),
        "payments_in_writer": counts.get("payments_in_writer"),
        "final_writer": getattr(rehearsal, "final_writer_side", None),
        "lost": counts.get("lost"),
        "duplicated": counts.get("duplicated"),
        "answered_with_other_payment": counts.get("answered_with_other_payment"),
        "pre_migration_payments": len(rehearsal.legacy_keys),
        "pre_migration_payments_missing": counts.get("seeded_missing"),
        "stored_not_acknowledged": counts.get("stored_not_acknowledged"),
        "ledger_samples": counts.get("samples", {}),
        "abandoned_by_clients": len(ledger.abandoned) if ledger else None,
        "reads_of_acknowledged_payments_not_found": len(ledger.read_missing) if ledger else None,
        "responses": dict(ledger.statuses) if ledger else {},
        "retried_failures_sample": (ledger.failures[:10] if ledger else []),
        "write_pause_seconds": pauses,
        "write_pause_detail": {**waits, "how": "the longest interval between two consecutive acknowledged payments "
                                               "(any client) that overlaps the switch: from the execution's start to "
                                               "its end (cutover), from the alarm until every client wrote on on-prem "
                                               "(rollback; counted from the alarm). Clients retry a 503 after min(Retry-After, 0.5 s)"},
        "alarm_to_onprem_seconds": alarm or None,
        "onprem_application": rehearsal.config.cutover.onprem_application,
        "routing_ttl_seconds": rehearsal.config.routing.ttl_seconds,
        "fault_to_clients_onprem_seconds": rehearsal.fault_timing or None,
        "clients": clients,
        "one_writer": one_writer,
        "write_rate_per_second": rates,
        "phases": [phase.to_dict(rehearsal.origin) for phase in rehearsal.phases],
        "deploy": rehearsal.deploy_summary,
        "deploy_seconds": deploy_seconds,
        "rehearsal_seconds": round(total, 1),
        "runbook_seconds_after_deploy": None if deploy_seconds is None else round(total - deploy_seconds, 1),
        "targets": targets,
        "final_state": rehearsal.final,
        "findings": rehearsal.findings,
        "overrides": rehearsal.overrides,
        "driven": list(DRIVEN),
        "emulator_additions": {name: EMULATOR_ADDITIONS[name] for name in rehearsal.shims},
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": [round(v, 2) for v in os.getloadavg()]},
        "files": {name: shown(rehearsal.work / name) for name in (
            "acknowledged.txt", "final_payments.txt", "logs/moto.log", "logs/lambdas.log", "logs/invocations.jsonl",
            "executions", "postgres/onprem/server.log", "postgres/aws/server.log", "deploy/logs")},
    }


def _clients(rehearsal: Any) -> dict:
    """What the clients saw (lib/local/rehearsal/clients.py), from their logs of attempts."""
    from lib.local.rehearsal import clients as seen

    load = rehearsal.load
    if load is None or load.started_at is None:
        return {}
    attempts = {client.name: list(client.attempts) for client in load.clients}
    end = load.stopped_at or time.monotonic()
    per_client = seen.per_client(attempts, load.started_at, end)
    writes = sorted(t for times in attempts.values() for t in seen.successes(times))
    unavailable = {}
    for label, window in (("data_cutover", "cutover"), ("rollback_from_alarm", "rollback-alarm"),
                          ("fault_to_onprem", "rollback")):
        if window in rehearsal.windows:
            unavailable[label] = round(max(seen.unavailability(seen.successes(times), rehearsal.windows[window],
                                                               clip=label == "rollback_from_alarm")
                                           for times in attempts.values()), 2)
    monitoring = rehearsal.config.monitoring
    errors = seen.server_errors([attempt for times in attempts.values() for attempt in times])
    fault_start = rehearsal.windows.get("rollback", (end, end))[0]
    false_alarms = seen.alarm_periods([t for t in errors if t < fault_start], load.started_at, fault_start,
                                      monitoring.api_metric_period_seconds, monitoring.api_failures,
                                      monitoring.evaluation_periods)
    causes: dict[str, int] = {}
    for figures in per_client.values():
        for cause, number in figures["failed_by_cause"].items():
            causes[cause] = causes.get(cause, 0) + number
    return {
        "per_client": per_client,
        "failed_by_cause": causes,
        "unavailability_seconds": unavailable,
        "successful_writes": len(writes),
        "dns": {"ttl_seconds": rehearsal.config.routing.ttl_seconds,
                "route53_queries": getattr(rehearsal.resolver, "queries", None),
                "resolutions_per_client": {client.name: getattr(client.resolver, "resolutions", None)
                                           for client in load.clients}},
        "steady_load_false_alarms": len(false_alarms),
        "how": "each client logs every attempt (when, where it went, what came back). Unavailability: the longest "
               "stretch of any one client without a successful write that overlaps the window (data cutover: the "
               "execution, the legacy gate's wait included; rollback: from the alarm until every client wrote on "
               "on-prem; fault: from the fault, detection included). steady_load_false_alarms: the api-failures "
               "alarm evaluated on the AWS API's 5xx answers (fence refusals aside) before the fault, as configured",
    }


def _target(name: str, target: str, measured: Any, check) -> dict:
    met = measured is not None and bool(check(measured))
    return {"name": name, "target": target, "measured": measured, "met": met}


def _summary(rehearsal: Any, report: dict, say) -> None:
    say("==> summary")
    say(f"    payments acknowledged {report['payments_acknowledged']}, in the final writer "
        f"({report['final_writer']}) {report['payments_in_writer']}, lost {report['lost']}, duplicated "
        f"{report['duplicated']}")
    say(f"    write pause: cutover {report['write_pause_seconds'].get('cutover')} s, rollback "
        f"{report['write_pause_seconds'].get('rollback')} s; alarm to on-prem "
        f"{(report['alarm_to_onprem_seconds'] or {}).get('total')} s (fault → every client on on-prem); rate "
        f"{report['write_rate_per_second']}")
    say(f"    deploy {report['deploy_seconds']} s; whole rehearsal {report['rehearsal_seconds']} s")
    for target in report["targets"]:
        say(f"    {'ok  ' if target['met'] else 'MISS'} {target['name']}: {target['measured']} (target {target['target']})")
    for problem in report["problems_at_the_end"]:
        say(f"    problem at the end: {problem}")
    say(f"    report: {shown(rehearsal.work / 'report.json')}")
    if report["failed_step"]:
        say(f"FAILED at step {report['failed_step']}: {report['error']}")
        say(f"    logs: {shown(rehearsal.work)}/logs, postgres/*/server.log, executions/")
    else:
        say(f"{report['result']}")
