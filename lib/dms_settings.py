"""What the DMS tasks run with — table mappings and task settings — and the guard that keeps them
unchanged once traffic has left legacy-sync.

Changing a task's settings makes DMS stop it, and it stays stopped: replication silently ends in
the middle of a cutover. So the settings are recorded (config/<env>.dms-settings.json) every time
the environment is synthesized in phase legacy-sync, and in any later phase synthesis stops, naming
the config key, when they would differ from that record. Change them in legacy-sync (or after a
rollback to it), deploy, and let the forward task restart.
"""

from __future__ import annotations

import json
from pathlib import Path

from lib.config import CONFIG_DIR, Config, ConfigError, MigrationConfig

FROZEN_PHASE = "legacy-sync"
# The config keys the settings and mappings are made of; a record names their values.
SETTINGS_KEYS = ("schema", "tables", "lob_max_size_kb")
CONTROL_SCHEMA = "payment_dms"  # DMS's own tables (schema/roles.sql creates it), never public
MARKER_TABLE = ("payment_control", "cutover_marker")  # replicated like the payment tables

LOG_COMPONENTS = ("SOURCE_UNLOAD", "SOURCE_CAPTURE", "TARGET_LOAD", "TARGET_APPLY", "TASK_MANAGER", "VALIDATOR")


def table_mappings(migration: MigrationConfig) -> str:
    """Selection rules: exactly the configured tables of the configured schema, and the cutover
    marker table, whose rows prove on the new writer that replication has caught up."""
    tables = [(migration.schema, table) for table in migration.tables] + [MARKER_TABLE]
    rules = [{"rule-type": "selection", "rule-id": str(index), "rule-name": f"include-{schema}-{table}",
              "object-locator": {"schema-name": schema, "table-name": table},
              "rule-action": "include", "filters": []}
             for index, (schema, table) in enumerate(tables, start=1)]
    return json.dumps({"rules": rules}, sort_keys=True)


def task_settings(migration: MigrationConfig, *, full_load: bool) -> str:
    """Settings for PostgreSQL → PostgreSQL with the schema created beforehand from the reference
    schema (DO_NOTHING keeps its constraints and types), limited-size LOBs that fail the task
    rather than truncate, row-level validation, and a task that stops on any data error: for
    payments a stopped task is an alarm, a skipped row is a lost payment."""
    settings = {
        "TargetMetadata": {
            "TargetSchema": "", "SupportLobs": True, "FullLobMode": False, "LimitedSizeLobMode": True,
            "LobMaxSize": migration.lob_max_size_kb, "LobChunkSize": 64, "BatchApplyEnabled": False,
        },
        "FullLoadSettings": {
            "TargetTablePrepMode": "DO_NOTHING", "CreatePkAfterFullLoad": False,
            "StopTaskCachedChangesApplied": False, "StopTaskCachedChangesNotApplied": False,
            "MaxFullLoadSubTasks": 8, "TransactionConsistencyTimeout": 600, "CommitRate": 10000,
        },
        "Logging": {
            "EnableLogging": True,
            "LogComponents": [{"Id": component, "Severity": "LOGGER_SEVERITY_DEFAULT"}
                              for component in LOG_COMPONENTS],
        },
        "ValidationSettings": {
            "EnableValidation": True, "ValidationMode": "ROW_LEVEL", "ThreadCount": 5, "PartitionSize": 10000,
            "FailureMaxCount": 10000, "RecordFailureDelayInMinutes": 5, "TableFailureMaxCount": 1000,
            "HandleCollationDiff": False, "ValidationOnly": False, "SkipLobColumns": False,
        },
        "ErrorBehavior": {
            "DataErrorPolicy": "STOP_TASK", "DataTruncationErrorPolicy": "STOP_TASK",
            # An apply error stops the task: logged and skipped, a conflicting insert would be a
            # payment silently missing on the other side.
            "TableErrorPolicy": "STOP_TASK", "ApplyErrorDeletePolicy": "STOP_TASK",
            "ApplyErrorInsertPolicy": "STOP_TASK", "ApplyErrorUpdatePolicy": "STOP_TASK",
            "ApplyErrorEscalationPolicy": "STOP_TASK", "ApplyErrorEscalationCount": 0,
            "FailOnNoTablesCaptured": True, "FailOnTransactionConsistencyBreached": True,
            "RecoverableErrorCount": -1, "RecoverableErrorInterval": 5,
        },
        # DMS's control tables (apply exceptions, status) in their own schema, never among ours.
        "ControlTablesSettings": {"ControlSchema": CONTROL_SCHEMA, "HistoryTimeslotInMinutes": 5,
                                  "HistoryTableEnabled": False, "SuspendedTablesTableEnabled": False,
                                  "StatusTableEnabled": False},
        "ChangeProcessingTuning": {"BatchApplyPreserveTransaction": True, "CommitTimeout": 1,
                                   "MemoryLimitTotal": 1024, "StatementCacheSize": 50},
    }
    if not full_load:
        del settings["FullLoadSettings"]
    return json.dumps(settings, sort_keys=True)



def record_path(config: Config) -> Path:
    return CONFIG_DIR / f"{config.name}.dms-settings.json"


def current_record(config: Config) -> dict:
    migration = config.migration
    return {
        "config": {key: list(value) if isinstance(value, tuple) else value
                   for key in SETTINGS_KEYS for value in [getattr(migration, key)]},
        "table_mappings": json.loads(table_mappings(migration)),
        "forward_task_settings": json.loads(task_settings(migration, full_load=True)),
        "fallback_task_settings": json.loads(task_settings(migration, full_load=False)),
    }


def check_frozen(config: Config, path: Path | None = None) -> None:
    """Outside legacy-sync, refuse settings that differ from those recorded in legacy-sync."""
    if config.routing.phase == FROZEN_PHASE:
        return
    path = path or record_path(config)
    if not path.is_file():
        raise ConfigError("routing.phase", f"phase {config.routing.phase}, but {path.name} does not record the DMS "
                          f"task settings of phase {FROZEN_PHASE}: synthesize once in {FROZEN_PHASE} first")
    recorded, current = json.loads(path.read_text()), current_record(config)
    for key in SETTINGS_KEYS:
        if recorded["config"].get(key) != current["config"][key]:
            raise ConfigError(f"migration.{key}", f"{recorded['config'].get(key)!r} → {current['config'][key]!r} "
                              f"changes the DMS task settings, which stops a running task; allowed only in "
                              f"phase {FROZEN_PHASE} (recorded in {path.name})")
    if recorded != current:
        raise ConfigError("migration", f"the DMS task settings differ from those recorded in {path.name} (a code "
                          f"change, not config): allowed only in phase {FROZEN_PHASE}")


def record(config: Config, path: Path | None = None) -> bool:
    """In legacy-sync, record the settings; returns whether the record changed (commit it)."""
    if config.routing.phase != FROZEN_PHASE:
        return False
    path = path or record_path(config)
    text = json.dumps(current_record(config), indent=2, sort_keys=True) + "\n"
    if path.is_file() and path.read_text() == text:
        return False
    path.write_text(text)
    return True
