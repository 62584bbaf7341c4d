"""`LocalJobQueue`: worker processes on this machine, each a single-process pool so that a
crash in FFmpeg (a hostile upload) breaks only that worker, which is then replaced."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from streamd.errors import TranscodeError, UnsupportedMedia, WorkerCrashed, from_data
from streamd.jobs import worker
from streamd.model.audio import AudioJob, AudioResult
from streamd.model.jobs import (
    JobProgress,
    KeyframeIndex,
    MediaLimits,
    SourceInfo,
    TranscodeJob,
    TranscodeResult,
)

log = logging.getLogger("streamd.jobs")
BACKGROUND_NICE = 19
LIVE_GROWTH = 2  # live streams may grow the pool to this many times `workers`


class _Worker:
    """One worker process, replaced when it dies."""

    def __init__(self, make: Callable[[], ProcessPoolExecutor]) -> None:
        self._make = make
        self.pool = make()
        self.busy = 0

    def processes(self) -> list[Any]:
        return list((getattr(self.pool, "_processes", None) or {}).values())  # None once shut

    def alive(self) -> bool:
        return all(p.is_alive() for p in self.processes())

    def replace(self) -> None:
        self.kill()
        self.pool = self._make()

    def kill(self) -> None:
        for p in self.processes():
            with contextlib.suppress(Exception):
                p.kill()
        self.pool.shutdown(wait=False, cancel_futures=True)


def worker_context() -> multiprocessing.context.BaseContext:
    """Workers are forked from a server process that imported the media stack once (fork
    alone would copy the event loop's threads and state): one starts in milliseconds, not
    the 0.7 s an interpreter importing PyAV and numpy takes, and shares those pages."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(
        ["streamd.jobs.forkserver", "streamd.jobs.worker", "streamd.media.transcode"]
    )
    return ctx


