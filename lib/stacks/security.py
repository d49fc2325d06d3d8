"""security: KMS keys, security groups, the private AWS endpoints, the WAF web ACL, one secret per
database role and side with the check of their age, and the writer parameter."""

from __future__ import annotations

import dataclasses
import json

from constructs import Construct

from lib.cdk import TerraformResourceLifecycle
from lib.cdk.aws.cloudwatch_log_group import CloudwatchLogGroup
from lib.cdk.aws.security_group import SecurityGroup
from lib.cdk.aws.ssm_parameter import SsmParameter
from lib.cdk.aws.vpc_endpoint import VpcEndpoint
from lib.cdk.aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from lib.cdk.aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from lib.cdk.aws.wafv2_web_acl import (
    Wafv2WebAcl,
    Wafv2WebAclDefaultAction,
    Wafv2WebAclRule,
    Wafv2WebAclRuleAction,
    Wafv2WebAclRuleOverrideAction,
    Wafv2WebAclRuleVisibilityConfig,
    Wafv2WebAclVisibilityConfig,
)
from lib.cdk.aws.wafv2_web_acl_logging_configuration import (
    Wafv2WebAclLoggingConfiguration,
    Wafv2WebAclLoggingConfigurationRedactedFields,
    Wafv2WebAclLoggingConfigurationRedactedFieldsSingleHeader,
)
from lib.config import Config
from lib.constructs.ids import value_id
from lib.constructs.kms import EncryptionKey, KeyGovernance, cloudwatch_logs_statement
from lib.constructs.secret_age import SecretAgeWatch, WatchedSecret
from lib.constructs.secrets import DatabaseCredentials
from lib.stacks.base import BaseStack
from lib.stacks.network import NetworkStack

POSTGRES_PORT = 5432
# The AWS APIs reached from the private subnets, each through its interface endpoint, with who
# calls it. Nothing there calls Step Functions (it invokes the step function through Lambda, and
# the rollback and traffic functions that start executions run outside the VPC), Route 53 or SNS.
INTERFACE_ENDPOINTS = {
    "secretsmanager": "database secrets: payment API, validation, controller steps, DMS endpoints",
    "ssm": "the writer parameter: payment API, controller steps",
    "dms": "starting and stopping the replication tasks: controller steps",
    "monitoring": "PutMetricData: controller steps (slot and fence metrics)",
    "xray": "X-Ray: trace segments and sampling rules of the traced functions",
    # What AWS's own agents in the subnets may call rather than our code: the DMS replication
    # instance writes task logs, reads its endpoints' secrets through an assumed role.
    "logs": "CloudWatch Logs: the DMS replication instance's task logging",
    "sts": "STS: role sessions from the subnets (the DMS secrets access role)",
    "kms": "KMS: decryption from the subnets outside a service integration (DMS)",
}
# Services through which roles of the account may use the data key (lib/constructs/kms.py).
DATA_KEY_SERVICES = ("rds", "secretsmanager", "dms", "lambda", "sqs", "backup")
MAX_KMS_DELETION_WINDOW_DAYS = 30
# AWS managed rule groups, in evaluation order. KnownBadInputs carries the Log4j (CVE-2021-44228) rules.
MANAGED_RULE_GROUPS = (
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesSQLiRuleSet",
)


