"""The emulator's shims (lib/local/emulator.py SHIMS), each checked over HTTP the way the AWS
provider reads the API back. The emulator runs in a child process: the shims patch moto where it
runs, and the other tests' moto server must stay plain."""

from __future__ import annotations

import io
import json
import zipfile

import boto3
import pytest

from tests.support.emulator_process import emulator_process

ACCOUNT = "123456789012"
REGION = "eu-west-1"

# The emulator runs in a child process and is reached over HTTP.
pytestmark = pytest.mark.moto


@pytest.fixture(scope="module")
def endpoint() -> str:
    with emulator_process() as url:
        yield url


@pytest.fixture
def client(endpoint: str):
    def make(service: str):
        return boto3.client(service, region_name=REGION, endpoint_url=endpoint, aws_access_key_id="test",
                            aws_secret_access_key="test")
    return make


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()


def _vpc_with_subnets(ec2, cidr: str) -> tuple[str, list[str]]:
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    base = cidr.rsplit(".", 2)[0]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"{base}.{index}.0/24", AvailabilityZone=f"{REGION}{zone}")
               ["Subnet"]["SubnetId"] for index, zone in enumerate("ab")]
    return vpc, subnets


def test_lambda_answers_its_logging_and_dead_letter_config(client):
    role = client("iam").create_role(RoleName="shim-lambda", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:shim-dead-letters"
    lambdas = client("lambda")
    lambdas.create_function(FunctionName="shim-logging", Runtime="python3.12", Role=role, Handler="handler.handler",
                            Code={"ZipFile": _zip()}, DeadLetterConfig={"TargetArn": queue},
                            LoggingConfig={"LogFormat": "JSON", "LogGroup": "/aws/lambda/shim-logging"})
    lambdas.create_function(FunctionName="shim-plain", Runtime="python3.12", Role=role, Handler="handler.handler",
                            Code={"ZipFile": _zip()})

    configuration = lambdas.get_function(FunctionName="shim-logging")["Configuration"]
    assert configuration["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": "/aws/lambda/shim-logging",
                                              "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO"}
    assert configuration["DeadLetterConfig"] == {"TargetArn": queue}
    plain = lambdas.get_function_configuration(FunctionName="shim-plain")
    assert plain["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/aws/lambda/shim-plain"}
    assert "DeadLetterConfig" not in plain

    lambdas.update_function_configuration(FunctionName="shim-logging", DeadLetterConfig={"TargetArn": ""},
                                          LoggingConfig={"LogFormat": "Text", "LogGroup": "/custom/group"})
    updated = lambdas.get_function(FunctionName="shim-logging")["Configuration"]
    assert updated["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/custom/group"}
    assert "DeadLetterConfig" not in updated


def test_backup_tags_read_back_without_a_trailing_slash(client):
    backup = client("backup")

    def like_the_go_sdk(request, **_):  # GET /tags/{arn} instead of botocore's /tags/{arn}/
        request.url = request.url.rstrip("/")

    backup.meta.events.register("before-sign.backup.ListTags", like_the_go_sdk)
    vault = backup.create_backup_vault(BackupVaultName="shim-vault", BackupVaultTags={"Project": "shim"})
    plan = backup.create_backup_plan(BackupPlan={"BackupPlanName": "shim-plan", "Rules": [
        {"RuleName": "daily", "TargetBackupVaultName": "shim-vault"}]}, BackupPlanTags={"Stack": "database"})

    assert backup.list_tags(ResourceArn=vault["BackupVaultArn"])["Tags"] == {"Project": "shim"}
    assert backup.list_tags(ResourceArn=plan["BackupPlanArn"])["Tags"] == {"Stack": "database"}


def test_rds_serverless_v2_cluster_has_no_v1_scaling_configuration_and_instances_keep_performance_insights(client):
    ec2, rds = client("ec2"), client("rds")
    _, subnets = _vpc_with_subnets(ec2, "10.61.0.0/16")
    rds.create_db_subnet_group(DBSubnetGroupName="shim-db", DBSubnetGroupDescription="shim", SubnetIds=subnets)
    cluster = rds.create_db_cluster(
        DBClusterIdentifier="shim-aurora", Engine="aurora-postgresql", EngineMode="provisioned",
        EngineVersion="16.6", MasterUsername="payments", ManageMasterUserPassword=True,
        DBSubnetGroupName="shim-db", ServerlessV2ScalingConfiguration={"MinCapacity": 0.5, "MaxCapacity": 2})
    assert "ScalingConfigurationInfo" not in cluster["DBCluster"]
    assert "ScalingConfigurationInfo" not in rds.describe_db_clusters(DBClusterIdentifier="shim-aurora")["DBClusters"][0]

    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
    rds.create_db_instance(DBInstanceIdentifier="shim-writer", DBClusterIdentifier="shim-aurora",
                           Engine="aurora-postgresql", DBInstanceClass="db.serverless",
                           EnablePerformanceInsights=True, PerformanceInsightsKMSKeyId=key,
                           PerformanceInsightsRetentionPeriod=31)
    rds.create_db_instance(DBInstanceIdentifier="shim-reader", DBClusterIdentifier="shim-aurora",
                           Engine="aurora-postgresql", DBInstanceClass="db.serverless")

    writer = rds.describe_db_instances(DBInstanceIdentifier="shim-writer")["DBInstances"][0]
    assert (writer["PerformanceInsightsEnabled"], writer["PerformanceInsightsKMSKeyId"],
            writer["PerformanceInsightsRetentionPeriod"]) == (True, key, 31)
    reader = rds.describe_db_instances(DBInstanceIdentifier="shim-reader")["DBInstances"][0]
    assert reader["PerformanceInsightsEnabled"] is False
    assert "PerformanceInsightsRetentionPeriod" not in reader
    # Without CACertificateIdentifier, the CA AWS gives new instances (no modify + reboot to reach it).
    assert writer["CACertificateIdentifier"] == reader["CACertificateIdentifier"] == "rds-ca-rsa2048-g1"

    rds.modify_db_instance(DBInstanceIdentifier="shim-reader", EnablePerformanceInsights=True,
                           PerformanceInsightsRetentionPeriod=7, ApplyImmediately=True)
    reader = rds.describe_db_instances(DBInstanceIdentifier="shim-reader")["DBInstances"][0]
    assert (reader["PerformanceInsightsEnabled"], reader["PerformanceInsightsRetentionPeriod"]) == (True, 7)


def test_acm_certificate_keeps_the_requested_key_algorithm(client):
    acm = client("acm")
    ec_arn = acm.request_certificate(DomainName="api.shim.test", ValidationMethod="DNS",
                                     KeyAlgorithm="EC_prime256v1")["CertificateArn"]
    rsa_arn = acm.request_certificate(DomainName="www.shim.test", ValidationMethod="DNS")["CertificateArn"]

    ec_certificate = acm.describe_certificate(CertificateArn=ec_arn)["Certificate"]
    assert ec_certificate["KeyAlgorithm"] == "EC_prime256v1"
    assert acm.describe_certificate(CertificateArn=rsa_arn)["Certificate"]["KeyAlgorithm"] == "RSA_2048"
    # Issued at once, not 60 s after the request (moto's MOTO_ACM_VALIDATION_WAIT).
    assert ec_certificate["Status"] == "ISSUED"


def test_dms_subnet_group_answers_its_subnets_and_tags_under_its_arn(client):
    vpc, subnets = _vpc_with_subnets(client("ec2"), "10.62.0.0/16")
    dms = client("dms")
    dms.create_replication_subnet_group(ReplicationSubnetGroupIdentifier="shim-dms",
                                        ReplicationSubnetGroupDescription="shim", SubnetIds=subnets,
                                        Tags=[{"Key": "Stack", "Value": "migration"}])

    group = dms.describe_replication_subnet_groups(
        Filters=[{"Name": "replication-subnet-group-id", "Values": ["shim-dms"]}])["ReplicationSubnetGroups"][0]
    assert group["VpcId"] == vpc
    assert sorted(subnet["SubnetIdentifier"] for subnet in group["Subnets"]) == sorted(subnets)
    assert {subnet["SubnetAvailabilityZone"]["Name"] for subnet in group["Subnets"]} == {f"{REGION}a", f"{REGION}b"}
    arn = f"arn:aws:dms:{REGION}:{ACCOUNT}:subgrp:shim-dms"
    assert dms.list_tags_for_resource(ResourceArn=arn)["TagList"] == [
        {"Key": "Stack", "Value": "migration", "ResourceArn": arn}]


def test_security_group_rule_referencing_a_group_keeps_its_description(client):
    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.63.0.0/16")["Vpc"]["VpcId"]
    database = ec2.create_security_group(GroupName="shim-db", Description="db", VpcId=vpc)["GroupId"]
    app = ec2.create_security_group(GroupName="shim-app", Description="app", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=database, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "UserIdGroupPairs": [{"GroupId": app, "Description": "PostgreSQL from the API"}]},
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "HTTPS from on-prem"}]}])

    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [database]}])
    described = {rule.get("ReferencedGroupInfo", {}).get("GroupId") or rule.get("CidrIpv4"): rule.get("Description")
                 for rule in rules["SecurityGroupRules"] if not rule["IsEgress"]}
    assert described == {app: "PostgreSQL from the API", "10.0.0.0/8": "HTTPS from on-prem"}


