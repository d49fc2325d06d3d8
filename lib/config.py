"""Typed, validated configuration: the only place that reads `config/<env>.toml`.

`load_config(env)` parses the file into frozen dataclasses and checks every value before any
construct exists. A bad value raises `ConfigError` naming the key (`network.vpc_cidr`); `main.py`
prints that one message and exits non-zero without writing `cdktf.out`.

The environment is chosen by `PAYMENT_MIGRATION_ENV` (default `dev`): config/<env>.toml, whose
`name` must be <env>. `PAYMENT_MIGRATION_CONFIG` points at a file directly (tests use it); its
`name` is the environment's.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import tomllib
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
ENV_VARIABLE = "PAYMENT_MIGRATION_ENV"
FILE_VARIABLE = "PAYMENT_MIGRATION_CONFIG"

_DNS_LABEL = re.compile(r"^[a-z](?:[a-z0-9-]{0,18}[a-z0-9])?$")
_REGION = re.compile(r"^[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:.+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_IAM_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PHASE_WEIGHTS = {"legacy-sync": 0, "canary": 10, "split": 50, "aws-primary": 100}
# Aurora PostgreSQL majors AWS supports today (standard support); older majors are refused.
SUPPORTED_AURORA_MAJORS = (13, 14, 15, 16, 17)
# The oldest on-prem PostgreSQL the cutover can run on (onprem.db_engine_version says why).
MIN_ONPREM_POSTGRES_MAJOR = 15
SUPPORTED_LAMBDA_RUNTIMES = ("python3.12", "python3.13")
# The retention values CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                      2192, 2557, 2922, 3288, 3653)


# Performance Insights keeps 7 days, 1–23 months (as multiples of 31 days) or 731 days.
PERFORMANCE_INSIGHTS_RETENTION_DAYS = (7, *(31 * months for months in range(1, 24)), 731)
_MINUTES_PER_DAY = 24 * 60
_MINUTES_PER_WEEK = 7 * _MINUTES_PER_DAY
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MIN_WINDOW_MINUTES = 30  # RDS and DMS windows last at least 30 minutes


class ConfigError(Exception):
    """A configuration value is wrong; the message names the key and what is expected."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


# ---------------------------------------------------------------------------------------------
# Checks shared by the sections. Each raises ConfigError for its key (relative to its section).

