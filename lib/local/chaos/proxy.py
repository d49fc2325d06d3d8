"""Faults on the wire: two proxies on loopback, each in a process of its own (the trial's process runs
the handlers in-process; proxy threads there would compete with them for the interpreter).

- `LinkProxy`: TCP in front of the on-prem PostgreSQL server, standing for the link (VPN, Direct
  Connect) between AWS and the data centre. Every connection the handlers and the payment API make to
  on-prem goes through it, and so does a subscription the controller creates on Aurora to on-prem
  (its publisher connection string names the same host and port). Modes:
    "up"         bytes forwarded both ways;
    "reset"      every open connection reset (RST to both ends), every new one reset at once;
    "blackhole"  nothing forwarded either way and new connections accepted but never joined to the
                 server: a dead link, until TCP gives up. Back "up", the held bytes flow again.
- `ApiProxy`: HTTP in front of the moto server, standing for the AWS APIs the handlers and the
  payment API call. A rule makes the calls of one service (ssm, route53, states) fail while it is
  set:
    "500"            HTTP 500, nothing applied;
    "throttle"       HTTP 400 ThrottlingException (Route 53: Throttling), nothing applied;
    "applied-500"    the call is applied by moto, then its answer replaced by HTTP 500: the client
                     retries a call that took effect.
  `writes_only` limits a rule to the calls that change something.

The parent holds a handle (`port`, `set(...)`, `close()`); the proxy process obeys commands sent on a
pipe and answers each once it is in effect.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import re
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LINK_MODES = ("up", "reset", "blackhole")
API_MODES = ("500", "throttle", "applied-500")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
# Operations of the JSON protocols that only read (X-Amz-Target's operation name).
_READ_PREFIXES = ("Get", "List", "Describe")


class _Handle:
    """The parent's side of a proxy process."""

    def __init__(self, target, *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=target, args=(child, *args), daemon=True, name=target.__name__)
        self._process.start()
        self.port: int = self._pipe.recv()
        self._lock = threading.Lock()

    def _command(self, command: dict[str, Any]) -> Any:
        with self._lock:
            self._pipe.send(command)
            return self._pipe.recv()

    def close(self) -> None:
        try:
            self._command({"cmd": "exit"})
        except (OSError, EOFError):
            pass
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.terminate()


class LinkProxy(_Handle):
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        super().__init__(_serve_link, upstream_host, upstream_port)

    def set(self, mode: str) -> dict[str, int]:
        """The link's mode; returns how many connections it held and reset."""
        if mode not in LINK_MODES:
            raise ValueError(f"link mode {mode!r}: one of {LINK_MODES}")
        return self._command({"cmd": "mode", "mode": mode})


class ApiProxy(_Handle):
    def __init__(self, upstream_url: str) -> None:
        super().__init__(_serve_api, upstream_url)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, service: str | None, mode: str | None = None, *, writes_only: bool = False) -> dict[str, int]:
        """Calls of `service` (the SigV4 scope's name: ssm, route53, states) fail as `mode` says until
        the next `set`; `set(None)` lets every call through. Returns the calls failed under the rule
        being replaced."""
        if service is not None and mode not in API_MODES:
            raise ValueError(f"API fault mode {mode!r}: one of {API_MODES}")
        return self._command({"cmd": "rule", "rule": None if service is None else
                              {"service": service, "mode": mode, "writes_only": writes_only}})


# -- the link ------------------------------------------------------------------------------------------


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), waking a thread blocked reading it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass


class _Pair:
    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.server: socket.socket | None = None
        self.dead = False
        self.closed = 0

    def reset(self) -> None:
        self.dead = True
        for sock in (self.client, self.server):
            if sock is not None:
                _reset(sock)

    def close_one(self, lock: threading.Lock) -> None:
        with lock:
            self.closed += 1
            last = self.closed == 2
        if last:
            for sock in (self.client, self.server):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass


def _serve_link(pipe, upstream_host: str, upstream_port: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    state = {"mode": "up"}
    changed = threading.Condition()
    pairs: set[_Pair] = set()
    lock = threading.Lock()

    def pump(pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                with changed:
                    while state["mode"] == "blackhole" and not pair.dead:
                        changed.wait()
                if pair.dead:
                    break
                sink.sendall(data)
            if not pair.dead:  # an orderly end: pass it on
                sink.shutdown(socket.SHUT_WR)
        except OSError:
            if not pair.dead:
                pair.reset()
        finally:
            with lock:
                pairs.discard(pair)
            pair.close_one(lock)

    def join(client: socket.socket) -> None:
        pair = _Pair(client)
        with changed:
            while state["mode"] == "blackhole":  # the SYN got through, nothing else does
                changed.wait()
            refused = state["mode"] == "reset"
        if refused:
            _reset(client)
            client.close()
            return
        try:
            pair.server = socket.create_connection((upstream_host, upstream_port), timeout=5)
            pair.server.settimeout(None)
        except OSError:
            _reset(client)
            client.close()
            return
        for sock in (pair.client, pair.server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with lock:
            pairs.add(pair)
        threading.Thread(target=pump, args=(pair, pair.client, pair.server), daemon=True).start()
        threading.Thread(target=pump, args=(pair, pair.server, pair.client), daemon=True).start()

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=join, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    pipe.send(listener.getsockname()[1])
    while True:
        command = pipe.recv()
        if command["cmd"] == "exit":
            pipe.send({})
            listener.close()
            return
        with changed:
            state["mode"] = command["mode"]
            changed.notify_all()
        with lock:
            held = list(pairs)
        if command["mode"] == "reset":
            for pair in held:
                pair.reset()
        pipe.send({"connections": len(held)})


# -- the AWS APIs ------------------------------------------------------------------------------------------


def _serve_api(pipe, upstream_url: str) -> None:
    upstream = re.match(r"https?://([^/:]+):?(\d+)?", upstream_url)
    host, port = upstream.group(1), int(upstream.group(2) or 80)
    rule: dict[str, Any] = {"rule": None, "failed": 0}
    lock = threading.Lock()
    local = threading.local()

    def forward(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        for attempt in (1, 2):
            connection = getattr(local, "connection", None)
            if connection is None:
                connection = local.connection = http.client.HTTPConnection(host, port, timeout=60)
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                return response.status, response.getheaders(), response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def error(service: str, kind: str) -> tuple[int, list, bytes]:
        throttled = kind == "throttle"
        status = 400 if throttled else 500
        if service == "route53":  # REST-XML
            code = "Throttling" if throttled else "InternalError"
            body = (f"<ErrorResponse><Error><Type>{'Sender' if throttled else 'Receiver'}</Type><Code>{code}</Code>"
                    f"<Message>injected by the chaos API proxy</Message></Error>"
                    f"<RequestId>chaos</RequestId></ErrorResponse>").encode()
            return status, [("Content-Type", "text/xml")], body
        code = "ThrottlingException" if throttled else "InternalServerError"
        body = json.dumps({"__type": code, "message": "injected by the chaos API proxy"}).encode()
        return status, [("Content-Type", "application/x-amz-json-1.1")], body

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
            scope = _CREDENTIAL_SCOPE.search(self.headers.get("Authorization", ""))
            service = scope.group(1) if scope else ""
            target = self.headers.get("X-Amz-Target", "")
            operation = target.rsplit(".", 1)[-1]
            writes = self.command != "GET" and not operation.startswith(_READ_PREFIXES)
            with lock:
                current = rule["rule"]
                hit = (current is not None and current["service"] == service
                       and (writes or not current["writes_only"]))
                if hit:
                    rule["failed"] += 1
            if hit and current["mode"] != "applied-500":
                status, answer_headers, answer = error(service, current["mode"])
            else:
                status, answer_headers, answer = forward(self.command, self.path, headers, body)
                if hit:
                    status, answer_headers, answer = error(service, "500")
            self.send_response(status)
            for name, value in answer_headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pipe.send(server.server_address[1])
    while True:
        command = pipe.recv()
        if command["cmd"] == "exit":
            server.shutdown()
            pipe.send({})
            return
        with lock:
            failed, rule["failed"] = rule["failed"], 0
            rule["rule"] = command["rule"]
        pipe.send({"failed": failed})
