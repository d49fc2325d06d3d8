"""python -m lib.local.chaos — the fault matrix (README, "Fault matrix").

Environment:
  CHAOS_SEED       the load's and the customers' seed (default 1)
  CHAOS_FAULTS     comma-separated fault names: run only these
  CHAOS_STATES     comma-separated Task state names: only these
  CHAOS_MACHINES   cutover, rollback or both (default both)
  CHAOS_FULL       1: the fault kinds that sample their states (alarm-rollback, link-*) at every state
  CHAOS_TRIAL      one trial id as report.json names it (e.g. 007-answer-lost-cutover-Fence): run it again
  CHAOS_RATE       payments per second in total (default 150), from CHAOS_PROCESSES processes (default 4)
  CHAOS_OUT        where report.json and trials/ go (default build/chaos)
  FAULTS           a file defining FAULTS: its faults join the built-in ones
  PAYMENT_MIGRATION_ENV  whose synthesized cutover stack the definitions are checked against (default local)
Exit status: 0 when every trial kept the promise and recovered, 1 otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")
warnings.filterwarnings("ignore", message="No application metrics to publish")
# moto's Step Functions interpreter logs every failed execution at length: the report has them
logging.getLogger("moto").setLevel(logging.CRITICAL)

from lib.local.chaos.world import REPO_ROOT, World, lambda_paths  # noqa: E402

OUT = Path(os.environ.get("CHAOS_OUT") or REPO_ROOT / "build" / "chaos")


def _names(variable: str) -> set[str] | None:
    value = os.environ.get(variable, "").strip()
    return {name.strip() for name in value.split(",") if name.strip()} or None


def main() -> int:
    lambda_paths()
    # stopped (timeout, CI cancel): the finally blocks stop the load, the emulator and the servers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from lib.local.chaos.faults import builtin_faults, install_crash_hook, load_faults
    from lib.local.chaos.load import Load
    from lib.local.chaos.runner import matrix, run_trial, totals

    seed = int(os.environ.get("CHAOS_SEED", "1"))
    faults = builtin_faults()
    if os.environ.get("FAULTS"):
        faults += load_faults(os.environ["FAULTS"])
    trials = matrix(faults, only_faults=_names("CHAOS_FAULTS"), only_states=_names("CHAOS_STATES"),
                    only_machines=_names("CHAOS_MACHINES"))
    if os.environ.get("CHAOS_TRIAL"):
        wanted = os.environ["CHAOS_TRIAL"].strip()
        everything = matrix(faults)
        trials = [trial for trial in everything if trial.id == wanted or f"{trial.index:03d}" == wanted[:3]]
        if not trials:
            print(f"no trial {wanted!r}; ids look like {everything[0].id}", file=sys.stderr)
            return 2
    if not trials:
        print("no trial matches CHAOS_FAULTS / CHAOS_STATES / CHAOS_MACHINES", file=sys.stderr)
        return 2
    shutil.rmtree(OUT / "trials", ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"==> {len(trials)} trials, seed {seed}: {', '.join(sorted({t.fault.name for t in trials}))}", flush=True)
    world = World(OUT, env=os.environ.get("PAYMENT_MIGRATION_ENV", "local"), log=lambda line: print(line, flush=True))
    world.start()
    install_crash_hook()
    load = Load(world.api_environment, processes=int(os.environ.get("CHAOS_PROCESSES", "4")),
                rate=float(os.environ.get("CHAOS_RATE", "150")))
    entries = []
    carry = None
    try:
        for number, trial in enumerate(trials, 1):
            print(f"[{number}/{len(trials)}] {trial.id}", flush=True)
            try:
                entry, carry = run_trial(world, load, trial, OUT, seed, carry)
            except Exception as error:  # noqa: BLE001 - the trial could not be run: reported as such
                entry = {"trial": trial.id, "fault": trial.fault.name, "machine": trial.machine, "state": trial.state,
                         "outcome": "error", "error": repr(error)[:500], "lost": 0, "duplicated": 0,
                         "two_writer_samples": 0, "interleaved_commits": 0, "no_writer_seconds": 0.0,
                         "recovered": False, "recovery_executions": 0, "acknowledged": 0}
                carry = None
                try:
                    load.stop()
                except Exception:  # noqa: BLE001
                    pass
            entries.append(entry)
            print(f"    {entry['outcome']}: acknowledged {entry['acknowledged']}"
                  f" ({entry.get('clean_payments_per_second', 0)}/s in {entry.get('clean_seconds', 0)} clean s,"
                  f" {entry.get('offered_per_second', 0)}/s offered), lost {entry['lost']}, duplicated {entry['duplicated']},"
                  f" two-writer samples {entry['two_writer_samples']}, interleaved {entry['interleaved_commits']},"
                  f" no writer {entry['no_writer_seconds']} s, recovery runs {entry['recovery_executions']},"
                  f" {entry.get('seconds', '?')} s"
                  + "".join(f"\n    ! {finding}" for finding in entry.get("findings", []))
                  + (f"\n    ! {entry['error']}" if "error" in entry else ""), flush=True)
            _write_report(entries, seed, started)
    finally:
        load.close()
        world.stop()
    report = _write_report(entries, seed, started)
    print(f"==> {report['totals']['trials']} trials in {report['seconds']:.0f} s: {report['totals']['outcomes']};"
          f" lost {report['totals']['lost']}, duplicated {report['totals']['duplicated']}, two-writer samples"
          f" {report['totals']['two_writer_samples']}, interleaved {report['totals']['interleaved_commits']};"
          f" worst no-writer {report['totals']['worst_no_writer_seconds']} s; load: at least"
          f" {report['totals']['load']['min_clean_payments_per_second']} payments/s in clean seconds from"
          f" {report['totals']['load']['min_processes']} processes — build/chaos/report.json", flush=True)
    return 0 if all(entry["outcome"] in ("ok", "not-reached") for entry in entries) else 1


def _write_report(entries, seed, started) -> dict:
    from lib.local.chaos.runner import totals

    report = {"seed": seed, "seconds": round(time.monotonic() - started, 1), "totals": totals(entries),
              "trials": entries}
    (OUT / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    sys.exit(main())
