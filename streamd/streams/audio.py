"""A stream's audio languages (streamd.model.audio): the main audio's language, from its
uploads; alternates, from their further audio tracks or from commentary uploaded apart;
and each alternate made for the segments published since it was last made, in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from streamd.errors import SegmentConflict, StreamdError
from streamd.model import layout
from streamd.model.audio import (
    AudioJob,
    AudioLanguage,
    AudioPiece,
    AudioResult,
    AudioSource,
    alternate_rendition,
    commentary_key,
)
from streamd.model.jobs import TranscodeResult
from streamd.model.language import display_name
from streamd.model.stream import Segment, Stream

if TYPE_CHECKING:
    from streamd.streams.runner import StreamRunner

log = logging.getLogger("streamd.streams.audio")
AUDIO_JOB_S_PER_SEGMENT = 2.0  # a job's timeout, per segment it makes (it takes ~10 ms)


async def _register(runner: StreamRunner, language: AudioLanguage) -> None:
    stream = runner.stream
    stream.audio_languages[language.rendition] = language
    position = stream.audio_position(language.rendition)
    await runner.state.add_audio(stream.video_id, language, position)


def _alternate_for(stream: Stream, lang: str, title: str) -> AudioLanguage:
    """A new alternate in `lang`, its folder and name unlike any other's."""
    rendition, n = alternate_rendition(lang), 2
    while rendition in stream.audio_languages:
        rendition, n = f"{alternate_rendition(lang)}-{n}", n + 1
    return AudioLanguage(rendition, lang, _name(stream, lang, title))


def _name(stream: Stream, lang: str, title: str, besides: str = "") -> str:
    """What players list for a language (EXT-X-MEDIA NAME, unique in its group; `besides`:
    the rendition it is for, whose name it replaces)."""
    taken = {a.name for a in stream.audio_languages.values() if a.rendition != besides}
    base = title or ("Audio" if lang == "und" else display_name(lang))
    name, n = base, 2
    while name in taken:
        name, n = f"{base} {n}", n + 1
    return name


async def _main_language(runner: StreamRunner, lang: str, title: str) -> None:
    """The main audio's language: its first source's, or a later one's that says where
    the first did not (`und`)."""
    stream = runner.stream
    known = stream.audio_languages.get(layout.AUDIO)
    if known is None or (known.lang == "und" and lang != "und"):
        name = _name(stream, lang, title, besides=layout.AUDIO)
        await _register(runner, AudioLanguage(layout.AUDIO, lang, name))


async def live_tracks(runner: StreamRunner, tracks: tuple[tuple[str, str, str], ...]) -> None:
    """A live session's audio tracks, (rendition, language, title) the main first, as its
    worker names them: the languages not known yet are added. The segments before the
    session get a new alternate (silent) in the background; its own come with them."""
    stream = runner.stream
    added = False
    async with runner.lock:
        for rendition, lang, title in tracks:
            if rendition == layout.AUDIO:
                await _main_language(runner, lang, title)
            elif rendition not in stream.audio_languages:
                await _register(runner, AudioLanguage(rendition, lang, _name(stream, lang, title)))
                added = True
    if added:
        task = asyncio.create_task(catch_up(runner), name=f"audio-{stream.video_id}")
        runner.background.add(task)
        task.add_done_callback(runner.background.discard)


async def audio_of(runner: StreamRunner, result: TranscodeResult) -> None:
    """A job's uploads are published: the languages of their audio tracks (the first is
    the main audio, the others alternates), then every alternate made for them."""
    stream = runner.stream
    async with runner.lock:
        by_upload: dict[int, list[tuple[int, str, str, float]]] = {}
        for number, index, lang, title, origin_s in result.audio_streams:
            by_upload.setdefault(number, []).append((index, lang, title, origin_s))
        for number, tracks in by_upload.items():
            upload = stream.uploads.get(number)
            if upload is not None:  # which tracks it has, for its alternates
                upload.source = {**(upload.source or {}), "audio": [list(t) for t in tracks]}
            _, lang, title, _ = tracks[0]
            await _main_language(runner, lang, title)
            known = {a.lang for a in stream.alternates}
            for _, lang, title, _ in tracks[1:]:
                if lang not in known:
                    await _register(runner, _alternate_for(stream, lang, title))
                    known.add(lang)
        uploads = [stream.uploads[n] for n in by_upload if n in stream.uploads]
        if uploads:
            await runner.state.record(stream, uploads=uploads)
    await catch_up(runner)


