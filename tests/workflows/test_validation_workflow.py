"""The validation state machine (lib/workflows/validation.py): its definition's structure, and its
data flow run in this process through the real handler: plan -> every item -> merge, following the
definition's own paths and parameters, reports what a single invocation reports.

No state machine engine runs the definition here: moto's Step Functions interpreter would call
the function through moto's Lambda, which needs Docker. `run_definition` below evaluates exactly
the constructs this definition uses and refuses any other."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lib.workflows.validation import LAMBDA_INVOKE, PLAN_PAYLOAD, validation_definition, validation_definition_json
from tests.validation.conftest import (  # noqa: F401 - fixtures used by this module's tests
    Databases, Lambda, connect, database_pool, ledger_databases, lambda_for,
)
from tests.validation.test_chunks import without_timings

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


# -- the data flow, in this process --------------------------------------------------------------


class FunctionError(Exception):
    """An invocation that failed as Lambda reports it (Error and Cause)."""


def run_definition(machine: dict[str, Any], data: Any, invoke: Callable[[str, Any], Any]) -> Any:
    """Evaluate the states of `machine` on `data` with Step Functions' semantics for the
    constructs used here (lambda:invoke Tasks, an inline-items Map, Pass, Catch, ResultSelector,
    ResultPath, OutputPath, the plan's JsonMerge); anything else fails the test."""
    name = machine["StartAt"]
    while True:
        state = machine["States"][name]
        known = {"Type", "Resource", "Parameters", "ResultSelector", "ResultPath", "OutputPath", "Retry", "Catch",
                 "Next", "End", "Label", "ItemsPath", "MaxConcurrency", "ItemProcessor"}
        assert set(state) <= known, f"state {name} uses {set(state) - known}: extend run_definition"
        if state["Type"] == "Task":
            assert state["Resource"] == LAMBDA_INVOKE
            parameters = _resolve(state["Parameters"], data)
            try:
                result = {"Payload": invoke(parameters["FunctionName"], parameters["Payload"]), "StatusCode": 200}
            except FunctionError as error:
                (catch,) = state["Catch"]
                assert catch["ErrorEquals"] == ["States.ALL"] and catch["ResultPath"] == "$.error"
                data, name = {**data, "error": {"Error": "Lambda.Unknown", "Cause": str(error)}}, catch["Next"]
                continue
            if "ResultSelector" in state:
                result = _resolve(state["ResultSelector"], result)
            data = _place(data, state.get("ResultPath", "$"), result)
        elif state["Type"] == "Map":
            processor = state["ItemProcessor"]
            results = [run_definition(processor, item, invoke) for item in _path(data, state["ItemsPath"])]
            data = _place(data, state["ResultPath"], results)
        elif state["Type"] == "Pass":
            data = _resolve(state["Parameters"], data)
        else:
            raise AssertionError(f"state type {state['Type']} is not evaluated here")
        if "OutputPath" in state:
            data = _path(data, state["OutputPath"])
        if state.get("End"):
            return data
        name = state["Next"]


def _resolve(template: dict[str, Any], data: Any) -> dict[str, Any]:
    resolved = {}
    for key, value in template.items():
        if key.endswith(".$"):
            resolved[key[:-2]] = {**data, "action": "plan"} if value == PLAN_PAYLOAD else _path(data, value)
        else:
            resolved[key] = _resolve(value, data) if isinstance(value, dict) else value
    return resolved


def _path(data: Any, path: str) -> Any:
    assert path == "$" or path.startswith("$."), f"unsupported path {path}"
    for part in path[2:].split(".") if path != "$" else []:
        data = data[part]
    return data


def _place(data: Any, path: str, value: Any) -> Any:
    if path == "$":
        return value
    assert path.count(".") == 1, f"unsupported ResultPath {path}"
    return {**data, path[2:]: value}


@pytest.fixture(scope="module")
def ledger(postgres, database_pool) -> Iterator[Databases]:
    yield from ledger_databases(postgres, database_pool, "workflow")


@pytest.fixture
def function(aws, postgres, ledger, monkeypatch) -> Iterator[Lambda]:
    yield from lambda_for(postgres, ledger, monkeypatch)


def invoker(function: Lambda, crash_chunk: int | None = None) -> Callable[[str, Any], Any]:
    def invoke(function_name: str, payload: Any) -> Any:
        assert function_name == FUNCTION_ARN
        if crash_chunk is not None and payload.get("chunk", {}).get("index") == crash_chunk:
            raise FunctionError(json.dumps({"errorMessage": "Task timed out after 900.00 seconds"}))
        return json.loads(json.dumps(function.invoke(payload)))  # through JSON, as Lambda returns it
    return invoke


def test_the_steps_run_in_python_report_what_a_single_run_reports(function):
    execution_input = {"chunk_rows": 10_000, "max_diffs_per_table": 10, "check_sequences": True}

    merged = run_definition(definition(), execution_input, invoker(function))
    single = function.invoke({"max_diffs_per_table": 10, "check_sequences": True})

    assert single["status"] == "FAILED" and single["tables"]["public.ledger"]["mismatched_total"] == 23
    assert without_timings(merged) == without_timings(single)


def test_a_chunk_whose_invocation_fails_makes_its_table_an_error(function):
    merged = run_definition(definition(), {"tables": ["ledger"], "chunk_rows": 40_000}, invoker(function, crash_chunk=1))

    assert merged["status"] == "ERROR"
    assert merged["tables"]["public.ledger"]["message"].startswith("public.ledger chunk 2 of ")
    assert "Task timed out after 900.00 seconds" in merged["tables"]["public.ledger"]["message"]


def test_a_plan_that_fails_merges_into_an_error(function):
    merged = run_definition(definition(), {"tables": ["refunds"]}, invoker(function))

    assert merged["status"] == "ERROR"
    assert merged["message"].startswith("planning failed: tables not found") and "refunds" in merged["message"]
