from __future__ import annotations

import functools
from typing import Any

from tessera.core.etcd import EtcdClient


async def commit(etcd: EtcdClient, compare: list[Any], success: list[Any]) -> bool:
    """Run one etcd transaction: apply `success` if every `compare` holds; never retried.

    Returns:
        Whether the comparisons held and the operations were applied.

    Raises:
        BackendError: etcd failed; the transaction may or may not have applied.

    """
    succeeded, _ = await etcd.execute(
        functools.partial(_transaction, compare=compare, success=success), idempotent=False
    )
    return bool(succeeded)


async def _transaction(client: Any, *, compare: list[Any], success: list[Any]) -> Any:
    return await client.transaction(compare=compare, success=success, failure=[])
