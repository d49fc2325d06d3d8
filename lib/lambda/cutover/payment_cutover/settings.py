"""What the stack tells the step Lambda through its environment, and the event it is invoked with."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from payment_common.database import SIDE_PREFIXES, DatabaseSettings, database_settings
from payment_common.errors import ConfigurationError
from payment_common.sides import SIDES
from payment_cutover.errors import InvalidEvent

DRIVERS = ("dms", "postgres-logical")
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_$]{0,62}")
MAX_WAIT_SECONDS = 600
# Rows changed since the checkpoint that the fenced validation compares by key; beyond, it compares
# every row (and says so). A million keys read by key take seconds, about what a full comparison
# of a few million rows costs (bench/cutover_bench.py).
DEFAULT_MAX_CHANGED_ROWS = 1_000_000
MAX_CHANGED_ROWS = 100_000_000

# step name → optional event keys besides step, from, to (with their JSON types)
STEPS: dict[str, dict[str, type]] = {
    "legacy_gate": {"weights": dict, "since": str},
    "preflight": {},
    "checkpoint": {},
    "catch_up": {},
    "fence": {},
    "wait_replication": {"timeout_seconds": int},
    "validate_changes": {"live_validation": str},
    "advance_sequences": {},
    "switch_replication": {"timeout_seconds": int},
    "prove_fence": {},
    "open": {},
    "set_writer": {"reason": str},
    "abort": {"error": dict},
    "status": {},
    "fence_non_writer": {},
    "publish_metrics": {},
    "scheduled_validation": {},
}
UNSIDED_STEPS = ("status", "fence_non_writer", "publish_metrics", "scheduled_validation")  # no from, no to
DEFAULT_METRICS_NAMESPACE = "PaymentMigration"
# $$.Execution.Id: logged for correlation, and the holder of the switch lease (payment_cutover.control)
COMMON_KEYS = {"execution": str}


@dataclass(frozen=True)
class Settings:
    writer_parameter: str
    roles: list[str]
    driver: str
    schema: str
    tables: list[str]
    slot_names: dict[str, str]
    sides: dict[str, DatabaseSettings]  # payment_common.database: where each side is, TLS, its secrets
    task_arns: dict[str, str]
    publication: str
    wait_seconds: float
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE  # POWERTOOLS_METRICS_NAMESPACE: publish_metrics puts there
    max_changed_rows: int = DEFAULT_MAX_CHANGED_ROWS  # CHECKPOINT_MAX_CHANGED_ROWS
    count_rows: bool = False  # CHECKPOINT_COUNT_ROWS=true: the fenced validation also counts every row
    full_every_seconds: int = 86_400  # FULL_EVERY_SECONDS: the scheduled validation's full pass, at most this often
    recheck_rounds: int = 3  # RECHECK_ROUNDS, RECHECK_SECONDS: the scheduled validation's settle-and-recheck
    recheck_seconds: int = 5
    # ONPREM_APPLICATION ("legacy" | "follows-writer"), ONPREM_APPLICATION_ROLE, LEGACY_WINDOW_SECONDS:
    # the legacy gate (steps.legacy_gate). The cutover stack always sets them from config, whose
    # default is legacy; unset, the gate passes (a function built for tests, not deployed).
    onprem_application: str = "follows-writer"
    onprem_application_role: str | None = None
    legacy_window_seconds: int = 0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        def required(name: str) -> str:
            value = environ.get(name, "").strip()
            if not value:
                raise ConfigurationError(f"configuration incomplete: {name} is not set")
            return value

        def optional(name: str) -> str | None:
            return environ.get(name, "").strip() or None

        def identifiers(name: str, value: str) -> list[str]:
            names = [part.strip() for part in value.split(",") if part.strip()]
            bad = [part for part in names if not _IDENTIFIER.fullmatch(part)]
            if not names or bad:
                raise ConfigurationError(f"configuration invalid: {name} must be a comma-separated list of lower-case "
                                         f"SQL identifiers (got {value!r})")
            return names

        def number(name: str, default: int, maximum: int) -> int:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or not 0 < int(raw) <= maximum:
                raise ConfigurationError(f"configuration invalid: {name} must be an integer from 1 to {maximum}")
            return int(raw)

        def rounds(name: str, default: int, maximum: int) -> int:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or int(raw) > maximum:
                raise ConfigurationError(f"configuration invalid: {name} must be an integer from 0 to {maximum}")
            return int(raw)

        def switch(name: str) -> bool:
            raw = environ.get(name, "").strip().lower() or "false"
            if raw not in ("true", "false"):
                raise ConfigurationError(f"configuration invalid: {name} must be true or false")
            return raw == "true"

        driver = required("REPLICATION_DRIVER")
        if driver not in DRIVERS:
            raise ConfigurationError(f"configuration invalid: REPLICATION_DRIVER must be one of {', '.join(DRIVERS)}")
        sides = database_settings(environ, connect_timeout_seconds=5)
        for side in sides.values():
            if driver == "postgres-logical" and side.replication_secret_arn is None:
                raise ConfigurationError(f"configuration incomplete: {SIDE_PREFIXES[side.side]}REPLICATION_SECRET_ARN "
                                         "is not set (the postgres-logical driver subscribes with it)")
        task_arns = {}
        if driver == "dms":
            # forward-cdc: the forward direction's cdc-only task, started from a slot once the forward
            # full-load-and-cdc task has run (payment_cutover.dms says why).
            task_arns = {"forward": required("DMS_FORWARD_TASK_ARN"), "fallback": required("DMS_FALLBACK_TASK_ARN"),
                         "forward-cdc": required("DMS_FORWARD_CDC_TASK_ARN")}
        slot_names = {"forward": identifiers("FORWARD_SLOT_NAME", required("FORWARD_SLOT_NAME"))[0],
                      "fallback": identifiers("FALLBACK_SLOT_NAME", required("FALLBACK_SLOT_NAME"))[0]}
        if slot_names["forward"] == slot_names["fallback"]:
            raise ConfigurationError("configuration invalid: FORWARD_SLOT_NAME and FALLBACK_SLOT_NAME must differ")
        onprem_application = optional("ONPREM_APPLICATION") or "follows-writer"
        if onprem_application not in ("legacy", "follows-writer"):
            raise ConfigurationError(f"configuration invalid: ONPREM_APPLICATION is {onprem_application!r}, not "
                                     "legacy or follows-writer")
        return cls(
            writer_parameter=required("WRITER_PARAMETER"),
            roles=identifiers("APPLICATION_ROLES", environ.get("APPLICATION_ROLES", "").strip() or "payment_app"),
            driver=driver,
            schema=identifiers("SCHEMA", environ.get("SCHEMA", "").strip() or "public")[0],
            tables=identifiers("TABLES", required("TABLES")),
            slot_names=slot_names,
            sides=sides,
            task_arns=task_arns,
            publication=identifiers("PUBLICATION_NAME", environ.get("PUBLICATION_NAME", "").strip()
                                    or "payment_migration")[0],
            wait_seconds=number("WAIT_SECONDS", 20, MAX_WAIT_SECONDS),
            metrics_namespace=environ.get("POWERTOOLS_METRICS_NAMESPACE", "").strip() or DEFAULT_METRICS_NAMESPACE,
            max_changed_rows=number("CHECKPOINT_MAX_CHANGED_ROWS", DEFAULT_MAX_CHANGED_ROWS, MAX_CHANGED_ROWS),
            count_rows=switch("CHECKPOINT_COUNT_ROWS"),
            full_every_seconds=number("FULL_EVERY_SECONDS", 86_400, 30 * 86_400),
            recheck_rounds=rounds("RECHECK_ROUNDS", 3, 20),
            recheck_seconds=number("RECHECK_SECONDS", 5, 300),
            onprem_application=onprem_application,
            onprem_application_role=(identifiers("ONPREM_APPLICATION_ROLE", optional("ONPREM_APPLICATION_ROLE"))[0]
                                     if optional("ONPREM_APPLICATION_ROLE") else None),
            legacy_window_seconds=rounds("LEGACY_WINDOW_SECONDS", 0, 3660),
        )


@dataclass(frozen=True)
class StepRequest:
    step: str
    source: str | None
    target: str | None
    options: dict
    execution: str | None = None


def parse_event(event: object) -> StepRequest:
    if not isinstance(event, dict):
        raise InvalidEvent(f"event must be a JSON object with key 'step' (one of {', '.join(STEPS)})")
    step = event.get("step")
    if step not in STEPS:
        raise InvalidEvent(f"event key 'step' must be one of {', '.join(STEPS)}, got {step!r}")
    sided = step not in UNSIDED_STEPS
    allowed = {"step": str, **COMMON_KEYS, **STEPS[step], **({"from": str, "to": str} if sided else {})}
    unknown = sorted(str(key) for key in event if key not in allowed)
    if unknown:
        raise InvalidEvent(f"unknown key(s) for step {step}: {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    for key, expected in allowed.items():
        value = event.get(key)
        if key in event and (not isinstance(value, expected) or isinstance(value, bool)):
            raise InvalidEvent(f"event key {key!r} must be a {expected.__name__}, got {type(value).__name__}")
    source = target = None
    if sided:
        source, target = event.get("from"), event.get("to")
        for key, value in (("from", source), ("to", target)):
            if value not in SIDES:
                raise InvalidEvent(f"event key {key!r} must be one of {', '.join(SIDES)}, got {value!r}")
        if source == target:
            raise InvalidEvent("event keys 'from' and 'to' must name different sides")
    timeout = event.get("timeout_seconds")
    if timeout is not None and not 0 < timeout <= MAX_WAIT_SECONDS:
        raise InvalidEvent(f"event key 'timeout_seconds' must be from 1 to {MAX_WAIT_SECONDS}")
    options = {key: event[key] for key in STEPS[step] if key in event}
    return StepRequest(step=step, source=source, target=target, options=options, execution=event.get("execution"))
