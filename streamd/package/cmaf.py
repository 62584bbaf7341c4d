"""CMAF chunks (one `moof`+`mdat`) written directly, for LL-HLS partial segments.

A chunk holds a run of samples in decode order: video on track 1 (90 kHz) and audio on
track 2 (48 kHz), the tracks and timescales of the init segment `fmp4.package` writes. The
chunks of a segment, concatenated, are that segment's fMP4 media (ISO/IEC 23000-19 7.3.2.3:
a CMAF fragment may hold several chunks), so a segment and its parts are the same bytes.
PyAV's muxer writes one fragment per call and needs the SPS at its start, which a part
that is not the first of its segment does not have: hence these few boxes by hand.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence

from streamd.package.base import EncodedPacket

VIDEO_TRACK, AUDIO_TRACK = 1, 2
SYNC = 0x02000000  # sample_depends_on = 2 (an I-frame)
NON_SYNC = 0x01010000  # depends on others, sample_is_non_sync_sample
TFHD_BASE_IS_MOOF = 0x020000
# trun: data-offset, then per sample duration, size, flags, composition time offset.
TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def length_prefixed(access_unit: bytes) -> bytes:
    """An Annex B access unit (start codes) as MP4 stores it: each NAL unit after its 4-byte
    length (ISO/IEC 14496-15 5.3.2), parameter sets included, as FFmpeg's muxer does."""
    out = []
    starts = []
    i = access_unit.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = access_unit.find(b"\x00\x00\x01", i + 3)
    for n, start in enumerate(starts):
        if n + 1 < len(starts):  # the zeros before a 4-byte start code are not the NAL's
            nal = access_unit[start : starts[n + 1] - 3].rstrip(b"\x00")
        else:
            nal = access_unit[start:]
        out += [struct.pack(">I", len(nal)), nal]
    return b"".join(out)


def _durations(packets: Sequence[EncodedPacket], end_dts: int | None) -> list[int]:
    """Each sample lasts until the next one is decoded; the last until `end_dts` (the next
    chunk's first), or its own duration when that is not known."""
    out = [b.dts - a.dts for a, b in itertools.pairwise(packets)]
    if packets:
        last = packets[-1]
        out.append(end_dts - last.dts if end_dts is not None else last.duration)
    return [max(0, d) for d in out]


def _traf(
    track: int,
    packets: Sequence[EncodedPacket],
    sizes: list[int],
    end_dts: int | None,
    data_offset: int,
) -> bytes:
    samples = b"".join(
        struct.pack(
            ">IIIi",
            duration,
            size,
            SYNC if p.is_keyframe else NON_SYNC,
            p.pts - p.dts,
        )
        for p, duration, size in zip(packets, _durations(packets, end_dts), sizes, strict=True)
    )
    return _box(
        b"traf",
        _full_box(b"tfhd", 0, TFHD_BASE_IS_MOOF, struct.pack(">I", track)),
        _full_box(b"tfdt", 1, 0, struct.pack(">Q", packets[0].dts)),
        # version 1: signed composition offsets (a source's B-frames may need them)
        _full_box(b"trun", 1, TRUN_FLAGS, struct.pack(">Ii", len(packets), data_offset), samples),
    )


def chunk(
    sequence_number: int,
    video: Sequence[EncodedPacket],
    audio: Sequence[EncodedPacket],
    video_end_dts: int | None = None,
    audio_end_pts: int | None = None,
) -> bytes:
    """One `moof`+`mdat`: the video and audio samples given (either may be empty), each
    track's samples in decode order. `*_end_*`: where the next chunk's samples start."""
    samples = [[length_prefixed(p.data) for p in video], [p.data for p in audio]]
    tracks = [
        (track, packets, data, end)
        for track, packets, data, end in (
            (VIDEO_TRACK, video, samples[0], video_end_dts),
            (AUDIO_TRACK, audio, samples[1], audio_end_pts),
        )
        if packets
    ]
    if not tracks:
        raise ValueError("a CMAF chunk needs at least one sample")
    mfhd = _full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number))

    def moof(offsets: list[int]) -> bytes:
        return _box(
            b"moof",
            mfhd,
            *(
                _traf(track, packets, [len(d) for d in data], end, offset)
                for (track, packets, data, end), offset in zip(tracks, offsets, strict=True)
            ),
        )

    # The data offsets count from the moof's start, whose size does not depend on them.
    size = len(moof([0] * len(tracks)))
    offsets, at = [], size + 8
    for _, _, data, _ in tracks:
        offsets.append(at)
        at += sum(len(d) for d in data)
    return moof(offsets) + _box(b"mdat", *(d for _, _, data, _ in tracks for d in data))
