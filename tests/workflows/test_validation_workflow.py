"""The validation state machine (lib/workflows/validation.py): its definition's structure, and the
definition executed by moto's Step Functions interpreter — plan, the distributed map over the
plan's chunks, merge — every Task state reaching the real validation handler in this process
(lib/local/lambdas.py) on the real PostgreSQL databases of tests/validation/conftest.py.

One Emulator per module (tests/workflows/conftest.py, execution of state machines switched on);
`deployed` creates the validation function (a dummy zip, the environment the stack gives it) and
the state machine from validation_definition() with that function's ARN."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from lib.workflows.validation import LAMBDA_INVOKE, PLAN_PAYLOAD, validation_definition, validation_definition_json
from payment_validation import engine
from tests.validation.conftest import (  # noqa: F401 - fixtures used by this module's tests
    Databases, database_pool, function_environment, ledger_databases,
)
from tests.validation.test_chunks import without_timings
from tests.workflows.conftest import Emulator, Execution, create_function

FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:payment-validation-test"


def definition(max_concurrency: int = 4) -> dict[str, Any]:
    return validation_definition(function_arn=FUNCTION_ARN, max_concurrency=max_concurrency)


def test_plan_then_a_distributed_map_then_merge():
    states = definition(max_concurrency=7)["States"]

    assert definition()["StartAt"] == "Plan"
    assert (states["Plan"]["Next"], states["ValidateChunks"]["Next"], states["Merge"].get("End")) == (
        "ValidateChunks", "Merge", True)
    chunks = states["ValidateChunks"]
    assert chunks["Type"] == "Map"
    assert chunks["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert chunks["MaxConcurrency"] == 7
    json.loads(validation_definition_json(function_arn=FUNCTION_ARN, max_concurrency=7))


def test_every_task_invokes_the_function_and_retries_only_transient_errors():
    states = definition()["States"]
    tasks = [states["Plan"], states["Merge"], states["ValidateChunks"]["ItemProcessor"]["States"]["ValidateChunk"]]

    for task in tasks:
        assert (task["Type"], task["Resource"], task["Parameters"]["FunctionName"]) == (
            "Task", LAMBDA_INVOKE, FUNCTION_ARN)
        (retry,) = task["Retry"]
        assert all(error.startswith("Lambda.") for error in retry["ErrorEquals"]), retry


def test_the_data_paths_line_up():
    """What the plan leaves is what the map iterates; what the map leaves, the merge reads; a
    failed chunk becomes a result naming its chunk."""
    states = definition()["States"]
    chunks, merge = states["ValidateChunks"], states["Merge"]

    assert states["Plan"]["Parameters"]["Payload.$"] == PLAN_PAYLOAD
    assert states["Plan"]["ResultSelector"] == {"plan.$": "$.Payload"}
    assert chunks["ItemsPath"] == "$.plan.items"
    assert merge["Parameters"]["Payload"] == {"action": "merge", "plan.$": "$.plan", "results.$": chunks["ResultPath"]}
    processor = chunks["ItemProcessor"]["States"]
    (catch,) = processor["ValidateChunk"]["Catch"]
    assert (catch["ErrorEquals"], catch["Next"]) == (["States.ALL"], "ChunkFailed")
    assert processor["ChunkFailed"]["Parameters"]["chunk.$"] == "$.chunk"


@pytest.mark.parametrize("max_concurrency", [0, 10_001, True, "4"])
def test_max_concurrency_is_checked(max_concurrency):
    with pytest.raises(ValueError, match="max_concurrency"):
        definition(max_concurrency)


# -- executed by moto's interpreter ------------------------------------------------------------------

FUNCTION_NAME = "payment-validation-test"
MACHINE_NAME = "payment-validation-test"
MAX_CONCURRENCY = 4
EXECUTION_TIMEOUT_SECONDS = 120


@pytest.fixture(scope="module")
def ledger(postgres, database_pool) -> Iterator[Databases]:
    yield from ledger_databases(postgres, database_pool, "workflow")


@dataclass
class Deployed:
    """The validation function and state machine in the emulator, and how a test runs them."""

    emulator: Emulator
    stepfunctions: Any
    awslambda: Any
    machine_arn: str
    chunks_at_once: list[int] = field(default_factory=list)  # chunk invocations running, after each start
    _names: Iterator[int] = field(default_factory=lambda: iter(range(1, 10_000)))

    def run(self, execution_input: dict[str, Any]) -> Execution:
        arn = self.stepfunctions.start_execution(stateMachineArn=self.machine_arn, name=f"validation-{next(self._names)}",
                                                 input=json.dumps(execution_input))["executionArn"]
        deadline = time.monotonic() + EXECUTION_TIMEOUT_SECONDS
        while (description := self.stepfunctions.describe_execution(executionArn=arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                self.stepfunctions.stop_execution(executionArn=arn)
                raise AssertionError(f"{arn} still running after {EXECUTION_TIMEOUT_SECONDS} s")
            time.sleep(0.05)
        # the map's child executions keep their own histories: the parent's is a few dozen events
        events = self.stepfunctions.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        return Execution(arn, description, events)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """One invocation through Lambda's Invoke API: what a single run reports."""
        response = self.awslambda.invoke(FunctionName=FUNCTION_NAME, Payload=json.dumps(event).encode())
        assert "FunctionError" not in response, response
        return json.loads(response["Payload"].read())

    def register(self, crash_chunk: int | None = None) -> None:
        """The real handler behind the function; with `crash_chunk`, the invocation of the chunk
        with that index fails as a function error (it never returns, as when its time runs out)."""
        handler = self.emulator.validation_handler
        running, lock = [0], threading.Lock()
        self.chunks_at_once.clear()

        def lambda_handler(event: Any, context: Any) -> Any:
            chunk = event.get("chunk") if isinstance(event, dict) else None
            if chunk is None:
                return handler.lambda_handler(event, context)
            if chunk.get("index") == crash_chunk:
                raise ChunkTimedOut("Task timed out after 900.00 seconds")
            with lock:
                running[0] += 1
                self.chunks_at_once.append(running[0])
            try:
                return handler.lambda_handler(event, context)
            finally:
                with lock:
                    running[0] -= 1

        handler.metrics.clear_metrics()
        self.emulator.lambdas.register(FUNCTION_NAME, lambda_handler)


