"""The emulator: a moto server on loopback, in this process, with small shims where moto answers
differently from AWS, seeded with what a config expects to exist before its first stack.

    python -m lib.local.emulator [--env local]

serves until interrupted, so that `cdktf deploy <stack>-local` can run in another terminal, and
writes build/local/env.sh: `source build/local/env.sh` there sets what the cdktf CLI, Terraform
and `python -m lib.cutover` need to work on the local environment offline.

Each shim fixes one emulator bug in place, so the resource it concerns is applied (and read back)
like any other instead of being left out of the local deploy or declared as drift (SHIMS lists
them, with the moto behaviour each fixes). A few make moto answer a state or a default as AWS
does where moto's own answer only makes the provider wait. Features moto lacks altogether are not
imitated: lib/local/limits.py lists what the local deploy leaves out because of them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.config import Config, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT_SCRIPT = REPO_ROOT / "build" / "local" / "env.sh"

# The account and region moto answers for; the local stacks read the account from STS.
EMULATOR_ACCOUNT_ID = "123456789012"


@dataclass(frozen=True)
class Shim:
    name: str
    moto_behaviour: str
    install: Callable[[], None]


def _epoch(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc).timestamp()
        except ValueError:
            return value
    return value


# DMS answers in JSON; timestamps are epoch seconds there. moto writes ISO strings instead.
_DMS_TIMESTAMP_KEYS = frozenset({
    "InstanceCreateTime", "FreeUntil", "ReplicationTaskCreationDate", "ReplicationTaskStartDate",
    "FreshStartDate", "StartDate", "StopDate", "FullLoadStartDate", "FullLoadFinishDate",
})


def _with_epoch_timestamps(document: Any) -> Any:
    if isinstance(document, dict):
        return {key: _epoch(value) if key in _DMS_TIMESTAMP_KEYS else _with_epoch_timestamps(value)
                for key, value in document.items()}
    if isinstance(document, list):
        return [_with_epoch_timestamps(item) for item in document]
    return document


def _install_dms_timestamps() -> None:
    from moto.dms import models

    for cls in (models.FakeReplicationInstance, models.FakeReplicationTask):
        original = cls.to_dict
        if getattr(original, "_payment_migration_shim", False):
            continue

        def to_dict(self, _original=original) -> dict[str, Any]:
            return _with_epoch_timestamps(_original(self))

        to_dict._payment_migration_shim = True
        cls.to_dict = to_dict


def _install_dms_task_ready() -> None:
    """A created DMS task is `ready` once AWS has validated it; moto leaves it `creating` for
    ever, and the provider waits for `ready` until it times out."""
    from moto.dms import models

    original = models.DatabaseMigrationServiceBackend.create_replication_task
    if getattr(original, "_payment_migration_shim", False):
        return

    def create_replication_task(self, *args, **kwargs):
        return original(self, *args, **kwargs).ready()

    create_replication_task._payment_migration_shim = True
    models.DatabaseMigrationServiceBackend.create_replication_task = create_replication_task


def _install_query_log_arn() -> None:
    """Route 53 takes a log group's ARN with or without the `:*` suffix; moto only with it, and
    the provider sends it without."""
    from moto.route53 import models

    original = models.Route53Backend.create_query_logging_config
    if getattr(original, "_payment_migration_shim", False):
        return

    def create_query_logging_config(self, hosted_zone_id: str, log_group_arn: str):
        if log_group_arn and not log_group_arn.endswith(":*"):
            config = original(self, hosted_zone_id, f"{log_group_arn}:*")
            config.cloud_watch_logs_log_group_arn = log_group_arn  # read back as it was sent
            return config
        return original(self, hosted_zone_id, log_group_arn)

    create_query_logging_config._payment_migration_shim = True
    models.Route53Backend.create_query_logging_config = create_query_logging_config



def _mark(function: Callable[..., Any]) -> Callable[..., Any]:
    function._payment_migration_shim = True
    return function


def _shimmed(owner: Any, name: str) -> bool:
    """Whether `owner.name` (a function, or a property's getter) is already one of ours."""
    attribute = owner.__dict__.get(name)
    attribute = attribute.fget if isinstance(attribute, property) else attribute
    return getattr(attribute, "_payment_migration_shim", False)


def _lambda_logging_config(function: Any, sent: dict[str, Any] | None) -> dict[str, Any]:
    """LoggingConfig as Lambda answers it: what was sent, with the defaults AWS fills in."""
    config = {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{function.function_name}", **(sent or {})}
    if config["LogFormat"] == "JSON":
        config.setdefault("ApplicationLogLevel", "INFO")
        config.setdefault("SystemLogLevel", "INFO")
    return config


def _install_lambda_logging_and_dead_letters() -> None:
    """Lambda stores a function's LoggingConfig and DeadLetterConfig and answers them in
    GetFunction / GetFunctionConfiguration; moto drops both, so every re-plan restores them."""
    from moto.awslambda import models

    cls = models.LambdaFunction
    if _shimmed(cls, "get_configuration"):
        return
    original_init, original_get, original_update = cls.__init__, cls.get_configuration, cls.update_configuration

    def __init__(self, account_id: str, spec: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        original_init(self, account_id, spec, *args, **kwargs)
        self.logging_config = _lambda_logging_config(self, spec.get("LoggingConfig"))
        self.dead_letter_config = spec.get("DeadLetterConfig") or None

    def get_configuration(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        config = original_get(self, *args, **kwargs)
        config["LoggingConfig"] = getattr(self, "logging_config", None) or _lambda_logging_config(self, None)
        dead_letters = getattr(self, "dead_letter_config", None)
        if dead_letters and dead_letters.get("TargetArn"):
            config["DeadLetterConfig"] = dead_letters
        return config

    def update_configuration(self, config_updates: dict[str, Any]) -> dict[str, Any]:
        if "LoggingConfig" in config_updates:
            self.logging_config = _lambda_logging_config(self, config_updates["LoggingConfig"])
        if "DeadLetterConfig" in config_updates:  # an empty TargetArn removes it
            self.dead_letter_config = config_updates["DeadLetterConfig"] or None
        return original_update(self, config_updates)

    cls.__init__ = __init__
    cls.get_configuration = _mark(get_configuration)
    cls.update_configuration = update_configuration


def _install_backup_list_tags() -> None:
    """ListTags is GET /tags/{resourceArn}/; moto takes the ARN from the next-to-last path segment,
    so without the trailing slash (the Go SDK sends none) it looks up "tags" and answers no tags."""
    from urllib.parse import unquote

    from moto.backup.responses import BackupResponse

    if _shimmed(BackupResponse, "list_tags"):
        return

    def list_tags(self) -> str:
        resource_arn = unquote(self.path.split("/tags/", 1)[1].rstrip("/"))
        return json.dumps({"Tags": self.backup_backend.list_tags(resource_arn=resource_arn)})

    BackupResponse.list_tags = _mark(list_tags)


def _install_rds_scaling_configuration() -> None:
    """RDS answers ScalingConfigurationInfo (Serverless v1) only for engine mode `serverless`; moto
    answers one with empty fields for every cluster, which the provider reads as a v1 block."""
    from moto.rds.models import DBCluster

    if _shimmed(DBCluster, "scaling_configuration_info"):
        return
    original = DBCluster.scaling_configuration_info.fget

    def scaling_configuration_info(self) -> dict[str, Any] | None:
        return original(self) if self.scaling_configuration else None

    DBCluster.scaling_configuration_info = property(_mark(scaling_configuration_info))


def _install_rds_performance_insights() -> None:
    """CreateDBInstance / ModifyDBInstance take EnablePerformanceInsights, PerformanceInsightsKMSKeyId
    and ...RetentionPeriod, and DescribeDBInstances answers them as PerformanceInsightsEnabled, ...;
    moto ignores them on create and keeps them under the request's names on modify."""
    from moto.rds.models import DBInstance

    if _shimmed(DBInstance, "__init__"):
        return
    original = DBInstance.__init__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.enable_performance_insights = bool(kwargs.get("enable_performance_insights"))
        self.performance_insights_retention_period = kwargs.get("performance_insights_retention_period")
        self.performance_insights_kms_key_id = kwargs.get("performance_insights_kms_key_id")

    def enabled(self) -> bool:
        return bool(self.__dict__.get("enable_performance_insights"))

    def retention(self) -> int | None:
        # AWS fills in the default retention when PI is on: 7 days, the free tier.
        return (self.__dict__.get("_performance_insights_retention_period") or 7) if enabled(self) else None

    def set_retention(self, value: int | None) -> None:
        self._performance_insights_retention_period = value

    DBInstance.__init__ = _mark(__init__)
    DBInstance.performance_insights_enabled = property(enabled)
    DBInstance.performance_insights_retention_period = property(retention, set_retention)


# The CA that RDS gives a new DB instance when the request names none (AWS's default since 2024).
RDS_DEFAULT_CA = "rds-ca-rsa2048-g1"


def _install_rds_default_ca() -> None:
    """A DB instance created without CACertificateIdentifier gets rds-ca-rsa2048-g1; moto gives it
    "rds-ca-default", so the provider modifies, reboots and waits for every instance (2 minutes)."""
    from moto.rds.models import RDSBackend

    if _shimmed(RDSBackend, "create_db_instance"):
        return
    original = RDSBackend.create_db_instance

    def create_db_instance(self, db_kwargs: Any):
        if not db_kwargs.get("ca_certificate_identifier"):
            db_kwargs["ca_certificate_identifier"] = RDS_DEFAULT_CA
        return original(self, db_kwargs)

    RDSBackend.create_db_instance = _mark(create_db_instance)


def _install_acm_key_algorithm() -> None:
    """RequestCertificate takes KeyAlgorithm (RSA_2048, EC_prime256v1, ...) and DescribeCertificate
    answers it; moto always makes an RSA 2048 key and answers RSA_2048."""
    from moto.acm.models import CertBundle, acm_backends
    from moto.acm.responses import AWSCertificateManagerResponse

    if _shimmed(AWSCertificateManagerResponse, "request_certificate"):
        return
    original_request, original_describe = AWSCertificateManagerResponse.request_certificate, CertBundle.describe

    def request_certificate(self):
        result = original_request(self)
        key_algorithm = self._get_param("KeyAlgorithm")
        if key_algorithm:
            arn = result.result["CertificateArn"]
            acm_backends[self.current_account][self.region].get_certificate(arn).key_algorithm = key_algorithm
        return result

    def describe(self) -> dict[str, Any]:
        described = original_describe(self)
        if getattr(self, "key_algorithm", None):
            described["Certificate"]["KeyAlgorithm"] = self.key_algorithm
        return described

    AWSCertificateManagerResponse.request_certificate = _mark(request_certificate)
    CertBundle.describe = describe


def _install_acm_prompt_validation() -> None:
    """ACM issues a DNS-validated certificate once it sees the validation record, in seconds; moto
    keeps it PENDING_VALIDATION for 60 s after the request (MOTO_ACM_VALIDATION_WAIT), which
    aws_acm_certificate_validation waits out."""
    from moto import settings

    settings.ACM_VALIDATION_WAIT = 0


def _install_dms_subnet_group() -> None:
    """DMS answers a replication subnet group with the subnets (and their VPC and zones) it was
    created with, and tags it under its ARN (arn:...:subgrp:<id>), where ListTagsForResource
    looks; moto answers a fixed subnet-12345 in vpc-12345 and tags the bare identifier."""
    from moto.dms.models import DatabaseMigrationServiceBackend, FakeReplicationSubnetGroup
    from moto.ec2.models import ec2_backends
    from moto.utilities.utils import get_partition

    if _shimmed(DatabaseMigrationServiceBackend, "create_replication_subnet_group"):
        return
    original_create, original_to_dict = (DatabaseMigrationServiceBackend.create_replication_subnet_group,
                                         FakeReplicationSubnetGroup.to_dict)

    def create_replication_subnet_group(self, replication_subnet_group_identifier: str,
                                        replication_subnet_group_description: str, subnet_ids: list[str],
                                        tags: list[dict[str, str]] | None = None):
        group = original_create(self, replication_subnet_group_identifier, replication_subnet_group_description,
                                subnet_ids, None)
        ec2 = ec2_backends[self.account_id][self.region_name]
        group.subnets = [ec2.get_subnet(subnet_id) for subnet_id in subnet_ids or []]
        group.arn = (f"arn:{get_partition(self.region_name)}:dms:{self.region_name}:{self.account_id}"
                     f":subgrp:{replication_subnet_group_identifier}")
        if tags:
            self.tagger.tag_resource(group.arn, tags)
        return group

    def to_dict(self) -> dict[str, Any]:
        described = original_to_dict(self)
        subnets = getattr(self, "subnets", None)
        if subnets:
            described["VpcId"] = subnets[0].vpc_id
            described["Subnets"] = [{"SubnetIdentifier": subnet.id,
                                     "SubnetAvailabilityZone": {"Name": subnet.availability_zone},
                                     "SubnetStatus": "Active"} for subnet in subnets]
        return described

    DatabaseMigrationServiceBackend.create_replication_subnet_group = _mark(create_replication_subnet_group)
    FakeReplicationSubnetGroup.to_dict = to_dict


def _install_security_group_rule_description() -> None:
    """DescribeSecurityGroupRules answers the Description of a rule that references a security
    group; moto keeps it with the referenced group and answers it only for CIDR rules."""
    from moto.ec2.models.security_groups import SecurityGroupRule

    if _shimmed(SecurityGroupRule, "description"):
        return

    def description(self) -> str | None:
        return self.ip_range.get("Description") or (self.source_group or {}).get("Description")

    SecurityGroupRule.description = property(_mark(description))
def _install_sfn_list_versions() -> None:
    """The provider reads a state machine's versions after creating it; moto keeps versions but
    does not answer ListStateMachineVersions (a 500 the provider retries, then fails on)."""
    from moto.core.responses import ActionResult
    from moto.stepfunctions import responses

    if getattr(responses.StepFunctionResponse, "list_state_machine_versions", None) is not None:
        return

    def list_state_machine_versions(self) -> ActionResult:
        machine = self.stepfunction_backend.describe_state_machine(self._get_param("stateMachineArn"))
        versions = sorted(getattr(machine, "versions", {}).values(), key=lambda version: version.version, reverse=True)
        return ActionResult({"stateMachineVersions": [
            {"stateMachineVersionArn": version.arn, "creationDate": version.creation_date.timestamp()}
            for version in versions]})

    responses.StepFunctionResponse.list_state_machine_versions = list_state_machine_versions


def _install_sfn_validate_definition() -> None:
    """The provider validates a state machine's definition before creating or updating it; moto has
    no ValidateStateMachineDefinition (a 500). Answered with moto's own ASL parser, the one its
    interpreter runs: OK when it parses, FAIL with the parser's message when not."""
    from moto.core.responses import ActionResult
    from moto.stepfunctions.responses import StepFunctionResponse

    if getattr(StepFunctionResponse, "validate_state_machine_definition", None) is not None:
        return

    def validate_state_machine_definition(self) -> ActionResult:
        from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

        diagnostics = []
        try:
            AmazonStateLanguageParser.parse(self._get_param("definition"))
        except Exception as error:  # noqa: BLE001 - every parser failure is a diagnostic
            diagnostics.append({"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED",
                                "message": f"{type(error).__name__}: {error}"[:1000], "location": "/"})
        return ActionResult({"result": "FAIL" if diagnostics else "OK", "diagnostics": diagnostics,
                             "truncated": False})

    StepFunctionResponse.validate_state_machine_definition = validate_state_machine_definition


def _install_dms_certificates() -> None:
    """DMS endpoints verify their database's certificate against an imported CA certificate (the
    endpoint's CertificateArn); moto has no ImportCertificate, DescribeCertificates or
    DeleteCertificate. They keep the PEM as sent and answer it back, tags through the backend's
    tagger like every other DMS resource."""
    import json as json_module
    import uuid

    from moto.dms import responses
    from moto.dms.exceptions import ResourceNotFoundFault

    if getattr(responses.DatabaseMigrationServiceResponse, "import_certificate", None) is not None:
        return

    def certificates(response) -> dict[str, dict[str, Any]]:
        backend = response.dms_backend
        if not hasattr(backend, "_payment_migration_certificates"):
            backend._payment_migration_certificates = {}
        return backend._payment_migration_certificates

    def import_certificate(self) -> str:
        params = json_module.loads(self.body)
        identifier = params["CertificateIdentifier"]
        arn = f"arn:aws:dms:{self.region}:{self.current_account}:cert:{uuid.uuid4().hex.upper()[:26]}"
        now = time.time()
        certificate = {"CertificateIdentifier": identifier, "CertificateArn": arn, "CertificateCreationDate": now,
                       "CertificatePem": params.get("CertificatePem", ""), "CertificateOwner": self.current_account,
                       "ValidFromDate": now, "ValidToDate": now + 365 * 86400, "SigningAlgorithm": "SHA256withRSA",
                       "KeyLength": 2048}
        certificates(self)[arn] = certificate
        if params.get("Tags"):
            self.dms_backend.tagger.tag_resource(arn, params["Tags"])
        return json_module.dumps({"Certificate": certificate})

    def describe_certificates(self) -> str:
        params = json_module.loads(self.body or "{}")
        found = list(certificates(self).values())
        for rule in params.get("Filters", []):
            key = {"certificate-id": "CertificateIdentifier", "certificate-arn": "CertificateArn"}.get(rule["Name"])
            if key:
                found = [certificate for certificate in found if certificate[key] in rule["Values"]]
        if params.get("Filters") and not found:
            raise ResourceNotFoundFault("No certificates found")
        return json_module.dumps({"Certificates": found})

    def delete_certificate(self) -> str:
        arn = json_module.loads(self.body)["CertificateArn"]
        certificate = certificates(self).pop(arn, None)
        if certificate is None:
            raise ResourceNotFoundFault(f"Certificate {arn} not found")
        return json_module.dumps({"Certificate": certificate})

    responses.DatabaseMigrationServiceResponse.import_certificate = import_certificate
    responses.DatabaseMigrationServiceResponse.describe_certificates = describe_certificates
    responses.DatabaseMigrationServiceResponse.delete_certificate = delete_certificate


def _install_dms_connection_retest() -> None:
    """TestConnection tests an endpoint again each time it is called (the connection is `testing`
    until the new test ends); moto answers a second call for the same endpoint with a server error
    (its connection variable is unbound), so a check that runs twice could never pass."""
    from moto.dms.models import DatabaseMigrationServiceBackend

    if _shimmed(DatabaseMigrationServiceBackend, "test_connection"):
        return
    original = DatabaseMigrationServiceBackend.test_connection

    def test_connection(self, replication_instance_arn: str, endpoint_arn: str):
        self.connections = [connection for connection in self.connections
                            if (connection.replication_instance_arn, connection.endpoint_arn)
                            != (replication_instance_arn, endpoint_arn)]
        return original(self, replication_instance_arn, endpoint_arn)

    DatabaseMigrationServiceBackend.test_connection = _mark(test_connection)


SHIMS = (
    Shim("dms-timestamps", "DMS responses carry timestamps as ISO strings instead of epoch seconds; "
         "the provider rejects them and cannot read back a replication instance or task",
         _install_dms_timestamps),
    Shim("dms-task-ready", "DMS tasks stay 'creating' for ever instead of becoming 'ready'",
         _install_dms_task_ready),
    Shim("route53-query-log-arn", "CreateQueryLoggingConfig accepts only a log-group ARN ending in ':*'",
         _install_query_log_arn),
    Shim("lambda-logging-and-dead-letters", "Lambda functions drop LoggingConfig and DeadLetterConfig: "
         "GetFunction answers neither", _install_lambda_logging_and_dead_letters),
    Shim("backup-list-tags", "Backup ListTags reads the ARN from the path only with a trailing slash, which "
         "the Go SDK does not send: plans and vaults read back without tags", _install_backup_list_tags),
    Shim("rds-scaling-configuration", "DescribeDBClusters answers an empty Serverless v1 ScalingConfigurationInfo "
         "for every cluster, also provisioned (Serverless v2) ones", _install_rds_scaling_configuration),
    Shim("rds-performance-insights", "CreateDBInstance ignores PerformanceInsightsEnabled, KMSKeyId and "
         "RetentionPeriod: DescribeDBInstances answers none", _install_rds_performance_insights),
    Shim("rds-default-ca", "CreateDBInstance without CACertificateIdentifier gives 'rds-ca-default' instead of "
         f"{RDS_DEFAULT_CA}: the provider then modifies, reboots and waits for each instance", _install_rds_default_ca),
    Shim("acm-key-algorithm", "RequestCertificate ignores KeyAlgorithm: every certificate is described as "
         "RSA_2048", _install_acm_key_algorithm),
    Shim("acm-prompt-validation", "ACM certificates stay PENDING_VALIDATION for 60 s (MOTO_ACM_VALIDATION_WAIT)",
         _install_acm_prompt_validation),
    Shim("dms-subnet-group", "DMS replication subnet groups answer a fixed subnet-12345 in vpc-12345 and are "
         "tagged under their identifier instead of their ARN", _install_dms_subnet_group),
    Shim("security-group-rule-description", "DescribeSecurityGroupRules drops the Description of rules that "
         "reference a security group", _install_security_group_rule_description),
    Shim("sfn-list-versions", "ListStateMachineVersions is not answered (500), which the provider calls "
         "after creating a state machine", _install_sfn_list_versions),
    Shim("dms-certificates", "DMS has no ImportCertificate, DescribeCertificates or DeleteCertificate (the CA "
         "certificates endpoints verify their databases with)", _install_dms_certificates),
    Shim("sfn-validate-definition", "ValidateStateMachineDefinition is not answered (500), which the provider "
         "calls before creating or updating a state machine", _install_sfn_validate_definition),
    Shim("dms-connection-retest", "TestConnection of an endpoint tested before fails (500: moto's connection "
         "is unbound) instead of testing it again", _install_dms_connection_retest),
)


class Emulator:
    """A moto server on 127.0.0.1:`port` with the shims installed and AWS managed IAM policies
    loaded (the stacks attach some); reached over HTTP like AWS."""

    def __init__(self, port: int = 0, *, execute_state_machines: bool = False) -> None:
        """`execute_state_machines`: moto runs Step Functions executions (its own interpreter),
        which must be switched on before any state machine is created."""
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        default_user_config.setdefault("iam", {})["load_aws_managed_policies"] = True
        default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = execute_state_machines
        for shim in SHIMS:
            shim.install()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        host, bound_port = self._server.get_host_and_port()
        self.port = bound_port
        self.endpoint = f"http://{host}:{bound_port}"
        # moto's Step Functions interpreter calls other services on localhost:$MOTO_PORT.
        os.environ["MOTO_PORT"] = str(bound_port)

    @property
    def environment(self) -> dict[str, str]:
        """What a process (boto3, the AWS CLI) needs to talk to this emulator instead of AWS."""
        from lib.local.wiring import EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY_VALUE

        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": EMULATOR_ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": EMULATOR_SECRET_ACCESS_KEY_VALUE, "AWS_DEFAULT_REGION": "eu-west-1",
                "AWS_REGION": "eu-west-1"}

    def client(self, service: str, region: str = "eu-west-1"):
        import boto3

        env = self.environment
        return boto3.client(service, region_name=region, endpoint_url=self.endpoint,
                            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        self._server.stop()

    def seed(self, config: Config) -> list[str]:
        """Create what `config` expects to exist before its first stack: the state bucket
        (versioned) and the VPN or transit gateway named in it. Idempotent; returns what it did."""
        done = []
        s3 = self.client("s3", config.state.region)
        existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
        if config.state.bucket not in existing:
            location = ({} if config.state.region == "us-east-1"
                        else {"CreateBucketConfiguration": {"LocationConstraint": config.state.region}})
            s3.create_bucket(Bucket=config.state.bucket, **location)
            s3.put_bucket_versioning(Bucket=config.state.bucket, VersioningConfiguration={"Status": "Enabled"})
            done.append(f"state bucket {config.state.bucket}")
        done += _seed_onprem_gateway(config)
        return done


def _seed_onprem_gateway(config: Config) -> list[str]:
    """The VPN (or transit) gateway with the id the config names. EC2 picks ids itself, so it is
    created in moto's backend directly, as the network team would have created it in AWS."""
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.transit_gateway import TransitGateway
    from moto.ec2.models.vpn_gateway import VpnGateway

    backend = ec2_backends[EMULATOR_ACCOUNT_ID][config.region]
    onprem = config.onprem
    if onprem.vpn_gateway_id and onprem.vpn_gateway_id not in backend.vpn_gateways:
        backend.vpn_gateways[onprem.vpn_gateway_id] = VpnGateway(
            backend, onprem.vpn_gateway_id, "ipsec.1", None, None, {"Name": f"payment-migration {config.name} on-prem"})
        return [f"VPN gateway {onprem.vpn_gateway_id}"]
    if onprem.transit_gateway_id and onprem.transit_gateway_id not in backend.transit_gateways:
        gateway = TransitGateway(backend, description=f"payment-migration {config.name} on-prem")
        gateway.id = onprem.transit_gateway_id
        backend.transit_gateways[onprem.transit_gateway_id] = gateway
        return [f"transit gateway {onprem.transit_gateway_id}"]
    return []


def environment_script(config: Config, endpoint: str, terraform_config: Path | None) -> str:
    """The shell lines that point a shell at the local environment: the cdktf CLI on the Node that
    package.json pins, Terraform installing its provider from this machine's mirror only, every
    AWS client (boto3, the AWS CLI) at the emulator with its test credentials, and the config."""
    from lib.local.wiring import EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY_VALUE

    node_bin = REPO_ROOT / "node_modules" / ".bin"
    venv_bin = REPO_ROOT / ".venv" / "bin"  # `python` is the project's, as cdktf.json's app command
    lines = [
        f"# The {config.name} environment for this shell, written by `make emulator` (lib/local/emulator.py):",
        "#   source build/local/env.sh",
        f"# then `cdktf deploy <stack>-{config.name}`, `cdktf diff`, `terraform` and `python -m lib.cutover` "
        f"work on the emulator at {endpoint}.",
        f"export PAYMENT_MIGRATION_ENV={shlex.quote(config.name)}",
        "unset PAYMENT_MIGRATION_CONFIG",
        f"export PATH={shlex.quote(str(node_bin))}:{shlex.quote(str(venv_bin))}:\"$PATH\"",
        f"export JSII_NODE={shlex.quote(str(node_bin / 'node'))}",
        "export CHECKPOINT_DISABLE=1",
    ]
    if terraform_config is not None:
        lines.append(f"export TF_CLI_CONFIG_FILE={shlex.quote(str(terraform_config))}")
    lines += [
        f"export AWS_ENDPOINT_URL={shlex.quote(endpoint)}",
        f"export AWS_ACCESS_KEY_ID={EMULATOR_ACCESS_KEY_ID}",
        f"export AWS_SECRET_ACCESS_KEY={EMULATOR_SECRET_ACCESS_KEY_VALUE}",
        f"export AWS_REGION={shlex.quote(config.region)} AWS_DEFAULT_REGION={shlex.quote(config.region)}",
        "# A profile or a session token of a real account must not mix with the test credentials.",
        "unset AWS_PROFILE AWS_SESSION_TOKEN",
    ]
    return "\n".join(lines) + "\n"


def write_environment_script(config: Config, endpoint: str, path: Path = ENVIRONMENT_SCRIPT) -> Path:
    """Writes environment_script() to `path`, with a Terraform CLI configuration next to it that
    installs the AWS provider from this machine's mirror (none when no mirror is found: a warning)."""
    from lib.terraform import TerraformError, cli_config, find_mirror

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        terraform_config = cli_config(find_mirror(), path.parent / "terraformrc")
    except TerraformError as error:
        print(f"warning: {error}; Terraform will look for its provider on the network", file=sys.stderr)
        terraform_config = None
    path.write_text(environment_script(config, endpoint, terraform_config))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.local.emulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=os.environ.get("PAYMENT_MIGRATION_ENV", "local"),
                        help="the environment whose [emulator] endpoint to serve (default local)")
    args = parser.parse_args(argv)
    config = load_config(args.env)
    if config.emulator is None:
        print(f"error: config/{args.env}.toml has no [emulator] section", file=sys.stderr)
        return 2
    emulator = Emulator(config.emulator.port)
    for item in emulator.seed(config):
        print(f"==> created {item}", flush=True)
    script = write_environment_script(config, emulator.endpoint)
    print(f"==> emulator serving {emulator.endpoint} for environment {config.name}; Ctrl-C stops it\n"
          f"==> in another shell, from {REPO_ROOT}:\n"
          f"      source {script.relative_to(REPO_ROOT)}\n"
          f"      cdktf deploy account-{config.name} network-{config.name} --auto-approve\n"
          f"      python -m lib.cutover status", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
