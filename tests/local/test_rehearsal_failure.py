"""A rehearsal that fails at a step names the step, keeps both servers' logs and still writes the
ledger files and report.json. The deploy is made to fail here, at once, so the test
costs the two real PostgreSQL servers' start and nothing of the emulator."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import subprocess

import pytest

from lib.config import load_config
from lib.local.postgres.server import free_port, pg_binary
from lib.terraform import REPO_ROOT

# A rehearsal run: its own PostgreSQL servers and moto server, in a child process.
pytestmark = [pytest.mark.postgres, pytest.mark.moto, pytest.mark.slow]


class DeployFails(Exception):
    pass


@pytest.fixture(scope="module")
def failed_rehearsal():
    from lib.local.rehearsal.runbook import Rehearsal

    class FailingDeploy(Rehearsal):
        def _deploy(self, phase):
            raise DeployFails("the stacks could not be applied (injected by the test)")

    config = load_config("local")
    # Ports of its own, so that a rehearsal or emulator running beside the tests does not matter.
    config = dataclasses.replace(config, emulator=dataclasses.replace(config.emulator, endpoint=f"http://127.0.0.1:{free_port()}"),
                                 onprem=dataclasses.replace(config.onprem, db_port=free_port()))
    # Under build/, like the rehearsal's own: the servers run as the postgres user when the tests run
    # as root, and pytest's temporary directories are root's alone.
    work = REPO_ROOT / "build" / "tests" / "rehearsal-failure"
    console = io.StringIO()
    with contextlib.redirect_stdout(console):  # the rehearsal's console is the stdout it starts with
        rehearsal = FailingDeploy(config, rate=8.0, clients=1, bake_checks=1, bake_interval=1, work_dir=work)
        exit_code = rehearsal.run()
    return exit_code, rehearsal, work, console.getvalue()


def test_a_failed_step_is_named_in_the_report_and_on_the_console(failed_rehearsal):
    exit_code, _, work, console = failed_rehearsal
    report = json.loads((work / "report.json").read_text())

    assert exit_code == 1
    assert (report["result"], report["failed_step"]) == ("FAILED", "deploy")
    assert "injected by the test" in json.dumps(report)
    assert "FAILED at step deploy: DeployFails" in console


def test_the_ledger_files_are_written_and_count_the_final_writer(failed_rehearsal):
    _, rehearsal, work, _ = failed_rehearsal

    assert (work / "acknowledged.txt").read_text() == ""  # no load was started
    final = (work / "final_payments.txt").read_text().splitlines()
    # the servers started beside the deploy: on-prem, still the writer, holds the pre-migration payments
    assert final and sorted(final) == sorted(rehearsal.legacy_keys)


def test_both_servers_logs_stay_and_no_server_is_left_running(failed_rehearsal):
    _, _, work, _ = failed_rehearsal

    for side in ("onprem", "aws"):
        log = work / "postgres" / side / "server.log"
        assert log.is_file() and "database system is ready to accept connections" in log.read_text()
        assert not (work / "postgres" / side / "data").exists() or subprocess.run(
            [pg_binary("pg_ctl"), "status", "-D", str(work / "postgres" / side / "data")],
            capture_output=True).returncode != 0, f"the {side} server still runs"


def test_a_rehearsal_refused_in_its_preflight_still_reports_why(tmp_path):
    """A port in use stops the rehearsal before it made its work folder: the report is written all
    the same, naming the preflight and the port, instead of an error about a missing folder."""
    import socket

    from lib.local.rehearsal.runbook import Rehearsal

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_config("local")
        config = dataclasses.replace(config, emulator=dataclasses.replace(
            config.emulator, endpoint=f"http://127.0.0.1:{port}"))
        work = REPO_ROOT / "build" / "tests" / "rehearsal-refused"
        subprocess.run(["rm", "-rf", str(work)], check=True)
        console = io.StringIO()
        with contextlib.redirect_stdout(console):
            exit_code = Rehearsal(config, rate=8.0, clients=1, bake_checks=1, bake_interval=1, work_dir=work).run()
    report = json.loads((work / "report.json").read_text())
    assert exit_code == 1
    assert (report["result"], report["failed_step"]) == ("FAILED", "preflight")
    assert f"emulator port {port}" in json.dumps(report), report