class ChunkTimedOut(Exception):
    """A chunk's invocation that failed: Lambda reports its errorType and errorMessage."""


@pytest.fixture(scope="module")
def deployed(emulator: Emulator, postgres, ledger: Databases) -> Iterator[Deployed]:
    """The function with the environment the validation stack gives it (on the ledger databases),
    and the state machine made from the real definition with its ARN."""
    emulator.emulator.reset()
    awslambda, stepfunctions, iam = (boto3.client(service) for service in ("lambda", "stepfunctions", "iam"))
    role_arn = iam.create_role(RoleName="payment-validation-test-states",
                               AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))[
        "Role"]["Arn"]
    function_arn = create_function(awslambda, role_arn, FUNCTION_NAME, "payment_validation.handler.lambda_handler",
                                   function_environment(postgres, ledger))
    machine_arn = stepfunctions.create_state_machine(
        name=MACHINE_NAME, roleArn=role_arn,
        definition=validation_definition_json(function_arn=function_arn, max_concurrency=MAX_CONCURRENCY),
    )["stateMachineArn"]
    yield Deployed(emulator, stepfunctions, awslambda, machine_arn)


@pytest.fixture
def machine(deployed: Deployed, monkeypatch: pytest.MonkeyPatch) -> Deployed:
    """The deployed machine with the real handler, the engine's sample made fine enough that a
    plan cuts the ledger into ten chunks every time (chunk_rows 10,000; the first pass of the
    single runs samples the same way). As shipped, the sample for the ledger's 100,000 rows is a
    few pages, from which every 32nd key is a bound: about one plan in eight gets fewer than eight
    chunks (4 to 9 in 7 plans of 60). 2,500-row buckets sample four times the pages: 10 chunks in
    100 plans of 100."""
    monkeypatch.setattr(engine, "BUCKET_ROWS", 2_500)  # the handler runs in this process
    deployed.register()
    return deployed


