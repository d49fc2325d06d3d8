"""The fault matrix: for each fault, each definition (cutover, writer rollback) and each Task state
where the fault applies, one trial:

  reset the world in place → the payment load starts (and the fence sampler) → for a rollback trial,
  a clean cutover first → the trial's execution, the fault injected when it first invokes the
  state → healed → the runbook's recovery: the execution run again (a new one, as `python -m
  lib.cutover cutover` or `rollback --resume` would start) until it succeeds, at most
  RECOVERY_ATTEMPTS times → the load stops (each client finishes the payment it is on) → replication
  settles → the checker judges what the clients were told against what the databases hold.

Writes build/chaos/report.json and, per trial, build/chaos/trials/<trial>/: acknowledged.txt and
final_payments.txt (one payment a line: key, amount, customer — duplicates included), the clients'
raw logs (clients-*.jsonl, one attempt a line), faults.jsonl (what a fault's own client was told),
fence_samples.jsonl and verdict.json.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.local.chaos.checker import check
from lib.local.chaos.definitions import PLACEHOLDERS, task_states
from lib.local.chaos.load import Load, read_log
from lib.local.chaos.world import DIRECTIONS, FenceSampler, Injection, World

WARM_UP_SECONDS = 0.5
LOAD_TARGET_PER_SECOND = 100.0  # what every trial's load must reach when nothing refuses it
EPOCHS_PER_TRIAL = 10  # each trial's writer epochs start at index × this: never a name the last one used
AFTER_SECONDS = 0.5  # the load goes on this long after recovery: the new writer must take writes
RECOVERY_ATTEMPTS = 3
CUSTOMERS = 10
RATE_BIN_SECONDS = 0.5  # the load's rate is measured over bins this long (a trial lasts a few seconds)


@dataclass(frozen=True)
class Trial:
    index: int
    fault: Any
    machine: str
    state: str

    @property
    def id(self) -> str:
        return f"{self.index:03d}-{self.fault.name}-{self.machine}-{self.state}"


def definitions() -> dict[str, list[str]]:
    from lib.workflows.cutover import cutover_definition, rollback_definition

    return {"cutover": task_states(cutover_definition(**PLACEHOLDERS)),
            "rollback": task_states(rollback_definition(**PLACEHOLDERS))}


def matrix(faults: list[Any], *, only_faults: set[str] | None = None, only_states: set[str] | None = None,
           only_machines: set[str] | None = None) -> list[Trial]:
    """Per fault, per state where it applies: the cutover trial, then the rollback trial (which
    continues from the cutover trial's world when that one recovered)."""
    trials, index = [], 0
    machines = definitions()
    for fault in faults:
        if only_faults and fault.name not in only_faults:
            continue
        applies = getattr(fault, "states", None)
        fault_machines = getattr(fault, "machines", None)
        for state in machines["rollback"]:  # a superset of the cutover's, in order
            if (applies is not None and state not in applies) or (only_states and state not in only_states):
                continue
            for machine, states in machines.items():
                if fault_machines is not None and machine not in fault_machines:
                    continue
                if getattr(fault, "trials", None) and (machine, state) not in fault.trials:
                    continue
                if state in states and not (only_machines and machine not in only_machines):
                    index += 1
                    trials.append(Trial(index, fault, machine, state))
    return trials


def run_trial(world: World, load: Load, trial: Trial, out: Path, seed: int,
              carry: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One trial. `carry`: what the paired cutover trial left (its history and customers) when it
    recovered with aws the writer: a rollback trial then continues from its world, and its history
    includes the cutover trial's. Returns the report entry and what a next trial may carry."""
    started = time.monotonic()
    directory = out / "trials" / trial.id
    directory.mkdir(parents=True, exist_ok=True)
    continued = (carry is not None and trial.machine == "rollback"
                 and (carry["fault"], carry["state"]) == (trial.fault.name, trial.state))
    notes: list[str] = []
    phases: dict[str, float] = {}
    mark = [time.monotonic()]

    def phase(name: str) -> None:
        now = time.monotonic()
        phases[name] = round(phases.get(name, 0.0) + now - mark[0], 2)
        mark[0] = now

    if continued:
        customers, earlier, start_epoch = carry["customers"], carry["requests"], carry["start_epoch"]
        world.injection, world.extra_requests = None, []
        notes.append(f"continues from {carry['trial']} (its history included)")
    else:
        rng = random.Random(f"{seed}-{trial.id}")
        customers = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(CUSTOMERS)]
        earlier = []
        start_epoch = trial.index * EPOCHS_PER_TRIAL
        world.reset(customers, epoch=start_epoch)
    world.customers = customers
    phase("reset")
    sampler = FenceSampler(world)
    sampler.start()
    logs = load.start(directory, f"t{trial.index:03d}", customers, seed)
    load_started = time.monotonic()
    load_window = [time.time(), None]
    time.sleep(WARM_UP_SECONDS)
    phase("load_start")
    executions: list[dict[str, Any]] = []
    injection = None
    try:
        if trial.machine == "rollback" and not continued:
            world.machine = "cutover"
            setup = world.wait_execution(world.start_execution("cutover"))
            executions.append({"machine": "cutover", "role": "setup", "status": setup["status"],
                               "error": setup.get("error")})
            if setup["status"] != "SUCCEEDED":
                notes.append(f"the clean cutover before the rollback did not succeed: {setup.get('error')}")
            phase("setup_cutover")
        world.machine = trial.machine
        injection = Injection(trial.fault, trial.state, world)
        world.injection = injection
        execution_input = {"reason": f"chaos trial {trial.id}"}
        arn = world.start_execution(trial.machine, execution_input)
        first = world.wait_execution(arn)
        phase("faulted_execution")
        entered = world.states_entered(arn)
        executions.append({"machine": trial.machine, "role": "faulted", "status": first["status"],
                           "error": first.get("error"), "cause": (first.get("cause") or "")[:400],
                           "states": entered})
        if injection.fired.is_set():
            deadline = time.monotonic() + float(getattr(trial.fault, "hold_seconds", 2.0)) + 30
            while not injection.healed.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
        injection.heal()
        if not getattr(trial.fault, "every_invocation", False):  # else it goes on into the recovery
            world.injection = None
        # a fault that ran the runbook's recovery itself (the rollback an alarm triggered, resumed)
        executions += list(getattr(trial.fault, "recovery", None) or [])
        status = first["status"]
        attempts = 0
        while status != "SUCCEEDED" and attempts < getattr(trial.fault, "recovery_attempts", RECOVERY_ATTEMPTS):
            attempts += 1
            time.sleep(0.5)
            again = world.wait_execution(world.start_execution(trial.machine, execution_input))
            status = again["status"]
            executions.append({"machine": trial.machine, "role": f"recovery {attempts}", "status": status,
                               "error": again.get("error"), "cause": (again.get("cause") or "")[:400],
                               "states": world.states_entered(again["executionArn"])})
        phase("heal_and_recovery")
        time.sleep(AFTER_SECONDS)
    finally:
        world.injection = None
        if injection is not None:
            injection.heal()
        load_window[1] = time.time()
        totals = load.stop()
        load_seconds = time.monotonic() - load_started
        samples = sampler.stop()
        phase("load_stop")
    settled = world.wait_sides_equal()
    phase("settle")
    if not settled:
        notes.append("the two sides' payment counts still differ after 20 s")
    rows = {side: world.payments(side) for side in ("onprem", "aws")}
    commits = {side: world.local_commits(side) for side in ("onprem", "aws")}
    writer = world.writer()
    fence = world.fence_states()
    try:
        validation = world.validate()
        validation_status = validation.get("status")
    except Exception as error:  # noqa: BLE001 - a validation that cannot run is not PASSED
        validation_status = f"ERROR ({error})"[:200]
    phase("read_and_validate")
    own = read_log(logs) + world.extra_requests
    requests = earlier + own
    recovery = executions[-1]["status"] if executions else None
    verdict = check(requests, rows, final_writer=writer["writer"], commits=commits, samples=samples,
                    writer_changes=int(writer["epoch"]) - start_epoch,
                    final={"writer": writer["writer"], "fence": fence,
                                                                 "validation": validation_status,
                                                                 "execution": recovery})
    expected_writer = getattr(trial.fault, "expected_writer", None) or DIRECTIONS[trial.machine][1]
    if writer["writer"] != expected_writer:
        verdict.liveness.append(f"the writer is {writer['writer']} after recovery, not {expected_writer}")
    # a fault may say it did not get to do its harm (a crash waiting for a change that never came)
    fired = injection is not None and injection.fired.is_set() and getattr(trial.fault, "reached", True)
    if not verdict.safe:
        outcome = "violation"
    elif not verdict.live:
        outcome = "unrecovered"
    elif not fired:
        outcome = "not-reached"
    else:
        outcome = "ok"
    seconds = time.monotonic() - started
    entry = {
        "trial": trial.id, "fault": trial.fault.name, "machine": trial.machine, "state": trial.state,
        "outcome": outcome, "fired": fired, "lost": len(verdict.lost), "duplicated": len(verdict.duplicated),
        "mismatched": len(verdict.mismatched), "unexplained": len(verdict.unexplained),
        "sides_differ": len(verdict.sides_differ), "two_writer_samples": verdict.two_writer_samples,
        "interleaved_commits": verdict.interleaved_commits, "no_writer_seconds": verdict.no_writer_seconds,
        "max_ack_gap_seconds": verdict.max_ack_gap_seconds, "recovered": verdict.live,
        "recovery_executions": sum(1 for e in executions if e["role"].startswith("recovery")),
        "acknowledged": verdict.acknowledged, "ambiguous": verdict.ambiguous, "stored": verdict.stored,
        "attempts": totals["attempts"], "samples": verdict.samples,
        "max_sample_gap_seconds": verdict.max_sample_gap_seconds,
        "acknowledged_in_trial": sum(1 for r in own if r.get("status") in (200, 201)),
        # the load's rate while a side was open to it
        "payments_per_second": round(sum(1 for r in own if r.get("status") in (200, 201))
                                     / max(0.1, load_seconds - verdict.no_writer_seconds), 1),
        **load_rate(own, *load_window, processes=load.process_count,
                    fault=(injection.fired_at, injection.healed_at) if injection is not None else (None, None)),
        "seconds": round(seconds, 1), "phases": phases,
        "findings": verdict.findings(), "notes": notes + [f"fault: {error}" for error in
                                                          (injection.errors if injection else [])],
        "executions": executions, "writer": writer, "fence": fence, "validation": validation_status,
    }
    if fired and getattr(trial.fault, "answers", None):
        entry["notes"].append(f"the rollback function answered: {trial.fault.answers}")
    if entry["clean_payments_per_second"] < LOAD_TARGET_PER_SECOND:
        entry["notes"].append(f"the load reached {entry['clean_payments_per_second']} payments/s in its clean "
                              f"seconds, under the {LOAD_TARGET_PER_SECOND:g} targeted")
    _write_trial_files(directory, requests, rows[writer["writer"]], samples, world.extra_requests, entry,
                       verdict.to_dict())
    if outcome != "ok":  # the servers' logs since the world started, for whoever reads the finding
        for side in ("onprem", "aws"):
            log = world.server(side).root / "server.log"
            if log.exists():
                (directory / f"server-{side}.log").write_bytes(log.read_bytes()[-2_000_000:])
    carried = {"trial": trial.id, "fault": trial.fault.name, "state": trial.state, "customers": customers,
               "requests": requests, "start_epoch": start_epoch} \
        if outcome == "ok" and writer["writer"] == "aws" and trial.machine == "cutover" else None
    return entry, carried


def load_rate(requests: list[dict[str, Any]], started: float, ended: float, *, processes: int,
              fault: tuple[float | None, float | None] = (None, None)) -> dict[str, Any]:
    """The load as measured from the clients' own logs: `offered_per_second`, new payments begun per
    second of load; `clean_payments_per_second`, payments acknowledged per second over the
    half-second bins in which every answer was an acknowledgement and no fault was in place (`fault`:
    from its injection to the end of its heal) — what the load pushes when nothing refuses or slows
    it: the fault's window and the fenced pause excluded —, and how many seconds those bins make."""
    seconds = max(0.1, ended - started)
    keys = {r["key"] for r in requests}
    bins: dict[int, list[bool]] = defaultdict(list)
    for r in requests:
        at = float(r.get("answered") or r["sent"])
        if started <= at < ended:
            bins[int((at - started) / RATE_BIN_SECONDS)].append(r.get("status") in (200, 201))
    whole = int(seconds / RATE_BIN_SECONDS)
    fault_from, fault_to = fault
    if fault_from is not None:
        fault_to = ended if fault_to is None else fault_to
        faulted = range(int((fault_from - started) / RATE_BIN_SECONDS), int((fault_to - started) / RATE_BIN_SECONDS) + 1)
    else:
        faulted = range(0)
    clean = [sum(answers) for number, answers in bins.items()
             if number < whole and number not in faulted and answers and all(answers)]
    return {"offered_per_second": round(len(keys) / seconds, 1),
            "clean_payments_per_second": round(sum(clean) / (len(clean) * RATE_BIN_SECONDS), 1) if clean else 0.0,
            "clean_seconds": len(clean) * RATE_BIN_SECONDS, "load_processes": processes}


def _write_trial_files(directory: Path, requests, final_rows, samples, fault_requests, entry, verdict) -> None:
    acknowledged = sorted({(r["key"], f"{float(r['amount']):.2f}", r["customer"]) for r in requests
                           if r.get("status") in (200, 201)})
    (directory / "acknowledged.txt").write_text("".join(f"{key} {amount} {customer}\n"
                                                        for key, amount, customer in acknowledged))
    (directory / "final_payments.txt").write_text("".join(
        f"{row['key']} {float(row['amount']):.2f} {row['customer']}\n"
        for row in sorted(final_rows, key=lambda row: row["key"])))
    (directory / "faults.jsonl").write_text("".join(json.dumps(r) + "\n" for r in fault_requests))
    (directory / "fence_samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (directory / "verdict.json").write_text(json.dumps({**entry, "verdict": verdict}, indent=2, default=str))


def totals(entries: list[dict[str, Any]]) -> dict[str, Any]:
    by_fault: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for entry in entries:
        summary = by_fault[entry["fault"]]
        summary["trials"] += 1
        summary[entry["outcome"]] += 1
        for name in ("lost", "duplicated", "two_writer_samples", "interleaved_commits", "acknowledged"):
            summary[name] += entry[name]
        summary["worst_no_writer_seconds"] = max(summary.get("worst_no_writer_seconds", 0.0),
                                                 entry["no_writer_seconds"])
        summary["needed_recovery"] += int(entry["recovery_executions"] > 0)
    overall = {name: sum(entry[name] for entry in entries) for name in
               ("lost", "duplicated", "two_writer_samples", "interleaved_commits", "acknowledged")}
    rates = [e["clean_payments_per_second"] for e in entries if "clean_payments_per_second" in e]
    return {"trials": len(entries),
            "load": {"target_per_second": LOAD_TARGET_PER_SECOND,
                     "min_clean_payments_per_second": min(rates, default=0.0),
                     "trials_below_target": sum(1 for rate in rates if rate < LOAD_TARGET_PER_SECOND),
                     "min_processes": min((e.get("load_processes", 0) for e in entries), default=0)},
            "outcomes": {outcome: sum(1 for e in entries if e["outcome"] == outcome)
                         for outcome in sorted({e["outcome"] for e in entries})},
            **overall, "recovered": sum(1 for e in entries if e["recovered"]),
            "worst_no_writer_seconds": max((e["no_writer_seconds"] for e in entries), default=0.0),
            "by_fault": {name: dict(summary) for name, summary in by_fault.items()}}
