-- Database roles of the payment system, one per purpose, and the cutover's control schema.
-- Script version 3 (recorded in payment_control.script_version; a newer version already applied
-- stops the script). Version 2 added payment_writer, the group role through which alone the
-- application roles may write (the fence revokes it). Version 3 adds the controller's switch lease
-- and fence record (payment_control.cutover_lease, cutover_fence; never replicated) and takes
-- EXECUTE on the payment schemas' functions from PUBLIC (a SECURITY DEFINER function anyone may
-- call is a write path the fence refuses).
--
-- Apply on BOTH databases (on-prem and Aurora), in the payment database, after schema/payments.sql,
-- as a superuser (on Aurora: the master user, a member of rds_superuser):
--
--     psql "host=<host> dbname=<payment db> user=<admin> sslmode=verify-full" \
--          -v ON_ERROR_STOP=1 -f schema/roles.sql
--
-- Idempotent: a second run changes nothing, and it converges drifted grants back to what is below.
-- It never changes a fence, so it is safe to run on the fenced side: it never touches the
-- application roles' default_transaction_read_only, and it changes payment_writer memberships only
-- when it creates payment_writer (the upgrade to version 2, see below); from then on they are the
-- cutover controller's alone (its fence and open steps).
--
-- No password is here. Roles are created LOGIN without a password (nobody can log in as them until
-- the operator sets one); set each from a prompt, e.g. in psql `\password payment_app` (psql sends
-- only the SCRAM verifier), and put the same value in that role's Secrets Manager secret.
--
-- Roles (cluster-wide; the grants are per database, so run it in each payment database):
--   payment_app        the payment API (and any application that writes payments): SELECT on payments
--                      directly; its writes only through membership in payment_writer; fenced on the
--                      side that is not the writer
--   payment_writer     NOLOGIN group role holding exactly the DML payment_app needs (INSERT on payments
--                      and audit_log, USAGE on audit_log's identity sequence). Nobody logs in as it.
--   payment_validator  the validation Lambda: SELECT only, read-only by default
--   dms_source         replication source (DMS source endpoint, or the publisher connection of the
--                      PostgreSQL logical replication stand-in): REPLICATION + SELECT
--   dms_target         replication target (DMS target endpoint): DML on the replicated tables and
--                      SET session_replication_role (PG15+), nothing else
--   payment_controller the cutover controller: fence/open the application roles, end their sessions,
--                      write cutover markers, advance sequences, create/drop replication slots
--
-- RDS / Aurora variant (handled automatically): the master user cannot give the REPLICATION
-- attribute; when the role rds_replication exists, dms_source and payment_controller are granted it
-- instead. On Aurora PostgreSQL the master may be refused `GRANT SET ON PARAMETER
-- session_replication_role`; the script then warns and dms_target gets it from the rds_superuser
-- master by hand (or the DMS target endpoint runs without session_replication_role = replica).
--
-- PostgreSQL 15 and older: changing another role's settings and granting/revoking payment_writer
-- need CREATEROLE, which on those versions lets the controller alter any non-superuser role (and
-- grant itself payment_writer): keep its secret as tightly held as the master's. The controller is
-- not a member of payment_writer there.
-- PostgreSQL 16 and newer: CREATEROLE plus ADMIN OPTION on each application role and on
-- payment_writer (granted here with INHERIT FALSE, SET FALSE, so the controller never acts as
-- payment_app and never writes payments itself).
--
-- The fence (lib/lambda/cutover/payment_cutover/fence.py) has two parts, and holds against an
-- application that changes its own settings:
--   1. privileges: REVOKE payment_writer FROM <application role>. A write then fails with
--      insufficient_privilege (42501) whatever the session sets: payment_app cannot grant the
--      membership back (no CREATEROLE, no ADMIN OPTION).
--   2. the clean error: ALTER ROLE <application role> IN DATABASE <db> SET
--      default_transaction_read_only = on, so a well-behaved session fails first with
--      read_only_sql_transaction (25006), which the payment API answers with 503 + Retry-After.
-- Opening a side grants payment_writer back and RESETs the setting.
-- MEMBERSHIP IS CLUSTER-WIDE: fencing one database of a server fences the application roles in
-- every database of that server. Keep ONE payment database per server (as in production: on-prem
-- and Aurora are separate servers). An application role other than payment_app (e.g. the on-prem
-- application's own role, in the controller's APPLICATION_ROLES) must likewise get its writes only
-- from payment_writer: GRANT payment_writer TO <role> (PG16+: ... GRANTED BY payment_controller),
-- and no write privilege directly (the controller refuses to report such a role fenced).
--
-- Upgrade from version 1 (and first install): payment_writer is created and payment_app becomes a
-- member unless payment_app is fenced in this database (default_transaction_read_only = on for it
-- here), so an existing fence keeps holding. On a fresh install of the side that is NOT the writer,
-- run the controller's fence_non_writer step before any application connects to it.

BEGIN;
SET LOCAL client_min_messages = warning;
SET LOCAL search_path = pg_catalog;

DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_superuser') THEN
            RAISE EXCEPTION 'schema/roles.sql must run as a superuser, not %', current_user;
        ELSIF NOT pg_has_role(current_user, 'rds_superuser', 'MEMBER') THEN
            RAISE EXCEPTION 'schema/roles.sql must run as the master user (rds_superuser), not %', current_user;
        END IF;
    END IF;
    IF to_regclass('public.payments') IS NULL THEN
        RAISE EXCEPTION 'no table public.payments in database %: load schema/payments.sql first', current_database();
    END IF;
END $$;

-- ---- control schema: the replicated cutover marker, and the version of this script -------------
CREATE SCHEMA IF NOT EXISTS payment_control;
REVOKE ALL ON SCHEMA payment_control FROM PUBLIC;

CREATE TABLE IF NOT EXISTS payment_control.script_version (
    script      text        PRIMARY KEY,
    version     integer     NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    applied_by  name        NOT NULL DEFAULT current_user
);
DO $$
BEGIN
    IF (SELECT version FROM payment_control.script_version WHERE script = 'roles.sql') > 3 THEN
        RAISE EXCEPTION 'a newer schema/roles.sql (version %) was applied to %; this is version 3',
            (SELECT version FROM payment_control.script_version WHERE script = 'roles.sql'), current_database();
    END IF;
END $$;

-- Written by the controller on the old writer once it is fenced; replicated like the payment tables
-- (DMS table mappings and the publication include it). Its arrival on the new writer proves every
-- earlier commit was applied.
CREATE TABLE IF NOT EXISTS payment_control.cutover_marker (
    marker_id   uuid        PRIMARY KEY,
    from_side   text        NOT NULL CHECK (from_side IN ('onprem', 'aws')),
    to_side     text        NOT NULL CHECK (to_side IN ('onprem', 'aws')),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by  name        NOT NULL DEFAULT current_user
);

-- The cutover controller's own records (lib/lambda/cutover/payment_cutover/control.py), on each side,
-- NOT replicated (neither the publication nor the DMS table mappings name them): the lease that makes
-- one switch at a time (used on on-prem), and one row per fence, binding the steps after it to it.
CREATE TABLE IF NOT EXISTS payment_control.cutover_lease (
    lease       text        PRIMARY KEY CHECK (lease = 'switch'),
    holder      text        NOT NULL,
    token       bigint      NOT NULL,
    taken_at    timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS payment_control.cutover_fence (
    fence_id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    side             text        NOT NULL CHECK (side IN ('onprem', 'aws')),
    holder           text        NOT NULL,
    fenced_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    witness_slot     name,
    revoked          text[]      NOT NULL DEFAULT '{}',
    last_marker      uuid,
    old_slot_dropped boolean     NOT NULL DEFAULT false,
    proven_at        timestamptz,
    released_at      timestamptz
);

-- DMS creates its own tables (heartbeat on the source, awsdms_apply_exceptions & co. on the target):
-- they go into this schema (endpoint HeartbeatSchema, task ControlSchema), never into public.
CREATE SCHEMA IF NOT EXISTS payment_dms;
REVOKE ALL ON SCHEMA payment_dms FROM PUBLIC;

-- ---- roles --------------------------------------------------------------------------------------
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['payment_app', 'payment_validator', 'dms_source', 'dms_target',
                                     'payment_controller'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', role_name);
        ELSIF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = role_name) THEN
            RAISE EXCEPTION 'role % exists as a superuser or with BYPASSRLS: refusing to use it', role_name;
        END IF;
        EXECUTE format('ALTER ROLE %I LOGIN INHERIT NOCREATEDB %s', role_name,
                       CASE WHEN role_name = 'payment_controller' THEN 'CREATEROLE' ELSE 'NOCREATEROLE' END);
    END LOOP;
END $$;

ALTER ROLE payment_validator SET default_transaction_read_only = on;

-- payment_writer: the application roles' write privileges, and nothing else. Created NOLOGIN; on the
-- run that creates it, payment_app joins it unless it is fenced here (see the header).
DO $$
DECLARE
    created boolean := false;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'payment_writer') THEN
        CREATE ROLE payment_writer NOLOGIN;
        created := true;
    ELSIF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = 'payment_writer') THEN
        RAISE EXCEPTION 'role payment_writer exists as a superuser or with BYPASSRLS: refusing to use it';
    END IF;
    ALTER ROLE payment_writer NOLOGIN NOCREATEROLE NOCREATEDB NOREPLICATION;
    IF current_setting('server_version_num')::int >= 160000 THEN
        -- the controller revokes it (fence) and grants it back (open)
        EXECUTE 'GRANT payment_writer TO payment_controller WITH ADMIN OPTION, INHERIT FALSE, SET FALSE';
    END IF;
    IF created AND NOT EXISTS (
            SELECT FROM pg_db_role_setting s CROSS JOIN unnest(s.setconfig) AS c(entry)
            WHERE s.setrole = 'payment_app'::regrole
              AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND c.entry IN ('default_transaction_read_only=on', 'default_transaction_read_only=true')) THEN
        IF current_setting('server_version_num')::int >= 160000 THEN
            BEGIN
                -- recorded as the controller's grant, so that the controller's REVOKE removes it
                EXECUTE 'GRANT payment_writer TO payment_app WITH INHERIT TRUE, SET FALSE GRANTED BY payment_controller';
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE WARNING 'cannot record the grant of payment_writer to payment_app as payment_controller''s '
                              '(running as %): granted as %, which the controller''s REVOKE does not remove (its '
                              'fence step then fails, naming the grantor): have an operator REVOKE it and the '
                              'controller grant it (open step)', current_user, current_user;
                EXECUTE 'GRANT payment_writer TO payment_app WITH INHERIT TRUE, SET FALSE';
            END;
        ELSE
            EXECUTE 'GRANT payment_writer TO payment_app';
        END IF;
    END IF;
