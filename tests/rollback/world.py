"""What the routing, migration and monitoring stacks leave behind, built on a moto server:
a hosted zone with the weighted record set (on-prem A records + the AWS side, by default an alias
to a real moto ALB), health checks, the forward and fallback DMS tasks, and the alarm topic with an
SQS queue subscribed so tests can read what the rollback published.

Shared by the tests and bench/rollback_bench.py, with the small fake Lambda context both use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

ZONE_NAME = "payments.migration.test."
RECORD_NAME = f"api.{ZONE_NAME}"
ONPREM_SET_IDENTIFIER = "onprem"
AWS_SET_IDENTIFIER = "aws"
ONPREM_ADDRESSES = ("192.0.2.10", "192.0.2.11")  # RFC 5737 documentation range
AWS_ADDRESSES = ("198.51.100.20",)
TTL = 60


@dataclass
class World:
    route53: Any
    dms: Any
    sns: Any
    sqs: Any
    zone_id: str
    forward_task_arn: str
    fallback_task_arn: str
    topic_arn: str
    queue_url: str | None
    onprem_health_check_id: str
    aws_health_check_id: str

    def environment(self) -> dict[str, str]:
        """What the validation stack sets on the rollback function."""
        return {
            "HOSTED_ZONE_ID": self.zone_id,
            "RECORD_NAME": RECORD_NAME,
            "RECORD_TYPE": "A",
            "ONPREM_SET_IDENTIFIER": ONPREM_SET_IDENTIFIER,
            "AWS_SET_IDENTIFIER": AWS_SET_IDENTIFIER,
            "DMS_TASK_ARN": self.forward_task_arn,
            "SNS_TOPIC_ARN": self.topic_arn,
            "FALLBACK_TASK_ARN": self.fallback_task_arn,
        }

    def members(self) -> dict[str, dict[str, Any]]:
        """The weighted members of RECORD_NAME A, by set identifier, read from Route 53 itself."""
        records = self.route53.list_resource_record_sets(HostedZoneId=self.zone_id)
        return {
            record["SetIdentifier"]: record
            for record in records["ResourceRecordSets"]
            if record["Name"] == RECORD_NAME and record["Type"] == "A" and "SetIdentifier" in record
        }

    def weights(self) -> dict[str, int]:
        return {identifier: record["Weight"] for identifier, record in self.members().items()}

    def set_weights(self, onprem: int, aws: int) -> None:
        members = self.members()
        self.route53.change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {**members[identifier], "Weight": weight},
                    }
                    for identifier, weight in (
                        (ONPREM_SET_IDENTIFIER, onprem),
                        (AWS_SET_IDENTIFIER, aws),
                    )
                ]
            },
        )

    def delete_member(self, identifier: str) -> None:
        self.route53.change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={
                "Changes": [{"Action": "DELETE", "ResourceRecordSet": self.members()[identifier]}]
            },
        )

    def task_status(self, arn: str) -> str:
        tasks = self.dms.describe_replication_tasks(
            Filters=[{"Name": "replication-task-arn", "Values": [arn]}]
        )["ReplicationTasks"]
        assert len(tasks) == 1, f"expected one DMS task {arn}, found {len(tasks)}"
        return tasks[0]["Status"]

    def start_forward_task(self) -> None:
        self.dms.start_replication_task(
            ReplicationTaskArn=self.forward_task_arn, StartReplicationTaskType="start-replication"
        )

    def notifications(self) -> list[dict[str, Any]]:
        """Everything published to the topic since the last call: SNS envelopes as SQS bodies."""
        assert self.queue_url, "this world was built without a subscribed queue"
        received: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not batch:
                return received
            for message in batch:
                received.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )


@dataclass
class FakeLambdaContext:
    function_name: str = "payment-rollback-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = (
        "arn:aws:lambda:eu-west-1:123456789012:function:payment-rollback-test"
    )
    aws_request_id: str = "6f1c2d3e-0000-4000-8000-000000000001"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def build_world(
    *,
    onprem_weight: int = 90,
    aws_weight: int = 10,
    aws_member: str = "alias",
    start_forward_task: bool = True,
    subscribe_queue: bool = True,
) -> World:
    """`aws_member` is "alias" (alias A record to an ALB) or "records" (plain A records)."""
    route53 = boto3.client("route53")
    dms = boto3.client("dms")
    sns = boto3.client("sns")
    sqs = boto3.client("sqs")

    zone_id = route53.create_hosted_zone(Name=ZONE_NAME, CallerReference="payments-zone")[
        "HostedZone"
    ]["Id"].removeprefix("/hostedzone/")
    onprem_health_check_id = _health_check(
        route53, "onprem", {"IPAddress": ONPREM_ADDRESSES[0]}
    )
    if aws_member == "alias":
        load_balancer = _load_balancer()
        aws_target: dict[str, Any] = {
            "AliasTarget": {
                "HostedZoneId": load_balancer["CanonicalHostedZoneId"],
                "DNSName": load_balancer["DNSName"],
                "EvaluateTargetHealth": True,
            }
        }
        aws_health_check_id = _health_check(
            route53, "aws", {"FullyQualifiedDomainName": load_balancer["DNSName"]}
        )
    elif aws_member == "records":
        aws_target = {"TTL": TTL, "ResourceRecords": [{"Value": a} for a in AWS_ADDRESSES]}
        aws_health_check_id = _health_check(route53, "aws", {"IPAddress": AWS_ADDRESSES[0]})
    else:
        raise ValueError(f"aws_member must be 'alias' or 'records', not {aws_member!r}")

    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": RECORD_NAME,
                        "Type": "A",
                        "SetIdentifier": ONPREM_SET_IDENTIFIER,
                        "Weight": onprem_weight,
                        "TTL": TTL,
                        "ResourceRecords": [{"Value": a} for a in ONPREM_ADDRESSES],
                        "HealthCheckId": onprem_health_check_id,
                    },
                },
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": RECORD_NAME,
                        "Type": "A",
                        "SetIdentifier": AWS_SET_IDENTIFIER,
                        "Weight": aws_weight,
                        "HealthCheckId": aws_health_check_id,
                        **aws_target,
                    },
                },
                # Neighbours on both sides in DNS order: reading "just this record set" is tested.
                _plain_record(f"admin.{ZONE_NAME}", "203.0.113.5"),
                _plain_record(f"api.{ZONE_NAME}", "2001:db8::10", record_type="AAAA"),
                _plain_record(f"zz.{ZONE_NAME}", "203.0.113.6"),
            ]
        },
    )

    forward_task_arn, fallback_task_arn = _replication_tasks(dms)
    topic_arn = sns.create_topic(Name="payment-migration-alarms")["TopicArn"]
    queue_url = None
    if subscribe_queue:
        queue_url = sqs.create_queue(QueueName="alarm-topic-subscriber")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    world = World(
        route53=route53,
        dms=dms,
        sns=sns,
        sqs=sqs,
        zone_id=zone_id,
        forward_task_arn=forward_task_arn,
        fallback_task_arn=fallback_task_arn,
        topic_arn=topic_arn,
        queue_url=queue_url,
        onprem_health_check_id=onprem_health_check_id,
        aws_health_check_id=aws_health_check_id,
    )
    if start_forward_task:
        world.start_forward_task()
    return world


def _health_check(route53: Any, name: str, target: dict[str, str]) -> str:
    return route53.create_health_check(
        CallerReference=f"payments-{name}",
        HealthCheckConfig={
            "Type": "HTTPS",
            "Port": 443,
            "ResourcePath": "/health",
            "RequestInterval": 10,
            "FailureThreshold": 3,
            **target,
        },
    )["HealthCheck"]["Id"]


def _load_balancer() -> dict[str, Any]:
    ec2 = boto3.client("ec2")
    elbv2 = boto3.client("elbv2")
    vpc_id = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = [
        ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=f"10.40.{index}.0/24", AvailabilityZone=f"eu-west-1{zone}"
        )["Subnet"]["SubnetId"]
        for index, zone in enumerate("ab")
    ]
    return elbv2.create_load_balancer(
        Name="payments", Subnets=subnet_ids, Type="application", Scheme="internet-facing"
    )["LoadBalancers"][0]


def _replication_tasks(dms: Any) -> tuple[str, str]:
    instance_arn = dms.create_replication_instance(
        ReplicationInstanceIdentifier="payments", ReplicationInstanceClass="dms.t3.medium"
    )["ReplicationInstance"]["ReplicationInstanceArn"]
    endpoints = {
        name: dms.create_endpoint(
            EndpointIdentifier=name,
            EndpointType=endpoint_type,
            EngineName="postgres",
            ServerName=server,
            Port=5432,
            DatabaseName="payments",
        )["Endpoint"]["EndpointArn"]
        for name, endpoint_type, server in (
            ("onprem", "source", ONPREM_ADDRESSES[0]),
            ("aurora", "target", "aurora.payments.migration.test"),
        )
    }
    table_mappings = json.dumps(
        {
            "rules": [
                {
                    "rule-type": "selection",
                    "rule-id": "1",
                    "rule-name": "payments",
                    "object-locator": {"schema-name": "public", "table-name": "%"},
                    "rule-action": "include",
                }
            ]
        }
    )
    forward = dms.create_replication_task(
        ReplicationTaskIdentifier="payments-forward",
        SourceEndpointArn=endpoints["onprem"],
        TargetEndpointArn=endpoints["aurora"],
        ReplicationInstanceArn=instance_arn,
        MigrationType="full-load-and-cdc",
        TableMappings=table_mappings,
    )["ReplicationTask"]["ReplicationTaskArn"]
    fallback = dms.create_replication_task(
        ReplicationTaskIdentifier="payments-fallback",
        SourceEndpointArn=endpoints["aurora"],
        TargetEndpointArn=endpoints["onprem"],
        ReplicationInstanceArn=instance_arn,
        MigrationType="cdc",
        TableMappings=table_mappings,
    )["ReplicationTask"]["ReplicationTaskArn"]
    return forward, fallback


def _plain_record(name: str, value: str, record_type: str = "A") -> dict[str, Any]:
    return {
        "Action": "CREATE",
        "ResourceRecordSet": {
            "Name": name,
            "Type": record_type,
            "TTL": TTL,
            "ResourceRecords": [{"Value": value}],
        },
    }
