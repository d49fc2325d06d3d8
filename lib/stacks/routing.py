"""routing: the service name as one weighted record set, on-prem vs AWS.

The weights belong to the cutover controller, not to Terraform: the records are created once with
the configured phase's weights and later weight changes are ignored, so a deploy of this stack
never undoes a phase change or a rollback. No health check is attached to a weighted record: when
every member with weight > 0 looks unhealthy, Route 53 answers with the weight-0 member, an
unfenced move of clients that no one decided. The health checks feed alarms instead; the
controller (or a human) decides."""

from __future__ import annotations

from constructs import Construct

from lib.cdk import TerraformResourceLifecycle
from lib.cdk.aws.cloudwatch_log_group import CloudwatchLogGroup
from lib.cdk.aws.cloudwatch_log_resource_policy import CloudwatchLogResourcePolicy
from lib.cdk.aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm
from lib.cdk.aws.route53_health_check import Route53HealthCheck
from lib.cdk.aws.route53_query_log import Route53QueryLog
from lib.cdk.aws.route53_record import (
    Route53Record,
    Route53RecordAlias,
    Route53RecordWeightedRoutingPolicy,
)
from lib.cdk.aws.sns_topic import SnsTopic
from lib.cdk.aws.sns_topic_policy import SnsTopicPolicy
from lib.cdk.aws.sns_topic_subscription import SnsTopicSubscription
from lib.config import Config
from lib.constructs.ids import value_id
from lib.constructs.iam import allow, policy_document
from lib.constructs.kms import EncryptionKey, KeyGovernance, cloudwatch_logs_statement, key_statement
from lib.stacks.base import BaseStack
from lib.stacks.load_balancer import LoadBalancerStack
from lib.stacks.network import NetworkStack

# Route 53 delivers query logs only to log groups in us-east-1.
QUERY_LOG_REGION = "us-east-1"