async def add_commentary(
    runner: StreamRunner,
    lang: str,
    name: str,
    upload: int,
    keep: Callable[[str], Awaitable[None]],
) -> str:
    """An audio upload for the time of video upload `upload`, kept by `keep(store key)`:
    its language becomes an alternate if new, and it is made into that alternate's
    segments once that upload's are published. Raises SegmentConflict when they were made
    already (silent: nothing was sent for them in time). Returns the alternate's folder."""
    stream = runner.stream
    # Not while an alternate is being made: it may be making this upload's.
    async with runner.audio_lock, runner.lock:
        track = next((a for a in stream.alternates if a.lang == lang), None)
        if track is not None:
            made = stream.audio_from(track.rendition)
            done = [
                s
                for s in _published(stream, upload)
                if s.sequence < made or s.rung(track.rendition) is not None
            ]
            if done:
                raise SegmentConflict(
                    f"the {lang} audio of upload {upload} was already made",
                    f"its segments from {done[0].sequence} were published before it came",
                )
        await keep(commentary_key(stream.video_id, lang, upload))
        if track is None:
            track = _alternate_for(stream, lang, name)
            await _register(runner, track)
    log.info("%s: %s audio for upload %d", stream.video_id, lang, upload)
    await catch_up(runner)
    return track.rendition


def _published(stream: Stream, upload: int) -> list[Segment]:
    """The published segments of an upload (scanning back from the newest: recent uploads
    are what commentary is sent for)."""
    found = []
    for seg in reversed(stream.segments):
        if seg.upload == upload:
            found.append(seg)
        elif found or seg.upload < upload:
            break
    return found[::-1]


async def catch_up(runner: StreamRunner) -> None:
    """Every alternate made for the published segments it lacks, in order (one catch-up
    at a time: a recording's pieces finish together)."""
    async with runner.audio_lock:
        for track in list(runner.stream.alternates):
            if runner.stopping:  # the stream is being deleted
                return
            await _make(runner, track)


def _source(stream: Stream, track: AudioLanguage, number: int) -> AudioSource:
    """Where an upload's audio in the alternate's language comes from: the upload's own
    track in it, else a commentary upload for it (the worker finds whether there is one),
    else silence."""
    upload = stream.uploads.get(number)
    for index, lang, _, origin_s in ((upload and upload.source) or {}).get("audio", [])[1:]:
        if lang == track.lang and upload is not None:
            return AudioSource(upload.keys, index, origin_s)
    return AudioSource((commentary_key(stream.video_id, track.lang, number),), optional=True)


async def _make(runner: StreamRunner, track: AudioLanguage) -> None:
    stream = runner.stream
    start = stream.audio_from(track.rendition)
    todo = [
        s
        for s in stream.segments[start - stream.first_sequence :]
        if not s.gap and s.rung(track.rendition) is None
    ]
    made = (await _run(runner, track, todo)).outputs if todo else ()
    async with runner.lock:
        if runner.stopping:
            return  # the stream is being deleted: its files go, these with them
        # Those whose segment is still kept (retention may have removed some meanwhile).
        outputs = [(seq, out) for seq, out in made if stream.add_audio(seq, out)]
        stream.advance_audio(track.rendition)  # over gaps, and segments too short for audio
        if outputs:  # with the init segment its first output named
            track = stream.audio_languages[track.rendition]
            position = stream.audio_position(track.rendition)
            await runner.state.add_audio(stream.video_id, track, position, outputs)
        await runner.publisher.add_audio(stream, track.rendition)


async def _run(runner: StreamRunner, track: AudioLanguage, todo: list[Segment]) -> AudioResult:
    """The alternate made for these segments, an upload's at a time (each from its own
    source); a source that fails is made silent, so the rendition goes on."""
    stream = runner.stream
    pieces: list[AudioPiece] = []
    for seg in todo:
        span = (seg.sequence, seg.start_s, seg.duration_s)
        if (
            pieces
            and pieces[-1].upload == seg.upload
            and pieces[-1].segments[-1][0] + 1 == seg.sequence
        ):
            pieces[-1] = replace(pieces[-1], segments=(*pieces[-1].segments, span))
        else:
            source = _source(stream, track, seg.upload)
            pieces.append(AudioPiece(seg.upload, source, (span,)))
    job = AudioJob(
        stream.video_id,
        runner.store_spec,
        track.rendition,
        tuple(pieces),
        runner.settings.audio_bitrate_bps,
        stream.protection,
    )
    timeout_s = 30 + AUDIO_JOB_S_PER_SEGMENT * len(todo)
    try:
        return await runner.jobs.audio(job, timeout_s)
    except StreamdError as exc:
        log.error("%s: %s audio failed (%s), made silent", stream.video_id, track.lang, exc)
        silent = tuple(replace(p, source=AudioSource()) for p in pieces)
        return await runner.jobs.audio(replace(job, pieces=silent), timeout_s)
