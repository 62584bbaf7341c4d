"""Push a recording to a streamd server, segment by segment, as a live encoder would.

`StreamdClient` speaks the upload API (with retries for transient failures);
`push_file` cuts a local file with `iter_segments` and uploads it, optionally in real time.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import AsyncGenerator, Mapping
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tqdm import tqdm
from yarl import URL

from streamd.client.segmenter import SourceSegment, iter_segments, media_duration_s
from streamd.clock import Clock, SystemClock
from streamd.errors import StreamdError

log = logging.getLogger(__name__)

# Statuses worth another try: the server (or a proxy before it) may recover.
_RETRY_STATUSES = frozenset({408, 429})


class PushError(StreamdError, RuntimeError):
    """An upload the server refused, or could not be reached for."""

    code = "push_failed"

    def __init__(
        self,
        message: str,
        detail: str | None = None,
        *,
        status: int | None = None,
        server_error: str | None = None,
    ) -> None:
        super().__init__(message, detail)
        self.status = status  # HTTP status, or None when no answer came
        self.server_error = server_error  # the server's error code, e.g. "segment_conflict"


class _TransientPushError(PushError):
    """A failure that another attempt may not meet (5xx, connection trouble)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before a transient failure becomes a `PushError`."""

    attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0


@dataclass(frozen=True)
class PushReport:
    """What a push sent: counts, media seconds, and how long it took on the clock."""

    segments: int
    bytes: int
    duration_s: float
    elapsed_s: float


class StreamdClient:
    """Talks to one streamd server's upload API; use as ``async with StreamdClient(url)``."""

    def __init__(
        self,
        server: str,
        *,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 60.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.server = URL(server)
        self.headers = dict(headers or {})
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client opened it."""
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def upload_url(self, video_id: str) -> URL:
        """Where segments of this video are posted."""
        # Quote everything, "/" included: an id is one path segment.
        return (self.server / "upload").joinpath(quote(video_id, safe=""), encoded=True)

    async def upload_segment(
        self, video_id: str, number: int, data: bytes, filename: str | None = None
    ) -> dict[str, Any]:
        """Upload one segment; an identical re-upload counts as success."""
        headers = {"Content-Type": "application/octet-stream", "X-Segment-Number": str(number)}
        if filename:
            headers["X-Segment-Filename"] = filename
        return await self._post(
            self.upload_url(video_id),
            f"upload of segment {number} of {video_id!r}",
            data=data,
            headers=headers,
        )

    async def end_stream(self, video_id: str) -> dict[str, Any]:
        """Tell the server no more segments will come for this video."""
        what = f"ending stream {video_id!r}"
        try:
            return await self._post(self.upload_url(video_id) / "end", what, data=b"")
        except PushError as exc:
            # A retry after an answer got lost finds the stream ended already: that's done.
            if exc.server_error == "stream_ended":
                log.info("%s: already ended", what)
                return {"videoId": video_id, "state": "ended"}
            raise

    async def _post(
        self, url: URL, what: str, *, data: bytes, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        answer, _ = await self.send("POST", url, what, data=data, headers=headers)
        return answer

    async def send(
        self,
        method: str,
        url: URL,
        what: str,
        *,
        data: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], Mapping[str, str]]:
        """One request, retried on transient failures: its JSON answer and headers."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            # Doubling waits, with some jitter so many clients don't retry in lockstep.
            wait=wait_exponential(
                multiplier=self.retry.initial_backoff_s, max=self.retry.max_backoff_s
            )
            + wait_random(0, self.retry.initial_backoff_s),
            retry=retry_if_exception_type(_TransientPushError),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._send_once(method, url, what, data, headers)
        except _TransientPushError as exc:
            raise PushError(
                f"{exc.message} (gave up after {self.retry.attempts} attempts)",
                exc.detail,
                status=exc.status,
                server_error=exc.server_error,
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _send_once(
        self,
        method: str,
        url: URL,
        what: str,
        data: bytes,
        headers: Mapping[str, str] | None,
    ) -> tuple[dict[str, Any], Mapping[str, str]]:
        if self._session is None:
            raise RuntimeError("StreamdClient is not open: use `async with StreamdClient(...)`")
        try:
            # A large body as a stream: aiohttp copies raw bytes on the loop in one go.
            body_in: bytes | io.BytesIO = io.BytesIO(data) if len(data) > 1 << 20 else data
            async with self._session.request(
                method, url, data=body_in, headers={**self.headers, **(headers or {})}
            ) as response:
                body = await response.read()
                status = response.status
                answer_headers = CIMultiDict(response.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _TransientPushError(f"{what} failed: {exc!r}", str(url)) from exc
        answer = _json_object(body)
        if 200 <= status < 300:
            return answer, answer_headers
        error = answer.get("error")
        message = answer.get("message") or body[:200].decode("utf-8", "replace").strip()
        detail = answer.get("detail")
        text = f"{what} failed: HTTP {status}"
        if error:
            text += f" {error}"
        if message:
            text += f": {message}"
        kind = _TransientPushError if status >= 500 or status in _RETRY_STATUSES else PushError
        raise kind(
            text,
            None if detail is None else str(detail),
            status=status,
            server_error=None if error is None else str(error),
        )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        return {}  # e.g. a proxy's HTML error page
    return answer if isinstance(answer, dict) else {"answer": answer}


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None else None
    wait_s = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning("attempt %d: %s; retrying in %.2f s", state.attempt_number, exc, wait_s)


async def _segments_in_thread(
    path: str | Path, segment_duration_s: float
) -> AsyncGenerator[SourceSegment, None]:
    """`iter_segments`, run in a worker thread one segment ahead of the consumer."""
    segments = iter_segments(path, segment_duration_s)
    ahead = asyncio.ensure_future(asyncio.to_thread(next, segments, None))
    try:
        # shield: a cancelled wait must not orphan the thread still cutting.
        while (segment := await asyncio.shield(ahead)) is not None:
            # Cut the next one while this one waits for its time and uploads.
            ahead = asyncio.ensure_future(asyncio.to_thread(next, segments, None))
            yield segment
    finally:
        # The thread can't be interrupted; let it finish before closing the file under it.
        await asyncio.wait([ahead])
        if not ahead.cancelled() and ahead.exception() is None:
            await asyncio.to_thread(segments.close)


def _progress_bar(total_s: float | None, video_id: str, enabled: bool) -> tqdm[Any]:
    counts = "{n:.1f}/{total:.1f} s" if total_s is not None else "{n:.1f} s"
    return tqdm(
        total=total_s,
        unit="s",
        desc=f"push {video_id}",
        bar_format="{l_bar}{bar}| " + counts + " [{elapsed}<{remaining}{postfix}]",
        # Only for a person watching: not in logs, pipes or CI.
        disable=not enabled or not sys.stdout.isatty(),
    )


async def push_file(
    path: str | Path,
    server: str,
    video_id: str,
    *,
    realtime: bool = False,
    segment_duration_s: float = 2.0,
    first_number: int = 0,
    clock: Clock | None = None,
    progress: bool = True,
    client: StreamdClient | None = None,
    headers: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
) -> PushReport:
    """Cut a recording into segments, upload them in order as numbers `first_number`, ...,
    then end the stream.

    With `realtime`, segment k goes out no earlier than when a live encoder would have
    finished it: start + (its end - the first segment's start) on `clock`. An open `client`
    stands in for `server`, `headers` and `retry` (and is left open).
    """
    clock = clock or SystemClock()
    total_s = await asyncio.to_thread(media_duration_s, path)
    started_s = clock.monotonic_s()
    first_start_s: float | None = None
    count = size_bytes = 0
    duration_s = 0.0
    async with AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(
                StreamdClient(server, headers=headers, retry=retry)
            )
        bar = stack.enter_context(_progress_bar(total_s, video_id, progress))
        segments = await stack.enter_async_context(
            aclosing(_segments_in_thread(path, segment_duration_s))
        )
        async for segment in segments:
            if first_start_s is None:
                first_start_s = segment.start_s
            if realtime:
                # A live encoder hands a segment over once its last frame is captured.
                due_s = started_s + segment.start_s + segment.duration_s - first_start_s
                wait_s = due_s - clock.monotonic_s()
                if wait_s > 0:
                    await clock.sleep(wait_s)
            number = first_number + segment.index
            filename = f"seg{number}.{segment.extension}"
            await client.upload_segment(video_id, number, segment.data, filename)
            log.debug("sent %s: %d bytes, %.2f s", filename, segment.size_bytes, segment.duration_s)
            count += 1
            size_bytes += segment.size_bytes
            duration_s += segment.duration_s
            bar.set_postfix_str(f"segment {number}", refresh=False)
            bar.update(segment.duration_s)
        await client.end_stream(video_id)
    return PushReport(
        segments=count,
        bytes=size_bytes,
        duration_s=duration_s,
        elapsed_s=clock.monotonic_s() - started_s,
    )
