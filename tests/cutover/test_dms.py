"""The DMS driver: its API calls against moto's DMS (the emulator, with its shims: tasks become
`ready` once created, an endpoint can be tested twice), its slot SQL on real PostgreSQL.

moto's tasks go to "running" on StartReplicationTask and to "stopped" on StopReplicationTask at
once; moto ignores StartReplicationTaskType and CdcStartPosition and moves no data. So what the
driver sends is read from botocore's own event hooks on the real client (each request as it is
about to be serialized), and catch-up is proven here by writing the same marker on both sides."""

from __future__ import annotations

import gzip
import json
import re
import secrets
import urllib.request
from pathlib import Path

import boto3
import botocore
import pytest

from payment_common.errors import ConfigurationError
from payment_common.sides import FALLBACK, FORWARD
from lib.local.postgres.replication import SCHEMA, TABLES, prepare_database, reset_database
from payment_cutover import fence, slots, steps
from payment_cutover.dms import FORWARD_CDC, STATUSES, DmsReplication, _state
from payment_cutover.errors import ReplicationBehind, ReplicationNotRunning
from payment_cutover.replication import RUNNING, STOPPED
from tests.support.emulator_process import emulator_process
from tests.support.handlers import create_writer_parameter
from tests.support.moto_server import FAKE_CREDENTIALS


@pytest.fixture(scope="module")
def emulator_endpoint() -> str:
    with emulator_process() as url:
        yield url


@pytest.fixture
def emulator(emulator_endpoint, monkeypatch) -> str:
    urllib.request.urlopen(urllib.request.Request(f"{emulator_endpoint}/moto-api/reset", method="POST"),
                           timeout=10).close()
    for name, value in {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": emulator_endpoint}.items():
        monkeypatch.setenv(name, value)
    return emulator_endpoint


@pytest.fixture(scope="module")
def dms_databases(servers):
    """A payment database on each server, without replication between them (moto's DMS moves nothing)."""
    name = f"dms_{secrets.token_hex(3)}"
    sides = {side: prepare_database(server, side, name) for side, server in servers.items()}
    yield sides
    for db in sides.values():
        db.postgres.admin_execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                  "WHERE database = %s", (db.dbname,))
        db.postgres.admin_execute(f'DROP DATABASE IF EXISTS "{db.dbname}" WITH (FORCE)')


@pytest.fixture
def databases(dms_databases):
    """The module's databases as new (reset before each test), with a controller connection to each."""
    for db in dms_databases.values():
        reset_database(db)
    conns = {side: db.connect("payment_controller") for side, db in dms_databases.items()}
    yield dms_databases, conns
    for conn in conns.values():
        conn.close()


class Sent:
    """The DMS requests a client made, recorded by botocore as it builds each one."""

    def __init__(self, client) -> None:
        self.calls: list[tuple[str, dict]] = []
        for operation in ("StartReplicationTask", "StopReplicationTask", "TestConnection"):
            client.meta.events.register(f"provide-client-params.dms.{operation}", self._record)

    def _record(self, params, model, **_) -> None:
        self.calls.append((model.name, dict(params)))

    def of(self, operation: str) -> list[dict]:
        return [params for name, params in self.calls if name == operation]


