-- Database roles of the payment system, one per purpose (issue 15), and the cutover's control schema.
-- Script version 1 (recorded in payment_control.script_version; a newer version already applied
-- stops the script).
--
-- Apply on BOTH databases (on-prem and Aurora), in the payment database, after schema/payments.sql,
-- as a superuser (on Aurora: the master user, a member of rds_superuser):
--
--     psql "host=<host> dbname=<payment db> user=<admin> sslmode=verify-full" \
--          -v ON_ERROR_STOP=1 -f schema/roles.sql
--
-- Idempotent: a second run changes nothing, and it converges drifted grants back to what is below.
-- It never changes a fence (default_transaction_read_only of the application roles set by the
-- cutover controller), so it is safe to run on the fenced side.
--
-- No password is here. Roles are created LOGIN without a password (nobody can log in as them until
-- the operator sets one); set each from a prompt, e.g. in psql `\password payment_app` (psql sends
-- only the SCRAM verifier), and put the same value in that role's Secrets Manager secret.
--
-- Roles (cluster-wide; the grants are per database, so run it in each payment database):
--   payment_app        the payment API (and any application that writes payments): DML it needs on the
--                      payment tables only; fenced (read-only) on the side that is not the writer
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
-- PostgreSQL 15 and older: changing another role's settings needs CREATEROLE, which on those versions
-- lets the controller alter any non-superuser role: keep its secret as tightly held as the master's.
-- PostgreSQL 16 and newer: CREATEROLE plus ADMIN OPTION on each application role (granted here with
-- INHERIT FALSE, SET FALSE, so the controller never acts as payment_app).

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
    IF (SELECT version FROM payment_control.script_version WHERE script = 'roles.sql') > 1 THEN
        RAISE EXCEPTION 'a newer schema/roles.sql (version %) was applied to %; this is version 1',
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
    FROM payment_app, payment_validator, dms_source, dms_target, payment_controller;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public, payment_control
    FROM payment_app, payment_validator, dms_source, dms_target, payment_controller;

-- payment_app: what the payment API does (create and read payments, append to the audit log).
GRANT SELECT, INSERT ON public.payments TO payment_app;
GRANT INSERT ON public.audit_log TO payment_app;

GRANT SELECT ON public.customers, public.payments, public.transactions, public.audit_log
    TO payment_validator, dms_source, payment_controller;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.customers, public.payments, public.transactions, public.audit_log
    TO dms_target;

GRANT SELECT ON payment_control.cutover_marker TO payment_validator, dms_source;
GRANT SELECT, INSERT, UPDATE, DELETE ON payment_control.cutover_marker TO dms_target;
GRANT SELECT, INSERT ON payment_control.cutover_marker TO payment_controller;

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
        EXECUTE format('GRANT USAGE ON SEQUENCE %s TO payment_app', seq);
        EXECUTE format('GRANT SELECT ON SEQUENCE %s TO payment_validator', seq);
        EXECUTE format('GRANT SELECT, UPDATE ON SEQUENCE %s TO payment_controller', seq);
    END LOOP;
END $$;

INSERT INTO payment_control.script_version (script, version) VALUES ('roles.sql', 1)
ON CONFLICT (script) DO UPDATE SET version = EXCLUDED.version, applied_at = now(), applied_by = current_user;

COMMIT;