class SecurityStack(BaseStack):
    def __init__(self, scope: Construct, *, config: Config, network: NetworkStack) -> None:
        super().__init__(scope, "security", config=config)
        self._config = config
        self._keys()
        self._security_groups(config, network)
        self._endpoints(config, network)
        self._web_acl(config)
        # One secret per database role and side; the data key encrypts them all.
        self.database_secrets = DatabaseCredentials(
            self, "database-secrets", env_name=config.name, key_arn=self.data_key.arn,
            recovery_window_days=config.security.secret_recovery_window_days)
        self.secret_age = SecretAgeWatch(
            self, "secret-age", name=self.resource_name("secret-age"), max_age_days=config.security.secret_max_age_days,
            secrets=[WatchedSecret(name, arn) for name, arn in self.database_secrets.names_and_arns()],
            logs_key_arn=self.logs_key.arn, log_retention_days=config.logs.retention_days, account_id=self.account_id)
        self._writer_parameter(config)

    def _keys(self) -> None:
        config = self._config
        governance = KeyGovernance.of(config, account_id=self.account_id, partition=self.partition)
        # Aurora storage and snapshots, Performance Insights, the RDS-managed master secret, the
        # database secrets, DMS storage, Lambda environments, dead-letter queues.
        self.data_key = EncryptionKey(self, "data-key", alias=self.resource_name("data"),
                                      description=f"payment-migration {config.name}: payment data at rest",
                                      governance=governance, used_through=DATA_KEY_SERVICES)
        self.logs_key = EncryptionKey(
            self, "logs-key", alias=self.resource_name("logs"),
            description=f"payment-migration {config.name}: CloudWatch log groups", governance=governance,
            statements=[cloudwatch_logs_statement(region=config.region, account_id=self.account_id,
                                                  partition=self.partition)])
        # The AWS Backup vault's own key, apart from the data key, with the longest deletion window:
        # a vault outlives the resources it backs up. (Aurora recovery points stay under the
        # cluster's key, the data key, as AWS Backup does for resources it does not fully manage.)
        self.backup_key = EncryptionKey(
            self, "backup-key", alias=self.resource_name("backup"),
            description=f"payment-migration {config.name}: AWS Backup vault",
            governance=dataclasses.replace(governance, deletion_window_days=MAX_KMS_DELETION_WINDOW_DAYS),
            used_through=["backup"])

    def _security_groups(self, config: Config, network: NetworkStack) -> None:
        def group(id_: str, description: str) -> SecurityGroup:
            return SecurityGroup(self, id_, name=self.resource_name(id_), description=description,
                                 vpc_id=network.vpc.id, tags={"Name": self.resource_name(id_)})

        alb = group("alb", "Internet-facing ALB of the payment API")
        api = group("lambda", "Payment API Lambda")
        validation = group("validation", "Validation Lambda: reads on-prem and Aurora")
        controller = group("controller", "Cutover controller steps: fence, markers, sequences, slots on both sides")
        database = group("database", "Aurora PostgreSQL cluster")
        dms = group("dms", "DMS replication instance")

        for port in (443, 80):
            VpcSecurityGroupIngressRule(self, f"alb-in-{port}", security_group_id=alb.id, ip_protocol="tcp",
                                        from_port=port, to_port=port, cidr_ipv4="0.0.0.0/0",
                                        description=f"Clients on {port} (80 only redirects to 443)")
        # ALB → Lambda targets goes through the Lambda service, not the VPC: the ALB needs no egress.

        database_clients = ((api, "lambda"), (validation, "validation"), (controller, "controller"), (dms, "dms"))
        for client, name in database_clients:
            VpcSecurityGroupIngressRule(self, f"database-in-{name}", security_group_id=database.id,
                                        ip_protocol="tcp", from_port=POSTGRES_PORT, to_port=POSTGRES_PORT,
                                        referenced_security_group_id=client.id,
                                        description=f"PostgreSQL from the {name} group")
            VpcSecurityGroupEgressRule(self, f"{name}-out-database", security_group_id=client.id,
                                       ip_protocol="tcp", from_port=POSTGRES_PORT, to_port=POSTGRES_PORT,
                                       referenced_security_group_id=database.id,
                                       description="PostgreSQL to Aurora")

        # AWS APIs only through the interface endpoints (below): no route to the internet is used.
        endpoints = group("endpoints", "Interface VPC endpoints of the AWS APIs the private subnets call")
        for client, name in database_clients:
            VpcSecurityGroupIngressRule(self, f"endpoints-in-{name}", security_group_id=endpoints.id,
                                        ip_protocol="tcp", from_port=443, to_port=443,
                                        referenced_security_group_id=client.id,
                                        description=f"HTTPS to AWS APIs from the {name} group")
            VpcSecurityGroupEgressRule(self, f"{name}-out-endpoints", security_group_id=client.id, ip_protocol="tcp",
                                       from_port=443, to_port=443, referenced_security_group_id=endpoints.id,
                                       description="HTTPS to AWS APIs through the interface endpoints")

        # Every database client reaches on-prem too: the API writes to whichever side is the writer
        # (through the VPN before the data cutover), the others work on both sides.
        port = config.onprem.db_port
        for client, name in database_clients:
            for cidr in config.onprem.cidrs:
                VpcSecurityGroupEgressRule(self, f"{name}-out-onprem-{value_id(cidr)}", security_group_id=client.id,
                                           ip_protocol="tcp", from_port=port, to_port=port, cidr_ipv4=cidr,
                                           description=f"On-prem PostgreSQL in {cidr}")

        self.alb_security_group_id = alb.id
        self.lambda_security_group_id = api.id
        self.validation_security_group_id = validation.id
        self.controller_security_group_id = controller.id
        self.database_security_group_id = database.id
        self.dms_security_group_id = dms.id
        self.endpoints_security_group_id = endpoints.id

    def _endpoints(self, config: Config, network: NetworkStack) -> None:
        """An interface endpoint, with private DNS, in every private subnet for each AWS API that
        something in those subnets calls (INTERFACE_ENDPOINTS), so their groups need no egress
        to the internet (PCI DSS 1.3.2, 1.4)."""
        self.vpc_endpoint_ids = {}
        for service in INTERFACE_ENDPOINTS:
            endpoint = VpcEndpoint(
                self, f"endpoint-{service}", vpc_id=network.vpc.id, vpc_endpoint_type="Interface",
                service_name=f"com.amazonaws.{config.region}.{service}", private_dns_enabled=True,
                subnet_ids=network.private_subnet_ids, security_group_ids=[self.endpoints_security_group_id],
                tags={"Name": self.resource_name(f"endpoint-{service}")})
            self.vpc_endpoint_ids[service] = endpoint.id

    def _web_acl(self, config: Config) -> None:
        def visibility(metric: str) -> Wafv2WebAclRuleVisibilityConfig:
            return Wafv2WebAclRuleVisibilityConfig(cloudwatch_metrics_enabled=True, metric_name=metric,
                                                   sampled_requests_enabled=True)

        rules = [
            Wafv2WebAclRule(name=group, priority=index, override_action=Wafv2WebAclRuleOverrideAction(none={}),
                            visibility_config=visibility(group),
                            statement={"managed_rule_group_statement": {"name": group, "vendor_name": "AWS"}})
            for index, group in enumerate(MANAGED_RULE_GROUPS)
        ]
        rules.append(Wafv2WebAclRule(
            name="RateLimitPerIp", priority=len(rules), action=Wafv2WebAclRuleAction(block={}),
            visibility_config=visibility("RateLimitPerIp"),
            statement={"rate_based_statement": {"limit": config.security.waf_rate_limit,
                                                "aggregate_key_type": "IP"}}))
        self.web_acl = Wafv2WebAcl(
            self, "web-acl", name=self.resource_name("api"), scope="REGIONAL",
            description="Payment API: AWS managed rules and a per-IP rate limit",
            default_action=Wafv2WebAclDefaultAction(allow={}), rule=rules,
            visibility_config=Wafv2WebAclVisibilityConfig(cloudwatch_metrics_enabled=True,
                                                          metric_name=self.resource_name("api"),
                                                          sampled_requests_enabled=True))
        # WAF only delivers to log groups whose name starts with aws-waf-logs-.
        log_group = CloudwatchLogGroup(self, "waf-logs", name=f"aws-waf-logs-{self.resource_name('api')}",
                                       kms_key_id=self.logs_key.arn, retention_in_days=config.logs.retention_days)
        Wafv2WebAclLoggingConfiguration(
            self, "waf-logging", resource_arn=self.web_acl.arn, log_destination_configs=[log_group.arn],
            redacted_fields=[Wafv2WebAclLoggingConfigurationRedactedFields(
                single_header=Wafv2WebAclLoggingConfigurationRedactedFieldsSingleHeader(name=header))
                for header in ("authorization", "cookie")])

    def _writer_parameter(self, config: Config) -> None:
        """Which database accepts writes: the one place every application looks (the payment API,
        and by the README's contract the on-prem application). Created here, upstream of every
        reader, naming on-prem; from then on only the cutover controller changes it, so Terraform
        ignores its value. It holds no secret: a side's name, an epoch, when and why."""
        self.writer_parameter = SsmParameter(
            self, "writer", name=self.names.writer_parameter, type="String", tier="Standard",
            description="The database that accepts payment writes; changed only by the cutover controller",
            value=json.dumps({"writer": "onprem", "epoch": 0, "changed_at": "",
                              "reason": "initial: on-prem is the system of record"}),
            lifecycle=TerraformResourceLifecycle(ignore_changes=["value"]))
        self.writer_parameter_name = self.writer_parameter.name
        self.writer_parameter_arn = self.writer_parameter.arn

