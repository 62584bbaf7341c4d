"""HLS playlist tags (RFC 8216) as small values that render themselves.

Only the tags streamd writes are modelled; each class names its tag.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamd.clock import iso

MIME = "application/vnd.apple.mpegurl"
ENDLIST = "#EXT-X-ENDLIST\n"


def _decimal(x: float) -> str:
    return f"{x:.3f}"


def key_tag(uri: str | None) -> str:
    """#EXT-X-KEY: AES-128 with the key at `uri`, or METHOD=NONE. No IV attribute: players
    then use the media sequence number (RFC 8216 5.2), which needs no version above 1."""
    if uri is None:
        return "#EXT-X-KEY:METHOD=NONE\n"
    return f'#EXT-X-KEY:METHOD=AES-128,URI="{uri}"\n'


def round_half_up(x: float) -> int:
    """RFC 8216 4.3.3.1 rounds EXTINF "to the nearest integer"; halves go up."""
    return int(x + 0.5)


@dataclass(frozen=True)
class MediaSegment:
    """#EXTINF, preceded by #EXT-X-DISCONTINUITY (a new timeline), #EXT-X-MAP and #EXT-X-KEY
    (when they change), #EXT-X-PROGRAM-DATE-TIME and #EXT-X-GAP (no media: players skip it)."""

    uri: str
    duration_s: float
    program_date_time_s: float | None = None
    map_uri: str | None = None  # fMP4 init segment this segment needs
    gap: bool = False
    discontinuity: bool = False
    key_uri: str | None = None  # AES-128 key this segment is encrypted with
    byterange: tuple[int, int] | None = None  # I-frame playlists: (offset, length) in `uri`

    def render(self, current_map: str | None, current_key: str | None = None) -> str:
        """Its lines, given the EXT-X-MAP and EXT-X-KEY in force before it."""
        return self.tags(current_map, current_key) + self.uri_lines()

    def uri_lines(self) -> str:
        extinf = f"#EXTINF:{_decimal(self.duration_s)},\n"
        if self.byterange is not None:
            offset, length = self.byterange
            extinf += f"#EXT-X-BYTERANGE:{length}@{offset}\n"
        return f"{extinf}{self.uri}\n"

    def tags(self, current_map: str | None, current_key: str | None = None) -> str:
        """The tags before its EXTINF (and before its first EXT-X-PART, LL-HLS 4.4.4.9)."""
        lines = []
        if self.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY\n")
        if self.map_uri and self.map_uri != current_map:
            if current_key is not None:
                # 4.3.2.4: a key also applies to every EXT-X-MAP after it, and init segments
                # are clear: no key over the map, then the key again for the media.
                lines.append(key_tag(None))
                current_key = None
            lines.append(f'#EXT-X-MAP:URI="{self.map_uri}"\n')
        if self.key_uri != current_key:
            lines.append(key_tag(self.key_uri))
        if self.program_date_time_s is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso(self.program_date_time_s)}\n")
        if self.gap:
            lines.append("#EXT-X-GAP\n")
        return "".join(lines)


@dataclass(frozen=True)
class MediaPlaylist:
    """A rung's media playlist: EVENT while live (only ever appended), ENDLIST when ended;
    VOD once a recording uploaded whole is done (it will never change again). `sliding`:
    a live window that loses its oldest segments (RFC 8216 6.2.2), so not EVENT."""

    segments: tuple[MediaSegment, ...]
    target_duration_s: int
    ended: bool = False
    media_sequence: int = 0
    discontinuity_sequence: int = 0  # EXT-X-DISCONTINUITY tags removed with old segments
    sliding: bool = False
    server_control: str = ""  # LL-HLS: EXT-X-SERVER-CONTROL and EXT-X-PART-INF lines
    iframes_only: bool = False  # each segment's first picture (EXT-X-BYTERANGE), for trick play
    vod: bool = False

    @property
    def version(self) -> int:
        # RFC 8216 7: EXT-X-MAP outside I-frame playlists needs 6; float EXTINF needs 3;
        # EXT-X-BYTERANGE and EXT-X-I-FRAMES-ONLY need 4.
        # LL-HLS 8: EXT-X-SKIP (delta updates, offered by CAN-SKIP-UNTIL) needs 9.
        if self.server_control:
            return 9
        if any(s.map_uri for s in self.segments):
            return 6
        return 4 if self.iframes_only else 3

    @property
    def target_duration(self) -> int:
        # 4.3.3.1: no rounded EXTINF may exceed the target duration.
        longest = max((round_half_up(s.duration_s) for s in self.segments), default=0)
        return max(self.target_duration_s, longest)

    def header(self) -> str:
        """Everything before the first segment."""
        lines = [
            "#EXTM3U\n",
            f"#EXT-X-VERSION:{self.version}\n",
            f"#EXT-X-TARGETDURATION:{self.target_duration}\n",
            self.server_control,
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}\n",
        ]
        if self.sliding:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}\n")
        elif self.vod:
            lines.append("#EXT-X-PLAYLIST-TYPE:VOD\n")
        else:
            lines.append("#EXT-X-PLAYLIST-TYPE:EVENT\n")
        if self.iframes_only:
            lines.append("#EXT-X-I-FRAMES-ONLY\n")
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS\n")
        return "".join(lines)

    def render(self) -> str:
        out = [self.header()]
        current_map = current_key = None
        for seg in self.segments:
            out.append(seg.render(current_map, current_key))
            current_map, current_key = seg.map_uri or current_map, seg.key_uri
        if self.ended:
            out.append(ENDLIST)
        return "".join(out)


