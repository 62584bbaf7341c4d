"""Captions coming to a stream: uploaded as WebVTT or SRT (streamd.ingest.captions), or
carried as text subtitles in its uploads (a job's result). Each language is a caption track
whose cues go into the WebVTT segment of every published segment they fall in."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from streamd.model.captions import CaptionTrack, Cue
from streamd.model.jobs import TranscodeResult

if TYPE_CHECKING:
    from streamd.streams.runner import StreamRunner

log = logging.getLogger("streamd.streams.captions")


async def add_captions(runner: StreamRunner, lang: str, name: str, cues: list[Cue]) -> None:
    """Cues for the stream's subtitles in `lang` (a new track at the first): recorded,
    and the published segments they fall in written again; a new language gets its
    playlist over the whole stream. Under the runner's lock: no segment is published
    meanwhile."""
    stream = runner.stream
    async with runner.lock:
        track = stream.captions.get(lang)
        new = track is None
        if track is None:
            track = CaptionTrack(lang, name)
        track.add(cues)
        await runner.state.add_cues(stream.video_id, track, cues)
        if new:
            await runner.publisher.write_subtitles(stream, stream.segments, track)
            stream.captions[lang] = track
            await runner.publisher.add_track(stream, lang)
        elif cues:
            start_s = min(c.start_s for c in cues)
            end_s = max(c.end_s for c in cues)
            late = stream.segments_between(start_s, end_s)
            await runner.publisher.write_subtitles(stream, late, track)
            await runner.publisher.forget_files(stream, late, lang)
    log.info(
        "%s: %d cues in %s (%s)",
        stream.video_id,
        len(cues),
        lang,
        "a new subtitle track" if new else f"{len(track.cues)} in all",
        extra={"stream": stream.video_id},
    )


async def subtitles_of(runner: StreamRunner, result: TranscodeResult) -> None:
    """The text subtitles a job's uploads carried, by language."""
    await add_cues(runner, result.captions)


async def add_cues(runner: StreamRunner, found: Sequence[tuple[str, float, float, str]]) -> None:
    """Cues a worker read from the media (text subtitles, CEA-608), by language."""
    by_lang: dict[str, list[Cue]] = {}
    for lang, start_s, end_s, text in found:
        by_lang.setdefault(lang, []).append(Cue(round(start_s, 3), round(end_s, 3), text))
    for lang, cues in by_lang.items():
        await add_captions(runner, lang, lang, cues)
