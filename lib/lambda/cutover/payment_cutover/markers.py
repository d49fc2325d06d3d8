"""Replication lag measured on the target: a marker row written on the (fenced) old writer into
payment_control.cutover_marker, which is replicated like the payment tables. Replication applies
transactions in the source's commit order, so the marker's arrival on the new writer proves that
every earlier commit was applied."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from payment_common.sides import Direction
from payment_cutover.errors import ReplicationBehind

POLL_SECONDS = 0.05
MARKER_TABLE = ("payment_control", "cutover_marker")  # (schema, table)
TABLE = ".".join(MARKER_TABLE)


@dataclass(frozen=True)
class Marker:
    marker_id: str
    direction: Direction
    created_at: object  # timestamptz on the source's clock


def insert_marker(source_conn, direction: Direction) -> Marker:
    marker_id = str(uuid.uuid4())
    with source_conn.cursor() as cur:
        cur.execute(f"INSERT INTO {TABLE} (marker_id, from_side, to_side) VALUES (%s, %s, %s) RETURNING created_at",
                    (marker_id, direction.source, direction.target))
        created_at = cur.fetchone()[0]
    return Marker(marker_id, direction, created_at)


def has_marker(target_conn, marker_id: str) -> bool:
    with target_conn.cursor() as cur:
        cur.execute(f"SELECT 1 FROM {TABLE} WHERE marker_id = %s", (marker_id,))
        return cur.fetchone() is not None


def wait_for_marker(source_conn, target_conn, marker: Marker, *, timeout_seconds: float) -> float:
    """Poll the target until the marker is there; return the lag in seconds, from the marker's commit
    to its sighting, both on the source's clock. Raises ReplicationBehind after `timeout_seconds`."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        if has_marker(target_conn, marker.marker_id):
            with source_conn.cursor() as cur:
                cur.execute("SELECT extract(epoch FROM clock_timestamp() - %s)", (marker.created_at,))
                return float(cur.fetchone()[0])
        if time.monotonic() >= deadline:
            raise ReplicationBehind(
                f"marker {marker.marker_id} written on {marker.direction.source} at {marker.created_at} has not "
                f"reached {marker.direction.target} after {timeout_seconds:g} s: {marker.direction} is behind "
                "(or stopped); the step can be retried")
        time.sleep(POLL_SECONDS)
