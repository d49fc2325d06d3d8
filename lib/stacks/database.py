"""database: the Aurora PostgreSQL Serverless v2 cluster that becomes the system of record."""

from __future__ import annotations

from constructs import Construct

from lib.cdk import Fn, TerraformResourceLifecycle
from lib.cdk.aws.backup_plan import BackupPlan, BackupPlanRule, BackupPlanRuleLifecycle
from lib.cdk.aws.backup_selection import BackupSelection
from lib.cdk.aws.backup_vault import BackupVault
from lib.cdk.aws.backup_vault_lock_configuration import BackupVaultLockConfiguration
from lib.cdk.aws.cloudwatch_log_group import CloudwatchLogGroup
from lib.cdk.aws.db_subnet_group import DbSubnetGroup
from lib.cdk.aws.iam_role import IamRole
from lib.cdk.aws.iam_role_policy_attachment import IamRolePolicyAttachment
from lib.cdk.aws.rds_cluster import RdsCluster, RdsClusterServerlessv2ScalingConfiguration
from lib.cdk.aws.rds_cluster_instance import RdsClusterInstance
from lib.cdk.aws.rds_cluster_parameter_group import (
    RdsClusterParameterGroup,
    RdsClusterParameterGroupParameter,
)
from lib.config import Config
from lib.constructs.iam import assume_role_policy
from lib.stacks.base import BaseStack
from lib.stacks.network import NetworkStack
from lib.stacks.security import POSTGRES_PORT, SecurityStack

# Cluster parameters the migration depends on. Static ones apply at the next reboot.
CLUSTER_PARAMETERS = (
    ("rds.force_ssl", "1", "pending-reboot"),             # TLS on every connection
    ("rds.logical_replication", "1", "pending-reboot"),   # DMS CDC from Aurora (the fallback task)
    ("max_slot_wal_keep_size", "51200", "immediate"),     # a stalled slot cannot fill the volume (MB)
    ("wal_sender_timeout", "0", "immediate"),             # DMS keeps long-idle replication connections
    ("log_connections", "1", "immediate"),
    ("log_disconnections", "1", "immediate"),
    ("log_min_duration_statement", "1000", "immediate"),  # ms: slow statements in the postgresql log
    # Schema changes are audited; statements with payment data are not written to logs.
    ("log_statement", "ddl", "immediate"),
)
ENHANCED_MONITORING_SECONDS = 60


