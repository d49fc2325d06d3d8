"""migration: DMS replication on-prem → Aurora (forward) and Aurora → on-prem (fallback).

Neither task is started by Terraform; the operator starts and stops them (README runbook). They
must never run at the same time: each would replicate the other's changes back (a loop)."""

from __future__ import annotations

import json

from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.data_aws_iam_role import DataAwsIamRole
from cdktf_cdktf_provider_aws.dms_endpoint import DmsEndpoint, DmsEndpointPostgresSettings
from cdktf_cdktf_provider_aws.dms_replication_instance import DmsReplicationInstance
from cdktf_cdktf_provider_aws.dms_replication_subnet_group import DmsReplicationSubnetGroup
from cdktf_cdktf_provider_aws.dms_replication_task import DmsReplicationTask
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.secretsmanager_secret import SecretsmanagerSecret
from constructs import Construct

from lib.config import Config, MigrationConfig
from lib.constructs.iam import allow, assume_role_policy, policy_document
from lib.stacks.account import DMS_ACCOUNT_ROLES
from lib.stacks.base import BaseStack
from lib.stacks.database import DatabaseStack
from lib.stacks.network import NetworkStack
from lib.stacks.security import SecurityStack

LOG_COMPONENTS = ("SOURCE_UNLOAD", "SOURCE_CAPTURE", "TARGET_LOAD", "TARGET_APPLY", "TASK_MANAGER", "VALIDATOR")


def table_mappings(migration: MigrationConfig) -> str:
    """Selection rules: exactly the configured tables of the configured schema."""
    rules = [{"rule-type": "selection", "rule-id": str(index), "rule-name": f"include-{table}",
              "object-locator": {"schema-name": migration.schema, "table-name": table},
              "rule-action": "include", "filters": []}
             for index, table in enumerate(migration.tables, start=1)]
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
            "TableErrorPolicy": "STOP_TASK", "ApplyErrorDeletePolicy": "LOG_ERROR",
            "ApplyErrorInsertPolicy": "LOG_ERROR", "ApplyErrorUpdatePolicy": "LOG_ERROR",
            "ApplyErrorEscalationPolicy": "STOP_TASK", "ApplyErrorEscalationCount": 0,
            "FailOnNoTablesCaptured": True, "FailOnTransactionConsistencyBreached": True,
            "RecoverableErrorCount": -1, "RecoverableErrorInterval": 5,
        },
        "ChangeProcessingTuning": {"BatchApplyPreserveTransaction": True, "CommitTimeout": 1,
                                   "MemoryLimitTotal": 1024, "StatementCacheSize": 50},
    }
    if not full_load:
        del settings["FullLoadSettings"]
    return json.dumps(settings, sort_keys=True)


