"""What the rehearsal adds to the emulator in its own process: a request log — every call moto
serves (service, action, path, status, seconds) to a logger; werkzeug's own log names neither the
service nor the action of query and JSON APIs."""

from __future__ import annotations

import io
import logging
import re
import time
from urllib.parse import parse_qs

_MARK = "_payment_migration_rehearsal"
_SERVICE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")


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