class LocalJobQueue:
    """Worker processes on this machine."""

    def __init__(
        self,
        workers: int,
        log_level: int = logging.INFO,
        log_format: str = "text",
        memory_bytes: int = 0,
    ) -> None:
        self._memory_bytes = memory_bytes
        self._ctx = worker_context()
        self._progress: Any = self._ctx.Queue()
        self._log_level = log_level
        self._log_format = log_format
        self._size = workers
        self._workers: list[_Worker] = []
        self._background: list[_Worker] = []
        self._prober: _Worker | None = None
        self._files: _Worker | None = None  # remuxes and WebM for /viewstream
        self._listeners: dict[
            int, tuple[asyncio.AbstractEventLoop, Callable[[JobProgress | None], None]]
        ] = {}
        self._ids = itertools.count()
        self._reader: threading.Thread | None = None
        self._closed = False

    def _make_pool(self, transcoder: bool = True, nice: int = 0) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            1,
            mp_context=self._ctx,
            initializer=worker.init,
            initargs=(
                self._progress,
                self._log_level,
                self._log_format,
                transcoder,
                self._memory_bytes,
                nice,
            ),
        )

    async def start(self) -> None:
        self._workers = [_Worker(self._make_pool) for _ in range(self._size)]
        # Recordings go to workers of their own at the lowest CPU priority, so a backlog never
        # slows a live stream down (spawned on first use: a server without one never pays).
        self._background = [
            _Worker(lambda: self._make_pool(nice=BACKGROUND_NICE)) for _ in range(self._size)
        ]
        self._prober = _Worker(lambda: self._make_pool(transcoder=False))
        # Files for viewers on a process of their own, at the recordings' low priority: a
        # viewer's WebM clip never holds up an upload's probe, nor takes a live stream's CPU
        # (its process is spawned when first used).
        self._files = _Worker(lambda: self._make_pool(transcoder=False, nice=BACKGROUND_NICE))
        self._reader = threading.Thread(
            target=self._read_progress, name="job-progress", daemon=True
        )
        self._reader.start()
        # Spawn the first worker and the prober now, so the first upload doesn't pay for
        # interpreter start-up; the other workers start when two jobs first run at once (one
        # stream never needs more than one: its uploads go through in order), ~70 MB each.
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(w.pool, worker.warm) for w in [self._workers[0], self._prober])
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
        self._closed = True
        single = [w for w in (self._prober, self._files) if w is not None]
        for w in [*self._workers, *self._background, *single]:
            w.kill()
        self._progress.put(None)
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 5)
        self._progress.close()

    def healthy(self) -> bool:
        return bool(self._workers) and all(w.alive() for w in self._workers)

    def process_ids(self) -> dict[str, list[int]]:
        kinds = {
            "worker": self._workers,
            "recording": self._background,
            "prober": [w for w in (self._prober,) if w is not None],
            "files": [w for w in (self._files,) if w is not None],
        }
        return {
            kind: [p.pid for w in workers for p in w.processes() if p.pid is not None]
            for kind, workers in kinds.items()
        }

    async def transcode(
        self, job: TranscodeJob, on_progress: Callable[[JobProgress], None]
    ) -> TranscodeResult:
        chosen = min(self._background if job.background else self._workers, key=lambda w: w.busy)
        if chosen.busy and not job.background and len(self._workers) < LIVE_GROWTH * self._size:
            # Every live stream busy: one more worker, so that a stream shares the CPU with
            # the others instead of waiting a whole job for its turn.
            chosen = self._grow()
        if not chosen.alive():  # died while idle (killed, out of memory): start afresh
            log.warning("replacing a dead idle worker")
            chosen.replace()
        job_id = next(self._ids)
        loop = asyncio.get_running_loop()
        drained = asyncio.Event()

        def on_item(progress: JobProgress | None) -> None:
            if progress is None:
                drained.set()
            else:
                on_progress(progress)

        self._listeners[job_id] = (loop, on_item)
        chosen.busy += 1
        idle = any(not w.busy for w in self._workers)
        if not job.background and not idle and len(self._workers) < LIVE_GROWTH * self._size:
            self._grow()  # started now, so the next live stream finds it warm
        try:
            result, error = await asyncio.wait_for(
                loop.run_in_executor(chosen.pool, worker.transcode, job_id, job), job.timeout_s
            )
        except TimeoutError as exc:
            self._listeners.pop(job_id, None)
            log.error(
                "transcoding %s uploads %s took over %g s; killing the worker",
                job.video_id,
                [i.upload for i in job.inputs],
                job.timeout_s,
            )
            chosen.replace()
            raise TranscodeError(
                "the transcode took too long",
                f"gave up after {job.timeout_s:g} s (transcode.upload_timeout_s per upload)",
            ) from exc
        except BrokenProcessPool as exc:
            self._listeners.pop(job_id, None)
            if self._closed:  # the server is stopping: the job is simply not done
                raise TranscodeError("the server stopped", repr(exc)) from exc
            log.error(
                "worker died transcoding %s uploads %s; replacing it",
                job.video_id,
                [i.upload for i in job.inputs],
            )
            chosen.replace()
            raise WorkerCrashed("the transcode worker crashed", repr(exc)) from exc
        finally:
            chosen.busy -= 1
        await self._drain(job_id, drained)  # progress travels on another pipe (and segments
        if error is not None:  # published before a failure count)
            raise from_data(error)
        assert isinstance(result, TranscodeResult)
        return result

    def _grow(self) -> _Worker:
        """A new live worker, spawned and warmed in the background."""
        new = _Worker(self._make_pool)
        self._workers.append(new)
        warming = asyncio.get_running_loop().run_in_executor(new.pool, worker.warm)
        warming.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen, not raised
        return new

    async def _drain(self, job_id: int, done: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(done.wait(), 10)
        except TimeoutError:
            log.warning("progress of job %d did not drain", job_id)
        finally:
            self._listeners.pop(job_id, None)

    async def probe(
        self, source: Path | bytes, timeout_s: float, limits: MediaLimits | None = None
    ) -> SourceInfo:
        assert self._prober is not None
        info = await self._quick(
            self._prober,
            "inspecting the upload",
            timeout_s,
            worker.probe,
            source,
            limits or MediaLimits(),
        )
        assert isinstance(info, SourceInfo)
        return info

    async def probe_audio(
        self, source: Path | bytes, timeout_s: float, limits: MediaLimits
    ) -> float | None:
        assert self._prober is not None
        args = (source, limits)
        duration = await self._quick(
            self._prober, "inspecting the audio", timeout_s, worker.probe_audio, *args
        )
        assert duration is None or isinstance(duration, float)
        return duration

    async def webm_video(
        self, video: bytes, bitrate_bps: int, timeout_s: float
    ) -> tuple[bytes, bytes]:
        assert self._files is not None
        out = await self._quick(
            self._files, "encoding VP9", timeout_s, worker.webm_video, video, bitrate_bps
        )
        assert isinstance(out, tuple)
        return out

    async def webm_audio(
        self,
        audio: bytes,
        before: bytes | None,
        after: bytes | None,
        bitrate_bps: int,
        last: bool,
        timeout_s: float,
    ) -> tuple[bytes, bytes]:
        assert self._files is not None
        args = (audio, before, after, bitrate_bps, last)
        out = await self._quick(self._files, "encoding Opus", timeout_s, worker.webm_audio, *args)
        assert isinstance(out, tuple)
        return out

    async def keyframes(self, source: Path, timeout_s: float) -> KeyframeIndex:
        assert self._prober is not None
        index = await self._quick(
            self._prober, "indexing the recording", timeout_s, worker.keyframes, source
        )
        assert isinstance(index, KeyframeIndex)
        return index

    @property
    def transcoders(self) -> int:
        return self._size

    async def audio(self, job: AudioJob, timeout_s: float) -> AudioResult:
        assert self._files is not None
        out = await self._quick(self._files, "encoding audio", timeout_s, worker.audio, job)
        assert isinstance(out, AudioResult)
        return out

    async def remux(
        self,
        inputs: tuple[bytes, ...],
        container: str,
        start_s: float,
        timeout_s: float,
        captions: tuple[tuple[float, float, str], ...] = (),
        lang: str = "und",
        audio_lang: str | None = None,
    ) -> bytes:
        args = (inputs, container, start_s, captions, lang, audio_lang)
        return await self._file("remuxing", timeout_s, worker.remux, *args)

    async def encode_webm(
        self,
        inputs: tuple[bytes, ...],
        video_bitrate_bps: int,
        audio_bitrate_bps: int,
        timeout_s: float,
        captions: tuple[tuple[float, float, str], ...] = (),
        lang: str = "und",
        audio_lang: str | None = None,
    ) -> bytes:
        args = (inputs, video_bitrate_bps, audio_bitrate_bps, captions, lang, audio_lang)
        return await self._file("encoding WebM", timeout_s, worker.encode_webm, *args)

    async def _file(
        self, doing: str, timeout_s: float, fn: Callable[..., Any], *args: Any
    ) -> bytes:
        """A file for a viewer, made on the files process."""
        assert self._files is not None
        out = await self._quick(self._files, doing, timeout_s, fn, *args)
        assert isinstance(out, bytes)
        return out

    async def _quick(
        self, on: _Worker, doing: str, timeout_s: float, fn: Callable[..., Any], *args: Any
    ) -> Any:
        """A short job on a single process (`on`), replaced if it hangs or crashes."""
        loop = asyncio.get_running_loop()
        try:
            result, error = await asyncio.wait_for(
                loop.run_in_executor(on.pool, fn, *args), timeout_s
            )
        except TimeoutError as exc:
            on.replace()
            raise UnsupportedMedia(
                f"{doing} took too long", f"gave up after {timeout_s:g} s"
            ) from exc
        except BrokenProcessPool as exc:
            on.replace()
            raise UnsupportedMedia(f"{doing} crashed the media process", repr(exc)) from exc
        if error is not None:
            raise from_data(error)
        return result
