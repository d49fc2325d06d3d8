"""monitoring: the alarm topic, the cutover dashboard, alarms, and the composite "cutover
unhealthy" alarm that drives automatic rollback."""

from __future__ import annotations

import json
from constructs import Construct

from lib.cdk import TerraformResourceLifecycle
from lib.cdk.aws.cloudwatch_composite_alarm import CloudwatchCompositeAlarm
from lib.cdk.aws.cloudwatch_dashboard import CloudwatchDashboard
from lib.cdk.aws.cloudwatch_metric_alarm import (
    CloudwatchMetricAlarm,
    CloudwatchMetricAlarmMetricQuery,
    CloudwatchMetricAlarmMetricQueryMetric,
)
from lib.cdk.aws.dms_event_subscription import DmsEventSubscription
from lib.cdk.aws.sns_topic import SnsTopic
from lib.cdk.aws.sns_topic_policy import SnsTopicPolicy
from lib.cdk.aws.sns_topic_subscription import SnsTopicSubscription
from lib.config import Config
from lib.constructs.ids import value_id
from lib.constructs.iam import allow, policy_document
from lib.constructs.kms import EncryptionKey, KeyGovernance, key_statement
from lib.constructs.secret_age import DIMENSION as SECRET_AGE_DIMENSION
from lib.constructs.secret_age import METRIC_NAME as SECRET_AGE_METRIC
from lib.constructs.secret_age import NAMESPACE as SECRET_AGE_NAMESPACE
from lib.constructs.secret_age import SECONDS_PER_DAY
from lib.constructs.secrets import secret_names
from lib.stacks.base import BaseStack
from lib.stacks.compute import API_SERVICE, METRICS_NAMESPACE, WRITER_FENCED_METRIC, ComputeStack
from lib.stacks.database import DatabaseStack
from lib.stacks.load_balancer import LoadBalancerStack
from lib.stacks.migration import MigrationStack

# The cutover step function's Powertools service (its metrics' `service` dimension), and the metric
# it publishes when the proof finds a change on a fenced side (payment_cutover.handler).
STEP_SERVICE = "cutover"
FENCE_BREACHED_METRIC = "CutoverStepFailedFenceBreached"

PERIOD_SECONDS = 60
# The alarms whose firing means clients on AWS are failing; the composite ORs them.
# The first two are the API's own high-resolution figures (10 s periods by config): they fire first.
ROLLBACK_ALARMS = ("api-failures", "api-latency", "alb-5xx", "alb-latency", "api-errors", "api-throttles")
# The API's high-resolution metrics (payment_api.handler, embedded metric format, dimension service).
API_SERVER_ERROR_METRIC = "ServerError"
API_LATENCY_METRIC = "RequestLatency"
# The service name the validation Lambda's metrics carry (Powertools adds it as a dimension).
VALIDATION_SERVICE = "validation"
ROLLBACK_SERVICE = "rollback"
# A fenced switch pauses writes for seconds (README, The cutover model); both sides fenced for this
# many minutes is an execution that stopped half-way, or a side nobody can see.
NO_WRITER_MINUTES = 5


