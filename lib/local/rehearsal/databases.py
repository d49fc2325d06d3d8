"""The rehearsal's two PostgreSQL servers and what it puts into them and reads back.

The servers are the local harness's replicated pair (lib/local/postgres/replication.py): "on-prem"
where config/local.toml says it listens, "Aurora" on a free port, both TLS only (certificates signed
by a CA made for the run, so clients verify the server: sslmode=verify-full), scram-sha-256
passwords for every role of roles.sql and for subscription_admin, logical replication on, commits
synchronous as on the real servers. Each holds the payment database under its configured name.

Everything lives under build/rehearsal/: tls/ (the CA), postgres/<side>/ (the data directory,
removed at the end, and server.log, kept).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from lib.local.postgres.replication import AWS, ONPREM, SideDatabase, prepare_database, start_servers
from lib.local.postgres.tls import CertificateAuthority

# Acknowledged commits survive a server crash, as on the servers rehearsed.
DURABLE = {"synchronous_commit": "on"}


def start_databases(work: Path, onprem_port: int,
                    dbnames: dict[str, str]) -> tuple[CertificateAuthority, dict[str, SideDatabase]]:
    """The run's CA and both sides' payment databases (`dbnames` per side), servers started side by
    side; on-prem on `onprem_port`, which must be free."""
    ca = CertificateAuthority.create(work / "tls", "payment-migration rehearsal CA")
    servers = start_servers(DURABLE, ca=ca, roots={side: work / "postgres" / side for side in (ONPREM, AWS)},
                            ports={ONPREM: onprem_port})
    return ca, {side: prepare_database(servers[side], side, dbnames[side]) for side in (ONPREM, AWS)}


def seed_customers(server: SideDatabase, count: int) -> list[str]:
    """Customers on `server` (the on-prem writer), created before replication starts: the full copy
    carries them to Aurora. The API has no customer endpoint; the application's onboarding would."""
    customers = [str(uuid.uuid4()) for _ in range(count)]
    conn = server.admin()
    try:
        with conn.cursor() as cur:
            for index, customer in enumerate(customers):
                cur.execute("INSERT INTO customers (customer_id, external_ref, display_name, email) "
                            "VALUES (%s, %s, %s, %s)",
                            (customer, f"rehearsal-{index:04d}", f"Rehearsal customer {index}",
                             f"customer{index}@rehearsal.test"))
    finally:
        conn.close()
    return customers


def seed_legacy_payments(server: SideDatabase, customers: list[str], count: int) -> list[str]:
    """Payments the on-prem system already holds before the migration (not through the API)."""
    keys = [f"legacy-{index:06d}" for index in range(count)]
    conn = server.admin()
    try:
        with conn.cursor() as cur:
            for index, key in enumerate(keys):
                payment = str(uuid.uuid4())
                cur.execute("INSERT INTO payments (payment_id, customer_id, amount, currency, idempotency_key, "
                            "request_hash, status) VALUES (%s, %s, %s, 'EUR', %s, 'legacy', 'captured')",
                            (payment, customers[index % len(customers)], f"{10 + index % 90}.00", key))
                cur.execute("INSERT INTO audit_log (entity, entity_id, action) VALUES ('payment', %s, 'imported')",
                            (payment,))
    finally:
        conn.close()
    return keys


def payment_keys(server: SideDatabase) -> list[str]:
    """The idempotency key of every payment row, duplicates included, in insertion-time order."""
    return [key for (key,) in server.query("SELECT idempotency_key FROM payments ORDER BY created_at, idempotency_key")]


def payment_ids(server: SideDatabase) -> dict[str, str]:
    return dict(server.query("SELECT idempotency_key, payment_id::text FROM payments"))
