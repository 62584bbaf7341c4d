"""The API of the design: `GET /viewstream/metadata/{videoId}` (the master playlist) and
`GET /viewstream/{videoId}?timestamp&format&resolution&lang` (the segment holding that
second, or that wall-clock `time`, as a file that plays alone: MP4, MOV or MPEG-TS
remuxed by a worker, WebM encoded once, decrypted when the stream is encrypted: the caller
showed its token already); and
`GET /viewstream/{videoId}/clip?from&to` (the segments of a span as one file)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from aiohttp import web

from streamd.access import tokens
from streamd.appkeys import CONFIG, FLIGHTS, HLS, JOBS, METRICS, PUBLISHER, STORE, STREAMS
from streamd.errors import BadRequest, Conflict, NotFound, StreamdError
from streamd.manifests.dash import MIME as DASH_MIME
from streamd.manifests.dash import with_base_url
from streamd.manifests.hls import MIME, absolute_master
from streamd.metrics import client_id
from streamd.model import layout
from streamd.model.audio import AudioLanguage
from streamd.model.formats import (
    FILE_FORMATS,
    FileFormat,
    Packaging,
    file_format_for,
    packaging_for,
)
from streamd.model.language import match
from streamd.model.stream import Segment, Stream
from streamd.web import language
from streamd.web.hls import bytes_response

log = logging.getLogger("streamd.web.viewstream")
_RESOLUTION = re.compile(r"^(\d{2,4})p?$")
_LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
MAX_CLIP_S = 600.0  # a clip is remuxed in memory: bounded
MAX_WEBM_CLIP_S = 120.0  # and a WebM one encoded: more so
REMUX_TIMEOUT_S = 30.0
DASH_FORMATS = ("dash", "mpd")


def published(request: web.Request) -> tuple[Stream, str | None]:
    """The stream a viewer asks for (counting the viewer), once it has a segment, and the
    viewer's token once checked (None when watching is open)."""
    token = request.app[HLS].authorize(request, request.match_info["video_id"])
    stream = request.app[STREAMS].get(request.match_info["video_id"])
    request.app[METRICS].viewers.saw(stream.video_id, client_id(request))
    if not stream.segments:
        raise NotFound(
            f"stream {stream.video_id!r} has nothing published yet",
            "its first segment is still being transcoded",
        )
    return stream, token


async def master(request: web.Request) -> web.Response:
    """GET /viewstream/metadata/{videoId}: the HLS master playlist (fMP4, or ?format=ts),
    or (?format=dash) the DASH MPD over the fMP4 segments."""
    stream, token = published(request)
    kind = MIME
    if request.query.get("format", "").lower() in DASH_FORMATS:
        mpd = request.app[PUBLISHER].get(stream.video_id).get(layout.mpd_key(stream.video_id))
        assert mpd is not None  # made with the first segment
        base = layout.url_for(layout.mpd_key(stream.video_id)).rsplit("/", 1)[0] + "/"
        body, kind = with_base_url(mpd, base), DASH_MIME
    else:
        languages = request.app[CONFIG].languages
        lang = language.preferred(request, language.of_stream(stream), languages)
        body = absolute_master(stream, packaging_for(request.query.get("format")), lang).encode()
    if token is not None:  # handed on to every variant, or every segment
        body = tokens.tokenized_playlist(body, token)
    response = request.app[HLS].playlist_response(stream.ended, body, content_type=kind)
    if kind == MIME:
        response.headers["Vary"] = language.vary(request.app[CONFIG].languages)
    return response


def _pick_rung(stream: Stream, resolution: str | None) -> str:
    rungs = stream.rungs  # tallest first
    if not resolution:
        return rungs[0].name
    m = _RESOLUTION.match(resolution.strip().lower())
    if not m:
        raise BadRequest(f"bad resolution {resolution!r}", "use e.g. 720p")
    wanted = int(m.group(1))
    for rung in rungs:
        if min(rung.width, rung.height) <= wanted:
            return rung.name
    raise NotFound(
        f"no rung at or below {wanted}p", "available: " + ", ".join(r.name for r in rungs)
    )


