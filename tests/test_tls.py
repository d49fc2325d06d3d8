"""Verified TLS on real PostgreSQL servers: the test servers present certificates from the session's
test CA (lib/local/postgres/tls.py) and are reached with sslmode=verify-full; a name the certificate does
not carry, a certificate from another CA, and the RDS bundle against a non-RDS server are refused,
also through the Lambdas' own connection code. The Lambdas default to verify-full with the RDS CA
bundle their zips carry (lib/certs/), which covers every configured region."""

from __future__ import annotations

import json
import re
import ssl
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import boto3
import psycopg2
import pytest

from lib import bundler
from lib.local.postgres.server import PostgresServer, start_postgres
from lib.local.postgres.tls import CertificateAuthority

ROOT = Path(__file__).resolve().parents[1]
ELSEWHERE = "payments-db.elsewhere.test"
# libpq's words when the certificate does not name the host connected to
MISNAMED = rf'server certificate for "{re.escape(ELSEWHERE)}" (\(and \d+ other names?\) )?does not match host name "127\.0\.0\.1"'


def connect(server: PostgresServer, **options):
    return psycopg2.connect(port=server.port, user=server.app_user, password=server.app_password,
                            dbname="postgres", connect_timeout=10, **options)


def tls_of(conn) -> tuple[bool, str]:
    with conn.cursor() as cur:
        cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return cur.fetchone()


@pytest.fixture(scope="module")
def elsewhere() -> PostgresServer:
    """A server whose certificate (from the same test CA) names another host only."""
    server = start_postgres(names=(ELSEWHERE,))
    yield server
    server.remove()


# --- the test servers, verified -----------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_verify_full_with_the_test_ca_connects_by_address_and_by_name(postgres, host):
    conn = connect(postgres, host=host, sslmode="verify-full", sslrootcert=postgres.ca_certificate)
    try:
        encrypted, version = tls_of(conn)
    finally:
        conn.close()
    assert encrypted and version.startswith("TLSv1."), f"connection to {host} is not TLS: {version}"


def test_a_name_the_certificate_does_not_carry_is_refused(postgres):
    # hostaddr reaches the server; host is the name verify-full checks the certificate against.
    with pytest.raises(psycopg2.OperationalError, match=f'does not match host name "{ELSEWHERE}"'):
        connect(postgres, host=ELSEWHERE, hostaddr="127.0.0.1", sslmode="verify-full",
                sslrootcert=postgres.ca_certificate)


@pytest.mark.postgres  # the server `elsewhere` starts
def test_a_server_whose_certificate_names_another_host_is_refused(elsewhere):
    with pytest.raises(psycopg2.OperationalError, match=MISNAMED):
        connect(elsewhere, host="127.0.0.1", sslmode="verify-full", sslrootcert=elsewhere.ca_certificate)
    # The certificate itself is good: by the name it carries, the same server is accepted.
    connect(elsewhere, host=ELSEWHERE, hostaddr="127.0.0.1", sslmode="verify-full",
            sslrootcert=elsewhere.ca_certificate).close()


@pytest.mark.postgres  # the server `elsewhere` starts
def test_require_is_weaker_it_connects_to_the_misnamed_server(elsewhere):
    """Why verify-full is the default: "require" encrypts but accepts any server."""
    conn = connect(elsewhere, host="127.0.0.1", sslmode="require")
    try:
        assert tls_of(conn)[0]
    finally:
        conn.close()


def test_a_certificate_from_another_ca_is_refused(postgres, tmp_path):
    other = CertificateAuthority.create(tmp_path / "other-ca", "another CA")
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        connect(postgres, host="127.0.0.1", sslmode="verify-full", sslrootcert=str(other.certificate))


def test_the_rds_bundle_does_not_trust_the_test_server(postgres):
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        connect(postgres, host="127.0.0.1", sslmode="verify-full", sslrootcert=str(bundler.RDS_CA_BUNDLE))


# --- the Lambdas' settings ----------------------------------------------------------------------

SIDES_ENVIRONMENT = {f"{prefix}{name}": "x" for prefix in ("ONPREM_DB_", "AURORA_DB_")
                     for name in ("HOST", "NAME", "SECRET_ARN")}


