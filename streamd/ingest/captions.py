"""`POST /upload/{videoId}/captions?lang=xx[&name=...]`: WebVTT or SRT cues for a stream.

Caption files are untrusted text: parsed here line by line, bounded in size, and refused
with a 400 that names the line at fault. Cue times are on the stream's timeline (seconds
from its start), unless the file says otherwise: a WebVTT `X-TIMESTAMP-MAP` maps them from
the media's 90 kHz clock (as HLS subtitle segments do), and `?at=` (ISO 8601) puts the
file's 0 at a wall-clock time, which EXT-X-PROGRAM-DATE-TIME ties to the stream's.
"""

from __future__ import annotations

import re
from datetime import datetime

from aiohttp import web

from streamd.appkeys import STREAMS
from streamd.errors import BadRequest, NotFound
from streamd.ingest.http import authorize
from streamd.model.captions import Cue
from streamd.model.pipeline import TIMELINE_ORIGIN_S, VIDEO_HZ

MAX_CAPTION_BYTES = 4 << 20
MAX_CUE_CHARS = 2000
_LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_TIME = r"(?:(\d+):)?([0-5]\d):([0-5]\d)[.,](\d{3})"
_TIMING = re.compile(rf"^{_TIME}\s+-->\s+{_TIME}(?:\s+(.*))?$")
_MAP = re.compile(r"X-TIMESTAMP-MAP=(.*)$")


def _seconds(hours: str | None, minutes: str, seconds: str, millis: str) -> float:
    return 3600 * int(hours or 0) + 60 * int(minutes) + int(seconds) + int(millis) / 1000


def _bad(line: int, message: str, text: str) -> BadRequest:
    return BadRequest(f"line {line}: {message}", text[:120])


def _timestamp_map(value: str, line: int) -> float:
    """Seconds to add to the file's cue times: X-TIMESTAMP-MAP=MPEGTS:N,LOCAL:T says the
    media's 90 kHz time N is the file's T, and the stream's second 0 is its timeline origin."""
    fields = dict(f.split(":", 1) for f in value.split(",") if ":" in f)
    try:
        mpegts = int(fields["MPEGTS"])
        local = _TIMING.match(f"{fields['LOCAL']} --> 00:00.000")
        assert local is not None
    except (KeyError, ValueError, AssertionError):
        raise _bad(line, "X-TIMESTAMP-MAP needs MPEGTS:N and LOCAL:HH:MM:SS.mmm", value) from None
    return mpegts / VIDEO_HZ - TIMELINE_ORIGIN_S - _seconds(*local.groups()[:4])


def parse_captions(text: str) -> list[Cue]:
    """The cues of a WebVTT file (it starts with WEBVTT) or an SRT one."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    webvtt = lines[0].lstrip("\ufeff").startswith("WEBVTT")
    offset_s = 0.0
    cues: list[Cue] = []
    i = 1 if webvtt else 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
            continue
        if webvtt and (m := _MAP.match(line)):
            offset_s = _timestamp_map(m.group(1), i + 1)
            i += 1
            continue
        if webvtt and line.startswith(("NOTE", "STYLE", "REGION")):
            while i < len(lines) and lines[i].strip():  # a block up to a blank line
                i += 1
            continue
        timing = _TIMING.match(line)
        after = _TIMING.match(lines[i + 1].strip()) if i + 1 < len(lines) else None
        if timing is None and after is not None:  # an identifier (SRT: the cue's number)
            i, timing = i + 1, after
        if timing is None:
            raise _bad(i + 1, "expected a cue timing (00:00:01.000 --> 00:00:02.500)", line)
        g = timing.groups()
        start_s, end_s = _seconds(*g[0:4]), _seconds(*g[4:8])
        if end_s <= start_s:
            raise _bad(i + 1, "the cue ends before it starts", lines[i])
        settings = (g[8] or "").strip() if webvtt else ""
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip():
            body.append(lines[i].rstrip())
            i += 1
        cue_text = "\n".join(body)
        if not cue_text or len(cue_text) > MAX_CUE_CHARS:
            raise _bad(i, f"a cue needs text of at most {MAX_CUE_CHARS} characters", cue_text)
        if "-->" in cue_text:
            raise _bad(i, "a cue's text cannot hold -->", cue_text)
        cues.append(
            Cue(round(start_s + offset_s, 3), round(end_s + offset_s, 3), cue_text, settings)
        )
    return cues


def check_lang(lang: str) -> str:
    """A `?lang=` value, if it is a BCP 47 tag; BadRequest otherwise."""
    if not _LANG.match(lang):
        raise BadRequest(f"bad lang {lang[:20]!r}", "use a BCP 47 tag such as en or pt-BR")
    return lang


async def captions(request: web.Request) -> web.Response:
    """POST /upload/{videoId}/captions?lang=xx[&name=...][&at=ISO 8601]: cues added to the
    stream's subtitles in that language (a new track at its first file)."""
    video_id = authorize(request)
    lang = check_lang(request.query.get("lang", ""))
    name = request.query.get("name", "")[:64] or lang
    body = await request.content.read(MAX_CAPTION_BYTES + 1)
    if len(body) > MAX_CAPTION_BYTES:
        raise BadRequest("the caption file is too large", f"at most {MAX_CAPTION_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("the caption file is not UTF-8", str(exc)) from None
    cues = parse_captions(text)
    streams = request.app[STREAMS]
    if video_id not in streams.records:
        raise NotFound(f"no stream {video_id!r}", "captions go with a stream's video")
    stream = streams.get(video_id)
    if "at" in request.query:
        if stream.start_wall_s is None:
            raise BadRequest("?at= needs the stream's first segment", "send the video first")
        try:
            at = datetime.fromisoformat(request.query["at"].replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise BadRequest("bad ?at=", "use ISO 8601, e.g. 2026-11-24T10:15:00Z") from None
        shift = at - stream.start_wall_s
        cues = [Cue(c.start_s + shift, c.end_s + shift, c.text, c.settings) for c in cues]
    await streams.add_captions(video_id, lang, name, cues)
    return web.json_response(
        {"videoId": video_id, "lang": lang, "name": name, "cues": len(cues)}, status=202
    )


def routes() -> list[web.RouteDef]:
    return [web.post("/upload/{video_id}/captions", captions)]