@pytest.fixture
def dms(emulator):
    """The three tasks as the migration stack makes them, on a replication instance and four endpoints
    moto knows; the forward task started once (the runbook's first start)."""
    client = boto3.client("dms")
    instance = client.create_replication_instance(
        ReplicationInstanceIdentifier="payment-test", ReplicationInstanceClass="dms.t3.medium",
    )["ReplicationInstance"]["ReplicationInstanceArn"]
    endpoints = {
        name: client.create_endpoint(EndpointIdentifier=f"payment-test-{name}", EndpointType=kind,
                                     EngineName="postgres", ServerName=f"{name}.internal", Port=5432,
                                     DatabaseName="payments", Username=f"dms_{kind}", Password="unused",
                                     )["Endpoint"]["EndpointArn"]
        for name, kind in (("onprem-source", "source"), ("aurora-target", "target"),
                           ("aurora-source", "source"), ("onprem-target", "target"))}
    arns = {}
    for name, kind, source, target in (("forward", "full-load-and-cdc", "onprem-source", "aurora-target"),
                                       (FORWARD_CDC, "cdc", "onprem-source", "aurora-target"),
                                       ("fallback", "cdc", "aurora-source", "onprem-target")):
        arns[name] = client.create_replication_task(
            ReplicationTaskIdentifier=f"payment-test-{name}", MigrationType=kind, TableMappings='{"rules": []}',
            SourceEndpointArn=endpoints[source], TargetEndpointArn=endpoints[target],
            ReplicationInstanceArn=instance,
        )["ReplicationTask"]["ReplicationTaskArn"]
    client.start_replication_task(ReplicationTaskArn=arns["forward"], StartReplicationTaskType="start-replication")
    sent = Sent(client)
    return client, arns, endpoints, sent


def driver(dms, slot_names, **overrides) -> DmsReplication:
    client, arns, _, _ = dms
    return DmsReplication(client, task_arns={**arns, **overrides}, slot_names=slot_names, poll_seconds=0.05)


def controller(conns, dms, slot_names, *, writer_parameter: str = "unused"):
    return steps.Controller(databases=conns, driver=driver(dms, slot_names), ssm=boto3.client("ssm"),
                            writer_parameter=writer_parameter, roles=["payment_app"], schema=SCHEMA,
                            tables=list(TABLES), wait_seconds=2)


@pytest.fixture
def slot_names():
    token = secrets.token_hex(3)
    return {"forward": f"payment_t{token}_forward", "fallback": f"payment_t{token}_fallback"}


def test_the_switch_stops_forward_drops_its_slot_and_starts_fallback_at_the_new_slot_as_documented(
        databases, dms, slot_names):
    sides, conns = databases
    _, arns, _, sent = dms
    c = controller(conns, dms, slot_names,
                   writer_parameter=create_writer_parameter(boto3.client("ssm"), "/payment-migration/test/dms-writer"))
    slots.create_slot(conns["onprem"], slot_names["forward"], "test_decoding")  # what the runbook does first
    assert c.driver.state(FORWARD).running and not c.driver.state(FALLBACK).running
    fence.fence(conns["aws"], ["payment_app"])  # the non-writer
    steps.fence(c, "onprem", "aws")

    c.wait_seconds = 0.5
    with pytest.raises(ReplicationBehind):  # moto moves no data: a fresh marker never arrives
        steps.switch_replication(c, "onprem", "aws")
    c.wait_seconds = 2
    assert c.driver.state(FORWARD).running, "the forward task was stopped before catch-up was proven"
    assert not sent.calls, f"nothing is started or stopped before catch-up is proven: {sent.calls}"

    # DMS catches up: the switch's own marker reaches aws, then the task is stopped (by hand here)
    (latest,) = sides["onprem"].query("SELECT marker_id::text FROM payment_control.cutover_marker "
                                      "ORDER BY created_at DESC LIMIT 1")[0]
    sides["aws"].postgres.admin_execute("INSERT INTO payment_control.cutover_marker (marker_id, from_side, to_side) "
                                        "VALUES (%s, 'onprem', 'aws')", (latest,), dbname=sides["aws"].dbname)
    c.driver.stop(FORWARD, timeout_seconds=2)
    result = steps.switch_replication(c, "onprem", "aws")
    assert result["replication"]["forward"]["status"] == "stopped"
    assert result["replication"]["fallback"]["status"] == "running"
    assert slots.slot_info(conns["onprem"], slot_names["forward"]) is None
    fallback_slot = slots.slot_info(conns["aws"], slot_names["fallback"])
    assert (fallback_slot["plugin"], fallback_slot["slot_type"]) == ("test_decoding", "logical")
    # "For a cdc only task, to start from a specific position, you must use start-replication and
    # also specify the start position" (StartReplicationTask reference)
    created_at = next(action for action in result["actions"] if action.startswith("created slot")).rsplit(" ", 1)[1]
    assert sent.of("StartReplicationTask") == [{"ReplicationTaskArn": arns["fallback"],
                                                "StartReplicationTaskType": "start-replication",
                                                "CdcStartPosition": created_at}]
    again = steps.switch_replication(c, "onprem", "aws")
    assert again["replication"] == result["replication"]
    assert slots.slot_info(conns["aws"], slot_names["fallback"]) == fallback_slot, "a re-run re-made the slot"
    assert len(sent.of("StartReplicationTask")) == 1, "a re-run started the running task again"