def _api_settings(environ: dict[str, str]):
    from payment_api.writer import WriterDatabase

    return WriterDatabase.from_environment({"WRITER_PARAMETER": "/writer", **SIDES_ENVIRONMENT, **environ})


def _validation_settings(environ: dict[str, str]):
    from payment_validation.config import Settings

    return Settings.from_environment({**SIDES_ENVIRONMENT, **environ})


def _cutover_settings(environ: dict[str, str]):
    from payment_cutover.settings import Settings

    return Settings.from_environment({
        "WRITER_PARAMETER": "/writer", "REPLICATION_DRIVER": "dms", "TABLES": "payments",
        "FORWARD_SLOT_NAME": "forward", "FALLBACK_SLOT_NAME": "fallback",
        "DMS_FORWARD_TASK_ARN": "arn:forward", "DMS_FALLBACK_TASK_ARN": "arn:fallback",
        "DMS_FORWARD_CDC_TASK_ARN": "arn:forward-cdc",
        **SIDES_ENVIRONMENT, **environ})


def _tls_per_side(environ: dict[str, str]) -> dict[str, dict[str, tuple[str, str | None]]]:
    """Lambda -> side (onprem, aws) -> (sslmode, sslrootcert) for one environment."""
    validation = _validation_settings(environ)
    cutover = _cutover_settings(environ)
    api = {side: database.settings for side, database in _api_settings(environ)._databases.items()}
    return {
        "api": {side: (api[side].sslmode, api[side].sslrootcert) for side in ("onprem", "aws")},
        "validation": {"onprem": (validation.source.sslmode, validation.source.sslrootcert),
                       "aws": (validation.target.sslmode, validation.target.sslrootcert)},
        "cutover": {side: (cutover.sides[side].sslmode, cutover.sides[side].sslrootcert) for side in ("onprem", "aws")},
    }


def _bundled_ca_paths() -> dict[str, str]:
    """Where each Lambda looks for the RDS CA bundle: beside the shared runtime's package (at the
    zip's root, as each function's package), at the name the bundler uses."""
    import payment_common.database as module

    package_root = Path(module.__file__).resolve().parents[1]
    assert Path(module.RDS_CA_BUNDLE) == package_root / bundler.RDS_CA_BUNDLE_ARCNAME, \
        f"the functions look for the RDS CA bundle at {module.RDS_CA_BUNDLE}, not where the bundler puts it"
    return {name: module.RDS_CA_BUNDLE for name in ("api", "validation", "cutover")}


def test_lambdas_default_to_verify_full_with_the_rds_bundle_in_their_zip():
    bundled = _bundled_ca_paths()
    for name, sides in _tls_per_side({}).items():
        assert sides == {"onprem": ("verify-full", bundled[name]), "aws": ("verify-full", bundled[name])}, name


def test_lambdas_take_a_ca_file_per_side_over_the_shared_one():
    environ = {"DB_SSLROOTCERT": "/etc/shared.pem", "ONPREM_DB_SSLROOTCERT": "/etc/onprem-ca.pem"}
    for name, sides in _tls_per_side(environ).items():
        assert sides == {"onprem": ("verify-full", "/etc/onprem-ca.pem"), "aws": ("verify-full", "/etc/shared.pem")}, name


def test_a_weaker_mode_only_when_configured_and_never_plaintext():
    for name, sides in _tls_per_side({"DB_SSLMODE": "require"}).items():
        assert sides == {"onprem": ("require", None), "aws": ("require", None)}, \
            f"{name}: require must not silently verify against the RDS bundle (the on-prem server is not RDS)"
    from payment_common.errors import ConfigurationError

    for mode in ("disable", "allow", "prefer"):
        for parse in (_api_settings, _validation_settings, _cutover_settings):
            with pytest.raises(ConfigurationError, match="DB_SSLMODE must be one of"):
                parse({"DB_SSLMODE": mode})


# --- the Lambdas' connection code against real servers --------------------------------------------

@pytest.fixture
def secret_for(aws):
    client = boto3.client("secretsmanager")

    def create(server: PostgresServer) -> str:
        credentials = {"username": server.app_user, "password": server.app_password}
        return client.create_secret(Name=f"tls-{server.port}", SecretString=json.dumps(credentials))["ARN"]

    return create