async def view(request: web.Request) -> web.Response:
    """GET /viewstream/{videoId}?timestamp=T (or ?time=ISO 8601): the segment holding that
    moment, playable alone."""
    stream, _ = published(request)
    q = request.query
    fmt = file_format_for(q.get("format"))
    lang = q.get("lang")
    if lang and not _LANG.match(lang):
        raise BadRequest(f"bad lang {lang!r}", "use a BCP 47 tag such as en or pt-BR")
    languages = language.of_stream(stream)
    if lang and languages and match(lang, languages) is None:
        raise NotFound(
            f"no language {lang!r} in {stream.video_id!r}", "available: " + ", ".join(languages)
        )
    time_s = _wall_clock(stream, q["time"]) if "time" in q else _seconds(q, "timestamp", "0")
    rung = _pick_rung(stream, q.get("resolution"))
    seg = stream.segment_at(time_s)
    if seg is None:
        when = "beyond the end of the stream" if stream.ended else "not published yet"
        raise NotFound(
            f"timestamp {time_s:g} s is {when}", f"published: 0 to {stream.duration_s:g} s"
        )
    if seg.rung(rung) is None:  # the rung was dropped for this segment (overload): one below
        heights = {r.name: r.height for r in stream.rungs}
        rung = next(
            (o.name for o in seg.rungs if heights[o.name] <= heights[rung]), seg.rungs[-1].name
        )
    body = await _file(request, stream, fmt, rung, [seg])
    headers = {
        "X-Segment-Sequence": str(seg.sequence),
        "X-Segment-Start": f"{seg.start_s:.3f}",
        "X-Segment-Duration": f"{seg.duration_s:.3f}",
        "X-Resolution": rung,
        "Content-Disposition": f'inline; filename="{stream.video_id}-{seg.sequence}-{rung}.'
        f'{fmt.name}"',
    }
    return _file_response(request, stream, fmt, body, headers)


async def clip(request: web.Request) -> web.Response:
    """GET /viewstream/{videoId}/clip?from=T1&to=T2: the whole segments spanning T1 to T2 as
    one file (remuxed, never encoded), e.g. a highlight saved while the event is live."""
    stream, _ = published(request)
    q = request.query
    fmt = file_format_for(q.get("format"))
    from_s, to_s = _seconds(q, "from", None), _seconds(q, "to", None)
    if to_s <= from_s:
        raise BadRequest(f"the clip ends ({to_s:g} s) before it starts ({from_s:g} s)")
    longest = MAX_WEBM_CLIP_S if fmt.encoded else MAX_CLIP_S
    if to_s - from_s > longest:
        raise BadRequest(
            f"a {fmt.name} clip is at most {longest:g} s", f"asked for {to_s - from_s:g} s"
        )
    rung = _pick_rung(stream, q.get("resolution"))
    segments = stream.segments_between(from_s, to_s)
    if not segments or (segments[-1].end_s < to_s - 0.001 and not stream.ended):
        raise NotFound(
            f"{from_s:g} to {to_s:g} s is not all published yet",
            f"published: 0 to {stream.duration_s:g} s",
        )
    for seg in segments:
        out = seg.rung(rung)
        if out is None:
            raise Conflict(
                f"the clip spans {seg.start_s:g} s, which has no {rung}",
                "a gap in the stream, or a rung left out while it was behind: ask for a "
                "lower resolution or another span",
            )
        if seg is not segments[0] and seg.discontinuity:
            raise Conflict(
                f"the clip spans a restart of the encoder at {seg.start_s:g} s",
                "ask for the two sides as two clips",
            )
    body = await _file(request, stream, fmt, rung, segments)
    first, last = segments[0], segments[-1]
    headers = {
        "X-Clip-Start": f"{first.start_s:.3f}",
        "X-Clip-Duration": f"{last.end_s - first.start_s:.3f}",
        "X-Resolution": rung,
        "Content-Disposition": f'attachment; filename="{stream.video_id}-{first.start_s:.0f}-'
        f'{last.end_s:.0f}-{rung}.{fmt.name}"',
    }
    return _file_response(request, stream, fmt, body, headers)


