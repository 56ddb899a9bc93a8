"""An election leader that is paused past its lease (for the SIGSTOP test).

Usage: python lock_paused_leader.py TARGET NAME

Prints `elected <token>` once, then `tick <lost 0|1> <monotonic>` every 50 ms; once its SDK
reports the leadership lost it tries to proclaim anyway, prints `proclaim refused` (or
`proclaim accepted`) and exits.
"""

from __future__ import annotations

import asyncio
import sys
import time

from tessera.client.lock import LockClient
from tessera.core import FailedPreconditionError


async def main(target: str, name: str) -> None:
    async with (
        LockClient.connect(target) as client,
        client.campaign(name, b"paused", ttl=2) as leading,
    ):
        print(f"elected {leading.token}", flush=True)
        while True:
            lost = leading.lost
            print(f"tick {int(lost)} {time.monotonic()}", flush=True)
            if lost:
                break
            await asyncio.sleep(0.05)
        try:
            await leading.proclaim(b"still me?")
        except FailedPreconditionError:
            print("proclaim refused", flush=True)
        else:
            print("proclaim accepted", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
