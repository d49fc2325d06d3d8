"""moto in server mode: AWS APIs over real HTTP on 127.0.0.1, reached by unchanged boto3 code
through the standard AWS_ENDPOINT_URL variable."""

from __future__ import annotations

import urllib.request

from moto.server import ThreadedMotoServer

FAKE_CREDENTIALS = {
    # moto accepts any credentials; these keep boto3 from looking for real ones
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_REGION": "eu-west-1",
}


class MotoServer:
    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"

    @property
    def environment(self) -> dict[str, str]:
        """What a process needs to talk to this server instead of AWS."""
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}

    def reset(self) -> None:
        """Forget every resource (moto's own reset API), so tests do not see each other's state."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        self._server.stop()