def _seconds(q: Mapping[str, str], name: str, default: str | None) -> float:
    value = q.get(name, default)
    if value is None:
        raise BadRequest(f"{name} is missing", "seconds from the start")
    try:
        time_s = float(value)
    except ValueError as exc:
        raise BadRequest(f"bad {name} {value!r}", "seconds from the start") from exc
    if not math.isfinite(time_s) or time_s < 0:
        raise BadRequest(f"bad {name} {time_s!r}", "seconds from the start, 0 or more")
    return time_s


def _wall_clock(stream: Stream, value: str) -> float:
    """`?time=2026-11-24T10:15:00Z` as seconds from the stream's start, by the clock its
    playlists' EXT-X-PROGRAM-DATE-TIME follows."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest(f"bad time {value!r}", "ISO 8601, e.g. 2026-11-24T10:15:00Z") from exc
    if when.tzinfo is None:
        raise BadRequest(f"time {value!r} has no time zone", "end it with Z or +HH:MM")
    if stream.start_wall_s is None:
        raise NotFound(f"stream {stream.video_id!r} has no wall-clock time", "use ?timestamp=")
    # As the playlists write it: to the millisecond, cut (a segment's own PDT must find it).
    start_s = math.floor(stream.start_wall_s * 1000) / 1000
    time_s = round(when.timestamp() - start_s, 3)
    if time_s < 0:
        began = datetime.fromtimestamp(stream.start_wall_s, UTC).isoformat()
        raise NotFound(f"{value} is before the stream began", f"it began at {began}")
    return time_s


async def _file(
    request: web.Request, stream: Stream, fmt: FileFormat, rung: str, segments: list[Segment]
) -> bytes:
    """The segments of one rung as one file in `fmt`: remuxed, or (WebM) encoded."""
    languages = language.for_file(request, stream, segments)
    if fmt.encoded:
        if request.app[CONFIG].transcode.webm == "off":
            raise NotFound("WebM is off on this server", 'set [transcode] webm = "on_demand"')
        return await encoded_file(request.app, stream, fmt, rung, segments, languages)
    inputs = await _joined(request.app, stream, fmt.source, rung, segments, languages.audio)
    start_s = segments[0].start_s if fmt.at_stream_time else 0.0
    return await request.app[JOBS].remux(
        inputs,
        fmt.name,
        start_s,
        REMUX_TIMEOUT_S,
        languages.captions,
        languages.lang,
        languages.audio_lang,
    )


async def _joined(
    app: web.Application,
    stream: Stream,
    packaging: Packaging,
    rung: str,
    segments: list[Segment],
    audio: AudioLanguage | None = None,
) -> tuple[bytes, ...]:
    """The segments of one rung in one packaging, after their init segment, joined (clear,
    if the stream is encrypted): one file for a muxed packaging, else the video's and the
    audio's; then (`audio`) an alternate audio language's."""
    renditions = [rung]
    if audio is not None:
        renditions.append(audio.rendition)
    elif packaging.audio_apart and segments[0].audio:
        renditions.append(segments[0].audio[0].name)
    return tuple([await track(app, stream, packaging, name, segments) for name in renditions])


async def track(
    app: web.Application,
    stream: Stream,
    packaging: Packaging,
    rung: str,
    segments: list[Segment],
) -> bytes:
    vid, name = stream.video_id, packaging.name
    hls = app[HLS]
    pieces = []
    first = segments[0].rung(rung)
    assert first is not None
    init = first.inits.get(name)
    if init is not None:
        pieces.append(await hls.object_bytes(layout.init_key(vid, name, rung, init)))
    for seg in segments:
        out = seg.rung(rung)
        if out is None:
            raise Conflict(f"the stream has no {rung} at {seg.start_s:g} s", "ask for another span")
        if out.inits.get(name) != init:
            raise Conflict(
                f"the encoding changed at {seg.start_s:g} s", "ask for the two sides apart"
            )
        data = await hls.object_bytes(layout.segment_key(vid, name, rung, seg.sequence))
        if stream.protection is not None:  # off the loop: AES over a segment is milliseconds
            decrypt = stream.protection.decrypt
            loop = asyncio.get_running_loop()
            data = await loop.run_in_executor(None, decrypt, vid, seg.sequence, data)
        pieces.append(data)
    return b"".join(pieces)


async def encoded_file(
    app: web.Application,
    stream: Stream,
    fmt: FileFormat,
    rung: str,
    segments: list[Segment],
    languages: language.FileLanguages = language.AS_IS,
) -> bytes:
    """WebM: made the first time a segment is asked for (or as it is published, with
    `webm = "eager"`), then kept in the store, in each language asked for (unless the stream
    is encrypted: its clear pictures are not kept). A clip is encoded whole. Requests for
    the same file at once share one encode."""
    store = app[STORE]
    key = None
    if len(segments) == 1 and stream.protection is None:
        sequence = segments[0].sequence
        key = layout.file_key(stream.video_id, fmt.name, rung, sequence, languages.variant)

    async def make() -> bytes:
        if key is not None:
            with contextlib.suppress(FileNotFoundError):
                return await store.get(key)
        inputs = await _joined(app, stream, fmt.source, rung, segments, languages.audio)
        spec = next(r for r in stream.rungs if r.name == rung)
        span_s = segments[-1].end_s - segments[0].start_s
        body = await app[JOBS].encode_webm(
            inputs,
            spec.video_bitrate_bps,
            spec.audio_bitrate_bps,
            REMUX_TIMEOUT_S + 4 * span_s,
            languages.captions,
            languages.lang,
            languages.audio_lang,
        )
        app[METRICS].files_encoded.labels(fmt.name).inc()
        if key is not None and language.still_current(languages, stream, segments):
            await store.put(key, body)
        return body

    first, last = segments[0].sequence, segments[-1].sequence
    return await app[FLIGHTS].once((stream.video_id, fmt.name, rung, first, last, languages), make)


def _file_response(
    request: web.Request, stream: Stream, fmt: FileFormat, body: bytes, headers: dict[str, str]
) -> web.Response:
    # Clear bytes of an encrypted stream: no shared cache keeps them.
    scope = "private" if stream.protection is not None else "public"
    max_age = request.app[CONFIG].http.segment_max_age_s
    headers = {"Cache-Control": f"{scope}, max-age={max_age}", **headers}
    return bytes_response(request, body, fmt.content_type, headers)


class EagerWebm:
    """`[transcode] webm = "eager"`: each published segment's WebM files, rung by rung, made
    as it is published (on the files process, at the lowest CPU priority: a live stream's
    work goes first) and kept, so a viewer's first request finds them. One at a time: a
    backlog waits here, not in the files process."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.queue: asyncio.Queue[tuple[Stream, Segment]] = asyncio.Queue()

    def published(self, stream: Stream, segment: Segment) -> None:
        if stream.protection is None and segment.rungs:
            self.queue.put_nowait((stream, segment))

    async def run(self) -> None:
        webm = FILE_FORMATS["webm"]
        while True:
            stream, segment = await self.queue.get()
            for out in segment.rungs:
                try:
                    await encoded_file(self.app, stream, webm, out.name, [segment])
                except StreamdError as exc:  # the stream may be gone: nothing to keep
                    log.warning(
                        "%s segment %d %s: no WebM made: %s",
                        stream.video_id,
                        segment.sequence,
                        out.name,
                        exc.message,
                    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/viewstream/metadata/{video_id}", master),
        web.get("/viewstream/{video_id}", view),
        web.get("/viewstream/{video_id}/clip", clip),
    ]
