"""The validation state machine: a table too large for one Lambda invocation (15 minutes) is cut
into key-range chunks, validated in parallel, and the chunks' reports joined into one.

    Plan (Lambda, action plan)
      -> ValidateChunks (distributed map over the plan's items, MaxConcurrency at a time;
                         each item is the complete validate_chunk event of one chunk)
      -> Merge (Lambda, action merge): the report a single run gives

The execution input is the validation event (tables, chunk_rows, max_diffs_per_table,
recheck_seconds, recheck_rounds, check_sequences, direction; all optional), the output the
merged report. The same validation function serves the three steps (payment_validation.handler).

A chunk whose invocation fails after the retries (a crash, its 15 minutes run out) does not fail
the execution: its error becomes that chunk's result, and the merge reports its table ERROR, so
the report and the ValidationFailed metric always come out. A plan that fails maps nothing and the
merge reports the plan's error.

Limits: the map's results come back inline, within Step Functions' 256 KiB payload: a few hundred
chunks with max_diffs_per_table keys each. Beyond that the map needs a ResultWriter (S3) and a
merge that reads it.
"""

from __future__ import annotations

import json
from typing import Any

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
# Transient Lambda service errors: retried. A function error (the handler raised, or timed out)
# is not, since a retry would run the same chunk the same way.
TRANSIENT_LAMBDA_ERRORS = [
    "Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
MAX_MAP_CONCURRENCY = 10_000  # Step Functions' limit for a distributed map's child executions

# The plan's payload: the execution input with the action set (JsonMerge: the second wins).
PLAN_PAYLOAD = "States.JsonMerge($, States.StringToJson('{\"action\": \"plan\"}'), false)"


def validation_definition(*, function_arn: str, max_concurrency: int) -> dict[str, Any]:
    """The ASL of the validation state machine calling `function_arn` (a token is fine: it is only
    placed, never taken apart), at most `max_concurrency` chunks at once."""
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) \
            or not 1 <= max_concurrency <= MAX_MAP_CONCURRENCY:
        raise ValueError(f"max_concurrency must be an integer from 1 to {MAX_MAP_CONCURRENCY}, got {max_concurrency!r}")
    return {
        "Comment": "Validation of the target database against the source, table chunks in parallel",
        "StartAt": "Plan",
        "States": {
            "Plan": {
                **_invoke(function_arn, {"Payload.$": PLAN_PAYLOAD}),
                "ResultSelector": {"plan.$": "$.Payload"},
                "Next": "ValidateChunks",
            },
            "ValidateChunks": {
                "Type": "Map",
                "Label": "ValidateChunks",
                "ItemsPath": "$.plan.items",
                "MaxConcurrency": max_concurrency,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "ValidateChunk",
                    "States": {
                        "ValidateChunk": {
                            **_invoke(function_arn, {"Payload.$": "$"}),
                            "OutputPath": "$.Payload",
                            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                                       "Next": "ChunkFailed"}],
                            "End": True,
                        },
                        # the shape of the function's own error result, naming the chunk
                        "ChunkFailed": {
                            "Type": "Pass",
                            "Parameters": {"status": "ERROR", "message.$": "$.error.Cause", "tables": {},
                                           "chunk.$": "$.chunk"},
                            "End": True,
                        },
                    },
                },
                "ResultPath": "$.results",
                "Next": "Merge",
            },
            "Merge": {
                **_invoke(function_arn, {"Payload": {"action": "merge", "plan.$": "$.plan", "results.$": "$.results"}}),
                "OutputPath": "$.Payload",
                "End": True,
            },
        },
    }


def validation_definition_json(*, function_arn: str, max_concurrency: int) -> str:
    """The definition as the string a state machine resource takes."""
    return json.dumps(validation_definition(function_arn=function_arn, max_concurrency=max_concurrency))


def _invoke(function_arn: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": LAMBDA_INVOKE,
        "Parameters": {"FunctionName": function_arn, **payload},
        "Retry": [{"ErrorEquals": TRANSIENT_LAMBDA_ERRORS, "IntervalSeconds": 2, "MaxAttempts": 6,
                   "BackoffRate": 2.0, "JitterStrategy": "FULL"}],
    }