END $$;

-- Replication: the attribute on plain PostgreSQL, the rds_replication role on RDS/Aurora.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['dms_source', 'payment_controller'] LOOP
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_replication') THEN
            EXECUTE format('GRANT rds_replication TO %I', role_name);
        ELSE
            EXECUTE format('ALTER ROLE %I REPLICATION', role_name);
        END IF;
    END LOOP;
    -- the others never replicate
    FOREACH role_name IN ARRAY ARRAY['payment_app', 'payment_validator', 'dms_target'] LOOP
        IF (SELECT rolreplication FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('ALTER ROLE %I NOREPLICATION', role_name);
        END IF;
    END LOOP;
END $$;

-- The controller ends application sessions (fence), reads replication progress, and on PG16+ holds
-- ADMIN OPTION on each application role (needed there, with CREATEROLE, to change its settings).
GRANT pg_signal_backend, pg_read_all_stats TO payment_controller;
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 160000 THEN
        EXECUTE 'GRANT payment_app TO payment_controller WITH ADMIN OPTION, INHERIT FALSE, SET FALSE';
        -- the PostgreSQL logical replication stand-in: the controller manages its subscriptions
        EXECUTE 'GRANT pg_create_subscription TO payment_controller';
        -- how far a subscription applied, read before it is dropped (postgres_logical.stop)
        EXECUTE 'GRANT EXECUTE ON FUNCTION pg_replication_origin_progress(text, boolean) TO payment_controller';
        EXECUTE format('GRANT CREATE ON DATABASE %I TO payment_controller', current_database());
    END IF;
END $$;

-- dms_target applies as a replica session (triggers and foreign keys wait for the source's order).
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 150000 THEN
        EXECUTE 'GRANT SET ON PARAMETER session_replication_role TO dms_target';
    ELSE
        RAISE WARNING 'PostgreSQL < 15: session_replication_role needs a superuser; the DMS target endpoint '
                      'must run without "SET session_replication_role = replica" or as an rds_superuser member';
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'cannot GRANT SET ON PARAMETER session_replication_role TO dms_target as %: grant it as a '
                  'role that may (see the header of schema/roles.sql)', current_user;
END $$;

-- ---- privileges in this database ----------------------------------------------------------------
-- Nobody but the owner creates objects in public (the default from PG15 on; explicit for older).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO payment_app, payment_validator, dms_source, dms_target, payment_controller;
GRANT USAGE ON SCHEMA payment_control TO payment_validator, dms_source, dms_target, payment_controller;
GRANT USAGE, CREATE ON SCHEMA payment_dms TO dms_source, dms_target;

-- Start from nothing on every table and sequence of the schemas, then grant exactly what is listed:
-- a grant added by hand is taken away by the next run.
REVOKE ALL ON ALL TABLES IN SCHEMA public, payment_control
    FROM payment_app, payment_writer, payment_validator, dms_source, dms_target, payment_controller;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public, payment_control
    FROM payment_app, payment_writer, payment_validator, dms_source, dms_target, payment_controller;

-- payment_app: what the payment API does (create and read payments, append to the audit log). It
-- reads directly (reads keep working on the fenced side) and writes only as a member of
-- payment_writer (the fence revokes the membership).
GRANT SELECT ON public.payments TO payment_app;
GRANT INSERT ON public.payments, public.audit_log TO payment_writer;

GRANT SELECT ON public.customers, public.payments, public.transactions, public.audit_log
    TO payment_validator, dms_source, payment_controller;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.customers, public.payments, public.transactions, public.audit_log
    TO dms_target;

GRANT SELECT ON payment_control.cutover_marker TO payment_validator, dms_source;
GRANT SELECT, INSERT, UPDATE, DELETE ON payment_control.cutover_marker TO dms_target;
GRANT SELECT, INSERT ON payment_control.cutover_marker TO payment_controller;
GRANT SELECT, INSERT, UPDATE ON payment_control.cutover_lease, payment_control.cutover_fence TO payment_controller;
GRANT USAGE ON SEQUENCE payment_control.cutover_fence_fence_id_seq TO payment_controller;

-- Functions run as their caller unless SECURITY DEFINER; one that is, owned by a role that can write
-- the payment tables and callable by PUBLIC (PostgreSQL's default), lets anyone write past the fence.
-- Nobody but the owner calls this schemas' functions unless granted; likewise for the functions this
-- role creates here later.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public, payment_control FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA public, payment_control REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Sequences owned by a column of a payment table (audit_log's identity): the application draws from
-- them, the validator compares them, the controller reads and advances them (setval = UPDATE).
DO $$
DECLARE
    seq regclass;
BEGIN
    FOR seq IN
        SELECT DISTINCT s.oid::regclass
        FROM pg_class s
        JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
                        AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        WHERE s.relkind = 'S'
          AND d.refobjid IN ('public.customers'::regclass, 'public.payments'::regclass,
                             'public.transactions'::regclass, 'public.audit_log'::regclass)
    LOOP
        EXECUTE format('GRANT USAGE ON SEQUENCE %s TO payment_writer', seq);
        EXECUTE format('GRANT SELECT ON SEQUENCE %s TO payment_validator', seq);
        EXECUTE format('GRANT SELECT, UPDATE ON SEQUENCE %s TO payment_controller', seq);
    END LOOP;
END $$;

INSERT INTO payment_control.script_version (script, version) VALUES ('roles.sql', 3)
ON CONFLICT (script) DO UPDATE SET version = EXCLUDED.version, applied_at = now(), applied_by = current_user;

COMMIT;
