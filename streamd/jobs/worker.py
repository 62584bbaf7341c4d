"""What runs inside a worker process: the pool's initializer and the job functions.

The media stack is imported here only inside the functions, so the server that submits them
never loads PyAV. A job's failure comes back as data (`errors.as_data`), not as a pickled
exception.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamd.errors import StreamdError, TranscodeError, UnsupportedMedia
from streamd.logs import setup_logging
from streamd.model.audio import AudioJob
from streamd.model.jobs import (
    JobProgress,
    MediaLimits,
    TranscodeJob,
    TranscodeResult,
)
from streamd.process import die_with_parent, set_process_name

log = logging.getLogger("streamd.jobs.worker")
# Process-local: set once by the pool initializer, read by the job functions below.
_progress_queue: Any = None
Outcome = tuple[Any, dict[str, Any] | None]  # (result, None) or (None, error data)


def init(
    progress_queue: Any,
    log_level: int,
    log_format: str,
    transcoder: bool,
    memory_bytes: int,
    nice: int = 0,
) -> None:
    """The pool's initializer, once per worker process."""
    global _progress_queue
    _progress_queue = progress_queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server to handle
    die_with_parent(signal.SIGKILL)
    if transcoder:
        set_process_name(f"streamd-worker{'-bg' * bool(nice)}")
    else:  # uploads' probes, or viewers' files (at low priority)
        set_process_name("streamd-files" if nice else "streamd-prober")
    if nice:  # background work (recordings) takes only the CPU live streams leave
        os.nice(nice)
    setup_logging(log_level, log_format)
    if memory_bytes > 0:  # a hostile upload that balloons fails its job, not the machine
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if transcoder:
        import streamd.media.transcode  # noqa: F401  (now, not on the first upload)


def warm() -> int:
    """A no-op job: the process is spawned and initialised once it returns."""
    return 0


def transcode(job_id: int, job: TranscodeJob) -> Outcome:
    from streamd.media.transcode import run_job

    def report(progress: JobProgress) -> None:
        _progress_queue.put((job_id, progress))

    try:
        result: TranscodeResult = run_job(job, report)
        return result, None
    except StreamdError as exc:
        return None, exc.as_data()
    except Exception as exc:  # a bug or an FFmpeg failure: the server logs it, goes on
        log.exception("%s: transcode job failed", job.video_id)
        return None, TranscodeError("the transcode failed", repr(exc)).as_data()
    finally:
        # Sent down the same pipe after every progress message: the server waits for it.
        _progress_queue.put((job_id, None))


def probe(source: Path | bytes, limits: MediaLimits) -> Outcome:
    from streamd.media.probe import probe as probe_media

    return _outcome("the upload could not be inspected", probe_media, source, limits)


def probe_audio(source: Path | bytes, limits: MediaLimits) -> Outcome:
    from streamd.media.probe import probe_audio as probe_it

    return _outcome("the audio upload could not be inspected", probe_it, source, limits)


def keyframes(source: Path) -> Outcome:
    from streamd.media.probe import keyframes as index

    return _outcome("the recording could not be indexed", index, source)


def audio(job: AudioJob) -> Outcome:
    from streamd.media.alternate import run_audio_job

    return _outcome("the audio could not be encoded", run_audio_job, job)


def remux(
    inputs: tuple[bytes, ...],
    container: str,
    start_s: float,
    captions: tuple[tuple[float, float, str], ...] = (),
    lang: str = "und",
    audio_lang: str | None = None,
) -> Outcome:
    from streamd.media.remux import remux as remux_media

    args = (inputs, container, start_s, captions, lang, audio_lang)
    return _outcome("the segments could not be remuxed", remux_media, *args)


def encode_webm(
    inputs: tuple[bytes, ...],
    video_bitrate_bps: int,
    audio_bitrate_bps: int,
    captions: tuple[tuple[float, float, str], ...] = (),
    lang: str = "und",
    audio_lang: str | None = None,
) -> Outcome:
    from streamd.media.remux import encode_webm as encode

    args = (inputs, video_bitrate_bps, audio_bitrate_bps, captions, lang, audio_lang)
    return _outcome("the segments could not be encoded", encode, *args)


def webm_video(video: bytes, bitrate_bps: int) -> Outcome:
    from streamd.media.webm import vp9_segment

    return _outcome("the segment could not be encoded as VP9", vp9_segment, video, bitrate_bps)


def webm_audio(
    audio: bytes, before: bytes | None, after: bytes | None, bitrate_bps: int, last: bool
) -> Outcome:
    from streamd.media.webm import opus_segment

    return _outcome(
        "the segment could not be encoded as Opus",
        opus_segment,
        audio,
        before,
        after,
        bitrate_bps,
        last,
    )


def _outcome(failure: str, fn: Callable[..., Any], *args: Any) -> Outcome:
    """A short job's result, or its failure as data: ours as they are, anything else (a bug,
    FFmpeg) logged and sent as UnsupportedMedia(`failure`)."""
    try:
        return fn(*args), None
    except StreamdError as exc:
        return None, exc.as_data()
    except Exception as exc:
        log.exception(failure)
        return None, UnsupportedMedia(failure, repr(exc)).as_data()
