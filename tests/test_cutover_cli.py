"""The operator CLI (`python -m lib.cutover`) against the moto server: the functions it invokes are
moto function records whose invocations reach handlers in this process (InProcessLambdas) — the real
traffic and rollback handlers on the routing/monitoring world of tests/rollback/world.py, small
stand-ins for the step and validation functions (their databases are not here) — and the state
machines it starts are real tiny ones, executed by moto's Step Functions engine under the names the
stacks give in `dev` (the environment the CLI reads from PAYMENT_MIGRATION_ENV)."""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import pytest

from lib.cutover import cli, executions
from lib.names import Names
from tests.rollback.conftest import executing_state_machines, use_world  # noqa: F401 - fixture
from tests.rollback.functions import in_process_functions
from tests.rollback.world import ACCOUNT_ID, REGION, World, build_world, writer_document

# Each test deploys the controller on the moto server and drives it as an operator would.
pytestmark = pytest.mark.slow

NAMES = Names("dev")
NAMESPACE = "PaymentMigration"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
MACHINE_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/payment-migration-controller"


def machine_arn(label: str) -> str:
    return f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{NAMES.machines[label]}"


class FenceIncomplete(Exception):
    """Named like the step function's error: Lambda reports the class name."""


STEPS_STATUS = {
    "step": "status", "from": None, "to": None,
    "writer": {"writer": "onprem", "epoch": 0, "changed_at": "2026-01-01T03:00:00+00:00", "reason": "initial"},
    "fence": {"onprem": {"payment_app": "open"}, "aws": {"payment_app": "fenced"}},
    "replication": {
        "forward": {"direction": "forward", "source": "onprem", "target": "aws", "status": "running",
                    "detail": "DMS task payment-forward-dev is running"},
        "fallback": {"direction": "fallback", "source": "aws", "target": "onprem", "status": "stopped",
                     "detail": "DMS task payment-fallback-dev is ready"}},
    "slots": {"onprem": {"slot_name": "payment_forward_dev", "plugin": "test_decoding", "slot_type": "logical",
                         "database": "payments", "active": True, "active_pid": 4242,
                         "confirmed_flush_lsn": "0/16B3F20"},
              "aws": None},
}


