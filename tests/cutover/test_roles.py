"""schema/roles.sql on a real PostgreSQL: each role can do its job and is refused the rest."""

from __future__ import annotations

import secrets
import uuid

import psycopg2
import psycopg2.errors
import pytest

from lib.local.postgres.replication import ROLES_SQL, add_customer, prepare_database, reset_database
from payment_api import payments
from payment_api.models import PaymentRequest
from payment_cutover import fence
from payment_cutover.errors import FenceIncomplete


@pytest.fixture(scope="module")
def roles_database(servers):
    name = f"roles_{secrets.token_hex(3)}"
    database = prepare_database(servers["onprem"], "onprem", name)
    yield database
    database.postgres.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(roles_database):
    """A payment database as roles.sql leaves it (one per module, reset before each test)."""
    reset_database(roles_database)
    return roles_database


@pytest.fixture
def connect(db):
    opened = []

    def make(role: str, autocommit: bool = True):
        conn = db.connect(role, autocommit=autocommit)
        opened.append(conn)
        return conn
    yield make
    for conn in opened:
        conn.close()


def refused(conn, statement: str, params=None, error=psycopg2.errors.InsufficientPrivilege) -> bool:
    """Run `statement`, expecting `error`; the connection stays usable."""
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
    except error:
        if not conn.autocommit:
            conn.rollback()
        return True
    return False


def acl_snapshot(db) -> list:
    return db.query("""SELECT c.relname, c.relacl::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname IN ('public', 'payment_control') ORDER BY 1""") + \
        db.query("SELECT rolname, rolcreaterole, rolreplication, rolcanlogin FROM pg_roles ORDER BY 1") + \
        db.query("SELECT setrole::regrole::text, setconfig::text FROM pg_db_role_setting ORDER BY 1")


def test_the_script_is_idempotent_and_records_its_version(db):
    before = acl_snapshot(db)
    db.postgres.admin_execute(ROLES_SQL.read_text(), dbname=db.dbname)
    assert acl_snapshot(db) == before, "a second run changed grants, role attributes or settings"
    assert db.scalar("SELECT version FROM payment_control.script_version WHERE script = 'roles.sql'") == 3


def test_a_grant_added_by_hand_is_taken_back(db):
    db.postgres.admin_execute("GRANT DELETE ON payments TO payment_app", dbname=db.dbname)
    db.postgres.admin_execute(ROLES_SQL.read_text(), dbname=db.dbname)
    assert not db.scalar("SELECT has_table_privilege('payment_app', 'public.payments', 'DELETE')")


def test_an_older_script_does_not_overwrite_a_newer_one(db):
    db.postgres.admin_execute("UPDATE payment_control.script_version SET version = 4", dbname=db.dbname)
    with pytest.raises(psycopg2.errors.RaiseException, match="newer schema/roles.sql"):
        db.postgres.admin_execute(ROLES_SQL.read_text(), dbname=db.dbname)


def test_the_script_refuses_a_non_superuser(db, connect):
    conn = connect("payment_controller")
    with pytest.raises(psycopg2.errors.RaiseException, match="must run as a superuser"):
        with conn.cursor() as cur:
            cur.execute(ROLES_SQL.read_text())


def test_the_script_never_lifts_a_fence(db, connect):
    fence.fence(connect("payment_controller"), ["payment_app"])
    db.postgres.admin_execute(ROLES_SQL.read_text(), dbname=db.dbname)
    assert fence.fence_state(connect("payment_controller"), ["payment_app"]) == {"payment_app": "fenced"}


def test_the_script_sets_no_password():
    code = "\n".join(line.split("--")[0] for line in ROLES_SQL.read_text().splitlines())
    assert "PASSWORD" not in code.upper(), "schema/roles.sql sets a password: the operator sets them from a prompt"


def test_payment_app_creates_and_reads_payments(db, connect):
    customer = add_customer(db)
    conn = connect("payment_app", autocommit=False)
    request = PaymentRequest(customer_id=customer, amount="12.50", currency="EUR")
    created = payments.create_payment(conn, request, "roles-1")
    assert created.created
    assert payments.get_payment(conn, uuid.UUID(created.payment.payment_id)) == created.payment
    assert not payments.create_payment(conn, request, "roles-1").created


