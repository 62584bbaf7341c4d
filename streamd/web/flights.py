"""Work that several requests may ask for at once, done once: the viewers of a live stream
who want its newest segment as WebM all ask within a second, and each encode costs seconds
of CPU on the files process, so the second to ask waits for the first's result instead."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class Flights:
    """The work in flight, by what it makes. A request that goes away does not cancel the
    work the others wait for."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[Any]] = {}

    async def once(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(make())
            self._running[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        result: T = await asyncio.shield(task)
        return result

    def _landed(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: every request that wanted it may have gone
