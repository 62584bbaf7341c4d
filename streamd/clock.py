"""The one place streamd asks for the time, so tests can step it instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


def iso(wall_s: float) -> str:
    """A wall-clock time as ISO 8601 in UTC, to the millisecond (2026-11-24T10:15:00.000Z):
    EXT-X-PROGRAM-DATE-TIME, the MPD's times, the API's."""
    return (
        datetime.fromtimestamp(wall_s, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class Clock(Protocol):
    def wall_s(self) -> float:
        """Seconds since the epoch (for EXT-X-PROGRAM-DATE-TIME and logs)."""

    def monotonic_s(self) -> float:
        """Seconds on a clock that never goes back (for delays and pacing)."""

    async def sleep(self, duration_s: float) -> None:
        """Wait this long on this clock."""


class SystemClock:
    """The real clock."""

    def wall_s(self) -> float:
        return time.time()

    def monotonic_s(self) -> float:
        return time.monotonic()

    async def sleep(self, duration_s: float) -> None:
        await asyncio.sleep(max(0.0, duration_s))


class ManualClock:
    """A clock that moves only when told to; `sleep` advances it at once."""

    def __init__(self, start_s: float = 1_700_000_000.0) -> None:
        self.now_s = start_s
        self.slept_s: list[float] = []

    def wall_s(self) -> float:
        return self.now_s

    def monotonic_s(self) -> float:
        return self.now_s

    async def sleep(self, duration_s: float) -> None:
        self.slept_s.append(duration_s)
        self.now_s += max(0.0, duration_s)
