"""Generated protobuf and gRPC stubs for every Tessera API."""
