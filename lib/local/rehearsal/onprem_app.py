"""The on-prem payment application, as a real HTTP server on loopback (what the on-prem record of
the service name points the rehearsal's clients to).

It connects as its own database role (ONPREM_APPLICATION_ROLE: payment_onprem_app) and serves
POST /payments (Idempotency-Key) and GET /payments/{id} on the reference schema. How it finds the
database is the config's `cutover.onprem_application`:

- "legacy": it writes to the on-prem database, always. It knows nothing of the writer parameter
  and was not changed for the migration; it has a sane error handler: a write the database refuses
  as read-only or for lack of privilege (SQLSTATE 25006 / 42501: the fence) or a database it cannot
  reach is answered 503 with Retry-After, anything else 500.
- "follows-writer": it keeps the contract the AWS API keeps — the payment API's own code (a private
  copy of payment_api, its secrets pointed at this role's), which reads the writer parameter and
  connects to the writer.

Requests are served one at a time (a lock): the legacy application keeps one connection, as a small
pool would, and the payment API's code runs one request per execution environment.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg2

ROLE = "payment_onprem_app"
FENCE_SQLSTATES = ("25006", "42501")  # read_only_sql_transaction, insufficient_privilege
RETRY_AFTER_SECONDS = 1


class Answer(Exception):
    def __init__(self, status: int, body: dict, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, dict(headers or {})


class LegacyApplication:
    """Writes to its own database with its own role, whoever is the writer."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self.connect = connect
        self.conn = None

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict, dict]:
        from payment_api import payments
        from payment_api.errors import PaymentApiError
        from payment_api.models import PaymentRequest

        try:
            if self.conn is None or self.conn.closed:
                self.conn = self.connect()
            if method == "POST" and path == "/payments":
                key = headers.get("idempotency-key")
                if not key:
                    raise Answer(400, {"error": "invalid_request", "message": "Idempotency-Key is required"})
                request = PaymentRequest.model_validate(json.loads(body or b"{}"))
                result = payments.create_payment(self.conn, request, key)
                return (201 if result.created else 200), result.payment.to_json(), {}
            if method == "GET" and path.startswith("/payments/"):
                payment = payments.get_payment(self.conn, uuid.UUID(path.rsplit("/", 1)[-1]))
                return 200, payment.to_json(), {}
            raise Answer(404, {"error": "not_found"})
        except Answer as answer:
            return answer.status, answer.body, answer.headers
        except PaymentApiError as error:
            return int(error.status), error.to_body(), {}
        except psycopg2.Error as error:
            self._discard()
            # a lost or terminated connection (the fence ends the role's sessions) is as retryable
            if isinstance(error, psycopg2.OperationalError) or error.pgcode in FENCE_SQLSTATES:
                return 503, {"error": "unavailable", "sqlstate": error.pgcode,
                             "message": "the database does not accept this write now; retry"}, \
                    {"Retry-After": str(RETRY_AFTER_SECONDS)}
            return 500, {"error": "internal_error", "sqlstate": error.pgcode}, {}
        except (ValueError, TypeError) as error:
            return 400, {"error": "invalid_request", "message": str(error)[:200]}, {}

    def _discard(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg2.Error:
                pass
        self.conn = None

    def close(self) -> None:
        self._discard()


class FollowsWriterApplication:
    """The payment API's own code, as an on-prem application that reads the writer parameter."""

    def __init__(self, environment: Mapping[str, str], function_name: str) -> None:
        from lib.local.lambdas import FakeContext, thread_environ
        from lib.local.rehearsal.load import isolated_module, private_metrics

        self.environment = dict(environment)
        self.context = FakeContext(function_name)
        self.environ = thread_environ()
        with self.environ.overlaid(self.environment):
            self.handler = isolated_module("payment_api", "payment_api.handler")
        private_metrics(self.handler.metrics)

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict, dict]:
        from lib.local.rehearsal.load import alb_event

        with self.environ.overlaid(self.environment):
            result = self.handler.lambda_handler(alb_event(method, path, json.loads(body) if body else None, headers),
                                                 self.context)
        answer = json.loads(result.get("body") or "{}")
        return result["statusCode"], answer, dict(result.get("headers") or {})

    def close(self) -> None:
        if self.handler._database is not None:
            self.handler._database.close()


class OnPremServer:
    """The application behind a ThreadingHTTPServer on 127.0.0.1 (a free port)."""

    def __init__(self, application: LegacyApplication | FollowsWriterApplication) -> None:
        self.application = application
        self.lock = threading.Lock()
        self.served = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # the clients log every answer
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                with server.lock:
                    server.served += 1
                    try:
                        status, answer, extra = server.application.handle(self.command, self.path, headers, body)
                    except Exception as error:  # noqa: BLE001 - a crash is a 500, as a web server answers it
                        status, answer, extra = 500, {"error": "internal_error", "message": repr(error)[:200]}, {}
                payload = json.dumps(answer, default=str).encode()
                self.send_response(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="onprem-app", daemon=True)

    def start(self) -> OnPremServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            self.application.close()