def test_the_api_connects_verified_and_refuses_a_misnamed_server(postgres, elsewhere, secret_for):
    from payment_api.database import Database
    from payment_api.errors import DatabaseUnavailable

    def database(server: PostgresServer) -> Database:
        settings = _api_settings({"ONPREM_DB_SECRET_ARN": secret_for(server), "ONPREM_DB_HOST": "127.0.0.1",
                                  "ONPREM_DB_PORT": str(server.port), "ONPREM_DB_NAME": "postgres",
                                  "ONPREM_DB_SSLROOTCERT": server.ca_certificate})._databases["onprem"].settings
        return Database(settings, boto3.client("secretsmanager"))

    good = database(postgres)
    try:
        assert good.run(tls_of)[0]
    finally:
        good.close()
    with pytest.raises(DatabaseUnavailable) as refused:
        database(elsewhere).run(tls_of)
    assert re.search(MISNAMED, str(refused.value.__cause__)), refused.value.__cause__


def test_the_validator_connects_verified_and_refuses_a_misnamed_server(postgres, elsewhere, secret_for):
    from payment_common.errors import DatabaseUnavailable
    from payment_validation.databases import open_databases

    def settings(server: PostgresServer):
        secret = secret_for(server)
        both = {f"{prefix}{name}": value for prefix in ("ONPREM_DB_", "AURORA_DB_") for name, value in (
            ("HOST", "127.0.0.1"), ("PORT", str(server.port)), ("NAME", "postgres"), ("SECRET_ARN", secret))}
        return _validation_settings({**both, "DB_SSLROOTCERT": server.ca_certificate})

    with open_databases(settings(postgres), boto3.client("secretsmanager")) as (source, target):
        assert tls_of(source)[0] and tls_of(target)[0]
    with pytest.raises(DatabaseUnavailable, match=f"cannot connect to the onprem database 127.0.0.1:{elsewhere.port}"
                                                  f"/postgres as {elsewhere.app_user}: .*{MISNAMED}"):
        with open_databases(settings(elsewhere), boto3.client("secretsmanager")):
            pass


def test_the_cutover_steps_connect_verified_and_refuse_another_ca(postgres, tmp_path, secret_for):
    from payment_common.errors import DatabaseUnavailable
    from payment_cutover.connections import connect_as as cutover_connect

    def side(ca_file: str):
        return _cutover_settings({"ONPREM_DB_HOST": "127.0.0.1", "ONPREM_DB_PORT": str(postgres.port),
                                  "ONPREM_DB_NAME": "postgres", "ONPREM_DB_SSLROOTCERT": ca_file}).sides["onprem"]

    secrets, secret = boto3.client("secretsmanager"), secret_for(postgres)
    conn = cutover_connect(side(postgres.ca_certificate), secrets, secret)
    try:
        assert tls_of(conn)[0]
    finally:
        conn.close()
    other = CertificateAuthority.create(tmp_path / "other-ca", "another CA")
    with pytest.raises(DatabaseUnavailable, match=r"cannot connect to the onprem database .*certificate verify failed"):
        cutover_connect(side(str(other.certificate)), secrets, secret)


# --- the RDS CA bundle ----------------------------------------------------------------------------

def test_the_vendored_rds_bundle_matches_its_pin_and_covers_every_configured_region():
    assert bundler._file_sha256(bundler.RDS_CA_BUNDLE) == bundler.RDS_CA_BUNDLE_SHA256, \
        "lib/certs/rds-global-bundle.pem differs from its pin (lib/certs/README.md: how to refresh it)"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(bundler.RDS_CA_BUNDLE))
    now = datetime.now(timezone.utc)
    valid = {dict(item[0] for item in cert["subject"])["commonName"]
             for cert in context.get_ca_certs()
             if datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), timezone.utc) > now}
    regions = {tomllib.loads(path.read_text())["region"] for path in sorted((ROOT / "config").glob("*.toml"))}
    assert regions, "no config/*.toml names a region"
    for region in sorted(regions):
        for kind in ("RSA2048", "RSA4096", "ECC384"):
            name = f"Amazon RDS {region} Root CA {kind} G1"
            assert name in valid, f"the RDS CA bundle has no valid {name!r}: refresh it (lib/certs/README.md)"
