from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class StartStop(abc.ABC):
    """Something started and stopped as a whole: a server or a group of servers.

    `with thing:` starts it on entry and stops it on exit, whatever ends the block.
    """

    @abc.abstractmethod
    def start(self, timeout: float = 30.0) -> Self:
        """Start and wait until ready (within `timeout` seconds); return self."""

    @abc.abstractmethod
    def stop(self, timeout: float = 10.0) -> None:
        """Stop (within `timeout` seconds before forcing it); idempotent."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
