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


def _install_metric_namespaces() -> None:
    """moto's GetMetricData drops the namespace from a query that names dimensions, so that a query
    also sees another namespace's datapoints of the same name and dimensions. CloudWatch never does:
    each query here sees only its own namespace's datapoints."""
    from moto.cloudwatch.models import CloudWatchBackend

    original = CloudWatchBackend.get_metric_data
    if getattr(original, "keeps_namespaces", False):
        return

    class NamespaceView:
        def __init__(self, backend: CloudWatchBackend, namespace: str) -> None:
            self._backend, self._namespace = backend, namespace

        def get_all_metrics(self):
            return [md for md in self._backend.get_all_metrics() if md.namespace == self._namespace]

        def __getattr__(self, name):
            return getattr(self._backend, name)

    def get_metric_data(self, queries, start_time, end_time, scan_by="TimestampAscending"):
        if any("MetricStat" not in query for query in queries):
            return original(self, queries, start_time, end_time, scan_by)
        return [result for query in queries
                for result in original(NamespaceView(self, query["MetricStat"]["Metric"]["Namespace"]), [query],
                                       start_time, end_time, scan_by)]

    get_metric_data.keeps_namespaces = True
    CloudWatchBackend.get_metric_data = get_metric_data


class MotoServer:
    def __init__(self) -> None:
        _install_metric_namespaces()
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
