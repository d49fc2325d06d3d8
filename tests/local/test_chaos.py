"""`python -m lib.local.chaos` end to end on a one-trial subset: a step's answer lost at the Fence of
the cutover (Step Functions retries a step that completed), under the payment load; the checker's
verdict and the files anyone can recount from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib.local.postgres.server import pg_binary

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_one_trial_is_run_and_judged(tmp_path):
    pg_binary("initdb")  # the servers' binaries, or a clear error
    environment = {**os.environ, "CHAOS_OUT": str(tmp_path), "CHAOS_FAULTS": "answer-lost", "CHAOS_STATES": "Fence",
                   "CHAOS_MACHINES": "cutover", "CHAOS_RATE": "60", "PAYMENT_MIGRATION_ENV": "local"}
    process = subprocess.run([sys.executable, "-m", "lib.local.chaos"], cwd=REPO_ROOT, env=environment,
                             capture_output=True, text=True, timeout=600)

    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    (trial,) = report["trials"]
    assert (trial["fault"], trial["machine"], trial["state"]) == ("answer-lost", "cutover", "Fence")
    assert trial["outcome"] == "ok" and trial["fired"] and trial["recovered"], trial
    assert (trial["lost"], trial["duplicated"], trial["two_writer_samples"], trial["interleaved_commits"]) == (0, 0, 0, 0)
    assert trial["writer"]["writer"] == "aws" and trial["validation"] == "PASSED"
    assert trial["samples"] > 0 and trial["acknowledged"] > 0
    # the Fence ran twice: once for the answer that was lost, once more for Step Functions' retry
    faulted = trial["executions"][0]
    assert faulted["status"] == "SUCCEEDED" and faulted["states"].count("Fence") == 1
    directory = tmp_path / "trials" / f"001-answer-lost-cutover-Fence"
    acknowledged = (directory / "acknowledged.txt").read_text().splitlines()
    final = set((directory / "final_payments.txt").read_text().splitlines())
    assert len(acknowledged) == trial["acknowledged"] and set(acknowledged) <= final
    assert report["totals"]["trials"] == 1 and report["totals"]["lost"] == 0
