"""CMAF chunks (one `moof`+`mdat`) written directly, for segments and LL-HLS parts.

A chunk holds a run of one track's samples in decode order: a CMAF track file holds one
track (ISO/IEC 23000-19 7.2), track 1 of the init segment `fmp4` writes for it, video at
90 kHz or audio at 48 kHz. The chunks of a segment, concatenated, are that segment's media
(7.3.2.3: a CMAF fragment may hold several chunks), so a segment and its parts are the
same bytes, for HLS and DASH alike.
PyAV's muxer writes one fragment per call and needs the SPS at its start, which a part
that is not the first of its segment does not have: hence these few boxes by hand.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence

from streamd.package.base import EncodedPacket

TRACK = 1  # the only track of a CMAF track file
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


def chunk(
    sequence_number: int,
    packets: Sequence[EncodedPacket],
    end_dts: int | None = None,
    video: bool = True,
) -> bytes:
    """One `moof`+`mdat` of one track's samples in decode order. `end_dts`: where the next
    chunk's first sample starts (the last sample lasts until then)."""
    if not packets:
        raise ValueError("a CMAF chunk needs at least one sample")
    data = [length_prefixed(p.data) if video else p.data for p in packets]
    samples = b"".join(
        struct.pack(
            ">IIIi",
            duration,
            len(d),
            SYNC if p.is_keyframe else NON_SYNC,
            p.pts - p.dts,
        )
        for p, duration, d in zip(packets, _durations(packets, end_dts), data, strict=True)
    )

    def moof(data_offset: int) -> bytes:
        return _box(
            b"moof",
            _full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number)),
            _box(
                b"traf",
                _full_box(b"tfhd", 0, TFHD_BASE_IS_MOOF, struct.pack(">I", TRACK)),
                _full_box(b"tfdt", 1, 0, struct.pack(">Q", packets[0].dts)),
                # version 1: signed composition offsets (a source's B-frames may need them)
                _full_box(
                    b"trun", 1, TRUN_FLAGS, struct.pack(">Ii", len(packets), data_offset), samples
                ),
            ),
        )

    # The data offset counts from the moof's start, whose size does not depend on it.
    return moof(len(moof(0)) + 8) + _box(b"mdat", *data)