def test_forward_after_a_writer_rollback_starts_the_cdc_only_task_at_the_slot(dms, slot_names):
    client, arns, _, sent = dms
    d = driver(dms, slot_names)
    d.stop(FORWARD, timeout_seconds=2)  # the cutover stopped the forward task after its full load

    message = d.start(FORWARD, start_lsn="0/3000060", timeout_seconds=2)

    assert sent.of("StartReplicationTask") == [{"ReplicationTaskArn": arns[FORWARD_CDC],
                                                "StartReplicationTaskType": "start-replication",
                                                "CdcStartPosition": "0/3000060"}]
    assert "payment-test-forward-cdc" in message
    state = d.state(FORWARD)
    assert state.status == RUNNING and "payment-test-forward-cdc" in state.detail
    # a second rollback: the cdc task ran before, and is started again from the newer slot, not resumed
    d.stop(FORWARD, timeout_seconds=2)
    assert [params["ReplicationTaskArn"] for params in sent.of("StopReplicationTask")] == [
        arns["forward"], arns[FORWARD_CDC]], "the second stop is the running cdc task's alone"
    d.start(FORWARD, start_lsn="0/5000028", timeout_seconds=2)
    assert sent.of("StartReplicationTask")[-1] == {"ReplicationTaskArn": arns[FORWARD_CDC],
                                                   "StartReplicationTaskType": "start-replication",
                                                   "CdcStartPosition": "0/5000028"}
    full_load = client.describe_replication_tasks(
        Filters=[{"Name": "replication-task-arn", "Values": [arns["forward"]]}])["ReplicationTasks"][0]
    assert full_load["Status"] == "stopped", "the full-load task was started again (a reload or a resume)"


def test_forward_that_never_ran_gets_its_first_start_without_a_position(emulator, slot_names):
    client = boto3.client("dms")
    arn = client.create_replication_task(
        ReplicationTaskIdentifier="payment-test-first", MigrationType="full-load-and-cdc",
        TableMappings='{"rules": []}', SourceEndpointArn="arn:aws:dms:eu-west-1:123456789012:endpoint:source",
        TargetEndpointArn="arn:aws:dms:eu-west-1:123456789012:endpoint:target",
        ReplicationInstanceArn="arn:aws:dms:eu-west-1:123456789012:rep:instance")["ReplicationTask"]["ReplicationTaskArn"]
    sent = Sent(client)
    d = DmsReplication(client, task_arns={"forward": arn, "fallback": arn}, slot_names=slot_names, poll_seconds=0.05)
    assert d.state(FORWARD).status == STOPPED  # ready

    d.start(FORWARD, start_lsn="0/1000000", timeout_seconds=2)

    assert sent.of("StartReplicationTask") == [{"ReplicationTaskArn": arn,
                                                "StartReplicationTaskType": "start-replication"}]


def test_forward_that_ran_is_refused_without_a_cdc_only_task(dms, slot_names):
    _, arns, _, sent = dms
    d = driver(dms, slot_names)
    d.stop(FORWARD, timeout_seconds=2)
    d.task_arns = {name: arn for name, arn in arns.items() if name != FORWARD_CDC}

    with pytest.raises(ConfigurationError, match="resume-processing replicates from the last stop position.*"
                                                 "DMS_FORWARD_CDC_TASK_ARN"):
        d.start(FORWARD, start_lsn="0/3000060", timeout_seconds=2)
    assert not sent.of("StartReplicationTask")
    assert any("DMS_FORWARD_CDC_TASK_ARN" in problem for problem in d.check_can_start(FORWARD))


