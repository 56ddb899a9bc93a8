"""The async-context-manager lifecycle that the SDK's clients, caches and registrations share.

`AsyncClosing` is a base class: the subclass implements `close`, and `async with obj:` returns
the object itself and awaits `close` on the way out, whether the block raised or not (the error,
if any, propagates). `close` must be safe to call more than once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class AsyncClosing(ABC):
    """Base of objects used as `async with obj:` and closed on exit."""

    @abstractmethod
    async def close(self) -> None:
        """Release what the object holds; safe to call more than once."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
