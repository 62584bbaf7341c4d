"""Languages on the viewing side: which one a viewer gets by default, and what a file for
`?lang=` carries. The default is `?lang=`, else the best of their Accept-Language, else
their country's (from a CDN's geo header, mapped in `[languages]`), else the stream's
first. The master playlist marks it DEFAULT=YES; a response chosen by these headers says so
in `Vary`."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from streamd.config import LanguagesConfig
from streamd.model import layout
from streamd.model.audio import AudioLanguage
from streamd.model.language import match
from streamd.model.stream import Segment, Stream


def accept_language(header: str) -> list[str]:
    """An Accept-Language header's tags, most wanted first (RFC 9110 12.5.4); q=0 excluded."""
    ranked: list[tuple[float, int, str]] = []
    for i, item in enumerate(header.split(",")):
        tag, *params = item.strip().split(";")
        q = 1.0
        for param in params:
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if tag and tag != "*" and q > 0:
            ranked.append((-q, i, tag))
    return [tag for _, _, tag in sorted(ranked)]


def preferred(request: web.Request, available: list[str], config: LanguagesConfig) -> str | None:
    """The viewer's language among `available` (None when the stream has none)."""
    if not available:
        return None
    asked = request.query.get("lang")
    if asked and (found := match(asked, available)):
        return found
    for tag in accept_language(request.headers.get("Accept-Language", "")):
        if found := match(tag, available):
            return found
    if config.geo_header and (country := request.headers.get(config.geo_header)):
        lang = config.region_language(country)
        if lang and (found := match(lang, available)):
            return found
    return available[0]


def vary(config: LanguagesConfig) -> str:
    """The request headers a language choice depends on."""
    return "Accept-Language" + (f", {config.geo_header}" if config.geo_header else "")


def of_stream(stream: Stream) -> list[str]:
    """Every language a stream has, audio (the main first) then subtitles: what `?lang=`
    and the viewer's Accept-Language choose among."""
    langs = [a.lang for a in stream.audio_languages.values() if a.lang != "und"]
    return langs + [lang for lang in stream.captions if lang not in langs]


FileCues = tuple[tuple[float, float, str], ...]  # (start_s, end_s, text): a file's subtitles


@dataclass(frozen=True)
class FileLanguages:
    """What `?lang=` puts in a file: an alternate's audio instead of the main's, and the
    cues of that language's subtitles as a text track (MP4, MOV: mov_text; WebM: WebVTT)."""

    audio: AudioLanguage | None = None
    captions: FileCues = ()
    lang: str = "und"

    @property
    def audio_lang(self) -> str | None:
        return None if self.audio is None else self.audio.lang

    @property
    def variant(self) -> str:
        """How a kept file of these languages is told apart from the plain one."""
        return layout.file_variant(self.audio_lang, self.lang)


AS_IS = FileLanguages()  # no ?lang=: the main audio, no subtitle track


def for_file(request: web.Request, stream: Stream, segments: list[Segment]) -> FileLanguages:
    """What a file of these segments carries for the request's `?lang=`."""
    asked = request.query.get("lang") or ""
    alternate = match(asked, [a.lang for a in stream.alternates])
    audio = next((a for a in stream.alternates if a.lang == alternate), None)
    lang = match(asked, list(stream.captions))
    if lang is None:
        return FileLanguages(audio)
    return FileLanguages(audio, _cues(stream, lang, segments), lang)


def _cues(stream: Stream, lang: str, segments: list[Segment]) -> FileCues:
    track = stream.captions.get(lang)
    cues = track.between(segments[0].start_s, segments[-1].end_s) if track else []
    return tuple((c.start_s, c.end_s, c.text) for c in cues)


def still_current(languages: FileLanguages, stream: Stream, segments: list[Segment]) -> bool:
    """Whether a file made for `languages` still shows its subtitles' cues (late ones may
    have come while it was being made: then it is not kept)."""
    return languages.lang == "und" or languages.captions == _cues(stream, languages.lang, segments)
