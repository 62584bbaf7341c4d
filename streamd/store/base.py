"""What streamd needs from wherever published objects live.

Keys are `/`-separated names (`hls/ID/fmp4/720p/seg000003.m4s`). The data dir is the first
backend; an S3-compatible store is meant to slot in behind the same operations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Protocol, TypeVar

T = TypeVar("T")


class Store(Protocol):
    """Blocking object store: workers call it directly, the server through `AsyncStore`."""

    def put(self, key: str, data: bytes) -> None:
        """Write an object atomically: readers see the old whole object or the new one."""

    def put_file(self, key: str, path: Path) -> None:
        """Move a local file in as an object (durably); the file is gone afterwards."""

    def append(self, key: str, data: bytes) -> None:
        """Add bytes at the end of an object (made if missing), in one write: how playlists
        grow, since EVENT playlists only ever gain lines at the end (RFC 8216 6.2.1)."""

    def rename(self, key: str, new_key: str) -> None:
        """Give an object another key, atomically."""

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Read an object whole, or bytes [start, end); raises FileNotFoundError."""

    def size(self, key: str) -> int:
        """Size in bytes; raises FileNotFoundError."""

    def list(self, prefix: str) -> list[str]:
        """Keys under a prefix, sorted."""

    def delete(self, key: str) -> None:
        """Remove an object; missing objects are fine."""

    def local_path(self, key: str) -> Path | None:
        """A file path when the backend is a local disk (for sendfile), else None."""

    def spec(self) -> str:
        """A string that rebuilds this store in another process (`open_store`)."""


class AsyncStore:
    """The server's view of a Store: every call runs in an executor, never on the loop."""

    def __init__(self, store: Store, executor: Executor | None = None) -> None:
        self.store = store
        self._executor = executor

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def put(self, key: str, data: bytes) -> None:
        await self._run(self.store.put, key, data)

    async def put_file(self, key: str, path: Path) -> None:
        await self._run(self.store.put_file, key, path)

    async def append(self, key: str, data: bytes) -> None:
        await self._run(self.store.append, key, data)

    async def rename(self, key: str, new_key: str) -> None:
        await self._run(self.store.rename, key, new_key)

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return await self._run(self.store.get, key, start, end)

    async def size(self, key: str) -> int:
        return await self._run(self.store.size, key)

    async def list(self, prefix: str) -> list[str]:
        return await self._run(self.store.list, prefix)

    async def delete(self, key: str) -> None:
        await self._run(self.store.delete, key)

    def local_path(self, key: str) -> Path | None:
        return self.store.local_path(key)
