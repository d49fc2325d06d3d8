"""The fence's threat model, tried as a DBA with real cutovers behind them would: every write path a
payment estate has, on two real PostgreSQL servers joined by logical replication. Each path is either
closed by the fence (a transaction through it commits nothing on the fenced side) or refused by
name before anything changes; and the witness proves, before the new writer opens, that nothing but
the controller's markers reached the old writer after its fence."""

from __future__ import annotations

import secrets
import threading
import time

import psycopg2
import psycopg2.errors
import pytest
from psycopg2 import sql

from payment_common.sides import AWS, FORWARD, ONPREM
from payment_common.writer import read_writer
from payment_cutover import control, fence, steps
from payment_cutover.errors import FenceBreached, FenceIncomplete, LeaseHeld, LeaseLost, SwitchPending
from payment_cutover.writer import set_writer as put_writer
from tests.support.handlers import create_writer_parameter

AUDIT = "INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', %s, 'created')"


@pytest.fixture
def estate(pair):
    """Roles a test adds to the estate (cluster-wide), with passwords, dropped afterwards."""
    made: list[str] = []
    passwords: dict[str, str] = {}
    onprem = pair.onprem

    def role(name: str, options: str = "LOGIN", member_of: tuple[str, ...] = ()) -> str:
        passwords[name] = secrets.token_urlsafe(18)
        onprem.postgres.admin_execute(sql.SQL("CREATE ROLE {} " + options + " PASSWORD %s").format(
            sql.Identifier(name)), (passwords[name],))
        made.append(name)
        for group in member_of:
            onprem.postgres.admin_execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(name)))
        onprem.postgres.admin_execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(name)),
                                      dbname=onprem.dbname)
        return name

    def connect(name: str, *, autocommit: bool = True):
        conn = psycopg2.connect(host=onprem.postgres.host, port=onprem.postgres.port, dbname=onprem.dbname,
                                user=name, password=passwords[name], sslmode="verify-full",
                                sslrootcert=onprem.postgres.ca_certificate, connect_timeout=5)
        conn.autocommit = autocommit
        return conn

    role.connect = connect
    yield role
    for name in made:
        onprem.postgres.admin_execute(
            """SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = %s""", (name,))
    for gid in onprem.query("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"):
        onprem.postgres.admin_execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid[0])),
                                      dbname=onprem.dbname)
    for name in reversed(made):  # roles live on the on-prem server only
        onprem.postgres.admin_execute(sql.SQL("REASSIGN OWNED BY {} TO payment_owner").format(sql.Identifier(name)),
                                      dbname=onprem.dbname)
        onprem.postgres.admin_execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)), dbname=onprem.dbname)
        onprem.postgres.admin_execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def audit_ids(db, prefix: str) -> list[str]:
    return [row[0] for row in db.query("SELECT entity_id FROM audit_log WHERE entity_id LIKE %s ORDER BY 1",
                                       (prefix + "%",))]


def writes_in_flight(conn, entity_id: str) -> None:
    """A transaction that wrote (it holds a transaction id) and has not committed yet."""
    with conn.cursor() as cur:
        cur.execute(AUDIT, (entity_id,))


def commit_fails(conn) -> bool:
    try:
        conn.commit()
    except psycopg2.Error:
        return True
    return False


def refused(conn, statement: str, params=None) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
    except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.ReadOnlySqlTransaction):
        if not conn.autocommit:
            conn.rollback()
        return True
    return False


