"""The `publish_metrics` step: what the stacks' alarms watch, measured on both databases and put to
CloudWatch (PutMetricData) every minute by an EventBridge schedule.

Per side (dimension {"Side": "onprem"|"aws"}), for the replication slot of the direction whose source
that side is (forward's slot on on-prem, fallback's on AWS):

    SlotExists                0/1
    ReplicationSlotLagBytes   pg_current_wal_lsn() - confirmed_flush_lsn (0 without a slot): WAL the
                              consumer has not confirmed yet
    RetainedWalBytes          pg_current_wal_lsn() - restart_lsn (0 without a slot): WAL the slot
                              keeps on disk — the disk-full risk of a stopped direction
    Fenced                    1 when the side is fenced for every application role (both parts of the
                              fence: payment_cutover.fence.fence_state), else 0 (open or partial)

A side that cannot be reached or measured publishes nothing (the alarms treat missing data as
breaching); the other side is still published, then the step fails naming what it could not do.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import psycopg2
from botocore.exceptions import BotoCoreError, ClientError

from payment_common.errors import AwsUnavailable, ConfigurationError, DatabaseUnavailable, MigrationError
from payment_common.sides import SIDES, Direction, other
from payment_cutover import fence as fencing

DIMENSION = "Side"


def slot_name_of(side: str, slot_names: Mapping[str, str]) -> str:
    """The slot that lives on `side`: that of the direction whose source it is."""
    return slot_names[Direction(side, other(side)).name]


def measure(conn, slot_name: str, roles: list[str]) -> dict[str, float]:
    with conn.cursor() as cur:
        cur.execute(
            """SELECT s.slot_name IS NOT NULL, s.database,
                      COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), COALESCE(s.confirmed_flush_lsn, s.restart_lsn)), 0),
                      COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn), 0)
               FROM (SELECT 1) AS one LEFT JOIN pg_replication_slots s ON s.slot_name = %s""",
            (slot_name,))
        exists, database, lag, retained = cur.fetchone()
    if exists and database != conn.info.dbname:
        raise ConfigurationError(f"replication slot {slot_name} belongs to database {database}, not "
                                 f"{conn.info.dbname}: slot names must be unique per server (check the slot names)")
    return {"SlotExists": 1.0 if exists else 0.0,
            "ReplicationSlotLagBytes": max(float(lag), 0.0),
            "RetainedWalBytes": max(float(retained), 0.0),
            "Fenced": 1.0 if fencing.is_fenced(conn, roles) else 0.0}


UNITS = {"SlotExists": "None", "ReplicationSlotLagBytes": "Bytes", "RetainedWalBytes": "Bytes", "Fenced": "None"}


def publish_metrics(databases: Mapping[str, Any], cloudwatch: Any, *, namespace: str, slot_names: Mapping[str, str],
                    roles: list[str], unreachable: Mapping[str, str] | None = None,
                    now: datetime | None = None) -> dict:
    """Measure each reachable side, put every value in one PutMetricData call, and return them. Raises
    DatabaseUnavailable (after publishing the rest) when a side could not be measured."""
    errors = dict(unreachable or {})
    measured: dict[str, dict] = {}
    for side in SIDES:
        if side not in databases:
            errors.setdefault(side, "no connection")
            continue
        slot = slot_name_of(side, slot_names)
        try:
            measured[side] = {"slot": slot, **measure(databases[side], slot, roles)}
        except (psycopg2.Error, MigrationError) as error:
            errors[side] = f"{type(error).__name__}: {str(error).strip()}"
    timestamp = now or datetime.now(timezone.utc)
    data = [{"MetricName": name, "Dimensions": [{"Name": DIMENSION, "Value": side}], "Timestamp": timestamp,
             "Value": values[name], "Unit": unit}
            for side, values in measured.items() for name, unit in UNITS.items()]
    if data:
        try:
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=data)
        except (BotoCoreError, ClientError) as error:
            raise AwsUnavailable(f"PutMetricData to {namespace} failed: {type(error).__name__}: {error}") from error
    result = {"namespace": namespace, "sides": measured, "published": len(data), "errors": errors}
    if errors:
        raise DatabaseUnavailable(
            f"metrics not published for {', '.join(sorted(errors))} ("
            + "; ".join(f"{side}: {detail}" for side, detail in sorted(errors.items()))
            + f"); published for {', '.join(sorted(measured)) or 'no side'}")
    return result
