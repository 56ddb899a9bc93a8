"""Watch streams for bench/registry_discovery.py, run in a process of their own.

Usage: ``python bench/_registry_watchers.py HOST:PORT NAMESPACE SERVICE WATCHERS CHANNELS``

Opens WATCHERS Watch streams on one service, spread over CHANNELS channels (one TCP connection
each), and reports on stdout, one line each:

- ``ready`` once every stream has received its snapshot;
- ``<revision>`` each time every stream has received the change of that revision.

It exits when stdin closes (the parent is done). Several of these processes share the watchers
of one case so that no single client process, with its own GIL, limits how fast a change is
seen: the parent times an operation until every process has reported its revision.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections import Counter

import grpc

from tessera.proto.registry.v1 import registry_pb2, registry_pb2_grpc


async def _follow(
    stub: registry_pb2_grpc.RegistryAsyncStub,
    request: registry_pb2.WatchRequest,
    seen: Counter[int],
    watchers: int,
    ready: asyncio.Event,
) -> None:
    async for response in stub.Watch(request):
        if response.reset:
            ready.set()
            continue
        seen[response.revision] += 1
        if seen[response.revision] == watchers:
            del seen[response.revision]
            sys.stdout.write(f"{response.revision}\n")
            sys.stdout.flush()


async def _main(target: str, namespace: str, service: str, watchers: int, channels: int) -> None:
    opened = [grpc.aio.insecure_channel(target) for _ in range(channels)]
    stubs = [registry_pb2_grpc.RegistryStub(channel) for channel in opened]
    request = registry_pb2.WatchRequest(namespace=namespace, service=service)
    seen: Counter[int] = Counter()
    ready = [asyncio.Event() for _ in range(watchers)]
    tasks = [
        asyncio.create_task(_follow(stubs[n % channels], request, seen, watchers, ready[n]))
        for n in range(watchers)
    ]
    await asyncio.gather(*(event.wait() for event in ready))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    # Returns at EOF: the parent closed our stdin.
    await loop.run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in opened:
        await channel.close()


if __name__ == "__main__":
    # The same collector thresholds as the registry's (tessera/registry/__main__.py): with the
    # defaults, collections over a thousand streams' objects dominate this process's CPU, which a
    # thousand real clients, one stream each, would not pay.
    gc.set_threshold(10_000, 50, 100)
    target_arg, namespace_arg, service_arg, watchers_arg, channels_arg = sys.argv[1:]
    asyncio.run(_main(target_arg, namespace_arg, service_arg, int(watchers_arg), int(channels_arg)))
