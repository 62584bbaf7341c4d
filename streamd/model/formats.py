"""Packaging formats, by name: what the serving side needs to know about each (file names,
content types, how playlists name it). How each is muxed lives with the workers, in
`streamd.package`, under the same name. A new format is one entry here and one module there.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamd.errors import BadRequest


@dataclass(frozen=True)
class Packaging:
    """One way a rung's segments are packaged."""

    name: str  # in store keys and URLs: hls/ID/{name}/720p/...
    extension: str  # of a media segment
    content_type: str  # of a media segment
    file_extension: str  # of a segment served as a file that plays alone (/viewstream)
    file_content_type: str
    has_init: bool  # media segments need an init segment (EXT-X-MAP)
    hls_version: int  # EXT-X-VERSION of its master playlist (RFC 8216 7)
    aliases: tuple[str, ...] = ()  # other names `?format=` accepts
    audio_apart: bool = False  # the audio is a rendition of its own, not in every rung's


FMP4 = Packaging(
    name="fmp4",
    extension="m4s",
    content_type="video/iso.segment",
    file_extension="mp4",
    file_content_type="video/mp4",
    has_init=True,
    hls_version=6,  # EXT-X-MAP outside I-frame playlists
    aliases=("mp4", "cmaf", "m4s"),
    audio_apart=True,  # CMAF: one track per file, which DASH players require
)
TS = Packaging(
    name="ts",
    extension="ts",
    content_type="video/mp2t",
    file_extension="ts",
    file_content_type="video/mp2t",
    has_init=False,
    hls_version=3,  # decimal EXTINF
)

# Subtitles: segmented WebVTT beside the video, one playlist per language, named by the
# masters of every packaging (written by the server from cues, not by the workers).
SUBTITLES = Packaging(
    name="subs",
    extension="vtt",
    content_type="text/vtt",
    file_extension="vtt",
    file_content_type="text/vtt",
    has_init=False,
    hls_version=3,
)

# In the order playlists are written and listed; the first is the default.
PACKAGINGS: dict[str, Packaging] = {p.name: p for p in (FMP4, TS)}
_BY_ALIAS = {alias: p for p in PACKAGINGS.values() for alias in (p.name, *p.aliases)}


def packaging_for(value: str | None) -> Packaging:
    """The packaging a `?format=` value asks for (the default when absent)."""
    if value is None or value == "":
        return FMP4
    found = _BY_ALIAS.get(value.lower())
    if found is None:
        names = ", ".join(sorted(_BY_ALIAS))
        raise BadRequest(f"unknown format {value!r}", f"use one of {names}")
    return found


@dataclass(frozen=True)
class FileFormat:
    """A container `/viewstream` returns a file in: remuxed from a packaging's segments."""

    name: str  # the muxer's, in streamd.media.remux
    source: Packaging  # whose segments are remuxed
    content_type: str
    at_stream_time: bool  # the file's first picture at its stream time, not at 0
    aliases: tuple[str, ...] = ()
    encoded: bool = False  # made by encoding the segments again (other codecs), not a remux


# MP4 and MOV start at 0 (a player shows an MP4 that starts later with a blank lead-in);
# MPEG-TS keeps its stream time, as broadcast does. WebM is VP9 and Opus, encoded when first
# asked for (`[transcode] webm`).
FILE_FORMATS: dict[str, FileFormat] = {
    f.name: f
    for f in (
        FileFormat("mp4", FMP4, "video/mp4", False, ("fmp4", "cmaf", "m4s")),
        FileFormat("mov", FMP4, "video/quicktime", False),
        FileFormat("ts", TS, "video/mp2t", True),
        FileFormat("webm", FMP4, "video/webm", False, encoded=True),  # VP9 + Opus
    )
}
_FILE_BY_ALIAS = {a: f for f in FILE_FORMATS.values() for a in (f.name, *f.aliases)}


def file_format_for(value: str | None) -> FileFormat:
    """The container a `/viewstream?format=` value asks for (MP4 when absent)."""
    found = _FILE_BY_ALIAS.get((value or "mp4").lower())
    if found is None:
        names = ", ".join(sorted(_FILE_BY_ALIAS))
        raise BadRequest(f"unknown format {value!r}", f"use one of {names}")
    return found


def content_type_for(suffix: str) -> str | None:
    """Content type of a published object by its file suffix (`.m4s`), if it is media."""
    for p in PACKAGINGS.values():
        if suffix == "." + p.extension:
            return p.content_type
    return "video/mp4" if suffix == ".mp4" else None  # init segments