class DatabaseStack(BaseStack):
    def __init__(self, scope: Construct, *, config: Config, network: NetworkStack, security: SecurityStack) -> None:
        super().__init__(scope, "database", config=config)
        db = config.database
        name = self.resource_name("aurora")
        data_key = security.data_key.arn

        subnets = DbSubnetGroup(self, "subnets", name=name, subnet_ids=network.private_subnet_ids,
                                description="Private subnets of the payment database")
        # The family follows the major version: a major upgrade needs a new group before the
        # cluster moves to it, so the name is a prefix and the new group is created first.
        parameters = RdsClusterParameterGroup(
            self, "parameters", name_prefix=f"{name}-", family=f"aurora-postgresql{db.engine_major}",
            description="TLS only, logical replication for DMS, connection and slow-statement logging",
            parameter=[RdsClusterParameterGroupParameter(name=key, value=value, apply_method=method)
                       for key, value, method in CLUSTER_PARAMETERS],
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True))
        # Created here so the exported postgresql log is encrypted and expires; RDS would create it bare.
        CloudwatchLogGroup(self, "postgresql-log", name=f"/aws/rds/cluster/{name}/postgresql",
                           kms_key_id=security.logs_key.arn, retention_in_days=config.logs.retention_days)

        self.cluster = RdsCluster(
            self, "cluster", cluster_identifier=name, engine="aurora-postgresql", engine_mode="provisioned",
            engine_version=db.engine_version, database_name=db.database_name, port=POSTGRES_PORT,
            master_username=db.master_username,
            manage_master_user_password=True,          # RDS generates, stores and rotates the password
            master_user_secret_kms_key_id=data_key,
            storage_encrypted=True, kms_key_id=data_key,
            iam_database_authentication_enabled=True,
            db_subnet_group_name=subnets.name, db_cluster_parameter_group_name=parameters.name,
            vpc_security_group_ids=[security.database_security_group_id],
            serverlessv2_scaling_configuration=RdsClusterServerlessv2ScalingConfiguration(
                min_capacity=db.min_acu, max_capacity=db.max_acu),
            enabled_cloudwatch_logs_exports=["postgresql"],
            backup_retention_period=db.backup_retention_days,
            preferred_backup_window=db.preferred_backup_window,
            preferred_maintenance_window=db.preferred_maintenance_window,
            copy_tags_to_snapshot=True, deletion_protection=db.deletion_protection,
            # Unique per cluster: a fixed name would collide with the snapshot of an earlier destroy.
            # Set once at creation (the timestamp is ignored afterwards, so no plan ever shows it).
            skip_final_snapshot=False,
            final_snapshot_identifier=Fn.join("", [f"{name}-final-", Fn.formatdate("YYYYMMDDhhmmss", Fn.timestamp())]),
            allow_major_version_upgrade=False, apply_immediately=False,
            lifecycle=TerraformResourceLifecycle(ignore_changes=[
                "final_snapshot_identifier",
                # With a pinned minor ("16.6") RDS still upgrades minors itself; Terraform must not
                # try to go back. A major-only version ("16") never differs from what runs.
                *(["engine_version"] if db.pins_minor_version else []),
            ]),
        )

        monitoring_role = IamRole(
            self, "monitoring-role", name=self.resource_name("rds-monitoring"),
            assume_role_policy=assume_role_policy(self, "monitoring-trust", "monitoring.rds.amazonaws.com",
                                                  account_id=self.account_id).json)
        monitoring_policy = IamRolePolicyAttachment(
            self, "monitoring-policy", role=monitoring_role.name,
            policy_arn=f"arn:{self.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole")

        # A writer and a reader in different AZs: a failover promotes the reader (tier 1).
        for index, role in enumerate(("writer", "reader")):
            RdsClusterInstance(
                # The instances run the cluster's version; they name none of their own.
                self, role, identifier=f"{name}-{role}", cluster_identifier=self.cluster.id,
                engine=self.cluster.engine,
                instance_class="db.serverless", availability_zone=network.availability_zones[index],
                promotion_tier=index, publicly_accessible=False, auto_minor_version_upgrade=True,
                performance_insights_enabled=True, performance_insights_kms_key_id=data_key,
                performance_insights_retention_period=db.performance_insights_retention_days,
                monitoring_interval=ENHANCED_MONITORING_SECONDS, monitoring_role_arn=monitoring_role.arn,
                ca_cert_identifier="rds-ca-rsa2048-g1", copy_tags_to_snapshot=True,
                # The role is usable only once its policy is attached (and kept until the instance goes).
                depends_on=[monitoring_policy])

        self._backup_plan(config, security.backup_key.arn)

        self.cluster_identifier = self.cluster.cluster_identifier
        self.endpoint = self.cluster.endpoint
        self.port = POSTGRES_PORT
        self.database_name = db.database_name
        # The RDS-managed secret ({"username", "password"}) and the key it is encrypted with.
        self.master_secret_arn = self.cluster.master_user_secret.get(0).secret_arn
        self.master_secret_key_arn = data_key

    def _backup_plan(self, config: Config, key_arn: str) -> None:
        """Daily AWS Backup snapshots into a vault under the security stack's backup key, kept
        longer than the cluster's own automated backups (which cap at 35 days and go with the
        cluster); locked where config asks for it."""
        name = self.resource_name("aurora")
        vault = BackupVault(self, "backup-vault", name=name, kms_key_arn=key_arn)
        if config.database.backup_vault_lock_days is not None:
            # Governance mode (no changeable_for_days): nobody without the backup:DeleteBackupVaultLockConfiguration
            # permission deletes a recovery point early. Compliance mode, irreversible after its grace
            # period, is the account owner's decision, not a config default.
            BackupVaultLockConfiguration(self, "backup-vault-lock", backup_vault_name=vault.name,
                                         min_retention_days=config.database.backup_vault_lock_days)
        plan = BackupPlan(self, "backup-plan", name=name, rule=[BackupPlanRule(
            rule_name="daily", target_vault_name=vault.name, schedule=config.database.backup_plan_schedule,
            start_window=60, completion_window=360,
            lifecycle=BackupPlanRuleLifecycle(delete_after=config.database.backup_plan_retention_days))])
        role = IamRole(self, "backup-role", name=self.resource_name("aurora-backup"),
                       assume_role_policy=assume_role_policy(self, "backup-trust", "backup.amazonaws.com",
                                                             account_id=self.account_id).json)
        for index, managed in enumerate(("AWSBackupServiceRolePolicyForBackup", "AWSBackupServiceRolePolicyForRestores")):
            IamRolePolicyAttachment(self, f"backup-policy-{index}", role=role.name,
                                    policy_arn=f"arn:{self.partition}:iam::aws:policy/service-role/{managed}")
        BackupSelection(self, "backup-selection", name=name, plan_id=plan.id, iam_role_arn=role.arn,
                        resources=[self.cluster.arn])
