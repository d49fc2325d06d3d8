"""The local environment's Lambda functions, run in this process: moto keeps their configuration
but runs code only in Docker, which this machine does not have.

`InProcessLambdas.install()` patches the one place moto runs a function (LambdaFunction.invoke),
so every way a function is called reaches the real handler registered for its name: the Invoke
API (RequestResponse, or Event in a background thread as Lambda queues it), a Step Functions Task
state (`lambda:invoke`, which moto's interpreter sends to the Invoke API), and an SNS delivery to
a subscribed function. Each invocation runs with that function's environment as deployed
(Terraform's variables, read back from moto), with `overrides` on top (e.g. the rehearsal's
PostgreSQL servers instead of moto's fake Aurora endpoint).

Environment variables are per process, invocations run in several threads at once (Step Functions
executions, Map branches, nested calls), so os.environ is replaced by a mapping that each thread
can overlay: a handler sees its function's environment, everything else the process's.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[Any, Any], Any]


class _ThreadEnviron(MutableMapping):
    """os.environ with a per-thread overlay; writes go to the process's environment."""

    def __init__(self, base: MutableMapping[str, str]) -> None:
        self._base = base
        self._local = threading.local()

    @property
    def _overlay(self) -> Mapping[str, str] | None:
        return getattr(self._local, "overlay", None)

    def __getitem__(self, key: str) -> str:
        overlay = self._overlay
        if overlay is not None:
            return overlay[key]
        return self._base[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._base[key] = value

    def __delitem__(self, key: str) -> None:
        del self._base[key]

    def __iter__(self) -> Iterator[str]:
        overlay = self._overlay
        return iter(overlay if overlay is not None else self._base)

    def __len__(self) -> int:
        overlay = self._overlay
        return len(overlay if overlay is not None else self._base)

    def copy(self) -> dict[str, str]:
        return dict(self)

    @contextmanager
    def overlaid(self, environment: Mapping[str, str]) -> Iterator[None]:
        previous = self._overlay
        self._local.overlay = {**self._base, **environment}
        try:
            yield
        finally:
            self._local.overlay = previous


def thread_environ() -> _ThreadEnviron:
    if not isinstance(os.environ, _ThreadEnviron):
        os.environ = _ThreadEnviron(os.environ)  # type: ignore[assignment]
    return os.environ  # type: ignore[return-value]


@dataclass
class FakeContext:
    """The context Lambda hands a handler. Registered functions get their deployed timeout, memory
    and ARN (a handler that budgets its time by get_remaining_time_in_millis sees what it would on
    AWS); the defaults serve a handler called without a deployed function."""
    function_name: str
    memory_limit_in_mb: int = 512
    timeout_seconds: int = 900
    aws_request_id: str = field(default_factory=lambda: f"local-{time.monotonic_ns()}")
    started: float = field(default_factory=time.monotonic)
    function_arn: str | None = None

    @property
    def invoked_function_arn(self) -> str:
        return self.function_arn or f"arn:aws:lambda:eu-west-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


@dataclass
class Invocation:
    function_name: str
    event: Any
    result: Any = None
    error: str | None = None  # the exception's class name: what Lambda reports as errorType
    asynchronous: bool = False
    seconds: float = 0.0


class InProcessLambdas:
    def __init__(self, account_id: str = "123456789012", region: str = "eu-west-1") -> None:
        self.account_id = account_id
        self.region = region
        self._handlers: dict[str, tuple[Handler, dict[str, str]]] = {}
        self._contexts: dict[str, dict[str, Any]] = {}  # FakeContext fields of each deployed function
        self.invocations: list[Invocation] = []
        self._lock = threading.Lock()
        self._environ = thread_environ()

    def register(self, function_name: str, handler: Handler, *, overrides: Mapping[str, str] | None = None,
                 environment: Mapping[str, str] | None = None) -> None:
        """Runs `handler` for `function_name`, with the function's deployed environment (or
        `environment`) and `overrides` on top."""
        if environment is None:
            environment = self.deployed_environment(function_name)
        self._handlers[function_name] = (handler, {**environment, **(overrides or {})})
        function = self._deployed(function_name)
        self._contexts[function_name] = {} if function is None else {
            "timeout_seconds": int(function.timeout), "memory_limit_in_mb": int(function.memory_size),
            "function_arn": function.function_arn}

    def deployed_environment(self, function_name: str) -> dict[str, str]:
        function = self._deployed(function_name)
        if function is None:
            raise LookupError(f"{function_name}: no such function in the emulator (region {self.region})")
        return dict(function.environment_vars or {})

    def _deployed(self, function_name: str) -> Any:
        from moto.awslambda.exceptions import UnknownFunctionException
        from moto.awslambda.utils import get_backend

        try:
            return get_backend(self.account_id, self.region).get_function(function_name)
        except UnknownFunctionException:
            return None

    def invoke(self, function_name: str, event: Any) -> Any:
        """Run a registered handler as Lambda would; re-raises what the handler raised."""
        invocation = self._run(function_name, event, asynchronous=False)
        if invocation.error is not None:
            raise _InvocationFailed(invocation)
        return invocation.result

    def install(self) -> None:
        from moto.awslambda import models

        registry = self

        def invoke(function, body: str, request_headers: Any, response_headers: Any) -> str | bytes:
            name = function.function_name
            if name not in registry._handlers:
                raise RuntimeError(f"{name}: no in-process handler registered (InProcessLambdas.register)")
            event = json.loads(body) if body else {}
            headers = request_headers or {}
            # SNS delivers with no headers, an Event invoke says so: both are asynchronous in Lambda.
            if not headers or headers.get("x-amz-invocation-type") == "Event":
                threading.Thread(target=registry._run, args=(name, event), kwargs={"asynchronous": True},
                                 name=f"lambda-{name}", daemon=True).start()
                return b""
            invocation = registry._run(name, event, asynchronous=False)
            if invocation.error is not None:
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps(invocation.result).encode()
            return json.dumps(invocation.result).encode()

        models.LambdaFunction.invoke = invoke

    def _run(self, function_name: str, event: Any, *, asynchronous: bool) -> Invocation:
        handler, environment = self._handlers[function_name]
        invocation = Invocation(function_name, event, asynchronous=asynchronous)
        started = time.monotonic()
        with self._environ.overlaid(environment):
            try:
                invocation.result = handler(event, FakeContext(function_name, **self._contexts.get(function_name, {})))
            except Exception as error:  # noqa: BLE001 - reported as Lambda reports a function error
                invocation.error = type(error).__name__
                invocation.result = {"errorType": type(error).__name__, "errorMessage": str(error),
                                     "stackTrace": traceback.format_exception(error)[-3:]}
        invocation.seconds = time.monotonic() - started
        with self._lock:
            self.invocations.append(invocation)
        return invocation


class _InvocationFailed(Exception):
    def __init__(self, invocation: Invocation) -> None:
        super().__init__(f"{invocation.function_name}: {invocation.error}: {invocation.result['errorMessage']}")
        self.invocation = invocation
