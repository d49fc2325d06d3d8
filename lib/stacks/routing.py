"""routing: the service name as one weighted record set, on-prem vs AWS, moved by cutover phase."""

from __future__ import annotations

from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.cloudwatch_log_resource_policy import CloudwatchLogResourcePolicy
from cdktf_cdktf_provider_aws.route53_health_check import Route53HealthCheck
from cdktf_cdktf_provider_aws.route53_query_log import Route53QueryLog
from cdktf_cdktf_provider_aws.route53_record import (
    Route53Record,
    Route53RecordAlias,
    Route53RecordWeightedRoutingPolicy,
)
from constructs import Construct

from lib.config import Config
from lib.constructs.iam import allow, policy_document
from lib.constructs.kms import EncryptionKey, cloudwatch_logs_statement
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
        self.zone_id = network.zone_id
        self.record_name = config.dns.record_name
        aws_weight, onprem_weight = routing.weights

        onprem_check = self._onprem_health_check(config)
        aws_check = Route53HealthCheck(
            self, "aws-health", type="HTTPS", fqdn=load_balancer.dns_name, port=443, resource_path="/health",
            request_interval=10, failure_threshold=3, enable_sni=True, measure_latency=True,
            tags={"Name": self.resource_name("aws-health")})

        def weighted(id_: str, set_identifier: str, weight: int, health_check_id: str, **target) -> Route53Record:
            return Route53Record(self, id_, zone_id=self.zone_id, name=self.record_name,
                                 set_identifier=set_identifier, health_check_id=health_check_id,
                                 weighted_routing_policy=Route53RecordWeightedRoutingPolicy(weight=weight),
                                 **target)

        if onprem.app_ip_addresses:
            # A records on-prem, an alias to the ALB on AWS: alias and plain A records may share a set.
            self.record_type = "A"
            weighted("weighted-onprem", routing.onprem_set_identifier, onprem_weight, onprem_check.id, type="A",
                     ttl=routing.ttl_seconds, records=list(onprem.app_ip_addresses))
            weighted("weighted-aws", routing.aws_set_identifier, aws_weight, aws_check.id, type="A",
                     alias=Route53RecordAlias(name=load_balancer.dns_name, zone_id=load_balancer.zone_id,
                                              evaluate_target_health=True))
        else:
            # A hostname on-prem: both members are CNAMEs with the same TTL.
            self.record_type = "CNAME"
            weighted("weighted-onprem", routing.onprem_set_identifier, onprem_weight, onprem_check.id, type="CNAME",
                     ttl=routing.ttl_seconds, records=[onprem.app_hostname])
            weighted("weighted-aws", routing.aws_set_identifier, aws_weight, aws_check.id, type="CNAME",
                     ttl=routing.ttl_seconds, records=[load_balancer.dns_name])
        self.onprem_set_identifier = routing.onprem_set_identifier
        self.aws_set_identifier = routing.aws_set_identifier
        self._query_logging(config)

    def _onprem_health_check(self, config: Config) -> Route53HealthCheck:
        onprem = config.onprem
        common = dict(type="HTTPS", port=onprem.app_port, resource_path=onprem.app_health_check_path,
                      request_interval=10, failure_threshold=3, enable_sni=True, measure_latency=True)
        if onprem.app_hostname:
            return Route53HealthCheck(self, "onprem-health", fqdn=onprem.app_hostname, **common,
                                      tags={"Name": self.resource_name("onprem-health")})
        # One check per address, combined: on-prem is healthy while any of its addresses answers.
        children = [Route53HealthCheck(self, f"onprem-health-{index}", ip_address=address,
                                       fqdn=config.dns.record_name, **common,
                                       tags={"Name": self.resource_name(f"onprem-health-{index}")})
                    for index, address in enumerate(onprem.app_ip_addresses)]
        return Route53HealthCheck(self, "onprem-health", type="CALCULATED", child_health_threshold=1,
                                  child_healthchecks=[child.id for child in children],
                                  tags={"Name": self.resource_name("onprem-health")})

    def _query_logging(self, config: Config) -> None:
        """Every DNS query for the zone, to an encrypted log group in us-east-1."""
        us_east_1 = self.us_east_1
        key = EncryptionKey(
            self, "query-logs-key", alias=self.resource_name("dns-query-logs"),
            description=f"payment-migration {config.name}: Route 53 query logs",
            account_id=self.account_id, partition=self.partition,
            deletion_window_days=config.security.kms_deletion_window_days,
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