class MonitoringStack(BaseStack):
    def __init__(self, scope: Construct, *, config: Config, compute: ComputeStack, load_balancer: LoadBalancerStack,
                 database: DatabaseStack, migration: MigrationStack) -> None:
        super().__init__(scope, "monitoring", config=config)
        self._config = config
        self.dimensions = {
            "alb": {"LoadBalancer": load_balancer.arn_suffix},
            "target_group": {"LoadBalancer": load_balancer.arn_suffix,
                             "TargetGroup": load_balancer.target_group_arn_suffix},
            "api": {"FunctionName": compute.function_name},
            "aurora": {"DBClusterIdentifier": database.cluster_identifier},
            "dms": {"ReplicationInstanceIdentifier": migration.replication_instance_id,
                    "ReplicationTaskIdentifier": migration.forward_task_resource_identifier},
            "dms-fallback": {"ReplicationInstanceIdentifier": migration.replication_instance_id,
                             "ReplicationTaskIdentifier": migration.fallback_task_resource_identifier},
            "validation": {"service": VALIDATION_SERVICE},
        }
        self._topics(config)
        alarms = self._alarms(config)
        self._replication_alarms(config, migration)
        self._writer_alarms()
        self._secret_age_alarms(config)
        self._dms_events(migration)
        # The alarms whose firing means the AWS side is failing its users: shifting traffic back
        # to on-prem helps. (Aurora load, DMS lag and validation findings call for a human.)
        rollback_alarms = [alarms[name] for name in ROLLBACK_ALARMS]
        # The cutover controller watches these while a phase bakes (the composite is their OR).
        self.rollback_alarm_names = [alarm.alarm_name for alarm in rollback_alarms]
        self.cutover_unhealthy = CloudwatchCompositeAlarm(
            self, "cutover-unhealthy", alarm_name=self.names.composite_alarm,
            alarm_description="The AWS side is failing its users: roll traffic back to on-prem",
            alarm_rule=" OR ".join(f'ALARM("{alarm.alarm_name}")' for alarm in rollback_alarms),
            alarm_actions=[self.alarm_topic.arn, self.rollback_topic.arn], ok_actions=[self.alarm_topic.arn],
            actions_enabled=True)
        self._dashboard(config)

    def _topics(self, config: Config) -> None:
        """`alarm_topic` reaches people; `rollback_topic` carries only the composite alarm, so the
        rollback Lambda subscribed to it acts on nothing else."""
        key = EncryptionKey(
            self, "alarms-key", alias=self.resource_name("alarms"),
            description=f"payment-migration {config.name}: alarm notifications",
            governance=KeyGovernance.of(config, account_id=self.account_id, partition=self.partition),
            # The rollback Lambda publishes its outcome to the alarm topic.
            used_through=["sns"],
            statements=[key_statement(sid, service=service, actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                                      conditions={"StringEquals": {"aws:SourceAccount": self.account_id}})
                        for sid, service in (("CloudWatchAlarms", "cloudwatch.amazonaws.com"),
                                             ("DmsEvents", "dms.amazonaws.com"))])
        self.alarm_key_arn = key.arn
        self.alarm_topic = self._topic("alarms", key.arn)
        self.rollback_topic = self._topic("rollback", key.arn)
        self.alarm_topic_arn = self.alarm_topic.arn
        self.rollback_topic_arn = self.rollback_topic.arn
        for email in config.monitoring.alarm_emails:
            # Keyed by address: removing one subscriber does not re-subscribe the others.
            SnsTopicSubscription(self, f"email-{value_id(email)}",
                                 topic_arn=self.alarm_topic.arn, protocol="email", endpoint=email)

    def _topic(self, id_: str, key_arn: str) -> SnsTopic:
        topic = SnsTopic(self, f"{id_}-topic", name=self.resource_name(id_), kms_master_key_id=key_arn)
        SnsTopicPolicy(self, f"{id_}-topic-policy", arn=topic.arn, policy=policy_document(self, f"{id_}-topic-access", [
            allow(["sns:Publish"], [topic.arn], sid="AlarmsAndDmsEvents",
                  principals={"Service": ["cloudwatch.amazonaws.com", "dms.amazonaws.com"]},
                  conditions=[("StringEquals", "aws:SourceAccount", [self.account_id])]),
        ]).json)
        return topic

    def _alarm(self, id_: str, description: str, *, threshold: float, comparison: str = "GreaterThanThreshold",
               namespace: str | None = None, metric: str | None = None, dimensions: dict | None = None,
               statistic: str | None = None, extended_statistic: str | None = None,
               metric_query: list | None = None, periods: int | None = None,
               period: int = PERIOD_SECONDS) -> CloudwatchMetricAlarm:
        periods = periods or self._config.monitoring.evaluation_periods
        return CloudwatchMetricAlarm(
            self, id_, alarm_name=self.resource_name(id_), alarm_description=description,
            namespace=namespace, metric_name=metric, dimensions=dimensions, statistic=statistic,
            extended_statistic=extended_statistic, metric_query=metric_query,
            period=None if metric_query else period, threshold=threshold, comparison_operator=comparison,
            evaluation_periods=periods, datapoints_to_alarm=periods, treat_missing_data="notBreaching",
            alarm_actions=[self.alarm_topic.arn], ok_actions=[self.alarm_topic.arn])

    def _alarms(self, config: Config) -> dict[str, CloudwatchMetricAlarm]:
        thresholds, dims = config.monitoring, self.dimensions

        def alb_metric(id_: str, name: str) -> CloudwatchMetricAlarmMetricQuery:
            return CloudwatchMetricAlarmMetricQuery(id=id_, metric=CloudwatchMetricAlarmMetricQueryMetric(
                namespace="AWS/ApplicationELB", metric_name=name, dimensions=dims["alb"], period=PERIOD_SECONDS,
                stat="Sum"))

        api_period = thresholds.api_metric_period_seconds
        alarms = {
            # The API's own figures, published at high resolution: a failing AWS side is detected in
            # api_metric_period_seconds × evaluation_periods, where the ALB's and Lambda's
            # 1-minute metrics need minutes. ServerError leaves out the writes a fence refused.
            "api-failures": self._alarm(
                "api-failures", f"Payment API answered {thresholds.api_failures} or more 5xx (fence refusals aside) in "
                                f"each of {thresholds.evaluation_periods} periods of {api_period} s",
                namespace=METRICS_NAMESPACE, metric=API_SERVER_ERROR_METRIC, dimensions={"service": API_SERVICE},
                statistic="Sum", threshold=thresholds.api_failures, comparison="GreaterThanOrEqualToThreshold",
                period=api_period),
            "api-latency": self._alarm(
                "api-latency", f"Payment API p95 latency above {thresholds.alb_p95_latency_seconds} s over "
                               f"{api_period} s periods",
                namespace=METRICS_NAMESPACE, metric=API_LATENCY_METRIC, dimensions={"service": API_SERVICE},
                extended_statistic="p95", threshold=thresholds.alb_p95_latency_seconds * 1000, period=api_period),
            # The controller's own refusals are not failures: every write a fenced database refuses is
            # a 503 the API also counts as WriterFenced, subtracted here, so a cutover's fenced window
            # never rolls the cutover back (README, The cutover model).
            "alb-5xx": self._alarm(
                "alb-5xx", f"ALB 5xx responses above {thresholds.alb_5xx_percent}% of requests, not counting "
                           "writes refused by a fence",
                threshold=thresholds.alb_5xx_percent, metric_query=[
                    alb_metric("elb5xx", "HTTPCode_ELB_5XX_Count"),
                    alb_metric("target5xx", "HTTPCode_Target_5XX_Count"),
                    alb_metric("requests", "RequestCount"),
                    CloudwatchMetricAlarmMetricQuery(id="fenced", metric=CloudwatchMetricAlarmMetricQueryMetric(
                        namespace=METRICS_NAMESPACE, metric_name=WRITER_FENCED_METRIC,
                        dimensions={"service": API_SERVICE}, period=PERIOD_SECONDS, stat="Sum")),
                    CloudwatchMetricAlarmMetricQuery(
                        id="failed", label="5xx not refused by a fence",
                        expression="FILL(elb5xx, 0) + FILL(target5xx, 0) - FILL(fenced, 0)"),
                    CloudwatchMetricAlarmMetricQuery(
                        id="rate", label="5xx %", return_data=True,
                        expression="IF(requests > 0, 100 * IF(failed > 0, failed, 0) / requests, 0)"),
                ]),
            "alb-latency": self._alarm(
                "alb-latency", f"API p95 latency above {thresholds.alb_p95_latency_seconds} s",
                namespace="AWS/ApplicationELB", metric="TargetResponseTime", dimensions=dims["target_group"],
                extended_statistic="p95", threshold=thresholds.alb_p95_latency_seconds),
            "api-errors": self._alarm(
                "api-errors", "Payment API Lambda errors", namespace="AWS/Lambda", metric="Errors",
                dimensions=dims["api"], statistic="Sum", threshold=thresholds.lambda_errors,
                comparison="GreaterThanOrEqualToThreshold"),
            "api-throttles": self._alarm(
                "api-throttles", "Payment API Lambda throttled (reserved concurrency exhausted)",
                namespace="AWS/Lambda", metric="Throttles", dimensions=dims["api"], statistic="Sum",
                threshold=thresholds.lambda_throttles, comparison="GreaterThanOrEqualToThreshold"),
            "aurora-cpu": self._alarm(
                "aurora-cpu", "Aurora CPU high", namespace="AWS/RDS", metric="CPUUtilization",
                dimensions=dims["aurora"], statistic="Average", threshold=thresholds.aurora_cpu_percent),
            "aurora-connections": self._alarm(
                "aurora-connections", "Aurora connections high", namespace="AWS/RDS", metric="DatabaseConnections",
                dimensions=dims["aurora"], statistic="Maximum", threshold=thresholds.aurora_connections),
            "validation-failed": self._alarm(
                "validation-failed", "Validation found on-prem and Aurora different, or could not compare them",
                namespace=METRICS_NAMESPACE, metric="ValidationFailed", dimensions=dims["validation"],
                statistic="Maximum", threshold=1, comparison="GreaterThanOrEqualToThreshold", periods=1,
                period=300),
        }
        # A validation run that crashed or timed out emits no ValidationFailed at all.
        alarms["validation-errors"] = self._alarm(
            "validation-errors", "The validation Lambda crashed or timed out: no comparison result",
            namespace="AWS/Lambda", metric="Errors", dimensions={"FunctionName": self.names.validation},
            statistic="Sum", threshold=1, comparison="GreaterThanOrEqualToThreshold", periods=1, period=300)
        # A rollback that did not complete (FAILED: traffic not shifted; PARTIAL: a follow-up failed;
        # NO_WRITER: traffic on-prem, but on-prem, the writer, is fenced) needs a human at once,
        # whoever invoked it.
        for status, what in (("FAILED", "finish it by hand"), ("PARTIAL", "finish it by hand"),
                             ("NO_WRITER", "traffic is on-prem but no side accepts writes: finish the cutover its "
                                           "error names")):
            id_ = f"rollback-{status.lower().replace('_', '-')}"
            alarms[id_] = self._alarm(
                id_, f"A rollback ended {status}: {what} (README, Rollback)",
                namespace=METRICS_NAMESPACE, metric="RollbackInvocations",
                dimensions={"service": ROLLBACK_SERVICE, "Status": status}, statistic="Sum", threshold=1,
                comparison="GreaterThanOrEqualToThreshold", periods=1)
        self.alarms = alarms
        return alarms

    def _secret_age_alarms(self, config: Config) -> None:
        """One alarm per database secret whose value is older than security.secret_max_age_days,
        from the security stack's daily check (lib/constructs/secret_age.py), which publishes 1
        for such a secret. Secrets and check are found by name: no cross-stack read."""
        days = config.security.secret_max_age_days
        self.secret_age_alarm_names = []
        for (side, role), name in secret_names(config.name).items():
            id_ = f"secret-age-{side}-{role.replace('_', '-')}"
            alarm = CloudwatchMetricAlarm(
                self, id_, alarm_name=self.resource_name(id_),
                alarm_description=f"Secret {name} has held the same value for over {days} days: rotate it "
                                  "(README, Rotating a database credential)",
                namespace=SECRET_AGE_NAMESPACE, metric_name=SECRET_AGE_METRIC, dimensions={SECRET_AGE_DIMENSION: name},
                statistic="Maximum", period=SECONDS_PER_DAY, evaluation_periods=1, threshold=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                # Nothing is published before the first check ends, max_age_days after the deploy.
                treat_missing_data="notBreaching",
                alarm_actions=[self.alarm_topic.arn], ok_actions=[self.alarm_topic.arn])
            self.secret_age_alarm_names.append(alarm.alarm_name)
        machine = self.resource_name("secret-age")
        machine_arn = f"arn:{self.partition}:states:{config.region}:{self.account_id}:stateMachine:{machine}"
        self._alarm("secret-age-check-failed", "The daily check of the database secrets' age failed: their age "
                    "alarms are blind until it runs again", namespace="AWS/States", metric="ExecutionsFailed",
                    dimensions={"StateMachineArn": machine_arn}, statistic="Sum", threshold=0, periods=1,
                    period=SECONDS_PER_DAY)

    def _replication_alarms(self, config: Config, migration: MigrationStack) -> None:
        """Replication that lags, stops or fails, in both directions, and slots holding WAL on both
        sides. The latency alarms treat missing data as breaching: a task that stopped publishes
        nothing. Only the direction that is expected to run notifies: the cutover controller
        enables the actions of the running direction's alarms and disables the other's, so
        Terraform creates them once (forward on, fallback off) and leaves that setting alone."""
        thresholds = self._config.monitoring
        self.replication_alarm_names: dict[str, list[str]] = {"forward": [], "fallback": []}
        for direction, dimensions in (("forward", self.dimensions["dms"]), ("fallback", self.dimensions["dms-fallback"])):
            for source in ("Source", "Target"):
                id_ = f"dms-{direction}-latency-{source.lower()}"
                alarm = CloudwatchMetricAlarm(
                    self, id_, alarm_name=self.resource_name(id_),
                    alarm_description=f"{direction.title()} replication lag ({source.lower()} side) above "
                                      f"{thresholds.dms_cdc_latency_seconds} s, or the task publishes nothing "
                                      "(stopped, failed) while it should run",
                    namespace="AWS/DMS", metric_name=f"CDCLatency{source}", dimensions=dimensions,
                    statistic="Average", period=PERIOD_SECONDS, evaluation_periods=thresholds.evaluation_periods,
                    datapoints_to_alarm=thresholds.evaluation_periods, threshold=thresholds.dms_cdc_latency_seconds,
                    comparison_operator="GreaterThanThreshold", treat_missing_data="breaching",
                    actions_enabled=direction == "forward", alarm_actions=[self.alarm_topic.arn],
                    ok_actions=[self.alarm_topic.arn],
                    lifecycle=TerraformResourceLifecycle(ignore_changes=["actions_enabled"]))
                self.replication_alarm_names[direction].append(alarm.alarm_name)
        # Published every minute by the cutover controller (publish_metrics) for both sides.
        for side in ("onprem", "aws"):
            self._alarm(
                f"slot-lag-{side}", f"A replication slot on {side} holds more than "
                f"{thresholds.replication_slot_lag_mb} MB of WAL: its reader is behind or gone, the disk fills",
                namespace=METRICS_NAMESPACE, metric="ReplicationSlotLagBytes", dimensions={"Side": side},
                statistic="Maximum", threshold=thresholds.replication_slot_lag_mb * 1024 * 1024)
        self._alarm(
            "aurora-wal-disk", f"Aurora keeps more than {thresholds.replication_slot_lag_mb} MB of transaction "
            "logs (a replication slot holds them)", namespace="AWS/RDS", metric="TransactionLogsDiskUsage",
            dimensions=self.dimensions["aurora"], statistic="Maximum",
            threshold=thresholds.replication_slot_lag_mb * 1024 * 1024)

    def _writer_alarms(self) -> None:
        """One writer, watched from the databases themselves: the cutover controller publishes each
        side's fence every minute (`Fenced`: 1 when every application role is fenced there, 0 when
        open or partly open). Both open is two writers, at once an incident; both fenced for longer
        than a cutover's pause means nobody can take a payment; a side that publishes nothing is a
        fence nobody can see (the controller cannot reach that database)."""
        def fenced(side: str) -> CloudwatchMetricAlarmMetricQuery:
            return CloudwatchMetricAlarmMetricQuery(id=side, metric=CloudwatchMetricAlarmMetricQueryMetric(
                namespace=METRICS_NAMESPACE, metric_name="Fenced", dimensions={"Side": side},
                period=PERIOD_SECONDS, stat="Minimum"))

        self.writer_alarms = {
            "two-writers": self._alarm(
                "two-writers", "Both databases accept payments (neither side is fenced): two writers. Fence "
                "the one that is not the writer parameter's now (README, The cutover model)",
                threshold=1, comparison="GreaterThanOrEqualToThreshold", periods=1, metric_query=[
                    fenced("onprem"), fenced("aws"),
                    CloudwatchMetricAlarmMetricQuery(id="open", label="open sides = 2", return_data=True,
                                                     expression="IF(onprem + aws < 1, 1, 0)")]),
            "no-writer": self._alarm(
                "no-writer", f"Both databases fenced for {NO_WRITER_MINUTES} minutes: every payment write is "
                "refused. Finish or re-run the cutover or rollback execution that fenced them",
                threshold=1, comparison="GreaterThanOrEqualToThreshold", periods=NO_WRITER_MINUTES, metric_query=[
                    fenced("onprem"), fenced("aws"),
                    CloudwatchMetricAlarmMetricQuery(id="closed", label="fenced sides = 2", return_data=True,
                                                     expression="IF(onprem + aws >= 2, 1, 0)")]),
        }
        self.writer_alarms["fence-breached"] = self._alarm(
            "fence-breached", "A change reached a replicated table on a fenced side after its fence (the cutover's "
            "proof failed): both sides stay fenced. Find the writer in the step's error (xid, table, LSN), close its "
            "path, compare the sides (README, The cutover model)", namespace=METRICS_NAMESPACE,
            metric=FENCE_BREACHED_METRIC, dimensions={"service": STEP_SERVICE}, statistic="Sum", threshold=0,
            periods=1)
        for side in ("onprem", "aws"):
            id_ = f"fence-unseen-{side}"
            self.writer_alarms[id_] = CloudwatchMetricAlarm(
                self, id_, alarm_name=self.resource_name(id_),
                alarm_description=f"No fence measurement from {side} for {NO_WRITER_MINUTES} minutes: the "
                "controller cannot reach that database (its publish_metrics step fails), so neither its fence "
                "nor its replication slot is watched",
                namespace=METRICS_NAMESPACE, metric_name="Fenced", dimensions={"Side": side},
                statistic="SampleCount", period=PERIOD_SECONDS, evaluation_periods=NO_WRITER_MINUTES,
                datapoints_to_alarm=NO_WRITER_MINUTES, threshold=1, comparison_operator="LessThanThreshold",
                treat_missing_data="breaching", alarm_actions=[self.alarm_topic.arn],
                ok_actions=[self.alarm_topic.arn])

    def _dms_events(self, migration: MigrationStack) -> None:
        """DMS tells when a task fails or changes state (stopped, started), both directions."""
        DmsEventSubscription(
            self, "dms-events", name=self.resource_name("dms-tasks"), sns_topic_arn=self.alarm_topic.arn,
            source_type="replication-task", event_categories=["failure", "state change"],
            source_ids=[migration.forward_task_id, migration.forward_cdc_task_id, migration.fallback_task_id],
            enabled=True)

    def _dashboard(self, config: Config) -> None:
        region, dims = config.region, self.dimensions

        def metric(namespace: str, name: str, dimensions: dict, **options) -> list:
            entry = [namespace, name]
            for key, value in dimensions.items():
                entry += [key, value]
            return entry + ([options] if options else [])

        def widget(title: str, metrics: list, x: int, y: int, stat: str = "Sum", width: int = 12) -> dict:
            return {"type": "metric", "x": x, "y": y, "width": width, "height": 6,
                    "properties": {"title": title, "region": region, "stat": stat, "period": PERIOD_SECONDS,
                                   "view": "timeSeries", "metrics": metrics}}

        widgets = [
            {"type": "text", "x": 0, "y": 0, "width": 24, "height": 2, "properties": {"markdown": (
                f"## Payment migration — {config.name}\nThe cutover controller owns the weights of "
                f"`{config.dns.record_name}` and the writer: `python -m lib.cutover status` shows both, with "
                "the fence and the replication lag in each direction.")}},
            widget("Traffic on AWS (ALB requests)", [
                metric("AWS/ApplicationELB", "RequestCount", dims["alb"], label="AWS requests")], 0, 2),
            widget("Errors", [
                metric("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", dims["alb"]),
                metric("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", dims["target_group"]),
                metric("AWS/Lambda", "Errors", dims["api"]),
                metric("AWS/Lambda", "Throttles", dims["api"])], 12, 2),
            widget("Latency", [
                metric("AWS/ApplicationELB", "TargetResponseTime", dims["target_group"], stat="p95"),
                metric("AWS/Lambda", "Duration", dims["api"], stat="p95")], 0, 8, stat="p95"),
            widget("Aurora load", [
                metric("AWS/RDS", "CPUUtilization", dims["aurora"]),
                metric("AWS/RDS", "DatabaseConnections", dims["aurora"]),
                metric("AWS/RDS", "ServerlessDatabaseCapacity", dims["aurora"])], 12, 8, stat="Average"),
            widget("DMS replication lag (s): forward and fallback", [
                metric("AWS/DMS", "CDCLatencySource", dims["dms"], label="forward source"),
                metric("AWS/DMS", "CDCLatencyTarget", dims["dms"], label="forward target"),
                metric("AWS/DMS", "CDCLatencySource", dims["dms-fallback"], label="fallback source"),
                metric("AWS/DMS", "CDCLatencyTarget", dims["dms-fallback"], label="fallback target")],
                0, 14, stat="Average"),
            widget("Replication slots: WAL held (bytes)", [
                metric(METRICS_NAMESPACE, "ReplicationSlotLagBytes", {"Side": side}, label=side)
                for side in ("onprem", "aws")], 0, 20, stat="Maximum"),
            widget("Writer fence (1 = fenced): exactly one side at 0", [
                metric(METRICS_NAMESPACE, "Fenced", {"Side": side}, label=side)
                for side in ("onprem", "aws")], 12, 20, stat="Minimum"),
            widget("Validation", [
                metric(METRICS_NAMESPACE, "ValidationFailed", dims["validation"], stat="Maximum")], 12, 14),
        ]
        CloudwatchDashboard(self, "dashboard", dashboard_name=self.resource_name("cutover"),
                            dashboard_body=json.dumps({"widgets": widgets}))
