"""The gRPC transport variables Tessera's launchers hand to the processes they start."""

from __future__ import annotations

import subprocess
import sys

from tessera.core import GRPC_TRANSPORT_ENVIRONMENT, grpc_transport_environment


def test_the_launchers_add_every_transport_variable_missing_from_the_environment() -> None:
    assert grpc_transport_environment({"PATH": "/bin"}) == dict(GRPC_TRANSPORT_ENVIRONMENT)


def test_an_operators_own_value_wins_even_an_empty_one() -> None:
    assert grpc_transport_environment({"GRPC_EXPERIMENTS": ""}) == {}
    assert grpc_transport_environment({"GRPC_EXPERIMENTS": "-event_engine_dns"}) == {}


def test_grpc_accepts_the_variables_and_serves_a_call_with_them() -> None:
    # gRPC reads them at import: a child process with them makes a call through a real server
    # and must not report an unknown experiment.
    script = (
        "import grpc\n"
        "from concurrent import futures\n"
        "handler = grpc.method_handlers_generic_handler(\n"
        "    't.T', {'Echo': grpc.unary_unary_rpc_method_handler(lambda request, _: request)})\n"
        "server = grpc.server(futures.ThreadPoolExecutor(1))\n"
        "server.add_generic_rpc_handlers((handler,))\n"
        "port = server.add_insecure_port('127.0.0.1:0')\n"
        "server.start()\n"
        "with grpc.insecure_channel(f'127.0.0.1:{port}') as channel:\n"
        "    print(channel.unary_unary('/t.T/Echo')(b'ping', timeout=10).decode())\n"
        "server.stop(None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**GRPC_TRANSPORT_ENVIRONMENT, "GRPC_VERBOSITY": "ERROR"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ping"
    assert "Unknown experiment" not in done.stderr