@pytest.mark.parametrize("statement", [
    "DELETE FROM payments",
    "UPDATE payments SET status = 'captured'",
    "TRUNCATE payments",
    "DROP TABLE audit_log",
    "ALTER TABLE payments ADD COLUMN card_number text",
    "CREATE TABLE public.stash (x int)",
    "SELECT * FROM customers",
    "SELECT * FROM audit_log",
    "INSERT INTO transactions (payment_id, seq, kind, amount) VALUES (gen_random_uuid(), 1, 'capture', 1)",
    "SELECT * FROM payment_control.cutover_marker",
    "CREATE SCHEMA stash",
    "ALTER ROLE payment_validator RESET default_transaction_read_only",
])
def test_payment_app_is_refused_everything_else(db, connect, statement):
    assert refused(connect("payment_app"), statement, error=(psycopg2.errors.InsufficientPrivilege,
                                                             psycopg2.errors.RaiseException)), statement


def test_a_fenced_payment_app_session_cannot_write(db, connect):
    fence.fence(connect("payment_controller"), ["payment_app"])
    conn = connect("payment_app")
    # the clean error first: the read-only default refuses before any privilege check
    assert refused(conn, "INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', 'x', 'y')",
                   error=psycopg2.errors.ReadOnlySqlTransaction)
    assert refused(conn, f'ALTER ROLE payment_app IN DATABASE "{db.dbname}" RESET default_transaction_read_only',
                   error=psycopg2.errors.ReadOnlySqlTransaction)


AUDIT = "INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', 'x', 'y')"


def test_payment_app_cannot_lift_its_own_fence_even_deliberately(db, connect):
    """The fence is privilege-based: an application that turns read-only off in its session, resets
    its own per-database default (ordinary roles may) and starts a new read-write session still
    cannot write, and cannot grant itself payment_writer back."""
    controller = connect("payment_controller")
    fence.fence(controller, ["payment_app"])
    conn = connect("payment_app")
    with conn.cursor() as cur:
        cur.execute("SET default_transaction_read_only = off")
        cur.execute(f'ALTER ROLE payment_app IN DATABASE "{db.dbname}" RESET default_transaction_read_only')
    assert refused(conn, AUDIT), "a write got through after the session turned read-only off"
    assert refused(conn, "INSERT INTO payments (payment_id, customer_id, amount, currency, idempotency_key, "
                         "request_hash) VALUES (gen_random_uuid(), gen_random_uuid(), 1, 'EUR', 'k', 'h')")
    fresh = connect("payment_app", autocommit=False)  # starts read-write now: its default is gone
    with fresh.cursor() as cur:
        cur.execute("SHOW transaction_read_only")
        assert cur.fetchone()[0] == "off"
    assert refused(fresh, AUDIT)
    assert refused(conn, "BEGIN READ WRITE; " + AUDIT)
    with conn.cursor() as cur:
        cur.execute("ROLLBACK")
    for statement in ("GRANT payment_writer TO payment_app", "SET ROLE payment_writer",
                      "ALTER ROLE payment_app CREATEROLE"):
        assert refused(conn, statement), statement
    assert db.scalar("SELECT count(*) FROM audit_log") == 0
    with conn.cursor() as cur:  # reads keep working
        cur.execute("SELECT count(*) FROM payments")
    # the controller sees what the application did, and the fence step restores the clean error
    (state,) = fence.fence_state(controller, ["payment_app"]).values()
    assert state.startswith("partial") and "missing: default_transaction_read_only" in state, state
    assert not fence.is_fenced(controller, ["payment_app"])
    assert fence.fence(controller, ["payment_app"]).roles == {"payment_app": "fenced"}
    assert refused(connect("payment_app"), AUDIT, error=psycopg2.errors.ReadOnlySqlTransaction)


