"""The chaos proxies on real sockets: the link to on-prem (up, black-holed, reset) in front of a TCP echo
server, and the AWS API proxy in front of a moto server (errors, throttling, applied then 500)."""

from __future__ import annotations

import socket
import threading

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lib.local.chaos.proxy import ApiProxy, LinkProxy


@pytest.fixture(scope="module")
def echo_port():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve(conn):
        with conn:
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:  # the proxy reset it
                pass

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture(scope="module")
def link(echo_port):
    proxy = LinkProxy("127.0.0.1", echo_port)
    yield proxy
    proxy.close()


def _echo(port: int, payload: bytes, timeout: float = 2.0) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn.sendall(payload)
    return conn


def test_link_up_forwards_both_ways(link):
    link.set("up")
    with _echo(link.port, b"payment") as conn:
        assert conn.recv(100) == b"payment"


def test_black_holed_link_holds_the_bytes_until_it_is_back(link):
    link.set("up")
    with _echo(link.port, b"first") as conn:
        assert conn.recv(100) == b"first"
        link.set("blackhole")
        conn.sendall(b"held")
        conn.settimeout(0.5)
        with pytest.raises(socket.timeout):
            conn.recv(100)
        link.set("up")
        conn.settimeout(2)
        assert conn.recv(100) == b"held"


def test_reset_link_resets_open_connections_and_refuses_new_ones(link):
    link.set("up")
    with _echo(link.port, b"before") as conn:
        assert conn.recv(100) == b"before"
        assert link.set("reset")["connections"] >= 1
        with pytest.raises(ConnectionResetError):
            conn.sendall(b"after")
            conn.recv(100)
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        with _echo(link.port, b"new") as conn:
            conn.recv(100)
            conn.sendall(b"again")
            conn.recv(100)
    link.set("up")
    with _echo(link.port, b"healed") as conn:
        assert conn.recv(100) == b"healed"


@pytest.fixture(scope="module")
def api():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    proxy = ApiProxy(f"http://{host}:{port}")
    yield proxy, f"http://{host}:{port}"
    proxy.close()
    server.stop()


def _ssm(endpoint: str):
    return boto3.client("ssm", endpoint_url=endpoint, region_name="eu-west-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                        config=Config(retries={"mode": "standard", "total_max_attempts": 1}))


def test_api_errors_reach_the_client_and_apply_nothing(api):
    proxy, moto = api
    ssm = _ssm(proxy.url)
    ssm.put_parameter(Name="/chaos/writer", Value="onprem", Type="String", Overwrite=True)
    proxy.set("ssm", "500", writes_only=True)
    with pytest.raises(ClientError) as failed:
        ssm.put_parameter(Name="/chaos/writer", Value="aws", Type="String", Overwrite=True)
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert ssm.get_parameter(Name="/chaos/writer")["Parameter"]["Value"] == "onprem"  # reads pass
    proxy.set("ssm", "throttle")
    with pytest.raises(ClientError) as throttled:
        ssm.get_parameter(Name="/chaos/writer")
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    assert proxy.set(None)["failed"] == 1
    assert _ssm(moto).get_parameter(Name="/chaos/writer")["Parameter"]["Value"] == "onprem"


def test_applied_then_500_changes_the_parameter_yet_answers_an_error(api):
    proxy, moto = api
    ssm = _ssm(proxy.url)
    ssm.put_parameter(Name="/chaos/applied", Value="onprem", Type="String", Overwrite=True)
    proxy.set("ssm", "applied-500")
    with pytest.raises(ClientError):
        ssm.put_parameter(Name="/chaos/applied", Value="aws", Type="String", Overwrite=True)
    proxy.set(None)
    assert _ssm(moto).get_parameter(Name="/chaos/applied")["Parameter"]["Value"] == "aws"