def test_every_documented_task_status_is_mapped_and_an_unknown_one_named():
    """The statuses are those botocore's copy of the DMS API reference lists for ReplicationTask.Status."""
    model_path = next(Path(botocore.__file__).parent.glob("data/dms/*/service-2.json.gz"))
    documentation = json.loads(gzip.decompress(model_path.read_bytes()))["shapes"]["ReplicationTask"]["members"][
        "Status"]["documentation"]
    documented = set(re.findall(r'<code>"([a-z-]+)"</code>', documentation))
    assert documented >= {"running", "stopped", "failed-move", "testing"}, documentation
    assert documented <= set(STATUSES), f"statuses without a mapping: {sorted(documented - set(STATUSES))}"
    with pytest.raises(ReplicationNotRunning, match="status 'rebooting'"):
        _state({"ReplicationTaskIdentifier": "payment-test-forward", "Status": "rebooting"})


def test_a_task_arn_dms_does_not_know_is_named(dms, slot_names):
    _, arns, _, _ = dms
    d = driver(dms, slot_names, fallback=arns["fallback"] + "-gone")
    with pytest.raises(ConfigurationError, match="DMS_FALLBACK_TASK_ARN"):
        d.state(FALLBACK)
    d = driver(dms, slot_names, **{FORWARD_CDC: arns[FORWARD_CDC] + "-gone"})
    with pytest.raises(ConfigurationError, match="DMS_FORWARD_CDC_TASK_ARN"):
        d.state(FORWARD)


def test_check_can_start_tests_both_endpoints_of_the_task_that_would_start(dms, slot_names):
    _, arns, endpoints, sent = dms
    d = driver(dms, slot_names)
    assert d.check_can_start(FALLBACK, timeout_seconds=5) == []
    assert {params["EndpointArn"] for params in sent.of("TestConnection")} == {
        endpoints["aurora-source"], endpoints["onprem-target"]}
    # the forward task ran: a start would be the cdc-only task's, on the forward endpoints; twice is fine
    d.stop(FORWARD, timeout_seconds=2)
    for _ in range(2):
        assert d.check_can_start(FORWARD, timeout_seconds=5) == []
    assert {params["EndpointArn"] for params in sent.of("TestConnection")[2:]} == {
        endpoints["onprem-source"], endpoints["aurora-target"]}
    assert not sent.of("StartReplicationTask"), "a check started a task"


def test_check_can_start_names_an_endpoint_dms_cannot_test_and_a_test_that_does_not_end(emulator, dms, slot_names):
    client, arns, endpoints, _ = dms
    client.delete_endpoint(EndpointArn=endpoints["onprem-target"])
    d = driver(dms, slot_names)
    (problem,) = d.check_can_start(FALLBACK, timeout_seconds=5)
    assert "target endpoint" in problem and endpoints["onprem-target"] in problem, problem

    # moto's own switch: connection tests stay "testing" until described this many times
    request = urllib.request.Request(
        f"{emulator}/moto-api/state-manager/set-transition", method="POST",
        data=json.dumps({"model_name": "dms::connection",
                         "transition": {"progression": "manual", "times": 10_000}}).encode())
    urllib.request.urlopen(request, timeout=10).close()
    problems = d.check_can_start(FORWARD, timeout_seconds=0.3)
    assert len(problems) == 2 and all("had not ended after 0.3 s" in problem for problem in problems), problems


def test_a_slot_of_another_database_is_refused(databases, servers, slot_names):
    sides, conns = databases
    slots.create_slot(conns["onprem"], slot_names["forward"], "test_decoding")
    other = prepare_database(servers["onprem"], "onprem", f"other_{secrets.token_hex(3)}")
    conn = other.connect("payment_controller")
    try:
        with pytest.raises(ConfigurationError, match="unique per server"):
            slots.slot_info(conn, slot_names["forward"])
    finally:
        conn.close()
        other.postgres.admin_execute(f'DROP DATABASE IF EXISTS "{other.dbname}" WITH (FORCE)')