def test_payment_app_cannot_reopen_its_side(db, connect):
    fence.fence(connect("payment_controller"), ["payment_app"])
    app = connect("payment_app")
    with app.cursor() as cur:
        cur.execute("SET default_transaction_read_only = off")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        fence.open_side(app, ["payment_app"])
    assert not db.scalar("SELECT pg_has_role('payment_app', 'payment_writer', 'MEMBER')")
    assert fence.fence_state(connect("payment_controller"), ["payment_app"]) == {"payment_app": "fenced"}


def test_payment_writer_holds_exactly_the_app_writes_and_cannot_log_in(db, connect):
    grants = db.query("""SELECT table_schema || '.' || table_name, privilege_type FROM information_schema.role_table_grants
                         WHERE grantee = %s ORDER BY 1, 2""", ("payment_writer",))
    assert grants == [("public.audit_log", "INSERT"), ("public.payments", "INSERT")]
    assert db.scalar("SELECT has_sequence_privilege('payment_writer', 'audit_log_audit_id_seq', 'USAGE')")
    assert not db.scalar("SELECT has_sequence_privilege('payment_writer', 'audit_log_audit_id_seq', 'UPDATE')")
    app_grants = db.query("""SELECT table_name, privilege_type FROM information_schema.role_table_grants
                             WHERE grantee = 'payment_app' ORDER BY 1, 2""")
    assert app_grants == [("payments", "SELECT")], "payment_app holds a write privilege of its own"
    assert db.query("SELECT rolcanlogin, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = 'payment_writer'") == [
        (False, False, False)]
    assert db.scalar("SELECT pg_has_role('payment_app', 'payment_writer', 'MEMBER')")
    assert not db.scalar("SELECT pg_has_role('payment_controller', 'payment_writer', 'USAGE')"), \
        "the controller inherits payment_writer's writes"
    with pytest.raises(psycopg2.OperationalError, match="not permitted to log in"):  # even where no password is asked
        psycopg2.connect(host=db.postgres.socket_dir, port=db.postgres.port, dbname=db.dbname,
                         user="payment_writer").close()


def test_fence_state_says_which_part_is_missing(db, connect):
    controller = connect("payment_controller")
    db.postgres.admin_execute("REVOKE payment_writer FROM payment_app")
    (state,) = fence.fence_state(controller, ["payment_app"]).values()
    assert state.startswith("partial") and "holds: payment_writer revoked" in state, state
    assert "missing: default_transaction_read_only = on" in state, state
    db.postgres.admin_execute("GRANT payment_writer TO payment_app")
    db.postgres.admin_execute(f'ALTER ROLE payment_app IN DATABASE "{db.dbname}" SET default_transaction_read_only = on')
    (state,) = fence.fence_state(controller, ["payment_app"]).values()
    assert "missing: payment_writer revoked" in state, state
    assert fence.fence(controller, ["payment_app"]).roles == {"payment_app": "fenced"}


def test_a_write_privilege_held_outside_payment_writer_is_not_fenced(db, connect):
    controller = connect("payment_controller")
    db.postgres.admin_execute("GRANT DELETE ON payments TO payment_app", dbname=db.dbname)
    with pytest.raises(FenceIncomplete, match=r"can still write .*public\.payments"):
        fence.fence(controller, ["payment_app"])
    (state,) = fence.fence_state(controller, ["payment_app"]).values()
    assert state.startswith("partial") and "payments (table)" in state, state
    db.postgres.admin_execute(ROLES_SQL.read_text(), dbname=db.dbname)  # converges the grant away
    assert fence.fence_state(controller, ["payment_app"]) == {"payment_app": "fenced"}


def test_the_script_never_grants_payment_writer_back(db, connect):
    controller = connect("payment_controller")
    fence.fence(controller, ["payment_app"])
    # the application resets its own per-database default; a later run of the script must not
    # take that as "open" and grant the membership back
    app = connect("payment_app")
    with app.cursor() as cur:
        cur.execute("SET default_transaction_read_only = off")
        cur.execute(f'ALTER ROLE payment_app IN DATABASE "{db.dbname}" RESET default_transaction_read_only')
    db.postgres.admin_execute(ROLES_SQL.read_text(), dbname=db.dbname)
    assert not db.scalar("SELECT pg_has_role('payment_app', 'payment_writer', 'MEMBER')")
    assert refused(connect("payment_app"), AUDIT)


