"""Handing media work to worker processes, behind a small job-queue interface.

`LocalJobQueue` is the first implementation: worker processes on this machine, each a
single-process pool so that a crash in FFmpeg (a hostile upload) breaks only that worker,
which is then replaced. A networked queue feeding `streamd worker` processes elsewhere is
meant to implement the same `JobQueue` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from streamd.errors import TranscodeError, UnsupportedMedia
from streamd.logs import setup_logging
from streamd.probe import SourceInfo, probe
from streamd.process import die_with_parent

if TYPE_CHECKING:  # the prober process never loads the transcoder (nor numpy): ~40 MB less
    from streamd.transcode import JobProgress, TranscodeJob, TranscodeResult

log = logging.getLogger("streamd.jobs")


class JobQueue(Protocol):
    """Where the server sends media work."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def transcode(
        self, job: TranscodeJob, on_progress: Callable[[JobProgress], None]
    ) -> TranscodeResult:
        """Run a job to the end, calling `on_progress` on the loop as segments appear."""

    async def probe(self, source: Path | bytes, timeout_s: float) -> SourceInfo:
        """Inspect an upload in a worker; raises UnsupportedMedia."""

    def healthy(self) -> bool:
        """Whether the workers can take jobs."""


# -- inside a worker process ---------------------------------------------------------------
# Process-local: set once by the pool initializer, read by the job functions below.
_progress_queue: Any = None


def _worker_init(progress_queue: Any, log_level: int, log_format: str, transcoder: bool) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server to handle
    die_with_parent(signal.SIGKILL)
    setup_logging(log_level, log_format)
    if transcoder:
        import streamd.transcode  # noqa: F401  (now, not on the first upload)


def _run_transcode(job_id: int, job: TranscodeJob) -> TranscodeResult:
    from streamd.transcode import run_job

    def report(progress: JobProgress) -> None:
        _progress_queue.put((job_id, progress))

    try:
        return run_job(job, report)
    finally:
        # Sent down the same pipe after every progress message: the server waits for it.
        _progress_queue.put((job_id, None))


# -- in the server -----------------------------------------------------------------------------
class _Worker:
    """One worker process, replaced when it dies."""

    def __init__(self, make: Callable[[], ProcessPoolExecutor]) -> None:
        self._make = make
        self.pool = make()
        self.busy = 0

    def alive(self) -> bool:
        return all(p.is_alive() for p in getattr(self.pool, "_processes", {}).values())

    def replace(self) -> None:
        self.kill()
        self.pool = self._make()

    def kill(self) -> None:
        processes = list(getattr(self.pool, "_processes", {}).values())
        for p in processes:
            with contextlib.suppress(Exception):
                p.kill()
        self.pool.shutdown(wait=False, cancel_futures=True)


class LocalJobQueue:
    """Worker processes on this machine."""

    def __init__(
        self, workers: int, log_level: int = logging.INFO, log_format: str = "text"
    ) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._progress: Any = self._ctx.Queue()
        self._log_level = log_level
        self._log_format = log_format
        self._size = workers
        self._workers: list[_Worker] = []
        self._prober: _Worker | None = None
        self._listeners: dict[
            int, tuple[asyncio.AbstractEventLoop, Callable[[JobProgress | None], None]]
        ] = {}
        self._ids = itertools.count()
        self._reader: threading.Thread | None = None

    def _make_pool(self, transcoder: bool = True) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            1,
            mp_context=self._ctx,
            initializer=_worker_init,
            initargs=(self._progress, self._log_level, self._log_format, transcoder),
        )

    async def start(self) -> None:
        self._workers = [_Worker(self._make_pool) for _ in range(self._size)]
        self._prober = _Worker(lambda: self._make_pool(transcoder=False))
        self._reader = threading.Thread(
            target=self._read_progress, name="job-progress", daemon=True
        )
        self._reader.start()
        # Spawn the first worker and the prober now, so the first upload doesn't pay for
        # interpreter start-up; the other workers start when two jobs first run at once (one
        # stream never needs more than one: its uploads go through in order), ~70 MB each.
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(w.pool, int, 0) for w in [self._workers[0], self._prober])
        )

    def _read_progress(self) -> None:
        while True:
            try:
                item = self._progress.get()
            except (EOFError, OSError, ValueError):
                return
            if item is None:
                return
            job_id, progress = item
            target = self._listeners.get(job_id)
            if target is not None:
                loop, callback = target
                with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                    loop.call_soon_threadsafe(callback, progress)

    async def close(self) -> None:
        for w in [*self._workers, *([self._prober] if self._prober else [])]:
            w.kill()
        self._progress.put(None)
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 5)
        self._progress.close()

    def healthy(self) -> bool:
        return bool(self._workers) and all(w.alive() for w in self._workers)

    async def transcode(
        self, job: TranscodeJob, on_progress: Callable[[JobProgress], None]
    ) -> TranscodeResult:
        worker = min(self._workers, key=lambda w: w.busy)
        if not worker.alive():  # died while idle (killed, out of memory): start afresh
            log.warning("replacing a dead idle worker")
            worker.replace()
        job_id = next(self._ids)
        loop = asyncio.get_running_loop()
        drained = asyncio.Event()

        def on_item(progress: JobProgress | None) -> None:
            if progress is None:
                drained.set()
            else:
                on_progress(progress)

        self._listeners[job_id] = (loop, on_item)
        worker.busy += 1
        try:
            result: TranscodeResult = await loop.run_in_executor(
                worker.pool, _run_transcode, job_id, job
            )
        except BrokenProcessPool as exc:
            log.error(
                "worker died transcoding %s uploads %s; replacing it",
                job.video_id,
                [i.upload for i in job.inputs],
            )
            self._listeners.pop(job_id, None)
            worker.replace()
            raise TranscodeError("the transcode worker crashed", repr(exc)) from exc
        except Exception:
            await self._drain(job_id, drained)  # segments published before the failure
            raise
        finally:
            worker.busy -= 1
        await self._drain(job_id, drained)  # progress travels on another pipe
        return result

    async def _drain(self, job_id: int, done: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(done.wait(), 10)
        except TimeoutError:
            log.warning("progress of job %d did not drain", job_id)
        finally:
            self._listeners.pop(job_id, None)

    async def probe(self, source: Path | bytes, timeout_s: float) -> SourceInfo:
        assert self._prober is not None
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._prober.pool, probe, source), timeout_s
            )
        except TimeoutError as exc:
            self._prober.replace()
            raise UnsupportedMedia(
                "inspecting the upload took too long", f"gave up after {timeout_s:g} s"
            ) from exc
        except BrokenProcessPool as exc:
            self._prober.replace()
            raise UnsupportedMedia("the upload crashed the media inspector", repr(exc)) from exc
