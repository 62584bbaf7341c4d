"""FLV audio/video tag headers, legacy (FLV spec 10.1, E.4.2-E.4.3) and Enhanced RTMP
(veovera enhanced-rtmp v1/v2: IsExHeader, FourCC), read enough to know the codec, whether a
tag is a keyframe or a sequence header, and its composition time; and the FLV file framing
an RTMP stream is re-wrapped into for a demuxer. Headers never raise: a body too short or
of an unknown kind is reported as `codec="unknown"`, and the tag is still passed on.
"""

from __future__ import annotations

from dataclasses import dataclass

TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT = 8, 9, 18

# Legacy CodecID (E.4.3.1); 12 is the HEVC id Chinese CDNs (and SRS, nginx forks) adopted.
_VIDEO_CODECS = {2: "h263", 3: "screen", 4: "vp6", 5: "vp6a", 6: "screen2", 7: "avc1", 12: "hvc1"}
_SOUND_FORMATS = {0: "pcm", 1: "adpcm", 2: "mp3", 3: "pcm_le", 4: "nellymoser_16k",
                  5: "nellymoser_8k", 6: "nellymoser", 7: "g711a", 8: "g711u", 10: "aac",
                  11: "speex", 14: "mp3_8k", 15: "device"}  # fmt: skip
_AUDIO_FOURCCS = {"mp4a": "aac", ".mp3": "mp3", "Opus": "opus", "fLaC": "flac",
                  "ac-3": "ac3", "ec-3": "eac3"}  # fmt: skip
_VIDEO_PACKETS = ("sequence_start", "coded_frames", "sequence_end", "coded_frames",
                  "metadata", "mpeg2ts_sequence_start", "multitrack", "modex")  # fmt: skip
_AUDIO_PACKETS = {0: "sequence_start", 1: "coded_frames", 2: "sequence_end",
                  4: "multichannel_config", 5: "multitrack", 7: "modex"}  # fmt: skip
KEY_FRAME = 1
_MODEX, _MULTITRACK = 7, 6


@dataclass(frozen=True)
class VideoInfo:
    """What a video tag's header says. `codec` is a FourCC (`avc1`, `hvc1`, `av01`, `vp09`)
    or a legacy name; `packet` is sequence_start, coded_frames, sequence_end, metadata..."""

    codec: str
    frame_type: int  # 1 key, 2 inter, 3 disposable, 4 generated key, 5 command
    packet: str
    composition_time_ms: int = 0
    enhanced: bool = False
    data_offset: int = 0  # where the codec's own bytes start in the tag body

    @property
    def is_keyframe(self) -> bool:
        return self.frame_type == KEY_FRAME and self.packet == "coded_frames"

    @property
    def is_sequence_header(self) -> bool:
        return self.packet == "sequence_start"


@dataclass(frozen=True)
class AudioInfo:
    """What an audio tag's header says (`codec` is aac, mp3, opus, ...)."""

    codec: str
    packet: str = "coded_frames"
    enhanced: bool = False
    data_offset: int = 0

    @property
    def is_sequence_header(self) -> bool:
        return self.packet == "sequence_start"


def _si24(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)


def _unknown_video(frame_type: int = 0, enhanced: bool = False) -> VideoInfo:
    return VideoInfo("unknown", frame_type, "unknown", enhanced=enhanced)


def parse_video(body: bytes) -> VideoInfo:
    """The header of a video tag body (the payload of an RTMP video message)."""
    if not body:
        return _unknown_video()
    first = body[0]
    if not first & 0x80:
        frame_type, codec_id = first >> 4, first & 0x0F
        codec = _VIDEO_CODECS.get(codec_id, "unknown")
        if codec not in ("avc1", "hvc1"):
            return VideoInfo(codec, frame_type, "coded_frames", data_offset=1)
        if len(body) < 5:
            return _unknown_video(frame_type)
        packet = _VIDEO_PACKETS[body[1]] if body[1] <= 2 else "unknown"
        return VideoInfo(codec, frame_type, packet, _si24(body[2:5]), data_offset=5)
    frame_type, packet_type, pos = (first >> 4) & 0x07, first & 0x0F, 1
    while packet_type == _MODEX:  # v2 ModEx: size, data, then type and the next packet type
        if pos >= len(body):
            return _unknown_video(frame_type, True)
        size, pos = body[pos] + 1, pos + 1
        if size == 256:
            size, pos = int.from_bytes(body[pos : pos + 2], "big") + 1, pos + 2
        pos += size
        if pos >= len(body):
            return _unknown_video(frame_type, True)
        packet_type, pos = body[pos] & 0x0F, pos + 1
    if packet_type == _MULTITRACK:  # v2: track type and packet type, then (one) FourCC
        if pos >= len(body):
            return _unknown_video(frame_type, True)
        packet_type, pos = body[pos] & 0x0F, pos + 1
    if packet_type >= len(_VIDEO_PACKETS) or pos + 4 > len(body):
        return _unknown_video(frame_type, True)
    codec = body[pos : pos + 4].decode("latin-1")
    pos += 4
    packet = _VIDEO_PACKETS[packet_type]
    if packet_type == 4:  # Metadata carries no frame type (its bits are not one)
        frame_type = 0
    composition_ms = 0
    if packet_type == 1 and codec in ("avc1", "hvc1"):  # CodedFramesX (3) means 0
        if pos + 3 > len(body):
            return _unknown_video(frame_type, True)
        composition_ms, pos = _si24(body[pos : pos + 3]), pos + 3
    return VideoInfo(codec, frame_type, packet, composition_ms, True, pos)


def parse_audio(body: bytes) -> AudioInfo:
    """The header of an audio tag body (the payload of an RTMP audio message)."""
    if not body:
        return AudioInfo("unknown", "unknown")
    sound_format = body[0] >> 4
    if sound_format == 9:  # Enhanced RTMP v2 ExAudioTagHeader
        packet_type = body[0] & 0x0F
        if len(body) < 5 or packet_type in (5, 7):  # multitrack/modex: not needed yet
            return AudioInfo("unknown", _AUDIO_PACKETS.get(packet_type, "unknown"), True)
        fourcc = body[1:5].decode("latin-1")
        codec = _AUDIO_FOURCCS.get(fourcc, fourcc)
        return AudioInfo(codec, _AUDIO_PACKETS.get(packet_type, "unknown"), True, 5)
    codec = _SOUND_FORMATS.get(sound_format, "unknown")
    if codec != "aac":
        return AudioInfo(codec, data_offset=1)
    if len(body) < 2:
        return AudioInfo("aac", "unknown")
    packet = ("sequence_start", "coded_frames")[body[1]] if body[1] <= 1 else "unknown"
    return AudioInfo("aac", packet, data_offset=2)


def file_header(*, has_audio: bool, has_video: bool) -> bytes:
    """An FLV file header and the first PreviousTagSize (0)."""
    flags = (4 if has_audio else 0) | (1 if has_video else 0)
    return b"FLV\x01" + bytes([flags]) + (9).to_bytes(4, "big") + bytes(4)


def tag(tag_type: int, timestamp_ms: int, body: bytes) -> bytes:
    """One FLV tag (header, body, PreviousTagSize): what a demuxer reading the pipe gets."""
    ts = timestamp_ms & 0xFFFFFFFF  # lower 24 bits, then the upper 8 (TimestampExtended)
    header = (
        bytes([tag_type])
        + len(body).to_bytes(3, "big")
        + (ts & 0xFFFFFF).to_bytes(3, "big")
        + bytes([ts >> 24])
        + bytes(3)
    )
    return header + body + (len(header) + len(body)).to_bytes(4, "big")