def _network(key: str, value: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise ConfigError(key, f"{value!r} is not a valid IPv4 CIDR ({error})") from None


def _require(condition: bool, key: str, problem: str) -> None:
    if not condition:
        raise ConfigError(key, problem)


def _in_range(key: str, value: int | float, low: int | float, high: int | float) -> None:
    _require(low <= value <= high, key, f"{value} is outside {low}–{high}")


def _arn(key: str, value: str | None, service: str) -> None:
    if value is not None:
        _require(bool(_ARN.match(value)) and value.split(":")[2] == service, key,
                 f"{value!r} is not a {service} ARN")


def _clock(key: str, text: str) -> int:
    """hh24:mi → minutes after midnight."""
    match = re.fullmatch(r"(\d{2}):(\d{2})", text)
    _require(bool(match) and int(match[1]) < 24 and int(match[2]) < 60, key, f"{text!r} is not a time hh24:mi (UTC)")
    return int(match[1]) * 60 + int(match[2])


def _daily_window(key: str, text: str) -> tuple[int, int]:
    """hh24:mi-hh24:mi (UTC) → (start, end) in minutes; the end may wrap past midnight."""
    parts = text.split("-")
    _require(len(parts) == 2, key, f"{text!r} is not a window hh24:mi-hh24:mi (UTC)")
    start, end = (_clock(key, part) for part in parts)
    if end <= start:
        end += _MINUTES_PER_DAY
    _require(end - start >= MIN_WINDOW_MINUTES, key, f"{text} is shorter than {MIN_WINDOW_MINUTES} minutes")
    return start, end


def _weekly_window(key: str, text: str) -> tuple[int, int]:
    """ddd:hh24:mi-ddd:hh24:mi (UTC) → (start, end) in minutes after Monday 00:00; may wrap."""
    bounds = []
    for part in text.split("-") if text.count("-") == 1 else []:
        day, _, clock = part.partition(":")
        _require(day in _WEEKDAYS, key, f"{text!r}: {day!r} is not a day ({', '.join(_WEEKDAYS)})")
        bounds.append(_WEEKDAYS.index(day) * _MINUTES_PER_DAY + _clock(key, clock))
    _require(len(bounds) == 2, key, f"{text!r} is not a window ddd:hh24:mi-ddd:hh24:mi (UTC)")
    start, end = bounds
    if end <= start:
        end += _MINUTES_PER_WEEK
    _require(end - start >= MIN_WINDOW_MINUTES, key, f"{text} is shorter than {MIN_WINDOW_MINUTES} minutes")
    _require(end - start <= _MINUTES_PER_DAY, key, f"{text} is longer than 24 hours")
    return start, end


def _windows_overlap(first: tuple[int, int], weekly: tuple[int, int]) -> bool:
    """Whether two windows on the weekly clock share a minute (either may wrap past the week)."""
    for shift in (-_MINUTES_PER_WEEK, 0, _MINUTES_PER_WEEK):
        if first[0] < weekly[1] + shift and weekly[0] + shift < first[1]:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class StateConfig:
    """Where Terraform state lives: one S3 object per stack, `<env>/<stack>.tfstate`."""

    bucket: str
    region: str
    kms_key_arn: str | None = None  # encrypt state with this CMK instead of the bucket default

    def __post_init__(self) -> None:
        _require(bool(_BUCKET.match(self.bucket)), "bucket", f"{self.bucket!r} is not a valid S3 bucket name")
        _require(bool(_REGION.match(self.region)), "region", f"{self.region!r} is not an AWS region name")
        _arn("kms_key_arn", self.kms_key_arn, "kms")


@dataclass(frozen=True)
class NetworkConfig:
    vpc_cidr: str
    availability_zone_ids: tuple[str, ...]  # AZ ids (e.g. euw1-az1) are the same in every account
    public_subnet_cidrs: tuple[str, ...]
    private_subnet_cidrs: tuple[str, ...]
    nat_gateway_mode: Literal["single", "per_az"] = "per_az"

    def __post_init__(self) -> None:
        _require(len(self.availability_zone_ids) == 3, "availability_zone_ids",
                 f"needs exactly 3 availability zone ids, got {len(self.availability_zone_ids)}")
        _require(len(set(self.availability_zone_ids)) == 3, "availability_zone_ids", "zone ids repeat")
        for index, zone_id in enumerate(self.availability_zone_ids):
            _require(bool(re.match(r"^[a-z]{2,5}\d-az\d{1,2}$", zone_id)), f"availability_zone_ids[{index}]",
                     f"{zone_id!r} is not an availability zone id like euw1-az1")
        vpc = _network("vpc_cidr", self.vpc_cidr)
        _require(16 <= vpc.prefixlen <= 24, "vpc_cidr", f"prefix /{vpc.prefixlen} is outside /16–/24")
        seen: list[tuple[str, ipaddress.IPv4Network]] = []
        for name in ("public_subnet_cidrs", "private_subnet_cidrs"):
            cidrs = getattr(self, name)
            _require(len(cidrs) == 3, name, f"needs exactly 3 CIDRs (one per availability zone), got {len(cidrs)}")
            for index, cidr in enumerate(cidrs):
                key = f"{name}[{index}]"
                subnet = _network(key, cidr)
                _require(subnet.subnet_of(vpc), key, f"{cidr} is outside vpc_cidr {self.vpc_cidr}")
                for other_key, other in seen:
                    _require(not subnet.overlaps(other), key, f"{cidr} overlaps {other_key} {other}")
                seen.append((key, subnet))


@dataclass(frozen=True)
class OnPremConfig:
    """The on-premises side: its networks, the path to them, its database and application."""

    cidrs: tuple[str, ...]
    db_host: str
    db_name: str
    db_engine_version: str  # PostgreSQL major of the source, e.g. "15"
    # The CA that signed the on-prem server's certificate (PEM, a path relative to config/): the
    # Lambdas (verify-full) and DMS verify the on-prem database against it, never a bare "require".
    db_ca_certificate: str
    vpn_gateway_id: str | None = None
    transit_gateway_id: str | None = None
    db_port: int = 5432
    app_ip_addresses: tuple[str, ...] = ()  # the on-prem application's public IPv4 addresses
    app_hostname: str | None = None  # or its DNS name, when it has no fixed address
    app_health_check_path: str = "/health"
    app_port: int = 443

    @property
    def db_ca_certificate_path(self) -> Path:
        return (CONFIG_DIR / self.db_ca_certificate).resolve()

    @property
    def db_ca_pem(self) -> str:
        return self.db_ca_certificate_path.read_text()

    def __post_init__(self) -> None:
        _require(len(self.cidrs) >= 1, "cidrs", "needs at least one on-prem CIDR")
        path = self.db_ca_certificate_path
        _require(path.is_file(), "db_ca_certificate", f"no file {path} (a PEM CA certificate, relative to config/)")
        pem = path.read_text(errors="replace")
        _require("-----BEGIN CERTIFICATE-----" in pem, "db_ca_certificate", f"{path.name} holds no PEM certificate")
        _require("PRIVATE KEY" not in pem, "db_ca_certificate",
                 f"{path.name} holds a private key: only the CA's certificate belongs here")
        for index, cidr in enumerate(self.cidrs):
            _network(f"cidrs[{index}]", cidr)
        gateways = [g for g in (self.vpn_gateway_id, self.transit_gateway_id) if g]
        _require(len(gateways) == 1, "vpn_gateway_id",
                 "set exactly one of vpn_gateway_id and transit_gateway_id (the path to on-prem)")
        if self.vpn_gateway_id:
            _require(bool(re.match(r"^vgw-[0-9a-f]{8,17}$", self.vpn_gateway_id)), "vpn_gateway_id",
                     f"{self.vpn_gateway_id!r} is not a VPN gateway id (vgw-…)")
        if self.transit_gateway_id:
            _require(bool(re.match(r"^tgw-[0-9a-f]{8,17}$", self.transit_gateway_id)), "transit_gateway_id",
                     f"{self.transit_gateway_id!r} is not a transit gateway id (tgw-…)")
        _require(_is_host(self.db_host), "db_host", f"{self.db_host!r} is neither an IPv4 address nor a hostname")
        _in_range("db_port", self.db_port, 1, 65535)
        _in_range("app_port", self.app_port, 1, 65535)
        _require(bool(re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", self.db_name)), "db_name",
                 f"{self.db_name!r} is not a PostgreSQL database name")
        _require(self.db_engine_version.isdigit() and 10 <= int(self.db_engine_version) <= 17,
                 "db_engine_version", f"{self.db_engine_version!r} is not a PostgreSQL major version DMS reads (10–17)")
        # Below 15 a cutover could not finish once it began: the fence ends sessions with
        # pg_terminate_backend(pid, timeout) (14+), and the fallback task's target user needs GRANT SET
        # ON PARAMETER session_replication_role (15+), the fallback starting after the forward slot is gone.
        _require(int(self.db_engine_version) >= MIN_ONPREM_POSTGRES_MAJOR, "db_engine_version",
                 f"PostgreSQL {self.db_engine_version} is too old for the cutover: {MIN_ONPREM_POSTGRES_MAJOR} or later "
                 "is needed (the fence's pg_terminate_backend with a timeout needs 14; GRANT SET ON PARAMETER "
                 "session_replication_role, which the fallback task's target user applies with, needs 15)")
        _require(bool(self.app_ip_addresses) != bool(self.app_hostname), "app_ip_addresses",
                 "set exactly one of app_ip_addresses and app_hostname (the on-prem member of the weighted record)")
        for index, address in enumerate(self.app_ip_addresses):
            try:
                parsed = ipaddress.IPv4Address(address)
            except ValueError:
                raise ConfigError(f"app_ip_addresses[{index}]", f"{address!r} is not an IPv4 address") from None
            # Route 53 health checks refuse private, reserved, loopback and documentation ranges.
            _require(parsed.is_global, f"app_ip_addresses[{index}]",
                     f"{address} is not a public address: Route 53 cannot health-check it "
                     "(use app_hostname for an application without a fixed public address)")
        if self.app_hostname:
            _require(bool(_HOSTNAME.match(self.app_hostname)), "app_hostname", f"{self.app_hostname!r} is not a hostname")
        _require(self.app_health_check_path.startswith("/"), "app_health_check_path", "must start with /")


@dataclass(frozen=True)
class SecurityConfig:
    # The IAM roles that administer every KMS key of the environment (never use them: key policies
    # keep administration and use apart). Include the role that runs `cdktf deploy`, or the next
    # plan cannot read the keys. AWS refuses a key policy naming a role that does not exist.
    key_administrator_arns: tuple[str, ...]
    waf_rate_limit: int = 2000  # requests per client IP in any 5-minute window
    kms_deletion_window_days: int = 30
    # Terraform refuses to plan the destruction of what outlives an environment's routine
    # teardown: the KMS keys (and the data behind them), the hosted zone and its key-signing key,
    # the account's DMS roles. Turn off only where everything may go (dev, local).
    prevent_destroy: bool = True
    # A database secret (one per role and side) whose value has not changed for this many days
    # raises an alarm: the operator rotates it by the README's procedure.
    secret_max_age_days: int = 90
    # Days a deleted database secret can still be restored. Its name stays taken meanwhile, so
    # destroying and deploying the security stack again within them fails; 0 deletes at once
    # (only where prevent_destroy is off: dev, local).
    secret_recovery_window_days: int = 30

    def __post_init__(self) -> None:
        _in_range("waf_rate_limit", self.waf_rate_limit, 10, 2_000_000_000)
        _require(self.secret_recovery_window_days == 0 or 7 <= self.secret_recovery_window_days <= 30,
                 "secret_recovery_window_days", f"{self.secret_recovery_window_days} is neither 0 nor 7–30 "
                 "(what Secrets Manager accepts)")
        _require(self.secret_recovery_window_days > 0 or not self.prevent_destroy, "secret_recovery_window_days",
                 "0 (deleted at once, unrecoverable) needs prevent_destroy = false")
        _in_range("kms_deletion_window_days", self.kms_deletion_window_days, 7, 30)
        _require(len(self.key_administrator_arns) >= 1, "key_administrator_arns",
                 "needs at least one IAM role ARN: the keys' administrators (include the deploying role)")
        for index, arn in enumerate(self.key_administrator_arns):
            _require(bool(_IAM_ROLE_ARN.match(arn)), f"key_administrator_arns[{index}]",
                     f"{arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        _require(len(set(self.key_administrator_arns)) == len(self.key_administrator_arns),
                 "key_administrator_arns", "ARNs repeat")
        # A check waits this long inside one Step Functions execution, which lasts at most a year.
        _in_range("secret_max_age_days", self.secret_max_age_days, 1, 360)


@dataclass(frozen=True)
class DatabaseConfig:
    # Aurora PostgreSQL version: a major ("16", recommended: RDS applies minor upgrades itself and
    # Terraform accepts any 16.x) or a major.minor ("16.6") that Terraform then never downgrades.
    engine_version: str
    min_acu: float
    max_acu: float
    database_name: str = "payments"
    master_username: str = "payments_admin"
    backup_retention_days: int = 7
    backup_plan_retention_days: int = 35  # AWS Backup daily snapshots
    backup_plan_schedule: str = "cron(0 3 * * ? *)"  # AWS Backup: when the daily snapshot starts (UTC)
    preferred_backup_window: str = "02:00-03:00"
    preferred_maintenance_window: str = "sun:03:30-sun:04:30"
    deletion_protection: bool = True
    performance_insights_retention_days: int = 7
    # AWS Backup vault lock (governance mode): no recovery point can be deleted, nor its
    # retention shortened, before this many days. Unset: no lock.
    backup_vault_lock_days: int | None = None

    @property
    def engine_major(self) -> int:
        return int(self.engine_version.split(".")[0])

    @property
    def pins_minor_version(self) -> bool:
        return "." in self.engine_version

    def __post_init__(self) -> None:
        _require(bool(re.match(r"^\d{2}(\.\d{1,2})?$", self.engine_version)), "engine_version",
                 f"{self.engine_version!r} is not an Aurora PostgreSQL version like 16 or 16.6")
        _require(self.engine_major in SUPPORTED_AURORA_MAJORS, "engine_version",
                 f"major {self.engine_major} is not a supported Aurora PostgreSQL major {SUPPORTED_AURORA_MAJORS}")
        _in_range("min_acu", self.min_acu, 0, 256)
        _in_range("max_acu", self.max_acu, 1, 256)
        _require(self.min_acu <= self.max_acu, "min_acu", f"{self.min_acu} is greater than max_acu {self.max_acu}")
        _require((self.min_acu * 2).is_integer() and (self.max_acu * 2).is_integer(), "min_acu",
                 "ACUs go in steps of 0.5")
        _in_range("backup_retention_days", self.backup_retention_days, 1, 35)
        _in_range("backup_plan_retention_days", self.backup_plan_retention_days, 1, 36500)
        _require(bool(re.match(r"^cron\(\S+ \S+ \S+ \S+ \S+ \S+\)$", self.backup_plan_schedule)),
                 "backup_plan_schedule", f"{self.backup_plan_schedule!r} is not an AWS cron(…) expression with six fields")
        _require(bool(re.match(r"^[a-z][a-z0-9_]{0,62}$", self.database_name)), "database_name",
                 f"{self.database_name!r} is not a PostgreSQL database name")
        _require(bool(re.match(r"^[a-z][a-z0-9_]{0,15}$", self.master_username)), "master_username",
                 f"{self.master_username!r} is not a valid master user name")
        _require(self.master_username not in ("postgres", "admin", "rdsadmin"), "master_username",
                 f"{self.master_username!r} is reserved by RDS")
        backup = _daily_window("preferred_backup_window", self.preferred_backup_window)
        maintenance = _weekly_window("preferred_maintenance_window", self.preferred_maintenance_window)
        # RDS refuses a backup window that overlaps the maintenance window on any day.
        for day in range(7):
            start, end = backup[0] + day * _MINUTES_PER_DAY, backup[1] + day * _MINUTES_PER_DAY
            _require(not _windows_overlap((start, end), maintenance), "preferred_backup_window",
                     f"{self.preferred_backup_window} overlaps preferred_maintenance_window "
                     f"{self.preferred_maintenance_window}")
        if self.backup_vault_lock_days is not None:
            _in_range("backup_vault_lock_days", self.backup_vault_lock_days, 1, 36500)
            # A plan that deletes recovery points before the lock allows fails every backup job.
            _require(self.backup_vault_lock_days <= self.backup_plan_retention_days, "backup_vault_lock_days",
                     f"{self.backup_vault_lock_days} is longer than backup_plan_retention_days "
                     f"{self.backup_plan_retention_days}: the plan could not delete its own recovery points")
        _require(self.performance_insights_retention_days in PERFORMANCE_INSIGHTS_RETENTION_DAYS,
                 "performance_insights_retention_days",
                 "must be 7 (free tier), a number of months times 31 (31–713), or 731 (two years)")


@dataclass(frozen=True)
class LogsConfig:
    retention_days: int = 365

    def __post_init__(self) -> None:
        _require(self.retention_days in LOG_RETENTION_DAYS, "retention_days",
                 f"{self.retention_days} is not a CloudWatch Logs retention ({', '.join(map(str, LOG_RETENTION_DAYS))})")


@dataclass(frozen=True)
class DnsConfig:
    """The public hosted zone and the service name users resolve."""

    zone_name: str
    record_name: str
    zone_id: str | None = None  # an existing zone; when unset the zone is created (create_zone = true)
    create_zone: bool = False

    def __post_init__(self) -> None:
        _require(bool(_HOSTNAME.match(self.zone_name)), "zone_name", f"{self.zone_name!r} is not a DNS name")
        _require(bool(_HOSTNAME.match(self.record_name)), "record_name", f"{self.record_name!r} is not a DNS name")
        _require(self.record_name == self.zone_name or self.record_name.endswith("." + self.zone_name),
                 "record_name", f"{self.record_name} is not inside zone {self.zone_name}")
        _require((self.zone_id is not None) != self.create_zone, "zone_id",
                 "set zone_id (an existing zone) or create_zone = true, not both or neither")
        if self.zone_id is not None:
            _require(bool(re.match(r"^Z[A-Z0-9]{4,31}$", self.zone_id)), "zone_id",
                     f"{self.zone_id!r} is not a Route 53 hosted zone id")


@dataclass(frozen=True)
class RoutingConfig:
    """Cutover: the phase sets the AWS share of traffic; `aws_weight` overrides it explicitly."""

    phase: str = "legacy-sync"
    aws_weight: int | None = None
    onprem_set_identifier: str = "onprem"
    aws_set_identifier: str = "aws"
    ttl_seconds: int = 60

    @property
    def weights(self) -> tuple[int, int]:
        """(AWS weight, on-prem weight) out of 100."""
        aws = self.aws_weight if self.aws_weight is not None else PHASE_WEIGHTS[self.phase]
        return aws, 100 - aws

    def __post_init__(self) -> None:
        _require(self.phase in PHASE_WEIGHTS, "phase",
                 f"{self.phase!r} is not a cutover phase ({', '.join(PHASE_WEIGHTS)})")
        if self.aws_weight is not None:
            _in_range("aws_weight", self.aws_weight, 0, 100)
        _require(self.onprem_set_identifier != self.aws_set_identifier, "aws_set_identifier",
                 "must differ from onprem_set_identifier")
        for key in ("onprem_set_identifier", "aws_set_identifier"):
            value = getattr(self, key)
            _require(bool(re.match(r"^[A-Za-z0-9_-]{1,128}$", value)), key, f"{value!r} is not a set identifier")
        _in_range("ttl_seconds", self.ttl_seconds, 0, 60)


@dataclass(frozen=True)
class ComputeConfig:
    """The payment API Lambda."""

    runtime: str = "python3.12"
    memory_mb: int = 512
    timeout_seconds: int = 15
    reserved_concurrency: int = 50

    @property
    def python_version(self) -> str:
        return self.runtime.removeprefix("python")

    def __post_init__(self) -> None:
        _require(self.runtime in SUPPORTED_LAMBDA_RUNTIMES, "runtime",
                 f"{self.runtime!r} is not a supported Lambda runtime ({', '.join(SUPPORTED_LAMBDA_RUNTIMES)})")
        _in_range("memory_mb", self.memory_mb, 128, 10240)
        _in_range("timeout_seconds", self.timeout_seconds, 1, 60)
        _in_range("reserved_concurrency", self.reserved_concurrency, 1, 1000)


@dataclass(frozen=True)
class LoadBalancerConfig:
    ssl_policy: str = "ELBSecurityPolicy-TLS13-1-2-2021-06"
    deletion_protection: bool = True
    idle_timeout_seconds: int = 60
    access_log_expiration_days: int = 365

    def __post_init__(self) -> None:
        _require(self.ssl_policy.startswith(("ELBSecurityPolicy-TLS13-1-2", "ELBSecurityPolicy-TLS-1-2",
                                             "ELBSecurityPolicy-FS-1-2")), "ssl_policy",
                 f"{self.ssl_policy!r} allows TLS older than 1.2; use an ELBSecurityPolicy-TLS13-1-2-* policy")
        _in_range("idle_timeout_seconds", self.idle_timeout_seconds, 1, 4000)
        _in_range("access_log_expiration_days", self.access_log_expiration_days, 1, 3650)


@dataclass(frozen=True)
class MigrationConfig:
    """DMS: the forward task (on-prem → Aurora) and the fallback task (Aurora → on-prem)."""

    create_account_roles: bool  # create dms-vpc-role / dms-cloudwatch-logs-role (once per account)
    instance_class: str = "dms.r6i.large"
    allocated_storage_gb: int = 100
    engine_version: str = "3.5.4"
    multi_az: bool = True
    schema: str = "public"
    tables: tuple[str, ...] = ("customers", "payments", "transactions", "audit_log")
    lob_max_size_kb: int = 64
    preferred_maintenance_window: str = "sun:04:30-sun:05:30"  # of the replication instance (UTC)

    def __post_init__(self) -> None:
        _weekly_window("preferred_maintenance_window", self.preferred_maintenance_window)
        _require(bool(re.match(r"^dms\.[a-z0-9]+\.[a-z0-9]+$", self.instance_class)), "instance_class",
                 f"{self.instance_class!r} is not a DMS instance class like dms.r6i.large")
        _in_range("allocated_storage_gb", self.allocated_storage_gb, 5, 6144)
        _require(bool(re.match(r"^3\.(5\.[3-9]|[6-9]\.\d+)$", self.engine_version)), "engine_version",
                 f"{self.engine_version!r}: DMS 3.5.3 or later is needed for PostgreSQL 16 and 17")
        _require(bool(re.match(r"^[a-z_][a-z0-9_]*$", self.schema)), "schema", f"{self.schema!r} is not a schema name")
        _require(len(self.tables) >= 1, "tables", "needs at least one table")
        for index, table in enumerate(self.tables):
            _require(bool(re.match(r"^[a-z_%][a-z0-9_%]*$", table)), f"tables[{index}]",
                     f"{table!r} is not a table name or DMS pattern")
        _in_range("lob_max_size_kb", self.lob_max_size_kb, 1, 102400)

    @property
    def max_postgres_major(self) -> int:
        """The newest PostgreSQL major this DMS engine reads and writes (3.5.3 added 16, 3.6 added 17)."""
        return 16 if self.engine_version.startswith("3.5.") else 17


@dataclass(frozen=True)
class MonitoringConfig:
    """Alarm thresholds. Each alarm notifies the topic; those marked in README trigger rollback."""

    alarm_emails: tuple[str, ...] = ()
    alb_5xx_percent: float = 1.0
    alb_p95_latency_seconds: float = 1.0
    lambda_errors: int = 5
    lambda_throttles: int = 1
    aurora_cpu_percent: float = 80.0
    aurora_connections: int = 500
    dms_cdc_latency_seconds: int = 60
    # A replication slot holds WAL until its reader confirms it: behind by more than this (on either
    # side), the disk fills towards an outage.
    replication_slot_lag_mb: int = 1024
    evaluation_periods: int = 3
    # The payment API's own failure and latency figures (high-resolution, through its metrics
    # library's embedded format) are alarmed over periods this long: 10 s detects a failing AWS
    # side in evaluation_periods × 10 s instead of minutes. 10, 30 or a multiple of 60.
    api_metric_period_seconds: int = 10
    api_failures: int = 3  # the API's 5xx answers (not counting fence refusals) per period

    @property
    def detection_seconds(self) -> int:
        """The fastest a rollback alarm can fire after the AWS side starts failing: the API's own
        alarms need evaluation_periods full periods over threshold."""
        return self.api_metric_period_seconds * self.evaluation_periods

    def __post_init__(self) -> None:
        _require(self.api_metric_period_seconds in (10, 30) or (self.api_metric_period_seconds % 60 == 0
                 and 60 <= self.api_metric_period_seconds <= 3600), "api_metric_period_seconds",
                 f"{self.api_metric_period_seconds} is not a CloudWatch alarm period: 10, 30 or a multiple of 60")
        _in_range("api_failures", self.api_failures, 1, 100000)
        _in_range("replication_slot_lag_mb", self.replication_slot_lag_mb, 1, 1_000_000)
        for index, email in enumerate(self.alarm_emails):
            _require(bool(_EMAIL.match(email)), f"alarm_emails[{index}]", f"{email!r} is not an e-mail address")
        _in_range("alb_5xx_percent", self.alb_5xx_percent, 0.01, 100)
        _in_range("alb_p95_latency_seconds", self.alb_p95_latency_seconds, 0.01, 60)
        _in_range("lambda_errors", self.lambda_errors, 1, 100000)
        _in_range("lambda_throttles", self.lambda_throttles, 1, 100000)
        _in_range("aurora_cpu_percent", self.aurora_cpu_percent, 1, 100)
        _in_range("aurora_connections", self.aurora_connections, 1, 100000)
        _in_range("dms_cdc_latency_seconds", self.dms_cdc_latency_seconds, 1, 86400)
        _in_range("evaluation_periods", self.evaluation_periods, 1, 60)


@dataclass(frozen=True)
class ValidationConfig:
    """The scheduled validation Lambda and the rollback Lambda."""

    schedule: str = "rate(1 hour)"
    max_diffs_per_table: int = 100
    memory_mb: int = 1024
    timeout_seconds: int = 900
    automatic_rollback: bool = True
    # On a live replica, keys found different are compared again after recheck_seconds, up to
    # recheck_rounds times; a key that converges was only in flight.
    recheck_seconds: int = 5
    recheck_rounds: int = 3
    # The scheduled validation compares every row at most this often ("1d", "12h", "90m"); the runs
    # between compare only the rows changed since the last PASSED checkpoint (O(changes), not O(rows)).
    full_every: str = "1d"
    # Tables too large for one invocation are split into chunks validated in parallel by a Step
    # Functions distributed map, this many at a time (at most reserved_concurrency).
    max_concurrency: int = 4
    # Reserved concurrency: validation runs at most this many invocations at once (a distributed
    # run's chunks; the scheduled run is one); two rollbacks, so a manual invoke is not throttled
    # while an automatic one runs. Reservations come out of the account's Lambda quota (README,
    # prerequisites).
    reserved_concurrency: int = 4
    rollback_reserved_concurrency: int = 2

    def __post_init__(self) -> None:
        _in_range("reserved_concurrency", self.reserved_concurrency, 1, 1000)
        _in_range("rollback_reserved_concurrency", self.rollback_reserved_concurrency, 1, 10)
        _in_range("recheck_seconds", self.recheck_seconds, 0, 300)
        _in_range("recheck_rounds", self.recheck_rounds, 0, 20)
        _in_range("max_concurrency", self.max_concurrency, 1, 1000)
        _require(self.max_concurrency <= self.reserved_concurrency, "max_concurrency",
                 f"{self.max_concurrency} chunks at once would be throttled by reserved_concurrency "
                 f"{self.reserved_concurrency}")
        _require(bool(re.match(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(.+\))$", self.schedule)),
                 "schedule", f"{self.schedule!r} is not an EventBridge rate(…) or cron(…) expression")
        _require(bool(re.fullmatch(r"[1-9][0-9]*[mhd]", self.full_every)), "full_every",
                 f"{self.full_every!r} is not a duration of minutes, hours or days (e.g. \"1d\", \"12h\", \"90m\")")
        _require(self.full_every_seconds <= 30 * 86400, "full_every",
                 f"{self.full_every!r} is longer than 30 days: a write on the target outside replication would go "
                 "unseen that long")
        _in_range("max_diffs_per_table", self.max_diffs_per_table, 1, 10000)
        _in_range("memory_mb", self.memory_mb, 128, 10240)
        _in_range("timeout_seconds", self.timeout_seconds, 30, 900)


    @property
    def full_every_seconds(self) -> int:
        match = re.fullmatch(r"([1-9][0-9]*)([mhd])", self.full_every)
        return int(match.group(1)) * {"m": 60, "h": 3600, "d": 86400}[match.group(2)] if match else 0


ONPREM_APPLICATION_MODES = ("legacy", "follows-writer")


@dataclass(frozen=True)
class CutoverConfig:
    """The cutover controller (Step Functions): what the fence binds and how phases are taken."""

    # The database roles of every application that writes payments, ours or not: the fence makes
    # them read-only on the side that is not the writer (schema/roles.sql creates payment_app).
    application_roles: tuple[str, ...] = ("payment_app",)
    bake_minutes: int = 15  # how long `advance` watches the alarms after moving the weights
    writer_cache_seconds: int = 5  # how long the API trusts the writer it read
    step_wait_seconds: int = 20  # the most one step invocation waits (marker, task state) before a retry
    reserved_concurrency: int = 2  # the step functions' own, so a cutover never waits for the API's
    # How the on-prem application finds the writer. "follows-writer": it reads the writer parameter and
    # answers a fenced write (SQLSTATE 25006/42501) with a retryable error, as the AWS API does.
    # "legacy": it changes nothing for the migration; it writes to its own database, whoever is the
    # writer. Legacy is the default because nothing in the estate can prove an application follows
    # the contract, and assuming it wrongly fails every write of the clients DNS still sends there:
    # in legacy mode all traffic moves to AWS (which writes to on-prem through the VPN) before the
    # data cutover, and the cutover waits until the routing has been AWS-only for the TTL plus
    # legacy_margin_seconds and the on-prem application's role has been idle that long.
    onprem_application: str = "legacy"
    # The on-prem application's own database role: fenced with application_roles, and the role whose
    # sessions the legacy gate reads. None when it shares an application role (then only the routing
    # can tell the gate that it stopped writing).
    onprem_application_role: str | None = None
    legacy_margin_seconds: int = 30  # beyond routing.ttl_seconds: resolvers that keep an answer a little longer

    @property
    def legacy(self) -> bool:
        return self.onprem_application == "legacy"

    @property
    def fenced_roles(self) -> tuple[str, ...]:
        """Every role the fence binds: the application roles and the on-prem application's own."""
        extra = self.onprem_application_role
        return self.application_roles + ((extra,) if extra and extra not in self.application_roles else ())

    def __post_init__(self) -> None:
        _require(len(self.application_roles) >= 1, "application_roles", "needs at least one role to fence")
        roles = [(f"application_roles[{index}]", role) for index, role in enumerate(self.application_roles)]
        if self.onprem_application_role is not None:
            roles.append(("onprem_application_role", self.onprem_application_role))
        for key, role in roles:
            _require(bool(re.match(r"^[a-z_][a-z0-9_]{0,62}$", role)), key,
                     f"{role!r} is not a PostgreSQL role name")
            _require(role not in ("dms_source", "dms_target", "payment_controller", "payment_validator"),
                     key, f"{role} is not an application role: fencing it would "
                     "stop replication or the controller itself")
        _require(self.onprem_application in ONPREM_APPLICATION_MODES, "onprem_application",
                 f"{self.onprem_application!r} is not one of {', '.join(ONPREM_APPLICATION_MODES)}")
        _in_range("legacy_margin_seconds", self.legacy_margin_seconds, 0, 3600)
        _in_range("bake_minutes", self.bake_minutes, 1, 1440)
        _in_range("writer_cache_seconds", self.writer_cache_seconds, 0, 60)
        _in_range("step_wait_seconds", self.step_wait_seconds, 5, 600)
        _in_range("reserved_concurrency", self.reserved_concurrency, 1, 10)


@dataclass(frozen=True)
class EmulatorConfig:
    """An AWS-compatible API on this machine (a moto server): for local deploys and rehearsals
    only. Every provider, the S3 backend and every remote-state read of the environment then talk
    to `endpoint` with the emulator's test credentials; no other environment may set this."""

    endpoint: str  # http://127.0.0.1:<port>

    @property
    def port(self) -> int:
        return int(urllib.parse.urlsplit(self.endpoint).port)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.endpoint)
        _require(parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS and parts.port is not None
                 and parts.path in ("", "/") and not parts.query, "endpoint",
                 f"{self.endpoint!r} is not an emulator on this machine: use http://127.0.0.1:<port>")


@dataclass(frozen=True)
class Config:
    name: str
    region: str
    state: StateConfig
    network: NetworkConfig
    onprem: OnPremConfig
    database: DatabaseConfig
    dns: DnsConfig
    migration: MigrationConfig
    security: SecurityConfig
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    load_balancer: LoadBalancerConfig = field(default_factory=LoadBalancerConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    logs: LogsConfig = field(default_factory=LogsConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    cutover: CutoverConfig = field(default_factory=CutoverConfig)
    tags: dict[str, str] = field(default_factory=dict)
    emulator: EmulatorConfig | None = None

    def __post_init__(self) -> None:
        _require(bool(_DNS_LABEL.match(self.name)), "name",
                 f"{self.name!r} is not DNS-safe (lowercase letters, digits, '-', 1–20 characters, starting with a letter)")
        _require(bool(_REGION.match(self.region)), "region", f"{self.region!r} is not an AWS region name like eu-west-1")
        zone_prefix = _zone_id_prefix(self.region)
        for index, zone_id in enumerate(self.network.availability_zone_ids):
            _require(zone_id.startswith(zone_prefix + "-"), f"network.availability_zone_ids[{index}]",
                     f"{zone_id} is not a zone of {self.region} (ids there start with {zone_prefix}-)")
        vpc = ipaddress.IPv4Network(self.network.vpc_cidr)
        for index, cidr in enumerate(self.onprem.cidrs):
            _require(not ipaddress.IPv4Network(cidr).overlaps(vpc), f"onprem.cidrs[{index}]",
                     f"{cidr} overlaps network.vpc_cidr {self.network.vpc_cidr}")
        for key, major in (("database.engine_version", self.database.engine_major),
                           ("onprem.db_engine_version", int(self.onprem.db_engine_version))):
            _require(major <= self.migration.max_postgres_major, key,
                     f"PostgreSQL {major} is newer than DMS {self.migration.engine_version} supports "
                     f"(up to {self.migration.max_postgres_major}); raise migration.engine_version")
        if self.onprem.app_hostname:
            _require(self.dns.record_name != self.dns.zone_name, "dns.record_name",
                     "with onprem.app_hostname both members are CNAMEs, which cannot sit at the zone apex")
        if self.security.prevent_destroy:
            # An environment whose keys and zone must outlive a destroy keeps its data and entry point too.
            for key, protected in (("database.deletion_protection", self.database.deletion_protection),
                                   ("load_balancer.deletion_protection", self.load_balancer.deletion_protection)):
                _require(protected, key, "must stay true while security.prevent_destroy is true "
                                         "(turn both off only where everything may be destroyed: dev, local)")
        for key, value in self.tags.items():
            _require(not key.lower().startswith("aws:"), f"tags.{key}", "tag keys starting with aws: are reserved")
            _require(0 < len(value) <= 256, f"tags.{key}", "tag values take 1–256 characters")

    @property
    def default_tags(self) -> dict[str, str]:
        return {"Project": "payment-migration", "Environment": self.name, "ManagedBy": "cdktf", **self.tags}


def _zone_id_prefix(region: str) -> str:
    """The prefix of a region's AZ ids: eu-west-1 → euw1, ap-southeast-2 → apse2, us-gov-west-1 → usgw1."""
    parts = region.split("-")
    compound = {"northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw"}
    return parts[0] + "".join(compound.get(part, part[0]) for part in parts[1:-1]) + parts[-1]


def _is_host(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(value))


# ---------------------------------------------------------------------------------------------
# Loading: TOML tables → dataclasses, with the key path on every error.


def _convert(value: typing.Any, hint: typing.Any, key: str) -> typing.Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(key, "expected a table")
        return _build(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _convert(value, options[0], key)
    if origin is Literal:
        allowed = typing.get_args(hint)
        _require(value in allowed, key, f"{value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(key, "expected a list")
        item_hint = typing.get_args(hint)[0]
        return tuple(_convert(item, item_hint, f"{key}[{index}]") for index, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, "expected a table")
        return {str(k): _convert(v, str, f"{key}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"expected a non-empty string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")


def _build(cls: type, table: dict, prefix: str = "") -> typing.Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    path = (prefix + ".") if prefix else ""
    for key in table:
        if key not in fields:
            raise ConfigError(f"{path}{key}", f"unknown key (known: {', '.join(sorted(fields))})")
    values = {}
    for name, spec in fields.items():
        if name in table:
            values[name] = _convert(table[name], hints[name], f"{path}{name}")
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path}{name}", "missing required key")
    try:
        return cls(**values)
    except ConfigError as error:
        raise ConfigError(f"{path}{error.key}", error.problem) from None


def config_path(env: str | None = None) -> Path:
    if os.environ.get(FILE_VARIABLE):
        return Path(os.environ[FILE_VARIABLE])
    env = env or os.environ.get(ENV_VARIABLE, "dev")
    _require(bool(_DNS_LABEL.match(env)), ENV_VARIABLE, f"{env!r} is not an environment name")
    return CONFIG_DIR / f"{env}.toml"


def parse_config(text: str) -> Config:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("(file)", f"not valid TOML: {error}") from None
    return _build(Config, table)


def load_config(env: str | None = None) -> Config:
    path = config_path(env)
    if not path.is_file():
        raise ConfigError(ENV_VARIABLE, f"no config file {path} (environments: "
                          f"{', '.join(sorted(p.stem for p in CONFIG_DIR.glob('*.toml')))})")
    config = parse_config(path.read_text())
    if not os.environ.get(FILE_VARIABLE):
        # A copy of another environment's file would otherwise synthesize that environment's stack
        # ids, resource names and state keys, and read its DMS settings record.
        _require(config.name == path.stem, "name",
                 f"{config.name!r} differs from the file name {path.name}: an environment is named after its "
                 f"file; set name = {json.dumps(path.stem)} in it")
    return config