def test_state_machine_definitions_are_validated_and_versions_listed(client):
    sfn = client("stepfunctions")
    good = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
    assert sfn.validate_state_machine_definition(definition=json.dumps(good))["result"] == "OK"
    bad = sfn.validate_state_machine_definition(definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Bogus"}}}))
    assert bad["result"] == "FAIL" and "Bogus" in bad["diagnostics"][0]["message"], bad
    role = client("iam").create_role(RoleName="shim-sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    machine = sfn.create_state_machine(name="shim-versions", definition=json.dumps(good), roleArn=role, publish=True)
    versions = sfn.list_state_machine_versions(stateMachineArn=machine["stateMachineArn"])["stateMachineVersions"]
    assert [version["stateMachineVersionArn"] for version in versions] == [f"{machine['stateMachineArn']}:1"]


def test_dms_certificates_are_imported_described_and_deleted_as_sent(client):
    dms = client("dms")
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    imported = dms.import_certificate(CertificateIdentifier="onprem-ca", CertificatePem=pem,
                                      Tags=[{"Key": "Stack", "Value": "migration"}])["Certificate"]
    arn = imported["CertificateArn"]
    assert arn.startswith(f"arn:aws:dms:{REGION}:{ACCOUNT}:cert:")
    (described,) = dms.describe_certificates(Filters=[{"Name": "certificate-id", "Values": ["onprem-ca"]}])["Certificates"]
    assert (described["CertificatePem"], described["CertificateArn"]) == (pem, arn)
    assert dms.list_tags_for_resource(ResourceArn=arn)["TagList"][0]["Value"] == "migration"
    dms.delete_certificate(CertificateArn=arn)
    with pytest.raises(dms.exceptions.ResourceNotFoundFault):
        dms.describe_certificates(Filters=[{"Name": "certificate-arn", "Values": [arn]}])


def test_dms_connection_of_an_endpoint_is_tested_again(client):
    dms = client("dms")
    instance = dms.create_replication_instance(ReplicationInstanceIdentifier="shim-retest",
                                               ReplicationInstanceClass="dms.t3.micro")["ReplicationInstance"]
    endpoint = dms.create_endpoint(EndpointIdentifier="shim-retest", EndpointType="source", EngineName="postgres",
                                   ServerName="onprem.internal", Port=5432, DatabaseName="payments",
                                   Username="dms_source", Password="unused")["Endpoint"]["EndpointArn"]
    arn = instance["ReplicationInstanceArn"]
    for _ in range(2):
        tested = dms.test_connection(ReplicationInstanceArn=arn, EndpointArn=endpoint)["Connection"]
        assert tested["Status"] == "testing", f"a new test of the endpoint starts as testing: {tested}"
    (connection,) = dms.describe_connections(Filters=[{"Name": "endpoint-arn", "Values": [endpoint]}])["Connections"]
    assert (connection["ReplicationInstanceArn"], connection["Status"]) == (arn, "successful")
