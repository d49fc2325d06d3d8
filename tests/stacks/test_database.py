"""database stack: Aurora Serverless v2 with managed credentials, TLS and logical replication."""

from __future__ import annotations

import json

from tests.support.configs import edited


def _cluster(synthesized):
    return synthesized.resources("database", "aws_rds_cluster")["cluster"]


def test_serverless_v2_with_version_and_capacity_from_config(synthesized):
    cluster = _cluster(synthesized)
    assert cluster["engine"] == "aurora-postgresql" and cluster["engine_mode"] == "provisioned"
    assert cluster["engine_version"] == "16"
    assert cluster["serverlessv2_scaling_configuration"] == {"min_capacity": 0.5, "max_capacity": 4}


def test_master_password_managed_by_rds_under_the_cmk(synthesized):
    cluster = _cluster(synthesized)
    assert cluster["manage_master_user_password"] is True
    assert "master_password" not in cluster and "master_password_wo" not in cluster
    assert "cross-stack-output-aws_kms_keydata-key" in cluster["master_user_secret_kms_key_id"]


def test_storage_and_performance_insights_encrypted_with_the_cmk(synthesized):
    cluster = _cluster(synthesized)
    assert cluster["storage_encrypted"] is True and "aws_kms_keydata-key" in cluster["kms_key_id"]
    for instance in synthesized.resources("database", "aws_rds_cluster_instance").values():
        assert instance["performance_insights_enabled"] is True
        assert instance["performance_insights_kms_key_id"] == cluster["kms_key_id"]


def test_writer_and_reader_in_different_azs(synthesized):
    instances = synthesized.resources("database", "aws_rds_cluster_instance")
    assert set(instances) == {"writer", "reader"}
    assert instances["writer"]["availability_zone"] != instances["reader"]["availability_zone"]
    assert instances["writer"]["promotion_tier"] == 0
    for instance in instances.values():
        assert instance["instance_class"] == "db.serverless"
        assert instance["publicly_accessible"] is False and instance["auto_minor_version_upgrade"] is True


def test_parameter_group_forces_tls_and_enables_logical_replication(synthesized):
    (group,) = synthesized.resources("database", "aws_rds_cluster_parameter_group").values()
    assert group["family"] == "aurora-postgresql16"
    parameters = {p["name"]: p["value"] for p in group["parameter"]}
    assert parameters["rds.force_ssl"] == "1" and parameters["rds.logical_replication"] == "1"
    assert _cluster(synthesized)["db_cluster_parameter_group_name"] == "${aws_rds_cluster_parameter_group.parameters.name}"


def test_iam_auth_log_export_backups_and_snapshots(synthesized):
    cluster = _cluster(synthesized)
    assert cluster["iam_database_authentication_enabled"] is True
    assert cluster["enabled_cloudwatch_logs_exports"] == ["postgresql"]
    assert cluster["backup_retention_period"] == 7
    assert cluster["copy_tags_to_snapshot"] is True
    assert cluster["skip_final_snapshot"] is False and cluster["final_snapshot_identifier"]
    assert cluster["deletion_protection"] is False, "dev config turns deletion protection off"


def test_exported_postgresql_log_group_is_encrypted(synthesized):
    group = synthesized.resources("database", "aws_cloudwatch_log_group")["postgresql-log"]
    assert group["name"] == "/aws/rds/cluster/payment-aurora-dev/postgresql"
    assert "aws_kms_keylogs-key" in group["kms_key_id"]


def test_no_password_anywhere_in_the_database_stack(synthesized):
    text = json.dumps(synthesized.stack("database"))
    assert '"master_password"' not in text and '"password"' not in text


def test_aws_backup_plan_covers_the_cluster_into_a_vault_under_its_own_key(synthesized):
    (vault,) = synthesized.resources("database", "aws_backup_vault").values()
    assert "aws_kms_keybackup-key" in vault["kms_key_arn"], "the vault must not share the data key"
    (plan,) = synthesized.resources("database", "aws_backup_plan").values()
    (rule,) = plan["rule"]
    assert rule["target_vault_name"] == "${aws_backup_vault.backup-vault.name}"
    assert rule["lifecycle"]["delete_after"] == 35
    (selection,) = synthesized.resources("database", "aws_backup_selection").values()
    assert selection["resources"] == ["${aws_rds_cluster.cluster.arn}"]


def test_schema_changes_are_logged_but_not_every_statement(synthesized):
    (group,) = synthesized.resources("database", "aws_rds_cluster_parameter_group").values()
    parameters = {p["name"]: p["value"] for p in group["parameter"]}
    assert parameters["log_statement"] == "ddl"


def test_parameter_group_can_be_replaced_for_a_new_major_without_a_name_clash(synthesized):
    (group,) = synthesized.resources("database", "aws_rds_cluster_parameter_group").values()
    assert group["family"] == "aurora-postgresql16"
    assert "name" not in group and group["name_prefix"] == "payment-aurora-dev-"
    assert group["lifecycle"]["create_before_destroy"] is True


def test_final_snapshot_name_is_unique_per_cluster_and_never_planned_again(synthesized):
    cluster = _cluster(synthesized)
    assert "timestamp()" in cluster["final_snapshot_identifier"]
    assert "final_snapshot_identifier" in cluster["lifecycle"]["ignore_changes"]
    assert "engine_version" not in cluster["lifecycle"]["ignore_changes"], "a major-only version never drifts"


def test_a_pinned_minor_version_is_never_downgraded_by_a_plan(synthesize):
    variant = synthesize(edited(r'^engine_version = "16" .*$', 'engine_version = "16.6"'))
    cluster = variant.resources("database", "aws_rds_cluster")["cluster"]
    assert cluster["engine_version"] == "16.6" and "engine_version" in cluster["lifecycle"]["ignore_changes"]


def test_instances_run_the_clusters_version_after_the_monitoring_policy_is_attached(synthesized):
    for role in ("writer", "reader"):
        instance = synthesized.resources("database", "aws_rds_cluster_instance")[role]
        assert "engine_version" not in instance
        assert instance["depends_on"] == ["aws_iam_role_policy_attachment.monitoring-policy"]
        assert "aws_subnet" in instance["availability_zone"], "placed in a private subnet's zone"


def test_backup_plan_runs_on_the_configured_schedule(synthesized):
    (plan,) = synthesized.resources("database", "aws_backup_plan").values()
    assert plan["rule"][0]["schedule"] == "cron(0 3 * * ? *)"


def test_no_vault_lock_unless_config_asks_for_one(synthesized):
    assert not synthesized.resources("database", "aws_backup_vault_lock_configuration")


def test_vault_lock_in_governance_mode_for_the_configured_days(synthesize):
    locked = synthesize(edited(r"^# backup_vault_lock_days = .*$", "backup_vault_lock_days = 30"))
    (lock,) = locked.resources("database", "aws_backup_vault_lock_configuration").values()
    assert lock["backup_vault_name"] == "${aws_backup_vault.backup-vault.name}"
    assert lock["min_retention_days"] == 30
    assert "changeable_for_days" not in lock, "compliance mode is irreversible: not a config default"
