"""The operator's hands on the emulator: start the controller's executions and watch them, read the
two controls (the weights of the service name, the writer parameter), invoke a function as
`aws lambda invoke` would, and inject the fault the way CloudWatch and SNS would deliver it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lib.config import Config
from lib.cutover.executions import history as execution_history
from lib.names import Names


class ControlError(Exception):
    pass


class Controls:
    def __init__(self, emulator: Any, config: Config, executions_dir: Path,
                 progress: Callable[[str], None]) -> None:
        self.config = config
        self.names = Names(config.name)
        self.progress = progress
        self.executions_dir = executions_dir
        region = config.region
        self.sfn = emulator.client("stepfunctions", region)
        self.ssm = emulator.client("ssm", region)
        self.route53 = emulator.client("route53", region)
        self.cloudwatch = emulator.client("cloudwatch", region)
        self.sns = emulator.client("sns", region)
        self.lambda_ = emulator.client("lambda", region)
        self.secrets = emulator.client("secretsmanager", region)
        self.record: dict[str, str] = {}  # the weighted pair, from the rollback function's environment
        self.writer_parameter = ""

    def bind(self, rollback_environment: dict[str, str]) -> None:
        """Where the weighted records and the writer parameter are, as the rollback function was
        deployed to find them."""
        self.record = {key: rollback_environment[key] for key in
                       ("HOSTED_ZONE_ID", "RECORD_NAME", "RECORD_TYPE", "ONPREM_SET_IDENTIFIER", "AWS_SET_IDENTIFIER")}
        self.writer_parameter = rollback_environment["WRITER_PARAMETER"]

    # ---- the two controls ---------------------------------------------------------------------
    def weights(self) -> dict[str, int]:
        """{"onprem": w, "aws": w} of the weighted pair."""
        record = self.record
        answer = self.route53.list_resource_record_sets(
            HostedZoneId=record["HOSTED_ZONE_ID"], StartRecordName=record["RECORD_NAME"],
            StartRecordType=record["RECORD_TYPE"], MaxItems="10")
        sides = {record["ONPREM_SET_IDENTIFIER"]: "onprem", record["AWS_SET_IDENTIFIER"]: "aws"}
        weights = {}
        for record_set in answer["ResourceRecordSets"]:
            side = sides.get(record_set.get("SetIdentifier"))
            if side and record_set["Name"].rstrip(".") == record["RECORD_NAME"].rstrip("."):
                weights[side] = int(record_set.get("Weight", 0))
        return weights

    def writer(self) -> dict[str, Any]:
        return json.loads(self.ssm.get_parameter(Name=self.writer_parameter)["Parameter"]["Value"])

    # ---- functions and state machines -----------------------------------------------------------
    def invoke(self, function_name: str, payload: dict) -> dict:
        """RequestResponse through the Lambda Invoke API; a function error raises ControlError."""
        answer = self.lambda_.invoke(FunctionName=function_name, Payload=json.dumps(payload).encode())
        body = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            raise ControlError(f"{function_name} {payload}: {body.get('errorType')}: {body.get('errorMessage')}")
        return body

    def state_machine_arn(self, name: str) -> str:
        for page in self.sfn.get_paginator("list_state_machines").paginate():
            for machine in page["stateMachines"]:
                if machine["name"] == name:
                    return machine["stateMachineArn"]
        raise ControlError(f"no state machine {name}: is the cutover stack applied?")

    def run_execution(self, machine: str, name: str, execution_input: dict, *, timeout: float = 600) -> dict:
        """Start an execution and follow it to its end, printing each state it enters; its history
        goes to executions/<name>.json. Returns the last DescribeExecution."""
        arn = self.sfn.start_execution(stateMachineArn=self.state_machine_arn(machine), name=name,
                                       input=json.dumps(execution_input))["executionArn"]
        self.progress(f"started {machine} execution {name} {json.dumps(execution_input)}")
        return self.follow(arn, timeout=timeout)

    def follow(self, arn: str, *, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            description = self.sfn.describe_execution(executionArn=arn)
            events = self.history(arn)
            for event in events[seen:]:
                if event["type"].endswith("StateEntered"):
                    self.progress(f"  · {event['stateEnteredEventDetails']['name']}")
            seen = len(events)
            if description["status"] != "RUNNING":
                self.save_history(arn, description, events)
                return description
            if time.monotonic() > deadline:
                self.save_history(arn, description, events)
                raise ControlError(f"execution {arn} still RUNNING after {timeout:.0f} s")
            time.sleep(0.5)

    def history(self, arn: str) -> list[dict]:
        return execution_history(self.sfn, arn)

    def save_history(self, arn: str, description: dict | None = None, events: list[dict] | None = None) -> Path:
        description = description or self.sfn.describe_execution(executionArn=arn)
        events = events if events is not None else self.history(arn)
        self.executions_dir.mkdir(parents=True, exist_ok=True)
        path = self.executions_dir / f"{arn.rsplit(':', 2)[-2]}--{arn.rsplit(':', 1)[-1]}.json"
        path.write_text(json.dumps({"execution": description, "events": events}, indent=1, default=str) + "\n")
        return path

    def executions(self, machine: str) -> list[dict]:
        return self.sfn.list_executions(stateMachineArn=self.state_machine_arn(machine))["executions"]

    # ---- the fault ---------------------------------------------------------------------------------
    def inject_fault(self, reason: str) -> dict:
        """A child of the composite "cutover unhealthy" alarm goes to ALARM (SetAlarmState); moto has
        no composite alarm, so the composite's notification is published to the rollback topic here,
        in the shape CloudWatch gives it. moto's SNS delivers it to the subscribed rollback function."""
        from lib.stacks.monitoring import ROLLBACK_ALARMS

        names = self.names
        child, composite = names.child_alarm, names.composite_alarm
        self.cloudwatch.set_alarm_state(AlarmName=child, StateValue="ALARM", StateReason=reason)
        state = self.cloudwatch.describe_alarms(AlarmNames=[child])["MetricAlarms"][0]["StateValue"]
        if state != "ALARM":
            raise ControlError(f"{child} is {state} after SetAlarmState ALARM")
        topic = self.topic_arn(names.rollback_topic)
        region, account = self.config.region, topic.split(":")[4]
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
        notification = {
            "AlarmName": composite,
            "AlarmDescription": "The AWS side is failing its users: roll traffic back to on-prem",
            "AWSAccountId": account,
            "AlarmConfigurationUpdatedTimestamp": now,
            "NewStateValue": "ALARM",
            "NewStateReason": f"arn:aws:cloudwatch:{region}:{account}:alarm:{child} transitioned to ALARM at {now}",
            "StateChangeTime": now,
            "Region": region,
            "AlarmArn": f"arn:aws:cloudwatch:{region}:{account}:alarm:{composite}",
            "OldStateValue": "OK",
            "OKActions": [],
            "AlarmActions": [topic],
            "InsufficientDataActions": [],
            "AlarmRule": " OR ".join(f'ALARM("{self.names.resource(alarm)}")'
                                     for alarm in ROLLBACK_ALARMS),
            "TriggeringChildren": [{"Arn": f"arn:aws:cloudwatch:{region}:{account}:alarm:{child}",
                                    "State": {"Value": "ALARM", "Timestamp": now}}],
        }
        message_id = self.sns.publish(TopicArn=topic, Subject=f'ALARM: "{composite}" in {region}',
                                      Message=json.dumps(notification))["MessageId"]
        return {"child_alarm": child, "composite_alarm": composite, "topic": topic, "message_id": message_id}

    def clear_fault(self) -> None:
        self.cloudwatch.set_alarm_state(AlarmName=self.names.child_alarm, StateValue="OK",
                                        StateReason="rehearsal: the injected fault is over")

    def topic_arn(self, name: str) -> str:
        for page in self.sns.get_paginator("list_topics").paginate():
            for topic in page["Topics"]:
                if topic["TopicArn"].rsplit(":", 1)[-1] == name:
                    return topic["TopicArn"]
        raise ControlError(f"no SNS topic {name}: is the monitoring stack applied?")

    # ---- credentials --------------------------------------------------------------------------------
    def put_secret(self, name: str, value: dict, *, create: bool = False) -> str:
        """The operator's step "put each database role's credentials into its secret". `create`:
        a secret the stacks do not make (the rehearsal's subscription manager)."""
        if create:
            try:
                return self.secrets.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]
            except self.secrets.exceptions.ResourceExistsException:
                pass
        self.secrets.put_secret_value(SecretId=name, SecretString=json.dumps(value))
        return self.secrets.describe_secret(SecretId=name)["ARN"]
