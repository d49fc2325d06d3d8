"""What the rehearsal adds to the emulator in its own process, until lib/local/emulator.py has it:

- `ValidateStateMachineDefinition`: moto 5.2.5 has no such action (its server answers 500), and the
  AWS provider calls it before creating or updating an aws_sfn_state_machine, so the cutover stack
  cannot be applied without it. Answered here with moto's own ASL parser (the one its interpreter
  runs): OK when it parses, FAIL with the parser's message when not. Installed after the
  emulator's own shims, and only when neither moto nor they answer it.
- a request log: every call moto serves — service, action, path, status, seconds — to a logger
  (werkzeug's own log names neither service nor action of query and JSON APIs).
"""

from __future__ import annotations

import io
import logging
import re
import time
from urllib.parse import parse_qs

_MARK = "_payment_migration_rehearsal"
_SERVICE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")


def install_step_functions_actions() -> list[str]:
    """The Step Functions actions the provider needs and moto lacks; returns those installed."""
    installed = []
    if _install_validate_state_machine_definition():
        installed.append("sfn-validate-state-machine-definition")
    return installed


def _install_validate_state_machine_definition() -> bool:
    from moto.core.responses import ActionResult
    from moto.stepfunctions.responses import StepFunctionResponse

    if hasattr(StepFunctionResponse, "validate_state_machine_definition"):
        return False

    def validate_state_machine_definition(self) -> ActionResult:
        from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

        definition = self._get_param("definition")
        diagnostics = []
        try:
            AmazonStateLanguageParser.parse(definition)
        except Exception as error:  # noqa: BLE001 - every parser failure is a diagnostic
            diagnostics.append({"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED",
                                "message": f"{type(error).__name__}: {error}"[:1000], "location": "/"})
        return ActionResult({"result": "FAIL" if diagnostics else "OK", "diagnostics": diagnostics,
                             "truncated": False})

    setattr(validate_state_machine_definition, _MARK, True)
    StepFunctionResponse.validate_state_machine_definition = validate_state_machine_definition
    return True


def install_request_log(logger: logging.Logger) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.__call__
    if getattr(original, _MARK, False):
        return

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        match = _SERVICE.search(environ.get("HTTP_AUTHORIZATION", ""))
        action = target.rsplit(".", 1)[-1] if target else ""
        if (not action and environ.get("REQUEST_METHOD") == "POST"
                and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", "")):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        status: dict[str, str] = {}

        def recording_start_response(line, headers, exc_info=None):
            status["line"] = line
            return start_response(line, headers, exc_info)

        started = time.monotonic()
        try:
            return original(self, environ, recording_start_response)
        finally:
            logger.info("%s %s %s %s %s %.3fs", match.group(1) if match else "-", action or "-",
                        environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                        status.get("line", "no-response").split(" ")[0], time.monotonic() - started)

    setattr(__call__, _MARK, True)
    DomainDispatcherApplication.__call__ = __call__
