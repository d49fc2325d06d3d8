"""AWS client configuration: bounded retries and timeouts.

Plain boto3 clients, so the standard AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_<SERVICE>) redirect
them to any AWS-compatible endpoint. Retries are botocore's "standard" mode: exponential backoff
with jitter on throttling (Route 53's Throttling and PriorRequestNotComplete included), 5xx and
connection errors. "adaptive" adds client-side rate limiting, which only pays off for clients
sending many requests; these functions send a handful.

Worst case per call, every attempt timing out: attempts x (connect + read) + backoff (1 + 2 + 4 s
for 4 attempts): `worst_case_call_seconds`."""

from __future__ import annotations

from botocore.config import Config

CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 5


def client_config(total_max_attempts: int, *, connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                  read_timeout: float = READ_TIMEOUT_SECONDS) -> Config:
    return Config(retries={"mode": "standard", "total_max_attempts": total_max_attempts},
                  connect_timeout=connect_timeout, read_timeout=read_timeout)


def worst_case_call_seconds(total_max_attempts: int, *, connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                            read_timeout: float = READ_TIMEOUT_SECONDS) -> float:
    """One call whose every attempt times out, plus the longest backoff between attempts."""
    backoff = sum(2**retry for retry in range(total_max_attempts - 1))
    return total_max_attempts * (connect_timeout + read_timeout) + backoff