class MigrationStack(BaseStack):
    def __init__(self, scope: Construct, *, config: Config, network: NetworkStack, security: SecurityStack,
                 database: DatabaseStack) -> None:
        super().__init__(scope, "migration", config=config)
        migration = config.migration
        data_key = security.data_key.arn
        # The account-wide roles DMS needs come from the account stack (or already existed): read
        # here, so a plan without them stops with "not found" before anything is created.
        account_roles = [DataAwsIamRole(self, f"{name}-exists", name=name) for name in DMS_ACCOUNT_ROLES]

        subnets = DmsReplicationSubnetGroup(
            self, "subnets", replication_subnet_group_id=self.resource_name("dms"),
            replication_subnet_group_description="Private subnets of the DMS replication instance",
            subnet_ids=network.private_subnet_ids, depends_on=account_roles)
        instance_id = self.resource_name("dms")
        # DMS writes task logs to dms-tasks-<instance>; created here so they are encrypted and expire.
        task_logs = CloudwatchLogGroup(self, "task-logs", name=f"dms-tasks-{instance_id}",
                                       kms_key_id=security.logs_key.arn, retention_in_days=config.logs.retention_days)
        self.instance = DmsReplicationInstance(
            self, "instance", replication_instance_id=instance_id,
            replication_instance_class=migration.instance_class, allocated_storage=migration.allocated_storage_gb,
            engine_version=migration.engine_version, multi_az=migration.multi_az, publicly_accessible=False,
            kms_key_arn=data_key, auto_minor_version_upgrade=True, allow_major_version_upgrade=False,
            replication_subnet_group_id=subnets.replication_subnet_group_id,
            vpc_security_group_ids=[security.dms_security_group_id],
            preferred_maintenance_window=migration.preferred_maintenance_window, depends_on=[task_logs])

        # DMS needs host and port inside the secret, which the RDS-managed master secret lacks:
        # the replication user on Aurora gets its own secret, whose value the operator puts.
        self.aurora_secret = SecretsmanagerSecret(
            self, "aurora-dms-secret", name=f"payment-migration/{config.name}/aurora-dms",
            description="Aurora replication user for DMS: {\"username\", \"password\", \"host\", \"port\"}; "
                        "value set by the operator",
            kms_key_id=data_key, recovery_window_in_days=30)
        access_role = self._secrets_access_role(
            config, secret_arns=[security.onprem_secret_arn, self.aurora_secret.arn],
            key_arns=sorted({data_key, security.onprem_secret_key_arn}, key=str))

        def endpoint(id_: str, kind: str, secret_arn: str, database_name: str, role: str) -> DmsEndpoint:
            return DmsEndpoint(
                self, id_, endpoint_id=self.resource_name(id_), endpoint_type=kind, engine_name="postgres",
                database_name=database_name, secrets_manager_arn=secret_arn,
                secrets_manager_access_role_arn=access_role.arn, ssl_mode="require", kms_key_arn=data_key,
                postgres_settings=self._postgres_settings(role))

        onprem_db, aurora_db = config.onprem.db_name, database.database_name
        onprem_source = endpoint("onprem-source", "source", security.onprem_secret_arn, onprem_db, "source")
        aurora_target = endpoint("aurora-target", "target", self.aurora_secret.arn, aurora_db, "target")
        aurora_source = endpoint("aurora-source", "source", self.aurora_secret.arn, aurora_db, "source")
        onprem_target = endpoint("onprem-target", "target", security.onprem_secret_arn, onprem_db, "target")

        def task(id_: str, migration_type: str, source: DmsEndpoint, target: DmsEndpoint) -> DmsReplicationTask:
            name = self.resource_name(id_)
            return DmsReplicationTask(
                self, id_, replication_task_id=name, migration_type=migration_type,
                # Also the end of the task ARN and the ReplicationTaskIdentifier dimension of its metrics.
                resource_identifier=name, replication_instance_arn=self.instance.replication_instance_arn,
                source_endpoint_arn=source.endpoint_arn, target_endpoint_arn=target.endpoint_arn,
                table_mappings=table_mappings(migration),
                replication_task_settings=task_settings(migration, full_load=migration_type != "cdc"),
                start_replication_task=False, depends_on=account_roles)

        self.forward_task = task("forward", "full-load-and-cdc", onprem_source, aurora_target)
        self.fallback_task = task("fallback", "cdc", aurora_source, onprem_target)

        self.replication_instance_id = self.instance.replication_instance_id
        self.forward_task_arn = self.forward_task.replication_task_arn
        self.forward_task_resource_identifier = self.forward_task.resource_identifier
        self.fallback_task_arn = self.fallback_task.replication_task_arn

    @staticmethod
    def _postgres_settings(role: str) -> DmsEndpointPostgresSettings:
        if role == "source":
            # Heartbeats advance the slot on a quiet source so WAL cannot pile up; DDL is not captured
            # (the schema is managed, not replicated).
            return DmsEndpointPostgresSettings(heartbeat_enable=True, heartbeat_frequency=5, capture_ddls=False,
                                               plugin_name="test_decoding", fail_tasks_on_lob_truncation=True)
        # Apply as a replica session: triggers and foreign keys wait for the source's transaction
        # order instead of DMS's table order.
        return DmsEndpointPostgresSettings(after_connect_script="SET session_replication_role = replica",
                                           fail_tasks_on_lob_truncation=True)

    def _secrets_access_role(self, config: Config, *, secret_arns: list[str], key_arns: list[str]) -> IamRole:
        """What DMS assumes to read the endpoint secrets: those two secrets and their keys only."""
        trust = assume_role_policy(self, "secrets-trust", f"dms.{config.region}.amazonaws.com",
                                   account_id=self.account_id)
        role = IamRole(self, "secrets-access", name=self.resource_name("dms-secrets"),
                       assume_role_policy=trust.json, description="DMS reads the endpoint secrets")
        IamRolePolicy(self, "secrets-access-policy", role=role.id, name="read-endpoint-secrets",
                      policy=policy_document(self, "secrets-access-permissions", [
                          allow(["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], secret_arns,
                                sid="ReadEndpointSecrets"),
                          allow(["kms:Decrypt"], key_arns, sid="DecryptEndpointSecrets",
                                conditions=[("StringEquals", "kms:ViaService",
                                             [f"secretsmanager.{config.region}.amazonaws.com"])]),
                      ]).json)
        return role
