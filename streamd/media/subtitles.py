"""Text subtitles carried in an upload (SubRip, ASS/SSA, WebVTT, mov_text), read as cues.

Each subtitle stream's packets are decoded as they are demuxed with the video, their times
put on the stream's timeline as the video's are, and their text freed of ASS styling. The
stream's language tag (ISO 639-2 in Matroska and MP4) becomes the shortest BCP 47 tag, as
HLS's LANGUAGE wants (RFC 5646: `eng` is `en`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from av.sidedata.sidedata import SideDataContainer, Type

TEXT_CODECS = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"})
# ISO 639-2 (B and T) to 639-1, for the languages most streams carry.
_SHORT = {
    "ara": "ar", "chi": "zh", "zho": "zh", "cze": "cs", "ces": "cs", "dan": "da", "dut": "nl",
    "nld": "nl", "eng": "en", "fin": "fi", "fre": "fr", "fra": "fr", "ger": "de", "deu": "de",
    "gre": "el", "ell": "el", "heb": "he", "hin": "hi", "hun": "hu", "ind": "id", "ita": "it",
    "jpn": "ja", "kor": "ko", "nor": "no", "pol": "pl", "por": "pt", "rum": "ro", "ron": "ro",
    "rus": "ru", "spa": "es", "swe": "sv", "tha": "th", "tur": "tr", "ukr": "uk", "vie": "vi",
}  # fmt: skip
_LONG = {short: long for long, short in _SHORT.items()}  # the later, ISO 639-2/T, wins
_TAG = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$")
_ASS_TAG = re.compile(r"\{[^}]*\}")
Cue = tuple[str, float, float, str]  # (language, start_s, end_s, text) on the stream's timeline
A53_CC = Type.A53_CC
CC_HZ = 90_000
ERASE_DISPLAYED = bytes([0xFC, 0x94, 0x2C])  # CC1's EDM, with odd parity


def language(stream: av.stream.Stream) -> str:
    """A stream's language tag as BCP 47 (`und` for none, or anything not shaped like one:
    it goes into paths and playlist attributes, and the upload is untrusted)."""
    tag = (stream.metadata.get("language") or "und").strip().lower()
    tag = _SHORT.get(tag, tag)
    return tag if _TAG.match(tag) else "und"


def long_language(lang: str) -> str:
    """A BCP 47 tag as MP4 and Matroska keep it (ISO 639-2: en is eng)."""
    primary = lang.split("-")[0].lower()
    return _LONG.get(primary, primary if len(primary) == 3 else "und")


def plain(dialogue: str) -> str:
    """ASS dialogue text as a cue's: override tags dropped, its line breaks kept."""
    text = _ASS_TAG.sub("", dialogue).replace("\\N", "\n").replace("\\n", "\n")
    return text.replace("\\h", " ").strip()


def text_streams(container: av.container.InputContainer) -> list[Any]:
    return [s for s in container.streams.subtitles if s.codec_context.name in TEXT_CODECS]


class SubtitleReader:
    """Collects the cues of an upload's text subtitle streams, as their packets come."""

    def __init__(
        self, to_stream_s: Callable[[Fraction], float], keep: Callable[[Fraction], bool]
    ) -> None:
        self.to_stream_s, self.keep = to_stream_s, keep
        self.cues: list[Cue] = []

    def packet(self, packet: av.Packet[Any]) -> None:
        if packet.pts is None or packet.time_base is None:
            return
        start = packet.pts * packet.time_base
        if not self.keep(start):
            return  # another piece's
        end = start + (packet.duration or 0) * packet.time_base
        try:
            subtitles = packet.decode()
        except av.FFmpegError:
            return  # a broken cue is dropped, not the upload
        lang = language(packet.stream)
        for sub in subtitles:
            dialogue = getattr(sub, "dialogue", b"") or getattr(sub, "text", b"")
            text = plain(dialogue.decode("utf-8", "replace"))
            if text and end > start:
                self.cues.append((lang, self.to_stream_s(start), self.to_stream_s(end), text))


class ClosedCaptions:
    """CEA-608 captions carried in the video (ATSC A/53 cc_data in H.264 SEI, what OBS's
    caption plugins and broadcast encoders send), decoded by FFmpeg's `cc_dec` as the
    frames come: service CC1, as cues in `lang`. The video keeps them too: the decoded
    frames' side data goes through the scaler to x264, which writes it again."""

    def __init__(self, to_stream_s: Callable[[Fraction], float], lang: str = "en") -> None:
        self.to_stream_s, self.lang = to_stream_s, lang
        self.decoder: Any = None
        self.last_s = 0.0
        self.cues: list[Cue] = []

    def frame(self, frame: av.VideoFrame) -> None:
        if frame.pts is None or frame.time_base is None:
            return
        # Not `frame.side_data`: PyAV keeps that container on the frame and the container
        # holds the frame, a cycle that left every decoded picture to the cyclic GC (a
        # 1080p upload's worker grew ~40 MB a second, to 1.4 GB).
        side: Any = SideDataContainer(frame)  # type: ignore[call-arg]  # a Mapping by Type
        if A53_CC in side:
            data = side[A53_CC]
            self.last_s = max(0.0, self.to_stream_s(frame.pts * frame.time_base))
            self._decode(bytes(data), self.last_s)

    def finish(self) -> None:
        """The caption still on screen at the end: erased there (EDM), so it is a cue."""
        if self.decoder is not None:
            self._decode(ERASE_DISPLAYED, self.last_s + 0.001)

    def _decode(self, cc_data: bytes, at_s: float) -> None:
        if self.decoder is None:
            self.decoder = av.CodecContext.create("cc_dec", "r")
            self.decoder.options = {"pkt_timebase": f"1/{CC_HZ}"}
        packet = av.Packet(cc_data)
        packet.pts = packet.dts = round(at_s * CC_HZ)
        try:
            shown = self.decoder.decode2(packet)
        except av.FFmpegError:
            return  # broken captions are dropped, not the video
        if shown is None or shown.pts is None or shown.pts < 0:
            return
        start_s = shown.pts / 1_000_000  # AV_TIME_BASE
        end_s = start_s + shown.end_display_time / 1000
        for rect in shown.rects:
            dialogue = getattr(rect, "dialogue", b"") or b""
            text = plain(dialogue.decode("utf-8", "replace"))
            if text and end_s > start_s:
                self.cues.append((self.lang, round(start_s, 3), round(end_s, 3), text))
