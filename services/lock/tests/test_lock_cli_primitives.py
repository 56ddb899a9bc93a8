"""`tessera lock semaphore | campaign | leader | observe`, run in-process (typer's CliRunner).

In a thread, one command at a time: CliRunner swaps the process's stdout while it runs.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from typer.testing import CliRunner, Result

from tessera.client.cli._app import app
from tessera.client.lock import LockClient
from tessera.testing import RunningService


async def _tessera(service: RunningService, *args: str) -> Result:
    command = ["lock", *args, "--target", service.server.address]
    return await asyncio.to_thread(lambda: CliRunner().invoke(app, command))


async def test_lock_cli_leader_and_observe_show_the_leader(
    lock_service: RunningService, lock_client: LockClient
) -> None:
    name = f"cli-election/{uuid.uuid4().hex}"
    async with lock_client.campaign(name, b"node-a", ttl=5) as leading:
        shown = await _tessera(lock_service, "leader", name, "--json")
        observed = await _tessera(lock_service, "observe", name, "--count", "1")
    assert shown.exit_code == 0, shown.output
    expected = {"session_id": leading.session.id, "token": leading.token, "value": "node-a"}
    assert json.loads(shown.output) == expected
    assert observed.exit_code == 0, observed.output
    assert json.loads(observed.output) == expected
    nobody = await _tessera(lock_service, "leader", name, "--json")
    assert json.loads(nobody.output) is None


async def test_lock_cli_campaign_and_semaphore_hold_then_give_back(
    lock_service: RunningService, lock_client: LockClient
) -> None:
    name = f"cli-campaign/{uuid.uuid4().hex}"
    led = await _tessera(lock_service, "campaign", name, "--value", "a", "--hold", "0s")
    assert led.exit_code == 0, led.output
    assert led.output.splitlines()[0].startswith(f"elected {name!r} token=")
    assert led.output.splitlines()[-1] == f"resigned {name!r}"
    assert await lock_client.leader(name) is None
    async with lock_client.semaphore(f"{name}/pool", permits=2, ttl=5) as first:
        held = await _tessera(
            lock_service, "semaphore", f"{name}/pool", "--permits", "2", "--hold", "0s"
        )
        assert held.exit_code == 0, held.output
        token = int(held.output.splitlines()[0].split("token=")[1])
        assert token > first.token
        assert held.output.splitlines()[-1] == f"released a permit of '{name}/pool'"
        full = await _tessera(
            lock_service, "semaphore", f"{name}/pool", "--permits", "1", "--wait", "0s"
        )
        assert full.exit_code != 0, "a permit of another size was granted"
        described = await lock_client.describe(f"{name}/pool")
        assert [h.token for h in described.holders] == [first.token]
