"""migration: DMS replication on-prem → Aurora (forward) and Aurora → on-prem (fallback).

The forward direction has two tasks on the same endpoints (and so the same slot): the
full-load-and-cdc task for the first load, and a cdc task for every later start of the direction
(after a writer rollback). No task is started by Terraform: the operator starts the forward task once (README runbook);
from then on the cutover controller stops one direction and starts the other, always from a
replication slot it created while the new source was fenced. They never run at the same time:
each would replicate the other's changes back (a loop)."""

from __future__ import annotations

from constructs import Construct

from lib.bundler import rds_ca_pem
from lib.cdk.aws.cloudwatch_log_group import CloudwatchLogGroup
from lib.cdk.aws.data_aws_iam_role import DataAwsIamRole
from lib.cdk.aws.dms_certificate import DmsCertificate
from lib.cdk.aws.dms_endpoint import DmsEndpoint, DmsEndpointPostgresSettings
from lib.cdk.aws.dms_replication_instance import DmsReplicationInstance
from lib.cdk.aws.dms_replication_subnet_group import DmsReplicationSubnetGroup
from lib.cdk.aws.dms_replication_task import DmsReplicationTask
from lib.cdk.aws.iam_role import IamRole
from lib.cdk.aws.iam_role_policy import IamRolePolicy
from lib.config import Config
from lib.dms_settings import CONTROL_SCHEMA, table_mappings, task_settings
from lib.constructs.iam import allow, assume_role_policy, policy_document
from lib.names import replication_slot_name
from lib.stacks.account import DMS_ACCOUNT_ROLES
from lib.stacks.base import BaseStack
from lib.stacks.database import DatabaseStack
from lib.stacks.network import NetworkStack
from lib.stacks.security import SecurityStack

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

        # Each endpoint connects as the role of its purpose (schema/roles.sql), from its own secret
        # holding host and port too: dms_source where DMS reads changes, dms_target where it applies them.
        secrets = security.database_secrets
        access_role = self._secrets_access_role(
            config, secret_arns=[secrets.arn(side, role) for side in ("onprem", "aws")
                                 for role in ("dms_source", "dms_target")],
            key_arns=[secrets.key_arn])

        # Verified TLS: each side's server certificate is checked against its CA (verify-full), the
        # RDS roots of the region for Aurora, the on-prem database's own CA from config.
        certificates = {
            "aws": DmsCertificate(self, "aurora-ca", certificate_id=self.resource_name("aurora-ca"),
                                  certificate_pem=rds_ca_pem(config.region)),
            "onprem": DmsCertificate(self, "onprem-ca", certificate_id=self.resource_name("onprem-ca"),
                                     certificate_pem=config.onprem.db_ca_pem),
        }

        def endpoint(id_: str, side: str, kind: str, database_name: str, direction: str) -> DmsEndpoint:
            return DmsEndpoint(
                self, id_, endpoint_id=self.resource_name(id_), endpoint_type=kind, engine_name="postgres",
                database_name=database_name, secrets_manager_arn=secrets.arn(side, f"dms_{kind}"),
                secrets_manager_access_role_arn=access_role.arn, ssl_mode="verify-full",
                certificate_arn=certificates[side].certificate_arn, kms_key_arn=data_key,
                postgres_settings=self._postgres_settings(kind, slot_name=replication_slot_name(config.name, direction)))

        onprem_db, aurora_db = config.onprem.db_name, database.database_name
        onprem_source = endpoint("onprem-source", "onprem", "source", onprem_db, "forward")
        aurora_target = endpoint("aurora-target", "aws", "target", aurora_db, "forward")
        aurora_source = endpoint("aurora-source", "aws", "source", aurora_db, "fallback")
        onprem_target = endpoint("onprem-target", "onprem", "target", onprem_db, "fallback")

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
        # The forward direction once its full load ran (after a writer rollback): DMS starts a task from
        # a given position (the controller's new slot) only as a cdc task; resuming the full-load task
        # would continue from its last stop position, reloading it would copy every table again.
        self.forward_cdc_task = task("forward-cdc", "cdc", onprem_source, aurora_target)
        self.fallback_task = task("fallback", "cdc", aurora_source, onprem_target)

        self.replication_instance_id = self.instance.replication_instance_id
        self.forward_task_arn = self.forward_task.replication_task_arn
        self.forward_cdc_task_arn = self.forward_cdc_task.replication_task_arn
        self.forward_cdc_task_id = self.forward_cdc_task.replication_task_id
        # What the cutover controller tests (TestConnection) before it fences a side.
        self.replication_instance_arn = self.instance.replication_instance_arn
        self.endpoint_arns = [each.endpoint_arn for each in
                              (onprem_source, aurora_target, aurora_source, onprem_target)]
        self.forward_task_resource_identifier = self.forward_task.resource_identifier
        self.fallback_task_arn = self.fallback_task.replication_task_arn
        self.fallback_task_resource_identifier = self.fallback_task.resource_identifier
        self.forward_task_id = self.forward_task.replication_task_id
        self.fallback_task_id = self.fallback_task.replication_task_id

    @staticmethod
    def _postgres_settings(kind: str, *, slot_name: str) -> DmsEndpointPostgresSettings:
        if kind == "source":
            # Heartbeats advance the slot on a quiet source so WAL cannot pile up, written to DMS's own
            # schema; DDL is not captured (the schema is managed, not replicated). The slot has a fixed
            # name: the controller creates it while this side is fenced and drops it when the direction
            # stops, so DMS starts exactly where nothing can be missed.
            return DmsEndpointPostgresSettings(heartbeat_enable=True, heartbeat_frequency=5,
                                               heartbeat_schema=CONTROL_SCHEMA, capture_ddls=False,
                                               plugin_name="test_decoding", slot_name=slot_name,
                                               fail_tasks_on_lob_truncation=True)
        # Apply as a replica session: triggers and foreign keys wait for the source's transaction
        # order instead of DMS's table order.
        return DmsEndpointPostgresSettings(after_connect_script="SET session_replication_role = replica",
                                           fail_tasks_on_lob_truncation=True)

    def _secrets_access_role(self, config: Config, *, secret_arns: list[str], key_arns: list[str]) -> IamRole:
        """What DMS assumes to read the endpoint secrets: those four secrets and their key only."""
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
