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


FMP4 = Packaging(
    name="fmp4",
    extension="m4s",
    content_type="video/iso.segment",
    file_extension="mp4",
    file_content_type="video/mp4",
    has_init=True,
    hls_version=6,  # EXT-X-MAP outside I-frame playlists
    aliases=("mp4", "cmaf", "m4s"),
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


def content_type_for(suffix: str) -> str | None:
    """Content type of a published object by its file suffix (`.m4s`), if it is media."""
    for p in PACKAGINGS.values():
        if suffix == "." + p.extension:
            return p.content_type
    return "video/mp4" if suffix == ".mp4" else None  # init segments
