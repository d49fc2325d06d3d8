"""The DMS driver: its API calls against moto's DMS, its slot SQL on real PostgreSQL. moto's tasks start
in "creating", go to "running" on StartReplicationTask and to "stopped" on StopReplicationTask at once;
moto ignores StartReplicationTaskType and CdcStartPosition and moves no data, so catch-up is proven
here by writing the same marker on both sides."""

from __future__ import annotations

import secrets

import boto3
import pytest

from payment_cutover import fence, slots, steps
from payment_cutover.dms import DmsReplication
from payment_cutover.errors import ConfigurationError, ReplicationBehind
from payment_cutover.sides import FALLBACK, FORWARD
from tests.support.replication import SCHEMA, TABLES, create_writer_parameter, prepare_database, reset_database


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


@pytest.fixture
def dms(aws):
    client = boto3.client("dms")
    arns = {}
    for name, kind in (("forward", "full-load-and-cdc"), ("fallback", "cdc")):
        arns[name] = client.create_replication_task(
            ReplicationTaskIdentifier=f"payment-test-{name}", MigrationType=kind, TableMappings='{"rules": []}',
            SourceEndpointArn=f"arn:aws:dms:eu-west-1:123456789012:endpoint:{name}-source",
            TargetEndpointArn=f"arn:aws:dms:eu-west-1:123456789012:endpoint:{name}-target",
            ReplicationInstanceArn="arn:aws:dms:eu-west-1:123456789012:rep:instance",
        )["ReplicationTask"]["ReplicationTaskArn"]
    client.start_replication_task(ReplicationTaskArn=arns["forward"], StartReplicationTaskType="start-replication")
    return client, arns


def controller(conns, dms, ssm_name, slot_names):
    client, arns = dms
    driver = DmsReplication(client, task_arns=arns, slot_names=slot_names, poll_seconds=0.05)
    return steps.Controller(databases=conns, driver=driver, ssm=boto3.client("ssm"), writer_parameter=ssm_name,
                            roles=["payment_app"], schema=SCHEMA, tables=list(TABLES), wait_seconds=2)


@pytest.fixture
def slot_names():
    token = secrets.token_hex(3)
    return {"forward": f"payment_t{token}_forward", "fallback": f"payment_t{token}_fallback"}


def test_the_switch_stops_forward_drops_its_slot_makes_the_fallback_slot_and_starts_fallback(
        databases, dms, slot_names):
    sides, conns = databases
    c = controller(conns, dms, create_writer_parameter(boto3.client("ssm"), "/payment-migration/test/dms-writer"),
                   slot_names)
    slots.create_slot(conns["onprem"], slot_names["forward"], "test_decoding")  # what the runbook does first
    assert c.driver.state(FORWARD).running and not c.driver.state(FALLBACK).running
    fence.fence(conns["aws"], ["payment_app"])  # the non-writer
    steps.fence(c, "onprem", "aws")

    c.wait_seconds = 0.5
    with pytest.raises(ReplicationBehind):  # moto moves no data: a fresh marker never arrives
        steps.switch_replication(c, "onprem", "aws")
    c.wait_seconds = 2
    assert c.driver.state(FORWARD).running, "the forward task was stopped before catch-up was proven"

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
    again = steps.switch_replication(c, "onprem", "aws")
    assert again["replication"] == result["replication"]
    assert slots.slot_info(conns["aws"], slot_names["fallback"]) == fallback_slot, "a re-run re-made the slot"


def test_a_task_arn_dms_does_not_know_is_named(databases, dms, slot_names):
    _, conns = databases
    client, arns = dms
    driver = DmsReplication(client, task_arns={**arns, "fallback": arns["fallback"] + "-gone"},
                            slot_names=slot_names)
    with pytest.raises(ConfigurationError, match="DMS_FALLBACK_TASK_ARN"):
        driver.state(FALLBACK)


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
        other.postgres.admin_execute(f'DROP DATABASE "{other.dbname}" WITH (FORCE)')
