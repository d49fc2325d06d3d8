"""Config validation: each bad value stops `main.py` with one message naming the key, a non-zero
exit and no cdktf.out — checked end to end on the real entry point, plus the loader's typing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib.config import ConfigError, parse_config
from tests.support.configs import DEV_CONFIG as DEV
from tests.support.configs import edited

ROOT = Path(__file__).resolve().parents[1]


BAD_CONFIGS = {
    "unknown key": (edited(r"^waf_rate_limit = .*$", "waf_rate_limit = 2000\nwaf_rate_limt = 10"),
                    "security.waf_rate_limt", "unknown key"),
    "missing required key": (edited(r"^vpc_cidr = .*$", ""), "network.vpc_cidr", "missing required key"),
    "invalid CIDR": (edited(r'^vpc_cidr = .*$', 'vpc_cidr = "10.20.0.0/33"'), "network.vpc_cidr",
                     "not a valid IPv4 CIDR"),
    "CIDR with host bits": (edited(r'^vpc_cidr = .*$', 'vpc_cidr = "10.20.0.1/16"'), "network.vpc_cidr",
                            "not a valid IPv4 CIDR"),
    "subnet outside the VPC": (edited(r'"10.20.11.0/24"', '"10.99.11.0/24"'), "network.private_subnet_cidrs[1]",
                               "outside vpc_cidr"),
    "overlapping subnets": (edited(r'"10.20.12.0/24"', '"10.20.1.0/24"'), "network.private_subnet_cidrs[2]",
                            "overlaps public_subnet_cidrs[1]"),
    "on-prem CIDR overlapping the VPC": (edited(r'^cidrs = .*$', 'cidrs = ["10.20.128.0/20"]'), "onprem.cidrs[0]",
                                         "overlaps network.vpc_cidr"),
    "AWS weight above 100": (edited(r"^# aws_weight = 25.*$", "aws_weight = 101"), "routing.aws_weight",
                             "outside 0–100"),
    "AWS weight below 0": (edited(r"^# aws_weight = 25.*$", "aws_weight = -1"), "routing.aws_weight",
                           "outside 0–100"),
    "unknown cutover phase": (edited(r'^phase = .*$', 'phase = "big-bang"'), "routing.phase",
                              "not a cutover phase"),
    "min ACU above max ACU": (edited(r"^min_acu = .*$", "min_acu = 8"), "database.min_acu",
                              "greater than max_acu"),
    "malformed region": (edited(r'^region = "eu-west-1"(\s+#.*)$', 'region = "europe-west"'), "region",
                         "not an AWS region name"),
    "environment name not DNS-safe": (edited(r'^name = "dev"', 'name = "Dev_1"'), "name", "not DNS-safe"),
    "backup retention below 1": (edited(r"^backup_retention_days = .*$", "backup_retention_days = 0"),
                                 "database.backup_retention_days", "outside 1–35"),
    "availability zone of another region": (edited(r'"euw1-az3"', '"use1-az3"'),
                                             "network.availability_zone_ids[2]", "not a zone of eu-west-1"),
    "two availability zones": (edited(r'"euw1-az1", "euw1-az2", "euw1-az3"', '"euw1-az1", "euw1-az2"'),
                               "network.availability_zone_ids", "exactly 3"),
    "PostgreSQL newer than DMS supports": (edited(r'^engine_version = "16" .*$', 'engine_version = "17.4"'),
                                           "database.engine_version", "newer than DMS"),
    "on-prem PostgreSQL the cutover cannot run on": (
        edited(r'^db_engine_version = "15"', 'db_engine_version = "14"'), "onprem.db_engine_version",
        "session_replication_role"),
    "wrong type": (edited(r"^min_acu = .*$", 'min_acu = "half"'), "database.min_acu", "expected a number"),
    "both on-prem gateways": (edited(r'^vpn_gateway_id = .*$',
                                     'vpn_gateway_id = "vgw-0a1b2c3d4e5f60718"\ntransit_gateway_id = "tgw-0a1b2c3d4e5f60718"'),
                              "onprem.vpn_gateway_id", "exactly one"),
    "engine version that is not a version": (edited(r'^engine_version = "16" .*$', 'engine_version = "16.x"'),
                                              "database.engine_version", "not an Aurora PostgreSQL version"),
    "Performance Insights retention AWS refuses": (
        edited(r"^performance_insights_retention_days = .*$", "performance_insights_retention_days = 744"),
        "database.performance_insights_retention_days", "731"),
    "on-prem address Route 53 cannot health-check": (
        edited(r'^app_hostname = .*$', 'app_ip_addresses = ["10.1.2.3"]'), "onprem.app_ip_addresses[0]",
        "not a public address"),
    "documentation address for the on-prem application": (
        edited(r'^app_hostname = .*$', 'app_ip_addresses = ["192.0.2.10"]'), "onprem.app_ip_addresses[0]",
        "not a public address"),
    "backup window that is not a window": (
        edited(r'^preferred_backup_window = .*$', 'preferred_backup_window = "02:00"'),
        "database.preferred_backup_window", "not a window"),
    "backup window of 25 hours o'clock": (
        edited(r'^preferred_backup_window = .*$', 'preferred_backup_window = "25:00-26:00"'),
        "database.preferred_backup_window", "not a time"),
    "backup window under 30 minutes": (
        edited(r'^preferred_backup_window = .*$', 'preferred_backup_window = "02:00-02:20"'),
        "database.preferred_backup_window", "shorter than 30 minutes"),
    "backup window overlapping maintenance": (
        edited(r'^preferred_backup_window = .*$', 'preferred_backup_window = "03:00-04:00"'),
        "database.preferred_backup_window", "overlaps preferred_maintenance_window"),
    "maintenance window with an unknown day": (
        edited(r'^preferred_maintenance_window = "sun:03.*$', 'preferred_maintenance_window = "sun:03:30-sonntag:04:30"'),
        "database.preferred_maintenance_window", "not a day"),
    "DMS maintenance window malformed": (
        edited(r'^preferred_maintenance_window = "sun:04.*$', 'preferred_maintenance_window = "sun 04:30"'),
        "migration.preferred_maintenance_window", "not a window"),
    "backup plan schedule that is not cron": (
        edited(r'^backup_plan_schedule = .*$', 'backup_plan_schedule = "daily"'),
        "database.backup_plan_schedule", "not an AWS cron"),
    "rollback concurrency of zero": (
        edited(r'^rollback_reserved_concurrency = .*$', 'rollback_reserved_concurrency = 0'),
        "validation.rollback_reserved_concurrency", "outside 1–10"),
    "full validation interval that is not a duration": (
        edited(r'^full_every = .*$', 'full_every = "daily"'), "validation.full_every", "not a duration"),
    "full validation interval beyond a month": (
        edited(r'^full_every = .*$', 'full_every = "45d"'), "validation.full_every", "longer than 30 days"),
    "no key administrator": (
        edited(r"^key_administrator_arns = .*$", "key_administrator_arns = []"),
        "security.key_administrator_arns", "at least one IAM role ARN"),
    "key administrator that is not a role": (
        edited(r"^key_administrator_arns = .*$", 'key_administrator_arns = ["arn:aws:iam::123456789012:user/alice"]'),
        "security.key_administrator_arns[0]", "not an IAM role ARN"),
    "secret age beyond what one check can wait": (
        edited(r"^secret_max_age_days = .*$", "secret_max_age_days = 400"),
        "security.secret_max_age_days", "outside 1–360"),
    "vault lock longer than the plan keeps recovery points": (
        edited(r"^# backup_vault_lock_days = .*$", "backup_vault_lock_days = 60"),
        "database.backup_vault_lock_days", "longer than backup_plan_retention_days"),
    "prevent_destroy with an unprotected database": (
        edited(r"^prevent_destroy = false.*$", "prevent_destroy = true",
               edited(r"^secret_recovery_window_days = .*$", "secret_recovery_window_days = 30")),
        "database.deletion_protection", "must stay true while security.prevent_destroy is true"),
    "secret recovery window Secrets Manager refuses": (
        edited(r"^secret_recovery_window_days = .*$", "secret_recovery_window_days = 3"),
        "security.secret_recovery_window_days", "neither 0 nor 7–30"),
    "secrets deleted at once where nothing may be destroyed": (
        edited(r"^prevent_destroy = false.*$", "prevent_destroy = true"),
        "security.secret_recovery_window_days", "needs prevent_destroy = false"),
    "on-prem CA file that does not exist": (
        edited(r'^db_ca_certificate = .*$', 'db_ca_certificate = "certs/absent.pem"'), "onprem.db_ca_certificate",
        "no file"),
    "on-prem CA file that is not a certificate": (
        edited(r'^db_ca_certificate = .*$', 'db_ca_certificate = "dev.toml"'), "onprem.db_ca_certificate",
        "holds no PEM certificate"),
    "unknown on-prem application mode": (
        edited(r'^onprem_application = .*$', 'onprem_application = "follows-the-writer"'),
        "cutover.onprem_application", "not one of legacy, follows-writer"),
    "on-prem application role that is the controller": (
        edited(r'^onprem_application_role = .*$', 'onprem_application_role = "payment_controller"'),
        "cutover.onprem_application_role", "not an application role"),
    "alarm period CloudWatch does not have": (
        edited(r'^api_metric_period_seconds = .*$', 'api_metric_period_seconds = 20'),
        "monitoring.api_metric_period_seconds", "not a CloudWatch alarm period"),
    "emulator that is not on this machine": (
        DEV + '\n[emulator]\nendpoint = "http://10.0.0.5:4566"\n',
        "emulator.endpoint", "not an emulator on this machine"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=list(BAD_CONFIGS))
def test_bad_config_stops_synth_naming_the_key(case: str, tmp_path: Path) -> None:
    text, key, problem = BAD_CONFIGS[case]
    config_file = tmp_path / "bad.toml"
    config_file.write_text(text)
    run = subprocess.run([sys.executable, str(ROOT / "main.py")], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PAYMENT_MIGRATION_CONFIG": str(config_file)}, timeout=120)
    assert run.returncode == 2, f"{case}: exit {run.returncode}, stderr: {run.stderr}"
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, f"{case}: expected one message, got: {run.stderr}"
    assert f": {key}: " in lines[0] and problem in lines[0], f"{case}: message does not name {key}: {lines[0]}"
    assert not (tmp_path / "cdktf.out").exists(), f"{case}: cdktf.out was written"


def test_dev_config_loads_with_documented_values() -> None:
    config = parse_config(DEV)
    assert config.name == "dev"
    assert config.routing.weights == (0, 100)
    assert config.database.deletion_protection is False
    assert config.network.nat_gateway_mode == "single"
    assert config.default_tags["Environment"] == "dev"
    assert (config.validation.full_every, config.validation.full_every_seconds) == ("1d", 86400)


def test_the_on_prem_application_is_legacy_unless_config_says_it_follows_the_writer() -> None:
    assert parse_config(edited(r'^onprem_application = .*$', '')).cutover.onprem_application == "legacy"
    follows = parse_config(edited(r'^onprem_application = .*$', 'onprem_application = "follows-writer"'))
    assert not follows.cutover.legacy
    cutover = parse_config(DEV).cutover
    assert cutover.fenced_roles == ("payment_app", "payment_onprem_app"), \
        f"the on-prem application's role is not fenced with the application roles: {cutover.fenced_roles}"


@pytest.mark.parametrize("phase,aws", [("legacy-sync", 0), ("canary", 10), ("split", 50), ("aws-primary", 100)])
def test_phase_sets_aws_weight(phase: str, aws: int) -> None:
    config = parse_config(edited(r'^phase = .*$', f'phase = "{phase}"'))
    assert config.routing.weights == (aws, 100 - aws)


@pytest.mark.parametrize("days", [7, 31, 93, 713, 731])
def test_every_performance_insights_retention_aws_accepts_is_accepted(days: int) -> None:
    config = parse_config(edited(r"^performance_insights_retention_days = .*$",
                                 f"performance_insights_retention_days = {days}"))
    assert config.database.performance_insights_retention_days == days


def test_a_backup_window_wrapping_midnight_beside_the_maintenance_window_is_accepted() -> None:
    config = parse_config(edited(r'^preferred_backup_window = .*$', 'preferred_backup_window = "23:30-00:30"'))
    assert config.database.preferred_backup_window == "23:30-00:30"


def test_a_backup_window_touching_a_maintenance_window_that_wraps_the_week_is_refused() -> None:
    text = edited(r'^preferred_maintenance_window = "sun:03.*$', 'preferred_maintenance_window = "sun:23:30-mon:00:30"')
    with pytest.raises(ConfigError) as raised:
        parse_config(edited(r'^preferred_backup_window = .*$', 'preferred_backup_window = "00:00-01:00"', text))
    assert raised.value.key == "database.preferred_backup_window"


def test_major_only_engine_version_is_accepted_and_pins_no_minor() -> None:
    config = parse_config(DEV)
    assert config.database.engine_version == "16" and not config.database.pins_minor_version
    pinned = parse_config(edited(r'^engine_version = "16" .*$', 'engine_version = "16.6"'))
    assert pinned.database.pins_minor_version and pinned.database.engine_major == 16


def test_explicit_weight_overrides_phase() -> None:
    config = parse_config(edited(r"^# aws_weight = 25.*$", "aws_weight = 25"))
    assert config.routing.weights == (25, 75)


def test_prevent_destroy_defaults_on() -> None:
    text = edited(r"^prevent_destroy = false.*$", "")
    text = edited(r"^deletion_protection = false    # dev only: every.*$", "", text)
    text = edited(r"^deletion_protection = false    # dev only: keep.*$", "", text)
    text = edited(r"^secret_recovery_window_days = .*$", "", text)
    config = parse_config(text)
    assert config.security.prevent_destroy is True
    assert config.security.secret_recovery_window_days == 30
    assert config.database.deletion_protection and config.load_balancer.deletion_protection


def test_prod_example_protects_everything_and_names_key_administrators() -> None:
    from lib.config import load_config

    config = load_config("prod")
    assert config.security.prevent_destroy and config.database.deletion_protection
    assert config.load_balancer.deletion_protection and config.migration.multi_az
    assert config.network.nat_gateway_mode == "per_az" and config.monitoring.alarm_emails
    assert len(config.security.key_administrator_arns) >= 1 and config.database.backup_vault_lock_days
    assert config.onprem.app_hostname and not config.onprem.app_ip_addresses


def test_deletion_protection_defaults_on() -> None:
    config = parse_config(edited(r"^deletion_protection = false.*$", ""))
    assert config.database.deletion_protection is True


def test_config_is_frozen() -> None:
    config = parse_config(DEV)
    with pytest.raises(AttributeError):
        config.name = "prod"  # type: ignore[misc]


def test_error_carries_key_and_problem() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(edited(r"^max_acu = .*$", "max_acu = 0.25"))
    assert raised.value.key == "database.max_acu"


def test_an_on_prem_ca_file_holding_a_private_key_is_refused(tmp_path: Path) -> None:
    """The CA file ships in the Lambda zips: a key pasted beside the certificate would ship too."""
    certificate = (ROOT / "config" / "certs" / "example-onprem-ca.pem").read_text()
    with_key = tmp_path / "ca-and-key.pem"
    with_key.write_text(certificate + "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as raised:
        parse_config(edited(r'^db_ca_certificate = .*$', f'db_ca_certificate = "{with_key}"'))
    assert raised.value.key == "onprem.db_ca_certificate" and "private key" in raised.value.problem


def test_a_copied_config_whose_name_is_not_its_file_name_is_refused_naming_both(tmp_path: Path, monkeypatch) -> None:
    """config/staging.toml copied from dev.toml, `name` unchanged, would synthesize the *-dev stacks
    over dev's and read dev's DMS settings record."""
    import shutil

    from lib import config as config_module
    from lib.config import CONFIG_DIR, load_config

    shutil.copytree(CONFIG_DIR / "certs", tmp_path / "certs")
    (tmp_path / "staging.toml").write_text((CONFIG_DIR / "dev.toml").read_text())
    monkeypatch.setattr(config_module, "CONFIG_DIR", tmp_path)
    monkeypatch.delenv("PAYMENT_MIGRATION_CONFIG", raising=False)

    with pytest.raises(ConfigError) as refused:
        load_config("staging")

    assert refused.value.key == "name"
    assert "'dev' differs from the file name staging.toml" in str(refused.value)
    assert 'set name = "staging"' in str(refused.value)

    (tmp_path / "staging.toml").write_text((CONFIG_DIR / "dev.toml").read_text().replace(
        'name = "dev"', 'name = "staging"', 1))
    assert load_config("staging").name == "staging"


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_every_shipped_config_is_named_after_its_file(env: str, monkeypatch) -> None:
    from lib.config import load_config

    monkeypatch.delenv("PAYMENT_MIGRATION_CONFIG", raising=False)
    assert load_config(env).name == env
