from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory

from tessera.proto.registry.v1 import registry_pb2

#: Full name of the gRPC service, as health checks and reflection know it.
REGISTRY_SERVICE = "tessera.registry.v1.Registry"

#: Methods whose servicer yields already-serialized responses.
_PRE_SERIALIZED = frozenset({"Watch"})

_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _pass_through(response: bytes) -> bytes:
    return response


def add_registry_servicer(servicer: Any, server: grpc.aio.Server) -> None:
    """Add the Registry service to a server, like the generated `add_RegistryServicer_to_server`.

    The one difference: Watch responses are serialized by the view once per change and shared
    by every watcher it reaches, so Watch is registered with a serializer that sends those bytes
    as they are (a thousand watchers cost one serialization, not a thousand).
    """
    descriptor = registry_pb2.DESCRIPTOR.services_by_name["Registry"]
    handlers = {}
    for method in descriptor.methods:
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        make = _KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=request_type.FromString,
            response_serializer=(
                _pass_through if method.name in _PRE_SERIALIZED else response_type.SerializeToString
            ),
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REGISTRY_SERVICE, handlers),)
    )
    server.add_registered_method_handlers(REGISTRY_SERVICE, handlers)
