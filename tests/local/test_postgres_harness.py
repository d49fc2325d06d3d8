"""The PostgreSQL harness itself (lib/local/postgres): what the tests, the rehearsal and the fault
matrix each rely on from one implementation — the replication settings, subscription_admin, a
forward direction started with a full copy, a fixed port refused when taken, a server left behind
under a root replaced, and server.log kept when the data goes."""

from __future__ import annotations

import shutil
import socket
import uuid

import psycopg2
import pytest

from lib.local.postgres.replication import (
    AWS,
    ONPREM,
    SUBSCRIPTION_ADMIN,
    ReplicatedPair,
    acquire_servers,
    add_customer,
    prepare_database,
    release_servers,
    start_forward_replication,
)
from lib.local.postgres.server import PostgresSetupError, start_postgres
from lib.terraform import REPO_ROOT

# Under build/, like the rehearsal's own: as root the servers run as the postgres user, and pytest's
# temporary directories are root's alone.
WORK = REPO_ROOT / "build" / "tests" / "postgres-harness"
pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def servers():
    yield acquire_servers()
    release_servers()


def setting(server, name: str) -> str:
    conn = server.postgres.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting(%s)", (name,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_both_servers_replicate_logically_and_meet_prepared_transactions(servers):
    for side, server in servers.items():
        found = {name: setting(server, name) for name in
                 ("wal_level", "max_prepared_transactions", "track_commit_timestamp", "ssl", "synchronous_commit")}
        assert found == {"wal_level": "logical", "max_prepared_transactions": "10", "track_commit_timestamp": "on",
                         "ssl": "on", "synchronous_commit": "off"}, side


def test_subscription_admin_is_a_superuser_reached_over_verified_tls(servers):
    server = servers[ONPREM]
    conn = psycopg2.connect(host=server.postgres.host, port=server.postgres.port, dbname="postgres",
                            user=SUBSCRIPTION_ADMIN, password=server.passwords[SUBSCRIPTION_ADMIN],
                            sslmode="verify-full", sslrootcert=server.postgres.ca_certificate)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone() == (True,)
    finally:
        conn.close()


def test_a_plain_connection_is_refused(servers):
    server = servers[AWS]
    with pytest.raises(psycopg2.OperationalError, match="no encryption|pg_hba.conf rejects"):
        psycopg2.connect(host=server.postgres.host, port=server.postgres.port, dbname="postgres",
                         user="payment_app", password=server.passwords["payment_app"], sslmode="disable").close()


def test_the_forward_direction_starts_with_a_full_copy_of_what_onprem_holds(servers):
    name = f"fullcopy_{uuid.uuid4().hex[:8]}"
    sides = {side: prepare_database(server, side, name) for side, server in servers.items()}
    pair = ReplicatedPair(sides=sides, slot_names={"forward": f"{name}_forward", "fallback": f"{name}_fallback"})
    try:
        before = add_customer(sides[ONPREM], "before-replication")
        start_forward_replication(sides[ONPREM], sides[AWS], f"{name}_forward", timeout_seconds=60)
        pair.wait_until(lambda: sides[AWS].scalar("SELECT count(*) FROM customers WHERE customer_id = %s",
                                                  (before,)) == 1, "the copied customer on aws")
        after = add_customer(sides[ONPREM], "after-replication")
        pair.wait_until(lambda: sides[AWS].scalar("SELECT count(*) FROM customers WHERE customer_id = %s",
                                                  (after,)) == 1, "the streamed customer on aws")
    finally:
        pair.close()


def test_a_taken_port_is_refused_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PostgresSetupError, match=f"port {port} .* in use: the onprem server"):
            start_postgres(WORK / "taken-port", port=port, name="onprem")


def test_a_server_left_under_its_root_is_replaced_and_its_log_outlives_the_data():
    root = WORK / "leftover"
    first = start_postgres(root, name="side")
    second = start_postgres(root, port=first.port, name="side")  # the first still ran on that port
    try:
        conn = second.admin_connect()
        conn.close()
    finally:
        second.remove_data()
    assert not second.data.exists()
    assert "database system is ready to accept connections" in second.log.read_text()
    shutil.rmtree(root, ignore_errors=True)