def test_a_prepared_transaction_is_refused_before_anything_changes_and_fenced_once_resolved(pair, controller):
    """PREPARE TRANSACTION before the fence, COMMIT PREPARED after: the session's end does not end it,
    and its privileges were checked when it wrote. The fence refuses it, changing nothing."""
    app = pair.connection(ONPREM, "payment_app", autocommit=False)
    writes_in_flight(app, "xa-1")
    with app.cursor() as cur:
        cur.execute("PREPARE TRANSACTION 'xa-payment-1'")
    with pytest.raises(FenceIncomplete, match="nothing was changed.*prepared transaction 'xa-payment-1'"):
        steps.preflight(controller, ONPREM, AWS)
    with pytest.raises(FenceIncomplete, match="xa-payment-1"):
        steps.fence(controller, ONPREM, AWS)
    assert fence.is_open(controller.databases[ONPREM], ["payment_app"]), "a refused fence changed the side"
    pair.onprem.postgres.admin_execute("ROLLBACK PREPARED 'xa-payment-1'", dbname=pair.onprem.dbname)
    assert steps.fence(controller, ONPREM, AWS)["roles"] == {"payment_app": "fenced"}
    assert audit_ids(pair.onprem, "xa-") == []


def test_writers_through_payment_app_and_unlisted_members_are_fenced_and_reopened(pair, controller, estate):
    """A LOGIN role that inherits payment_app, one that may only SET ROLE to it (NOINHERIT), and a
    batch job's role that is a member of payment_writer but not a configured application role: each
    with a transaction that wrote before the fence. None of them commits on the fenced side, none
    can write after it, and the batch job gets its membership back when the side reopens."""
    estate("clerk", "LOGIN INHERIT", member_of=("payment_app",))
    estate("operator", "LOGIN NOINHERIT", member_of=("payment_app",))
    estate("batch_job", "LOGIN", member_of=("payment_writer",))
    sessions = {name: estate.connect(name, autocommit=False) for name in ("clerk", "operator", "batch_job")}
    with sessions["operator"].cursor() as cur:
        cur.execute("SET ROLE payment_app")
    for name, conn in sessions.items():
        writes_in_flight(conn, f"path-{name}-before")

    report = steps.fence(controller, ONPREM, AWS)

    assert set(report["revoked_membership"]) >= {"payment_app", "batch_job"}
    assert set(report["read_only_roles"]) >= {"payment_app", "clerk", "operator", "batch_job"}
    for name, conn in sessions.items():
        assert commit_fails(conn), f"{name}'s transaction from before the fence committed after it"
    for name in ("clerk", "batch_job"):
        conn = estate.connect(name)
        with conn.cursor() as cur:
            cur.execute("SET default_transaction_read_only = off")
        assert refused(conn, AUDIT, (f"path-{name}-after",)), f"{name} wrote on the fenced side"
    operator = estate.connect("operator")
    with operator.cursor() as cur:
        cur.execute("SET default_transaction_read_only = off; SET ROLE payment_app")
    assert refused(operator, AUDIT, ("path-operator-after",)), "SET ROLE payment_app wrote on the fenced side"
    assert audit_ids(pair.onprem, "path-") == []

    assert steps.abort(controller, ONPREM, AWS)["reopened"] == ONPREM
    assert pair.onprem.scalar("SELECT pg_has_role('batch_job', 'payment_writer', 'MEMBER')"), \
        "reopening did not give the batch job its membership back"
    batch = estate.connect("batch_job")
    writes_in_flight(batch, "path-batch-reopened")
    assert audit_ids(pair.onprem, "path-") == ["path-batch-reopened"]