def test_validator_reads_and_cannot_write_even_when_it_asks_to(db, connect):
    conn = connect("payment_validator")
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM payments")
        cur.execute("SELECT last_value FROM audit_log_audit_id_seq")
        cur.execute("SHOW default_transaction_read_only")
        assert cur.fetchone()[0] == "on"
    assert refused(conn, "INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', 'x', 'y')",
                   error=psycopg2.errors.ReadOnlySqlTransaction)
    with conn.cursor() as cur:
        cur.execute("SET default_transaction_read_only = off")
    assert refused(conn, "INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', 'x', 'y')")
    assert refused(conn, "DELETE FROM payments")


def test_dms_source_reads_and_makes_a_logical_slot_but_writes_nothing(db, connect):
    conn = connect("dms_source")
    slot = f"test_{secrets.token_hex(3)}"
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM payments")
        cur.execute("SELECT count(*) FROM payment_control.cutover_marker")
        cur.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
        cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        cur.execute("CREATE TABLE payment_dms.awsdms_heartbeat (hearthbeat_id serial PRIMARY KEY)")
    assert refused(conn, "INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', 'x', 'y')")
    assert refused(conn, "CREATE TABLE public.stash (x int)")


def test_dms_target_applies_as_a_replica_and_reads_nothing_else(db, connect):
    customer = str(uuid.uuid4())
    conn = connect("dms_target")
    with conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute("INSERT INTO customers (customer_id, external_ref, display_name) VALUES (%s, 'r-1', 'x')",
                    (customer,))
        cur.execute("UPDATE customers SET display_name = 'y' WHERE customer_id = %s", (customer,))
        cur.execute("INSERT INTO audit_log (audit_id, entity, entity_id, action) VALUES (42, 'payment', 'x', 'y')")
        cur.execute("INSERT INTO payment_control.cutover_marker (marker_id, from_side, to_side) "
                    "VALUES (gen_random_uuid(), 'onprem', 'aws')")
        cur.execute("DELETE FROM customers WHERE customer_id = %s", (customer,))
        cur.execute("CREATE TABLE payment_dms.awsdms_apply_exceptions (x text)")
    assert refused(conn, "SELECT * FROM payment_control.script_version")
    assert refused(conn, "SELECT * FROM pg_catalog.pg_authid")
    assert refused(conn, "CREATE TABLE public.stash (x int)")
    assert refused(conn, "TRUNCATE payments")


def test_controller_fences_opens_marks_advances_and_manages_slots(db, connect):
    app = connect("payment_app")
    controller = connect("payment_controller")
    report = fence.fence(controller, ["payment_app"])
    assert report.roles == {"payment_app": "fenced"}
    assert app.closed or refused(app, "SELECT 1", error=psycopg2.OperationalError), "the app session survived"
    assert fence.open_side(controller, ["payment_app"]) == {"payment_app": "open"}
    slot = f"test_{secrets.token_hex(3)}"
    with controller.cursor() as cur:
        cur.execute("INSERT INTO payment_control.cutover_marker (marker_id, from_side, to_side) "
                    "VALUES (gen_random_uuid(), 'onprem', 'aws')")
        cur.execute("SELECT max(audit_id) FROM audit_log")
        cur.execute("SELECT setval('audit_log_audit_id_seq', 1000)")
        cur.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


@pytest.mark.parametrize("statement", [
    "INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', 'x', 'y')",
    "DELETE FROM payment_control.cutover_marker",
    "DROP TABLE payments",
    "ALTER ROLE postgres NOLOGIN",
    "ALTER ROLE payment_controller SUPERUSER",
    "CREATE TABLE public.stash (x int)",
])
def test_controller_is_refused_the_rest(db, connect, statement):
    assert refused(connect("payment_controller"), statement), statement