def steps_stand_in(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The step function's answers the CLI and the tiny cutover need (the real one reads both
    databases from inside the VPC)."""
    if event.get("step") == "status":
        return STEPS_STATUS
    if event.get("step") == "fence":
        raise FenceIncomplete("aws is not fenced ({'payment_app': 'open'}): run fence_non_writer first")
    return {"step": event.get("step")}


def validation_stand_in(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"status": "PASSED", "message": "4 tables, 1200 rows: source and target agree", "tables": {}}


@pytest.fixture
def controller(aws, executing_state_machines, monkeypatch):  # noqa: F811 - the imported fixture
    """The dev environment's controller on the moto server, and how a test runs the CLI."""
    from payment_rollback import handler, traffic

    for cached in (handler.aws_clients, traffic.aws_clients):
        cached.cache_clear()
    handler.metrics.clear_metrics()
    monkeypatch.delenv("PAYMENT_MIGRATION_CONFIG", raising=False)
    monkeypatch.setenv("PAYMENT_MIGRATION_ENV", "dev")
    monkeypatch.setattr(executions, "POLL_SECONDS", 0.1)
    world = build_world(aws_member="records")
    use_world(world, monkeypatch)
    with in_process_functions(monkeypatch) as functions:
        functions.create(NAMES.traffic, traffic.lambda_handler, world.environment())
        steps_arn = functions.create(NAMES.steps, steps_stand_in,
                                     {"POWERTOOLS_METRICS_NAMESPACE": NAMESPACE})
        validation_arn = functions.create(NAMES.validation, validation_stand_in, {
            "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE, "POWERTOOLS_SERVICE_NAME": "validation"})
        functions.create(NAMES.rollback, handler.lambda_handler, {
            **world.environment(), "WRITER_ROLLBACK_WAIT_SECONDS": "10",
            "ROLLBACK_STATE_MACHINE_ARN": machine_arn("writer-rollback"),
            "ADVANCE_STATE_MACHINE_ARN": machine_arn("advance"),
            "CUTOVER_STATE_MACHINE_ARN": machine_arn("cutover")})
        yield Controller(world, functions, steps_arn=steps_arn, validation_arn=validation_arn)


class Controller:
    def __init__(self, world: World, functions: Any, *, steps_arn: str, validation_arn: str) -> None:
        self.world = world
        self.functions = functions
        self.steps_arn = steps_arn
        self.validation_arn = validation_arn

    def machine(self, label: str, definition: dict[str, Any]) -> str:
        return self.world.stepfunctions.create_state_machine(
            name=NAMES.machines[label], definition=json.dumps(definition), roleArn=MACHINE_ROLE)["stateMachineArn"]

    def tiny_machines(self, *, writer_rollback_seconds: int = 0) -> None:
        """advance: validation, a shift, a bake; cutover: a fence step that fails, caught, aborted;
        writer-rollback: the writer back to on-prem unless started by the Lambda's first attempt
        (which fails, as a writer rollback that needs a human would)."""
        self.machine("advance", {"StartAt": "Validate", "States": {
            "Validate": {"Type": "Task", "Resource": LAMBDA_INVOKE,
                         "Parameters": {"FunctionName": self.validation_arn, "Payload": {}},
                         "ResultSelector": {"result.$": "$.Payload"}, "ResultPath": "$.validation",
                         "Next": "ShiftWeights"},
            "ShiftWeights": {"Type": "Pass", "Next": "BakeWait"},
            "BakeWait": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
            "Done": {"Type": "Succeed"}}})
        self.machine("cutover", {"StartAt": "Preflight", "States": {
            "Preflight": {"Type": "Pass", "Next": "Fence"},
            "Fence": {"Type": "Task", "Resource": LAMBDA_INVOKE, "ResultPath": "$.steps.fence",
                      "Parameters": {"FunctionName": self.steps_arn, "Payload": {"step": "fence"}},
                      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Abort"}],
                      "Next": "Done"},
            "Abort": {"Type": "Pass", "Next": "Failed"},
            "Failed": {"Type": "Fail", "Error": "CutoverFailed",
                       "Cause": "the switch of the writer from onprem to aws did not complete"},
            "Done": {"Type": "Succeed"}}})
        self.machine("writer-rollback", self.writer_rollback(epoch=2, wait_seconds=writer_rollback_seconds))

    def writer_rollback(self, epoch: int, wait_seconds: int = 0) -> dict[str, Any]:
        return {"StartAt": "ByWhom?", "States": {
            "ByWhom?": {"Type": "Choice", "Choices": [
                {"Variable": "$.trigger", "StringEquals": "direct", "Next": "FenceTimeout"}], "Default": "Fence"},
            "FenceTimeout": {"Type": "Fail", "Error": "FenceTimeout", "Cause": "payment_app sessions still open"},
            "Fence": {"Type": "Wait", "Seconds": wait_seconds, "Next": "SwitchWriter"},
            "SwitchWriter": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:ssm:putParameter",
                             "Parameters": {"Name": "/payment-migration/test/writer", "Type": "String",
                                            "Overwrite": True,
                                            "Value": writer_document("onprem", epoch + 1, "writer rollback")},
                             "End": True}}}

    def executions(self, label: str) -> list[dict[str, Any]]:
        return self.world.stepfunctions.list_executions(stateMachineArn=machine_arn(label))["executions"]

    def put_slot_metrics(self) -> None:
        self.world.cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=[
            {"MetricName": metric, "Dimensions": [{"Name": "Side", "Value": side}], "Value": value, "Unit": "Bytes"}
            for side, metric, value in (("onprem", "ReplicationSlotLagBytes", 1536.0),
                                        ("onprem", "RetainedWalBytes", 3 * 1024 * 1024.0),
                                        ("aws", "ReplicationSlotLagBytes", 0.0),
                                        ("aws", "RetainedWalBytes", 0.0))])