@pytest.mark.parametrize("setup, named", [
    # a SECURITY DEFINER function owned by the tables' owner, EXECUTE left to PUBLIC (the default)
    ("CREATE FUNCTION public.record_audit(id text) RETURNS void LANGUAGE sql SECURITY DEFINER AS "
     "$$ INSERT INTO public.audit_log (entity, entity_id, action) VALUES ('payment', id, 'created') $$; "
     "ALTER FUNCTION public.record_audit(text) OWNER TO payment_owner",
     r"payment_app may EXECUTE SECURITY DEFINER function public\.record_audit\(text\), which runs as payment_owner"),
    # a NOINHERIT LOGIN role that may SET ROLE to the tables' owner: has_table_privilege says no
    ("CREATE ROLE dba_noinherit LOGIN NOINHERIT IN ROLE payment_owner",
     r"dba_noinherit owns public\.payments as payment_owner \(inherited or by SET ROLE\)"),
    # a LOGIN role that owns a replicated table
    ("CREATE ROLE ledger_owner LOGIN; ALTER TABLE public.transactions OWNER TO ledger_owner",
     r"ledger_owner owns public\.transactions"),
    # a write privilege granted to PUBLIC
    ("GRANT UPDATE ON public.customers TO PUBLIC", r"holds UPDATE on public\.customers \(granted to PUBLIC\)"),
    # a view whose owner can write, writable by an application role
    ("CREATE VIEW public.recent_audit AS SELECT * FROM public.audit_log; "
     "ALTER VIEW public.recent_audit OWNER TO payment_owner; GRANT INSERT ON public.recent_audit TO payment_app",
     r"payment_app may write public\.recent_audit, whose rules write a replicated table as its owner payment_owner"),
    # a role that may SET ROLE to a superuser
    ("CREATE ROLE power_user LOGIN NOINHERIT IN ROLE postgres", r"power_user is a superuser as postgres"),
])
def test_a_write_path_the_fence_cannot_close_is_refused_by_name_and_nothing_changes(pair, controller, setup, named):
    onprem = pair.onprem
    roles = [word for word in setup.split() if word in ("dba_noinherit", "ledger_owner", "power_user")]
    onprem.postgres.admin_execute(setup, dbname=onprem.dbname)
    try:
        with pytest.raises(FenceIncomplete, match=named):
            steps.preflight(controller, ONPREM, AWS)
        with pytest.raises(FenceIncomplete, match=named):
            steps.fence(controller, ONPREM, AWS)
        assert fence.is_open(controller.databases[ONPREM], ["payment_app"]), "a refused fence changed the side"
    finally:
        for statement in ("DROP FUNCTION IF EXISTS public.record_audit(text)", "DROP VIEW IF EXISTS public.recent_audit",
                          "REVOKE UPDATE ON public.customers FROM PUBLIC",
                          "ALTER TABLE public.transactions OWNER TO payment_owner"):
            onprem.postgres.admin_execute(statement, dbname=onprem.dbname)
        for role in dict.fromkeys(roles):
            onprem.postgres.admin_execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_roles_sql_takes_execute_from_public_so_the_function_path_closes(pair, controller):
    onprem = pair.onprem
    onprem.postgres.admin_execute(
        "CREATE FUNCTION public.record_audit(id text) RETURNS void LANGUAGE sql SECURITY DEFINER AS "
        "$$ INSERT INTO public.audit_log (entity, entity_id, action) VALUES ('payment', id, 'created') $$; "
        "ALTER FUNCTION public.record_audit(text) OWNER TO payment_owner", dbname=onprem.dbname)
    try:
        assert fence.write_paths(controller.databases[ONPREM], controller.replicated)
        onprem.postgres.admin_execute(steps_roles_sql(), dbname=onprem.dbname)
        assert fence.write_paths(controller.databases[ONPREM], controller.replicated) == []
        steps.fence(controller, ONPREM, AWS)
        app = pair.connection(ONPREM, "payment_app")
        assert refused(app, "SELECT public.record_audit('through-definer')")
    finally:
        onprem.postgres.admin_execute("DROP FUNCTION IF EXISTS public.record_audit(text)", dbname=onprem.dbname)


def steps_roles_sql() -> str:
    from lib.local.postgres.replication import ROLES_SQL

    return ROLES_SQL.read_text()


