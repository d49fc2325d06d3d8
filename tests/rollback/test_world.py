"""The module's world is shared by its tests: World.restore must undo whatever a test changes, or
the tests would see each other's leftovers."""

from __future__ import annotations

import json

from tests.rollback.functions import _placeholder_zip
from tests.rollback.world import (
    AWS_SET_IDENTIFIER,
    FALLBACK_ALARM_NAMES,
    HEALTH_ALARM_NAMES,
    RECORD_NAME,
    ROLLBACK_ALARM_NAMES,
    World,
    fail_with,
)


def test_restore_undoes_every_kind_of_change_the_tests_make(world: World):
    world.set_weights(onprem=0, aws=100)
    world.delete_member(AWS_SET_IDENTIFIER)
    world.route53.change_resource_record_sets(HostedZoneId=world.zone_id, ChangeBatch={"Changes": [{
        "Action": "CREATE", "ResourceRecordSet": {"Name": "failover." + RECORD_NAME, "Type": "A", "SetIdentifier": "x",
                                                  "Failover": "PRIMARY", "TTL": 60,
                                                  "ResourceRecords": [{"Value": "192.0.2.30"}]}}]})
    world.set_writer("aws", 4)
    world.run_tasks("fallback")
    world.ssm.put_parameter(Name="/payment-migration/test/left-behind", Value="x", Type="String")
    world.cloudwatch.disable_alarm_actions(AlarmNames=list(FALLBACK_ALARM_NAMES))
    world.set_alarm_state(ROLLBACK_ALARM_NAMES[0], "ALARM")
    world.set_alarm_state(HEALTH_ALARM_NAMES[0], "ALARM")
    world.cloudwatch.delete_alarms(AlarmNames=[ROLLBACK_ALARM_NAMES[1]])
    world.cloudwatch.put_metric_alarm(
        AlarmName="left-behind", Namespace="PaymentMigration", MetricName="x", Statistic="Maximum", Period=60,
        EvaluationPeriods=1, Threshold=0, ComparisonOperator="GreaterThanThreshold")
    world.sns.publish(TopicArn=world.topic_arn, Message="left in the queue")
    world.create_rollback_machine(fail_with("Fenced", "left behind"))
    role_arn = world.iam.create_role(RoleName="left-behind", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": []}))["Role"]["Arn"]
    world.awslambda.create_function(FunctionName="left-behind", Runtime="python3.12", Role=role_arn,
                                    Handler="index.handler", Code={"ZipFile": _placeholder_zip()})
    changed = world.state()
    assert all(changed[part] != world.built[part] for part in world.built), {
        part for part in world.built if changed[part] == world.built[part]}

    world.restore()

    assert world.state() == world.built
    assert world.notifications() == []
