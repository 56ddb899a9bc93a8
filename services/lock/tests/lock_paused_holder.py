"""A lock holder that keeps writing after it may have lost its lock (for the SIGSTOP test).

Usage: python lock_paused_holder.py TARGET NAME

Prints `acquired <token> <monotonic>` once, then `write <token> <lost 0|1> <monotonic>` every
50 ms, as a careless client would, and exits after 10 writes made while its SDK reported the
lock lost. CLOCK_MONOTONIC is system-wide, so the test can order these lines against its own.
"""

from __future__ import annotations

import asyncio
import sys
import time

from tessera.client.lock import LockClient


async def main(target: str, name: str) -> None:
    async with LockClient.connect(target) as client, client.lock(name, ttl=2) as held:
        print(f"acquired {held.token} {time.monotonic()}", flush=True)
        writes_while_lost = 0
        while writes_while_lost < 10:
            lost = held.lost
            print(f"write {held.token} {int(lost)} {time.monotonic()}", flush=True)
            writes_while_lost += lost
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
