"""docs/operations.md lists the metrics a real server serves, with Prometheus naming."""

import re
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tessera.core import TesseraSettings
from tessera.proto.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc
from tessera.testing import ServiceStarter

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
ROW = re.compile(r"^\| `(?P<name>[a-z_:]+)` \| (?P<type>\w+) \| (?P<labels>[^|]*) \|", re.M)
UNITS = ("_seconds", "_bytes", "_ratio")


def _documented() -> dict[str, tuple[str, frozenset[str]]]:
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    return {
        m["name"]: (m["type"], frozenset(label.strip() for label in m["labels"].split(",")))
        for m in ROW.finditer(section)
    }


async def test_documented_metrics_are_served_with_their_labels_and_named_by_convention(
    running_service: ServiceStarter,
) -> None:
    service = await running_service([], TesseraSettings(port=0, metrics_port=0))
    stub = diagnostics_pb2_grpc.DiagnosticsStub(service.channel)
    await stub.Echo(diagnostics_pb2.EchoRequest(payload=b"x"))  # one call: every series exists
    url = f"http://127.0.0.1:{service.server.metrics_port}/metrics"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        text = response.read().decode()

    served: dict[str, tuple[str, frozenset[str]]] = {}
    for family in text_string_to_metric_families(text):
        # The text format exposes each counter's and histogram's creation time as a `_created`
        # gauge of its own: a timestamp, not a metric to document.
        if not family.name.startswith("tessera_") or family.name.endswith("_created"):
            continue
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {key for sample in family.samples for key in sample.labels if key != "le"}
        served[name] = (family.type, frozenset(labels))

    documented = _documented()
    assert documented, "no metrics table in docs/operations.md"
    # tessera_grpc_server_errors_total has series only once a call failed: compare by name+type.
    assert {n: t for n, (t, _) in served.items()} | {
        n: t for n, (t, _) in documented.items() if n.startswith("tessera_grpc_server_errors")
    } == {n: t for n, (t, _) in documented.items()}
    for name, (_, labels) in served.items():
        if labels:
            assert labels == documented[name][1], name
    for name, (kind, _) in documented.items():
        assert re.fullmatch(r"tessera_[a-z0-9_]+", name), name
        assert name.endswith("_total") == (kind == "counter"), name
        if kind == "histogram":
            assert name.endswith(UNITS), f"{name} names no base unit"