def test_the_machine_reports_what_a_single_invocation_reports(machine):
    execution = machine.run({"chunk_rows": 10_000, "max_diffs_per_table": 10, "check_sequences": True})
    single = machine.invoke({"max_diffs_per_table": 10, "check_sequences": True})

    assert execution.status == "SUCCEEDED", (execution.error, execution.cause, execution.states_entered())
    assert execution.states_entered() == ["Plan", "ValidateChunks", "Merge"]
    assert [event["type"] for event in execution.events if event["type"].startswith("MapRun")] == [
        "MapRunStarted", "MapRunSucceeded"]  # a distributed map: its items ran as a map run
    items = execution.result("Plan")["items"]
    ledger_chunks = [item for item in items if item["chunk"]["table"] == "public.ledger"]
    assert len(ledger_chunks) >= 8, f"the ledger was cut into only {len(ledger_chunks)} chunks"
    assert len(machine.chunks_at_once) == len(items)  # one invocation per chunk
    assert max(machine.chunks_at_once) <= MAX_CONCURRENCY, machine.chunks_at_once
    assert single["status"] == "FAILED" and single["tables"]["public.ledger"]["mismatched_total"] == 23
    assert without_timings(execution.output) == without_timings(single)


def planted_ledger_differences() -> dict[str, list[tuple[str, int]]]:
    """The keys ledger_databases changed in the target, in key order (byte order: Python's)."""
    accounts_changed = [f"acct-0{hundreds}10" for hundreds in range(10)]
    return {
        "missing_in_target": sorted((account, 50) for account in ("acct-0003", "acct-0250", "acct-0510",
                                                                    "acct-0999")),
        "extra_in_target": sorted([("acct-", 1), ("acct-0500", 101), ("zz", 1)]),
        "mismatched": sorted([*((account, entry) for account in accounts_changed for entry in (7, 77)),
                              *(("acct-0700", entry) for entry in (10, 11, 12))]),
    }


def test_a_chunked_run_names_exactly_the_differing_keys(machine):
    execution = machine.run({"tables": ["ledger"], "chunk_rows": 10_000, "max_diffs_per_table": 100})

    assert execution.status == "SUCCEEDED", (execution.error, execution.cause, execution.states_entered())
    assert len(execution.result("Plan")["items"]) >= 8, execution.result("Plan")["chunks_per_table"]
    report = execution.output
    ledger = report["tables"]["public.ledger"]
    assert (report["status"], ledger["status"], list(report["tables"])) == ("FAILED", "FAILED", ["public.ledger"])
    for kind, keys in planted_ledger_differences().items():
        assert [(key["account"], key["entry"]) for key in ledger[kind]] == keys, kind
        assert ledger[f"{kind}_total"] == len(keys), kind


def test_a_chunk_whose_invocation_fails_makes_its_table_an_error(machine):
    machine.register(crash_chunk=1)

    execution = machine.run({"tables": ["ledger"], "chunk_rows": 40_000})

    assert execution.status == "SUCCEEDED", (execution.error, execution.cause, execution.states_entered())
    report = execution.output
    assert report["status"] == "ERROR"
    assert report["tables"]["public.ledger"]["message"].startswith("public.ledger chunk 2 of ")
    # the Catch's Cause: the function error as Lambda reports it
    assert '"errorType":"ChunkTimedOut","errorMessage":"Task timed out after 900.00 seconds"' in report[
        "tables"]["public.ledger"]["message"]


def test_a_plan_that_fails_merges_into_an_error(machine):
    execution = machine.run({"tables": ["refunds"]})

    assert execution.status == "SUCCEEDED", (execution.error, execution.cause, execution.states_entered())
    assert execution.result("Plan")["items"] == []
    report = execution.output
    assert report["status"] == "ERROR"
    assert report["message"].startswith("planning failed: tables not found") and "refunds" in report["message"]