def test_a_write_after_the_fence_by_an_administrator_is_caught_by_the_proof(pair, controller, customer):
    """Superusers cannot be fenced by privileges: the witness sees their write, the proof names it,
    and the new writer is not opened."""
    steps.preflight(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    steps.wait_replication(controller, ONPREM, AWS)
    steps.advance_sequences(controller, ONPREM, AWS)
    steps.switch_replication(controller, ONPREM, AWS)
    pair.onprem.postgres.admin_execute(AUDIT, ("written-by-a-superuser",), dbname=pair.onprem.dbname)
    with pytest.raises(FenceBreached, match=r"INSERT on public\.audit_log at LSN [0-9A-F]+/[0-9A-F]+"):
        steps.prove_fence(controller, ONPREM, AWS)
    with pytest.raises(FenceBreached):
        steps.open_writer(controller, ONPREM, AWS)
    assert fence.fence_state(controller.databases[AWS], ["payment_app"]) == {"payment_app": "fenced"}
    assert steps.abort(controller, ONPREM, AWS)["reopened"] is None, "abort reopened after the switch"


def test_the_proof_passes_on_markers_alone_and_fails_when_the_witness_is_gone(pair, controller):
    steps.preflight(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    steps.wait_replication(controller, ONPREM, AWS)
    steps.switch_replication(controller, ONPREM, AWS)
    proof = steps.prove_fence(controller, ONPREM, AWS)
    assert proof["markers"] >= 2 and proof["other_changes"] == 0, proof
    pair.onprem.postgres.admin_execute("SELECT pg_drop_replication_slot(%s)", (controller.witness_slot(ONPREM),))
    with pytest.raises(FenceBreached, match="witness slot .* is gone"):
        steps.prove_fence(controller, ONPREM, AWS)


def test_one_switch_at_a_time(pair, controller):
    """A second execution, and its abort, find the lease held and change nothing; a retried invoke of
    the same execution takes it over with a new token, and the earlier invocation loses it."""
    controller.holder = "execution-1"
    steps.fence(controller, ONPREM, AWS)
    other = pair.controller(ssm=controller.ssm, writer_parameter=controller.writer_parameter)
    other.holder = "execution-2"
    with pytest.raises(LeaseHeld, match="execution-1 holds the switch lease"):
        steps.wait_replication(other, ONPREM, AWS)
    with pytest.raises(LeaseHeld):
        steps.abort(other, ONPREM, AWS)
    assert fence.is_fenced(controller.databases[ONPREM], ["payment_app"]), "another execution's abort reopened"
    onprem = controller.databases[ONPREM]
    first = control.take_lease(onprem, "execution-1", seconds=60)
    retried = control.take_lease(onprem, "execution-1", seconds=60)
    assert retried.token == first.token + 1
    with pytest.raises(LeaseLost):
        control.check_lease(onprem, first, seconds=60)
    control.check_lease(onprem, retried, seconds=60)


def test_an_abort_cannot_interleave_with_a_running_switch(pair, controller):
    """The race that reopened on-prem while the switch dropped the slot: the abort waits for the
    switch mutex instead of interleaving, and once the switch is done it finds nothing to reopen."""
    steps.preflight(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    steps.wait_replication(controller, ONPREM, AWS)
    # the switch is inside its critical section: its marker waits for a lock an administrator holds
    blocker = pair.admin_connection(ONPREM)
    blocker.autocommit = False
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLE payment_control.cutover_marker IN ACCESS EXCLUSIVE MODE")
    switcher = pair.controller(ssm=controller.ssm, writer_parameter=controller.writer_parameter)
    switcher.holder = controller.holder
    errors: list[Exception] = []
    thread = threading.Thread(target=lambda: _capture(errors, steps.switch_replication, switcher, ONPREM, AWS))
    thread.start()
    pair.wait_until(lambda: pair.onprem.scalar("SELECT count(*) FROM pg_locks WHERE NOT granted"), "the switch to wait")
    aborter = pair.controller(ssm=controller.ssm, writer_parameter=controller.writer_parameter, wait_seconds=1)
    aborter.holder = controller.holder  # a retried Abort of the same execution, or the CLI's
    with pytest.raises(SwitchPending, match="switch mutex"):
        steps.abort(aborter, ONPREM, AWS)
    assert fence.is_fenced(controller.databases[ONPREM], ["payment_app"]), "the abort reopened during the switch"
    blocker.commit()
    thread.join(timeout=30)
    assert not errors, errors
    assert steps.abort(aborter, ONPREM, AWS)["reopened"] is None, "abort reopened after the switch"


def test_a_preflight_racing_the_end_of_a_switch_never_fences_the_new_writer(pair, controller, ssm,
                                                                             writer_parameter):
    """Found by the fault matrix: a second rollback execution's preflight read the writer record
    (still aws) while the first was in SetWriter, then fenced on-prem — the writer SetWriter had just
    named — as "the non-writer". Preflight reads the record again under the switch mutex."""
    create_writer_parameter(ssm, writer_parameter, writer=AWS)
    fence.fence(controller.databases[AWS], ["payment_app"])  # aws fenced, on-prem open: A has opened it
    first = pair.controller(ssm=ssm, writer_parameter=writer_parameter)
    first.holder = "rollback-A"
    second = pair.controller(ssm=ssm, writer_parameter=writer_parameter)
    second.holder = "rollback-B"
    results: list = []
    with steps.switching(first) as lease:  # A in SetWriter
        racer = threading.Thread(target=lambda: _capture(results, lambda: results.append(
            steps.preflight(second, AWS, ONPREM))))
        racer.start()
        time.sleep(0.5)  # B has read "aws" and waits for the mutex
        put_writer(ssm, writer_parameter, ONPREM, "rollback A", expected=AWS)
        control.release_lease(first.databases[ONPREM], lease)
    racer.join(timeout=30)
    assert fence.is_open(controller.databases[ONPREM], ["payment_app"]), "preflight fenced the new writer"
    assert results and isinstance(results[0], dict) and results[0]["already_done"] is True, results


def _capture(errors: list, function, *args) -> None:
    try:
        function(*args)
    except Exception as error:  # noqa: BLE001 - the test asserts on it
        errors.append(error)


def test_a_forward_slot_dropped_by_hand_is_an_error_not_a_finished_switch(pair, controller):
    """On-prem failed over to a server without its logical slots (or the slot was dropped by hand):
    "old slot absent" is not "already switched", and abort does not reopen a side whose changes
    would go nowhere."""
    steps.preflight(controller, ONPREM, AWS)
    steps.fence(controller, ONPREM, AWS)
    steps.wait_replication(controller, ONPREM, AWS)
    controller.driver.stop(FORWARD, timeout_seconds=5)
    pair.onprem.postgres.admin_execute("SELECT pg_drop_replication_slot(%s)", (pair.slot_names["forward"],))
    with pytest.raises(Exception, match="no switch dropped it"):
        steps.preflight(controller, ONPREM, AWS)
    result = steps.abort(controller, ONPREM, AWS)
    assert result["reopened"] is None and "slot of forward" in result["message"], result


class Writer(threading.Thread):
    """Writes audit rows on on-prem through one write path until stopped, recording what committed."""

    def __init__(self, name: str, connect, prepare: str | None = None) -> None:
        super().__init__(daemon=True)
        self.path, self.connect, self.prepare = name, connect, prepare
        self.acknowledged: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn, n = None, 0
        while not self.stop.is_set():
            n += 1
            entity = f"load-{self.path}-{n}"
            try:
                if conn is None or conn.closed:
                    conn = self.connect()
                    if self.prepare:
                        with conn.cursor() as cur:
                            cur.execute(self.prepare)
                with conn.cursor() as cur:
                    cur.execute(AUDIT, (entity,))
                self.acknowledged.append(entity)
            except psycopg2.Error:
                if conn is not None and not conn.closed:
                    conn.close()
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()


def test_every_path_at_once_under_load(pair, controller, estate, ssm, writer_parameter):
    """Every path the estate has, tried during one cutover under a write load: the unclosable ones
    are refused by name before anything changes; once the operator closed them, the cutover runs
    while writers hammer on-prem through every closable path, and every acknowledged write is on the
    new writer exactly once, none landed on the old writer after its fence, and the proof held."""
    onprem = pair.onprem
    estate("clerk", "LOGIN INHERIT", member_of=("payment_app",))
    estate("operator", "LOGIN NOINHERIT", member_of=("payment_app",))
    estate("batch_job", "LOGIN", member_of=("payment_writer",))
    estate("ledger_owner", "LOGIN")
    onprem.postgres.admin_execute(
        "CREATE FUNCTION public.record_audit(id text) RETURNS void LANGUAGE sql SECURITY DEFINER AS "
        "$$ INSERT INTO public.audit_log (entity, entity_id, action) VALUES ('payment', id, 'created') $$; "
        "ALTER FUNCTION public.record_audit(text) OWNER TO payment_owner; "
        "ALTER TABLE public.transactions OWNER TO ledger_owner", dbname=onprem.dbname)
    app = pair.connection(ONPREM, "payment_app", autocommit=False)
    writes_in_flight(app, "load-xa")
    with app.cursor() as cur:
        cur.execute("PREPARE TRANSACTION 'xa-load'")
    try:
        with pytest.raises(FenceIncomplete) as refusal:
            steps.preflight(controller, ONPREM, AWS)
        for path in ("record_audit(text), which runs as payment_owner", "ledger_owner owns public.transactions",
                     "prepared transaction 'xa-load'"):
            assert path in str(refusal.value), f"the refusal does not name {path}: {refusal.value}"
        # the operator closes what the fence cannot
        onprem.postgres.admin_execute("ROLLBACK PREPARED 'xa-load'", dbname=onprem.dbname)
        onprem.postgres.admin_execute("ALTER TABLE public.transactions OWNER TO payment_owner; "
                                      "REVOKE EXECUTE ON FUNCTION public.record_audit(text) FROM PUBLIC",
                                      dbname=onprem.dbname)
        writers = [Writer("app", lambda: pair.connection(ONPREM, "payment_app")),
                   Writer("clerk", lambda: estate.connect("clerk")),
                   Writer("operator", lambda: estate.connect("operator"), "SET ROLE payment_app"),
                   Writer("batch", lambda: estate.connect("batch_job")),
                   Writer("rogue", lambda: estate.connect("clerk"), "SET default_transaction_read_only = off")]
        for writer in writers:
            writer.start()
        pair.wait_until(lambda: all(len(writer.acknowledged) >= 5 for writer in writers), "writes on every path")
        outcome = {"preflight": steps.preflight(controller, ONPREM, AWS)}
        outcome["fence"] = steps.fence(controller, ONPREM, AWS)
        fenced_count = len(audit_ids(onprem, "load-"))
        outcome["wait"] = steps.wait_replication(controller, ONPREM, AWS)
        outcome["sequences"] = steps.advance_sequences(controller, ONPREM, AWS)
        outcome["switch"] = steps.switch_replication(controller, ONPREM, AWS)
        outcome["proof"] = steps.prove_fence(controller, ONPREM, AWS)
        outcome["open"] = steps.open_writer(controller, ONPREM, AWS)
        outcome["writer"] = steps.set_writer(controller, ONPREM, AWS, "cutover under every path")
        time.sleep(0.3)
        for writer in writers:
            writer.stop.set()
        for writer in writers:
            writer.join(timeout=10)
    finally:
        onprem.postgres.admin_execute("DROP FUNCTION IF EXISTS public.record_audit(text); "
                                      "ALTER TABLE public.transactions OWNER TO payment_owner", dbname=onprem.dbname)
    assert read_writer(ssm, writer_parameter).writer == AWS
    assert outcome["proof"]["other_changes"] == 0
    acknowledged = [entity for writer in writers for entity in writer.acknowledged]
    on_aws = audit_ids(pair.aws, "load-")
    assert sorted(on_aws) == sorted(set(on_aws)), "a write is stored twice on the new writer"
    missing = set(acknowledged) - set(on_aws)
    assert not missing, f"acknowledged writes missing on the new writer: {sorted(missing)[:10]}"
    assert len(audit_ids(onprem, "load-")) == fenced_count, "a write landed on the old writer after its fence"
    assert all(writer.acknowledged for writer in writers)