@dataclass(frozen=True)
class Result:
    code: int
    out: str  # what the CLI wrote (the in-process handlers' own log lines go to sys.stdout)


def run(*argv: str) -> Result:
    buffer = io.StringIO()
    code = cli.main(list(argv), out=buffer)
    return Result(code, buffer.getvalue())


def wait_until_closed(world: World, arn: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (description := world.stepfunctions.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{arn} still running after {timeout} s"
        time.sleep(0.1)
    return description


# -- status ----------------------------------------------------------------------------------------


def test_status_is_one_screen_of_everything(controller):
    controller.tiny_machines()
    controller.put_slot_metrics()
    controller.world.set_alarm_state("payments-alb-5xx-test", "ALARM")
    assert run("advance", "canary").code == 0

    result = run("status")
    assert result.code == 0, result.out

    screen = result.out
    lines = screen.splitlines()
    assert lines[0].startswith("payment-migration dev (eu-west-1)   ")
    expected = [
        "Traffic      canary        on-prem 90 / aws 10",
        "Writer       onprem        epoch 0   changed 2026-01-01T03:00:00+00:00",
        "                           reason: set by the test world",
        "Fence        onprem        open (payment_app)",
        "             aws           fenced (payment_app)",
        "Replication  forward  onprem → aws     running   slot lag 1.5 kB, WAL held 3.0 MB",
        "                      DMS task payment-forward-dev is running",
        "             fallback aws → onprem  stopped   slot lag 0 B, WAL held 0 B",
        "Slots        onprem        payment_forward_dev  active  confirmed 0/16B3F20",
        "             aws           -",
        "Alarms       ALARM: payments-alb-5xx-test",
        "             ALARM             payments-alb-5xx-test",
    ]
    for line in expected:
        assert line in lines, f"missing {line!r} in:\n{screen}"
    (validation,) = [line for line in lines if line.startswith("Validation")]
    assert validation.startswith("Validation   PASSED        execution advance-canary-"), screen
    assert "              4 tables, 1200 rows: source and target agree" in screen
    (advance,) = [line for line in lines if line.startswith("  advance")]
    assert "advance-canary-" in advance and "SUCCEEDED" in advance, screen
    assert "  cutover          -" in lines and "  writer-rollback  -" in lines
    assert "Errors" not in screen


def test_status_as_json(controller, capsys):
    controller.tiny_machines()
    execution = controller.world.stepfunctions.start_execution(
        stateMachineArn=machine_arn("writer-rollback"), name="resume-1",
        input=json.dumps({"trigger": "operator"}))["executionArn"]
    wait_until_closed(controller.world, execution)

    result = run("status", "--json")
    assert result.code == 0, result.out

    status = json.loads(result.out)
    assert status["environment"] == "dev" and status["errors"] == []
    assert status["traffic"]["weights"] == {"onprem": 90, "aws": 10} and status["traffic"]["phase"] == "canary"
    assert status["writer"]["writer"] == "onprem" and status["writer"]["epoch"] == 3, "the resume switched it"
    assert status["databases"]["fence"] == STEPS_STATUS["fence"]
    assert status["slot_metrics"] == {"onprem": {"ReplicationSlotLagBytes": None, "RetainedWalBytes": None},
                                      "aws": {"ReplicationSlotLagBytes": None, "RetainedWalBytes": None}}
    (resume,) = status["executions"]["writer-rollback"]
    assert (resume["name"], resume["status"]) == ("resume-1", "SUCCEEDED")
    assert status["validation"] is None, "no execution validated, no scheduled result"


def test_status_from_the_scheduled_validation_metric(controller, capsys):
    controller.tiny_machines()
    controller.world.cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=[
        {"MetricName": "ValidationFailed", "Dimensions": [{"Name": "service", "Value": "validation"}], "Value": 1}])

    result = run("status", "--json")
    assert result.code == 0, result.out

    validation = json.loads(result.out)["validation"]
    assert validation["status"] == "FAILED or ERROR"
    assert validation["source"] == "scheduled validation (PaymentMigration ValidationFailed=1)"


def test_status_shows_what_it_read_and_names_what_it_could_not(controller, capsys):
    # No state machine: the cutover stack is not deployed.
    controller.functions.lambdas.register(NAMES.steps, steps_failing, environment={})

    result = run("status")
    assert result.code == 1, result.out

    screen = result.out
    assert "Traffic      canary        on-prem 90 / aws 10" in screen
    assert "Databases    unknown (see errors)" in screen
    assert (f"Errors       databases: {NAMES.steps} failed: DatabaseUnavailable: on-prem did not answer "
            "within 5 s") in screen
    assert f"executions: state machine {machine_arn('advance')} does not exist: is the cutover stack deployed" \
           in screen


def steps_failing(event: dict[str, Any], context: Any) -> dict[str, Any]:
    class DatabaseUnavailable(Exception):
        pass

    raise DatabaseUnavailable("on-prem did not answer within 5 s")


def test_a_validation_that_could_not_be_read_is_unknown_not_none(controller, capsys):
    import boto3

    boto3.client("lambda").delete_function(FunctionName=NAMES.validation)

    result = run("status")
    assert result.code == cli.NOT_SUCCEEDED, result.out

    (validation,) = [line for line in result.out.splitlines() if line.startswith("Validation")]
    assert validation == "Validation   unknown (see errors)", result.out
    assert "none found" not in result.out
    assert f"validation: cannot read the configuration of {NAMES.validation}" in result.out


def without_aws_settings(env: pytest.MonkeyPatch, tmp_path) -> None:
    """No credentials, profile, endpoint or config file: what a shell that was told nothing has."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.delenv(name, raising=False)
    env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    env.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_status_without_credentials_exits_4_naming_the_endpoint(controller, aws, capsys, tmp_path):
    with pytest.MonkeyPatch.context() as env:  # put back before the fixtures' teardown uses AWS
        without_aws_settings(env, tmp_path)
        env.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
        result = run("status")
    assert result.code == cli.UNREACHABLE, result.out

    error = capsys.readouterr().err
    assert error.startswith("cannot tell which AWS account this is (STS GetCallerIdentity at AWS (eu-west-1)): "
                            "Unable to locate credentials"), error
    assert result.out == "", "nothing half read is shown"


def test_the_local_environment_reaches_its_emulator_without_being_told(controller, aws, monkeypatch, tmp_path):
    """With config/local.toml's [emulator] pointing at this moto server and no AWS settings in the
    environment at all, status reads the emulator with its test credentials."""
    from lib.config import CONFIG_DIR

    local_names = Names("local")
    controller.functions.create(local_names.traffic, lambda event, context: {
        "weights": {"onprem": 100, "aws": 0}, "phase": "legacy-sync", "writer": None,
        "alarms": {"states": {}, "in_alarm": []}}, {})
    local = (CONFIG_DIR / "local.toml").read_text().replace(
        'endpoint = "http://127.0.0.1:4566"', f'endpoint = "{aws.endpoint_url}"')
    assert aws.endpoint_url in local
    config = tmp_path / "local.toml"
    config.write_text(local)
    monkeypatch.setenv("PAYMENT_MIGRATION_CONFIG", str(config))
    with pytest.MonkeyPatch.context() as env:  # put back before the fixtures' teardown uses AWS
        without_aws_settings(env, tmp_path)
        result = run("status", "--json")

    status = json.loads(result.out)
    assert status["environment"] == "local"
    assert status["traffic"]["phase"] == "legacy-sync", status["errors"]
    assert not [error for error in status["errors"] if "credentials" in error.lower()], status["errors"]
    assert f"databases: cannot invoke {local_names.steps}" in " ".join(status["errors"])
    assert result.code == cli.NOT_SUCCEEDED, "the cutover stack is not deployed: parts are missing"


class InterruptedOutput(io.StringIO):
    """A terminal whose user presses Ctrl-C once the execution's progress starts."""

    def write(self, text: str) -> int:
        if text.lstrip().startswith(("→", "←")) or "s  →" in text:
            raise KeyboardInterrupt
        return super().write(text)


# -- advance and cutover ---------------------------------------------------------------------------


def test_advance_starts_an_execution_and_follows_it_to_the_end(controller, capsys):
    controller.tiny_machines()

    result = run("advance", "split", "--bake-minutes", "3")
    assert result.code == 0, result.out

    out = result.out
    (execution,) = controller.executions("advance")
    assert execution["name"].startswith("advance-split-20")
    assert json.loads(controller.world.stepfunctions.describe_execution(
        executionArn=execution["executionArn"])["input"]) == {
        "phase": "split", "bake_checks": 3, "bake_interval_seconds": 60}
    lines = out.splitlines()
    assert lines[0] == f"started {execution['name']} on payment-advance-dev"
    assert lines[1] == f"  {execution['executionArn']}"
    # "     1.2s  ← BakeWait  (1.0 s)": time since the start, the state, how long it took
    progress = [re.fullmatch(r" +\d+\.\ds  ([→←]) (\S+)(?:  \((\d+\.\d) s\))?", line) for line in lines[2:-1]]
    assert all(progress), lines
    assert [match.group(1, 2) for match in progress] == [
        (arrow, state) for state in ("Validate", "ShiftWeights", "BakeWait", "Done") for arrow in "→←"]
    assert float(progress[5].group(3)) >= 1.0, "the bake's Wait took its second"
    assert re.fullmatch(r"SUCCEEDED in \d+\.\d s", lines[-1])


def test_ctrl_c_while_following_exits_130_and_the_execution_goes_on(controller, capsys):
    controller.tiny_machines()
    out = InterruptedOutput()

    code = cli.main(["advance", "split"], out=out)
    assert code == cli.INTERRUPTED, out.getvalue()

    (execution,) = controller.executions("advance")
    assert "stopped following; the execution goes on: " + execution["executionArn"] in out.getvalue()
    assert wait_until_closed(controller.world, execution["executionArn"])["status"] == "SUCCEEDED"


def test_a_failed_cutover_names_the_state_that_failed(controller, capsys):
    controller.tiny_machines()

    result = run("cutover")
    assert result.code == 1, result.out

    out = result.out
    assert "    ✗ FenceIncomplete: aws is not fenced ({'payment_app': 'open'}): run fence_non_writer first" in out
    assert "→ Abort" in out
    lines = out.splitlines()
    assert lines[-2].startswith("FAILED after ")
    assert lines[-2].endswith(": CutoverFailed: the switch of the writer from onprem to aws did not complete")
    assert lines[-1] == ("  failed state: Fence: FenceIncomplete: aws is not fenced ({'payment_app': 'open'}): "
                         "run fence_non_writer first")


@pytest.mark.parametrize("command", [("advance", "split"), ("cutover",), ("rollback", "--resume", "--reason", "x")])
def test_nothing_starts_while_an_execution_of_the_controller_runs(controller, capsys, command):
    controller.tiny_machines(writer_rollback_seconds=30)
    slow = controller.world.stepfunctions.start_execution(
        stateMachineArn=machine_arn("writer-rollback"), name="resume-slow",
        input=json.dumps({"trigger": "operator"}))["executionArn"]

    result = run(*command)
    assert result.code == cli.REFUSED, result.out

    error = capsys.readouterr().err
    assert error.startswith("refused: writer-rollback resume-slow (started "), error
    assert "is still running; follow it with `python -m lib.cutover status`" in error
    assert [e["name"] for e in controller.executions("writer-rollback")] == ["resume-slow"]
    assert controller.executions("advance") == controller.executions("cutover") == []
    assert controller.world.stepfunctions.describe_execution(executionArn=slow)["status"] == "RUNNING"


def test_an_advance_already_running_refuses_another(controller, capsys):
    controller.tiny_machines()
    controller.world.stepfunctions.update_state_machine(stateMachineArn=machine_arn("advance"), definition=json.dumps(
        {"StartAt": "Bake", "States": {"Bake": {"Type": "Wait", "Seconds": 30, "End": True}}}))
    controller.world.stepfunctions.start_execution(stateMachineArn=machine_arn("advance"), name="advance-canary-1")

    result = run("advance", "split")
    assert result.code == cli.REFUSED, result.out

    assert capsys.readouterr().err.startswith("refused: advance advance-canary-1 (started ")
    assert len(controller.executions("advance")) == 1


# -- rollback --------------------------------------------------------------------------------------


def test_rollback_invokes_the_lambda_and_prints_its_answer(controller, capsys):
    result = run("rollback", "--reason", "5xx on the AWS side")
    assert result.code == 0, result.out

    out = result.out
    lines = out.splitlines()
    assert lines[0] == "rollback ROLLED_BACK   reason: 5xx on the AWS side"
    assert lines[1] == "  weights          on-prem 90 / aws 10  →  on-prem 100 / aws 0"
    assert lines[2] == "  writer           onprem (epoch 0)  →  onprem (epoch 0)"
    assert "  actions:" in lines
    assert any(line.startswith("    - Route 53: changed onprem=90/aws=10 to onprem=100/aws=0") for line in lines)
    assert controller.world.weights() == {"onprem": 100, "aws": 0}
    (invocation,) = [i for i in controller.functions.lambdas.invocations if i.function_name == NAMES.rollback]
    assert invocation.event == {"reason": "5xx on the AWS side", "dry_run": False}


def test_rollback_dry_run_as_json_changes_nothing(controller, capsys):
    result = run("rollback", "--reason", "rehearsal", "--dry-run", "--json")
    assert result.code == 0, result.out

    answer = json.loads(result.out)
    assert answer["status"] == "DRY_RUN"
    assert answer["weights_after"] == {"onprem": 100, "aws": 0}
    assert controller.world.weights() == {"onprem": 90, "aws": 10}


def test_a_writer_rollback_that_failed_is_resumed_under_a_new_name(controller, capsys):
    controller.tiny_machines()
    controller.world.set_writer("aws", 2)
    controller.world.set_weights(onprem=0, aws=100)

    result = run("rollback", "--reason", "ledger mismatch")
    assert result.code == cli.NOT_SUCCEEDED, result.out

    out = result.out
    assert out.startswith("rollback PARTIAL   reason: ledger mismatch")
    assert "  writer rollback  FAILED  arn:aws:states:eu-west-1:123456789012:execution:" \
           "payment-writer-rollback-dev:rollback-epoch-2" in out
    assert "writer rollback FAILED: FenceTimeout: payment_app sessions still open" in out
    assert out.splitlines()[-1] == (
        '  next: deal with the cause, then `python -m lib.cutover rollback --resume --reason "..."`')
    assert controller.world.weights() == {"onprem": 100, "aws": 0}

    result = run("rollback", "--resume", "--reason", "sessions ended by hand")
    assert result.code == 0, result.out

    out = result.out
    resumed = controller.executions("writer-rollback")[0]
    assert resumed["name"].startswith("resume-20")
    assert out.splitlines()[0] == f"started {resumed['name']} on payment-writer-rollback-dev"
    assert "→ SwitchWriter" in out and out.splitlines()[-1].startswith("SUCCEEDED in ")
    assert json.loads(controller.world.stepfunctions.describe_execution(
        executionArn=resumed["executionArn"])["input"]) == {"reason": "sessions ended by hand", "trigger": "operator"}
    assert (controller.world.writer()["writer"], controller.world.writer()["epoch"]) == ("onprem", 3)


def test_a_rollback_function_that_raises_is_reported(controller, capsys):
    controller.functions.lambdas.register(NAMES.rollback, steps_failing, environment={})

    result = run("rollback", "--reason", "drill")
    assert result.code == cli.NOT_SUCCEEDED, result.out

    assert capsys.readouterr().err.strip() == (
        f"{NAMES.rollback} failed: DatabaseUnavailable: on-prem did not answer within 5 s")


# -- usage -----------------------------------------------------------------------------------------


def test_an_unknown_environment_is_refused_naming_the_variable(controller, capsys, monkeypatch):
    monkeypatch.setenv("PAYMENT_MIGRATION_ENV", "nowhere")

    result = run("status")
    assert result.code == cli.UNREACHABLE, result.out

    assert capsys.readouterr().err.startswith("configuration: PAYMENT_MIGRATION_ENV: no config file ")


@pytest.mark.parametrize("argv", [["advance", "halfway"], ["advance", "canary", "--bake-minutes", "0"],
                                  ["rollback"], ["launch"]])
def test_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)

    assert exited.value.code == cli.USAGE