class RoutingStack(BaseStack):
    def __init__(self, scope: Construct, *, config: Config, network: NetworkStack,
                 load_balancer: LoadBalancerStack) -> None:
        super().__init__(scope, "routing", config=config)
        routing, onprem = config.routing, config.onprem
        self._key_governance = KeyGovernance.of(config, account_id=self.account_id, partition=self.partition)
        self.zone_id = network.zone_id
        self.record_name = config.dns.record_name
        aws_weight, onprem_weight = routing.weights

        self._health_checks = {
            "onprem": self._onprem_health_check(config),
            "aws": Route53HealthCheck(
                self, "aws-health", type="HTTPS", fqdn=load_balancer.dns_name, port=443, resource_path="/health",
                request_interval=10, failure_threshold=3, enable_sni=True, measure_latency=True,
                tags={"Name": self.resource_name("aws-health")}),
        }
        # Created once; the controller moves the weights (in one change batch) from then on.
        # Replaced members are created before the old ones go, so the name never stops answering.
        controller_owned = TerraformResourceLifecycle(ignore_changes=["weighted_routing_policy"],
                                                      create_before_destroy=True)

        def weighted(id_: str, set_identifier: str, weight: int, **target) -> Route53Record:
            return Route53Record(self, id_, zone_id=self.zone_id, name=self.record_name,
                                 set_identifier=set_identifier,
                                 weighted_routing_policy=Route53RecordWeightedRoutingPolicy(weight=weight),
                                 lifecycle=controller_owned, **target)

        if onprem.app_ip_addresses:
            # A records on-prem, an alias to the ALB on AWS: alias and plain A records may share a set.
            # The alias does not evaluate target health either: that too would move clients on its own.
            self.record_type = "A"
            weighted("weighted-onprem", routing.onprem_set_identifier, onprem_weight, type="A",
                     ttl=routing.ttl_seconds, records=list(onprem.app_ip_addresses))
            weighted("weighted-aws", routing.aws_set_identifier, aws_weight, type="A",
                     alias=Route53RecordAlias(name=load_balancer.dns_name, zone_id=load_balancer.zone_id,
                                              evaluate_target_health=False))
        else:
            # A hostname on-prem: both members are CNAMEs with the same TTL.
            self.record_type = "CNAME"
            weighted("weighted-onprem", routing.onprem_set_identifier, onprem_weight, type="CNAME",
                     ttl=routing.ttl_seconds, records=[onprem.app_hostname])
            weighted("weighted-aws", routing.aws_set_identifier, aws_weight, type="CNAME",
                     ttl=routing.ttl_seconds, records=[load_balancer.dns_name])
        self.onprem_set_identifier = routing.onprem_set_identifier
        self.aws_set_identifier = routing.aws_set_identifier
        self.ttl_seconds = routing.ttl_seconds

        self._query_logging(config)
        self._health_alarms(config)

    def _onprem_health_check(self, config: Config) -> Route53HealthCheck:
        onprem = config.onprem
        common = dict(type="HTTPS", port=onprem.app_port, resource_path=onprem.app_health_check_path,
                      request_interval=10, failure_threshold=3, enable_sni=True, measure_latency=True)
        if onprem.app_hostname:
            return Route53HealthCheck(self, "onprem-health", fqdn=onprem.app_hostname, **common,
                                      tags={"Name": self.resource_name("onprem-health")})
        # One check per address, combined: on-prem is healthy while any of its addresses answers.
        # Keyed by address, not position: removing one address leaves the other checks alone.
        children = [Route53HealthCheck(self, f"onprem-health-{value_id(address)}", ip_address=address,
                                       fqdn=config.dns.record_name, **common,
                                       tags={"Name": self.resource_name(f"onprem-health-{address}")})
                    for address in onprem.app_ip_addresses]
        return Route53HealthCheck(self, "onprem-health", type="CALCULATED", child_health_threshold=1,
                                  child_healthchecks=[child.id for child in children],
                                  tags={"Name": self.resource_name("onprem-health")})

    def weighted_record_statements(self, partition: str) -> list:
        """What a role (in a consuming stack, whose `partition` it passes) needs to move the weights,
        and nothing more: list the zone, and UPSERT only the weighted pair's name and type (never
        NS, CAA, or the certificate's validation record)."""
        zone_arn = f"arn:{partition}:route53:::hostedzone/{self.zone_id}"
        return [
            allow(["route53:ListResourceRecordSets"], [zone_arn], sid="ReadRecords"),
            allow(["route53:ChangeResourceRecordSets"], [zone_arn], sid="WeightedPairOnly", conditions=[
                ("ForAllValues:StringEquals", "route53:ChangeResourceRecordSetsNormalizedRecordNames",
                 [self.record_name.lower().rstrip(".")]),
                ("ForAllValues:StringEquals", "route53:ChangeResourceRecordSetsRecordTypes", [self.record_type]),
                ("ForAllValues:StringEquals", "route53:ChangeResourceRecordSetsActions", ["UPSERT"]),
            ]),
            allow(["route53:GetChange"], [f"arn:{partition}:route53:::change/*"], sid="ChangeStatus"),
        ]

    def _health_alarms(self, config: Config) -> None:
        """An alarm per side when its health check fails. Route 53 publishes health-check metrics
        only in us-east-1, so the alarms and the topic they notify live there."""
        us_east_1 = self.us_east_1
        key = EncryptionKey(
            self, "health-alarms-key", alias=self.resource_name("dns-health-alarms"),
            description=f"payment-migration {config.name}: DNS health-check alarm notifications",
            governance=self._key_governance, region="us-east-1", provider=us_east_1,
            statements=[key_statement("CloudWatchAlarms", service="cloudwatch.amazonaws.com",
                                      actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                                      conditions={"StringEquals": {"aws:SourceAccount": self.account_id}})])
        topic = SnsTopic(self, "health-topic", name=self.resource_name("dns-health"), kms_master_key_id=key.arn,
                         provider=us_east_1)
        SnsTopicPolicy(self, "health-topic-policy", arn=topic.arn, provider=us_east_1,
                       policy=policy_document(self, "health-topic-access", [
                           allow(["sns:Publish"], [topic.arn], sid="CloudWatchAlarms",
                                 principals={"Service": ["cloudwatch.amazonaws.com"]},
                                 conditions=[("StringEquals", "aws:SourceAccount", [self.account_id])]),
                       ]).json)
        for email in config.monitoring.alarm_emails:
            SnsTopicSubscription(self, f"health-email-{value_id(email)}", topic_arn=topic.arn,
                                 protocol="email", endpoint=email, provider=us_east_1)
        self.health_alarm_names = {}
        for side, check in self._health_checks.items():
            alarm = CloudwatchMetricAlarm(
                self, f"{side}-unhealthy", alarm_name=self.resource_name(f"{side}-unhealthy"),
                alarm_description=f"The {side} side of {config.dns.record_name} fails its Route 53 health check; "
                                  "the weights do not move on their own (README, Rollback)",
                namespace="AWS/Route53", metric_name="HealthCheckStatus", dimensions={"HealthCheckId": check.id},
                statistic="Minimum", period=60, evaluation_periods=2, datapoints_to_alarm=2, threshold=1,
                comparison_operator="LessThanThreshold", treat_missing_data="breaching",
                alarm_actions=[topic.arn], ok_actions=[topic.arn], provider=us_east_1)
            self.health_alarm_names[side] = alarm.alarm_name
        self.health_alarm_region = "us-east-1"
        if config.dns.create_zone:
            self._dnssec_alarms(config, topic_arn=topic.arn)

    def _dnssec_alarms(self, config: Config, *, topic_arn: str) -> None:
        """The zone this project signs (network stack) stops resolving for validating resolvers
        when signing fails or its key-signing key needs action (its KMS key disabled, deleted, or
        its policy changed): Route 53 says so only in these metrics, in us-east-1."""
        for id_, metric, meaning in (
                ("dnssec-internal-failure", "DNSSECInternalFailure",
                 "DNSSEC signing of the zone failed inside Route 53"),
                ("dnssec-ksk-action-needed", "DNSSECKeySigningKeysNeedingAction",
                 "a key-signing key of the zone needs action (its KMS key disabled, deleted or no longer usable)")):
            CloudwatchMetricAlarm(
                self, id_, alarm_name=self.resource_name(id_),
                alarm_description=f"{config.dns.zone_name}: {meaning}; validating resolvers stop answering for "
                                  "the zone until it is fixed (README, Security)",
                namespace="AWS/Route53", metric_name=metric, dimensions={"HostedZoneId": self.zone_id},
                statistic="Maximum", period=300, evaluation_periods=1, threshold=0,
                comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
                alarm_actions=[topic_arn], ok_actions=[topic_arn], provider=self.us_east_1)

    def _query_logging(self, config: Config) -> None:
        """Every DNS query for the zone, to an encrypted log group in us-east-1."""
        us_east_1 = self.us_east_1
        key = EncryptionKey(
            self, "query-logs-key", alias=self.resource_name("dns-query-logs"),
            description=f"payment-migration {config.name}: Route 53 query logs",
            governance=self._key_governance, region=QUERY_LOG_REGION,
            statements=[cloudwatch_logs_statement(region=QUERY_LOG_REGION, account_id=self.account_id,
                                                  partition=self.partition)],
            provider=us_east_1)
        log_group = CloudwatchLogGroup(self, "query-logs", name=f"/aws/route53/{config.dns.zone_name}",
                                       kms_key_id=key.arn, retention_in_days=config.logs.retention_days,
                                       provider=us_east_1)
        delivery = policy_document(self, "query-logs-delivery", [
            allow(["logs:CreateLogStream", "logs:PutLogEvents"], [f"{log_group.arn}:*"],
                  principals={"Service": ["route53.amazonaws.com"]},
                  conditions=[("StringEquals", "aws:SourceAccount", [self.account_id])]),
        ])
        policy = CloudwatchLogResourcePolicy(self, "query-logs-policy",
                                             policy_name=self.resource_name("route53-query-logs"),
                                             policy_document=delivery.json, provider=us_east_1)
        Route53QueryLog(self, "query-log", zone_id=self.zone_id, cloudwatch_log_group_arn=log_group.arn,
                        depends_on=[policy])
