"""The Lambda handlers called in this process as AWS calls them: an ALB event and a context for the
payment API, and the writer parameter (SSM) they read. The databases behind them are the replicated
pair of lib/local/postgres/replication.py (`api_environment`, `cutover_environment`)."""

from __future__ import annotations

import json

from lib.local.postgres.replication import ONPREM


def create_writer_parameter(ssm, name: str, writer: str = ONPREM) -> str:
    ssm.put_parameter(Name=name, Type="String", Overwrite=True,
                      Value=json.dumps({"writer": writer, "epoch": 0, "changed_at": "2026-01-01T00:00:00+00:00",
                                        "reason": "initial"}))
    return name


def alb_event(method: str, path: str, body: dict | None = None, headers: dict[str, str] | None = None) -> dict:
    """An event as an ALB sends it to the payment API."""
    return {
        "requestContext": {"elb": {"targetGroupArn":
                                   "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/payment-api/0"}},
        "httpMethod": method, "path": path, "queryStringParameters": {},
        "headers": {"host": "payments.test", "content-type": "application/json",
                    **{name.lower(): value for name, value in (headers or {}).items()}},
        "body": json.dumps(body) if body is not None else "", "isBase64Encoded": False,
    }


class LambdaContext:
    function_name = "test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:test"
    aws_request_id = "00000000-0000-4000-8000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


class PaymentApi:
    """The real payment API handler (payment_api.handler) in this process, called with ALB events.
    Environment from api_environment() must be set before the first call."""

    def __init__(self) -> None:
        from payment_api import handler

        self.handler = handler
        self.reset()

    def reset(self) -> None:
        if self.handler._database is not None:
            self.handler._database.close()
        self.handler._database = None
        self.handler.metrics.clear_metrics()

    def create(self, customer_id: str, key: str, amount: str = "10.00") -> tuple[int, dict, dict]:
        return self.call("POST", "/payments", {"customer_id": customer_id, "amount": amount, "currency": "EUR"},
                         {"Idempotency-Key": key})

    def call(self, method: str, path: str, body: dict | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
        result = self.handler.lambda_handler(alb_event(method, path, body, headers), LambdaContext())
        headers = {name.lower(): value for name, value in (result.get("headers") or {}).items()}
        return result["statusCode"], headers, json.loads(result["body"])