def test_resume_takes_no_dry_run(capsys):
    assert cli.main(["rollback", "--resume", "--dry-run", "--reason", "x"]) == cli.USAGE


def test_execution_names_are_valid_and_readable():
    from datetime import datetime, timezone

    name = executions.execution_name("advance", "aws-primary", now=datetime(2026, 11, 23, 19, 30, tzinfo=timezone.utc))

    assert name == "advance-aws-primary-20261123T193000Z"


def test_names_are_the_stacks(synthesized):
    functions = {f["function_name"] for stack in synthesized.stacks.values()
                 for f in stack.get("resource", {}).get("aws_lambda_function", {}).values()}
    machines = {m["name"] for stack in synthesized.stacks.values()
                for m in stack.get("resource", {}).get("aws_sfn_state_machine", {}).values()}

    assert {NAMES.traffic, NAMES.steps, NAMES.rollback,
            NAMES.validation} <= functions
    assert set(NAMES.machines.values()) <= machines


# -- the real step function ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers():
    """The two PostgreSQL servers of this process (lib/local/postgres/replication.py), shared."""
    from lib.local.postgres.replication import acquire_servers, release_servers

    yield acquire_servers()
    release_servers()


@pytest.mark.filterwarnings("error:No application metrics to publish")
def test_status_reads_both_databases_through_the_real_step_function(controller, servers):
    """The step function's own status answer, on two real PostgreSQL servers joined by logical
    replication (on-prem → aws running, both open): the screen shows it as it is."""
    import boto3
    from payment_cutover import handler as steps

    from lib.local.postgres.replication import cutover_environment, shared_pair

    pair = shared_pair(servers)
    steps.aws_clients.cache_clear()
    environment = cutover_environment(pair, "/payment-migration/test/writer", boto3.client("secretsmanager"))
    controller.functions.lambdas.register(NAMES.steps, steps.lambda_handler, environment=environment)
    try:
        result = run("status", "--json")
    finally:
        pair.close_connections()

    status = json.loads(result.out)
    assert status["errors"] == [f"executions: state machine {machine_arn('advance')} does not exist: is the cutover "
                                "stack deployed in this environment?"], status["errors"]
    databases = status["databases"]
    assert databases["fence"] == {"onprem": {"payment_app": "open"}, "aws": {"payment_app": "open"}}
    assert databases["replication"]["forward"]["status"] == "running"
    assert databases["slots"]["onprem"]["slot_name"] == pair.slot_names["forward"]
    screen = cli.status.render(status)
    assert "Replication  forward  onprem → aws     running   slot lag ?, WAL held ?" in screen, screen
    assert "Fence        onprem        open (payment_app)" in screen