@dataclass(frozen=True)
class Variant:
    """#EXT-X-STREAM-INF: one rung, with bandwidth measured from its real segments."""

    uri: str
    bandwidth_bps: int
    average_bandwidth_bps: int
    width: int
    height: int
    frame_rate: float
    codecs: str  # the video's and the audio's
    audio_group: str | None = None  # the EXT-X-MEDIA audio renditions played with it
    subtitles_group: str | None = None  # and the subtitles

    def render(self) -> str:
        attrs = [
            f"BANDWIDTH={max(self.bandwidth_bps, self.average_bandwidth_bps)}",
            f"AVERAGE-BANDWIDTH={self.average_bandwidth_bps}",
            f"RESOLUTION={self.width}x{self.height}",
        ]
        if self.frame_rate > 0:
            attrs.append(f"FRAME-RATE={_decimal(self.frame_rate)}")
        attrs.append(f'CODECS="{self.codecs}"')
        if self.audio_group is not None:
            attrs.append(f'AUDIO="{self.audio_group}"')
        if self.subtitles_group is not None:
            attrs.append(f'SUBTITLES="{self.subtitles_group}"')
        return f"#EXT-X-STREAM-INF:{','.join(attrs)}\n{self.uri}"


def quoted(value: str) -> str:
    """Text for a quoted-string attribute, which may not hold a double quote, a carriage
    return or a line feed (RFC 8216 4.2): a name a provider or an upload chose."""
    return value.replace('"', "'").replace("\r", " ").replace("\n", " ")


@dataclass(frozen=True)
class AudioRendition:
    """#EXT-X-MEDIA:TYPE=AUDIO: an audio rendition in its own playlist (RFC 8216 4.3.4.1)."""

    uri: str | None  # None: in the variants' own segments (4.3.4.1)
    group_id: str
    name: str
    channels: int
    language: str | None = None
    default: bool = True

    def render(self) -> str:
        attrs = [f'TYPE=AUDIO,GROUP-ID="{self.group_id}",NAME="{quoted(self.name)}"']
        if self.language is not None:
            attrs.append(f'LANGUAGE="{self.language}"')
        yes_no = "YES" if self.default else "NO"
        attrs += [f"DEFAULT={yes_no},AUTOSELECT=YES", f'CHANNELS="{self.channels}"']
        if self.uri is not None:
            attrs.append(f'URI="{self.uri}"')
        return f"#EXT-X-MEDIA:{','.join(attrs)}"


@dataclass(frozen=True)
class SubtitleRendition:
    """#EXT-X-MEDIA:TYPE=SUBTITLES: one language's segmented WebVTT (RFC 8216 4.3.4.1)."""

    uri: str
    group_id: str
    name: str
    language: str
    default: bool

    def render(self) -> str:
        yes_no = "YES" if self.default else "NO"
        return (
            f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="{self.group_id}",NAME="{quoted(self.name)}",'
            f'LANGUAGE="{self.language}",DEFAULT={yes_no},AUTOSELECT=YES,URI="{self.uri}"'
        )


@dataclass(frozen=True)
class IFrameVariant:
    """#EXT-X-I-FRAME-STREAM-INF: a rung's I-frame playlist (trick play, thumbnails)."""

    uri: str
    bandwidth_bps: int  # the peak of first-picture bytes over segment durations
    width: int
    height: int
    codecs: str  # the video's only

    def render(self) -> str:
        return (
            f"#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={self.bandwidth_bps},"
            f'RESOLUTION={self.width}x{self.height},CODECS="{self.codecs}",URI="{self.uri}"'
        )


@dataclass(frozen=True)
class MasterPlaylist:
    """The multivariant playlist; the first variant is where players start."""

    variants: tuple[Variant, ...]
    version: int
    iframe_variants: tuple[IFrameVariant, ...] = ()
    audio: tuple[AudioRendition, ...] = ()
    subtitles: tuple[SubtitleRendition, ...] = ()

    def render(self) -> str:
        version = max(self.version, 4) if self.iframe_variants else self.version
        lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}", "#EXT-X-INDEPENDENT-SEGMENTS"]
        lines += [a.render() for a in self.audio]
        lines += [s.render() for s in self.subtitles]
        lines += [v.render() for v in self.variants]
        lines += [v.render() for v in self.iframe_variants]
        return "\n".join(lines) + "\n"
