"""Packet helpers for the segmenter: timestamps in seconds, shifting, decode timestamps
where a demuxer gave none, and the Annex B conversion MPEG-TS needs."""

from __future__ import annotations

import math
from fractions import Fraction

from av.bitstream import BitStreamFilterContext
from av.packet import Packet
from av.stream import Stream


def time_s(packet: Packet[Stream]) -> Fraction:
    """Presentation time in seconds (0 when the packet has none)."""
    return (packet.pts or 0) * packet.time_base


def decode_time_s(packet: Packet[Stream]) -> Fraction:
    """Decode time in seconds (the presentation time when there is no dts)."""
    ts = packet.dts if packet.dts is not None else packet.pts
    return (ts or 0) * packet.time_base


def shift(packet: Packet[Stream], offset_s: Fraction) -> None:
    """Move a packet later by `offset_s`, in whole ticks of its time base."""
    if not offset_s:
        return
    ticks = math.ceil(offset_s / packet.time_base)
    if packet.pts is not None:
        packet.pts += ticks
    if packet.dts is not None:
        packet.dts += ticks


def to_annexb(
    packets: list[Packet[Stream]], annexb: BitStreamFilterContext
) -> list[Packet[Stream]]:
    """Length-prefixed H.264/HEVC packets through an `*_mp4toannexb` filter, for MPEG-TS."""
    out: list[Packet[Stream]] = []
    for packet in packets:
        # The filter takes the packet over (leaving it blank) and hands back packets with
        # no time base: carry the one they are expressed in.
        time_base = packet.time_base
        for converted in annexb.filter(packet):
            converted.time_base = time_base
            out.append(converted)
    out.extend(annexb.filter(None))
    return out


def fill_missing_dts(video: list[Packet[Stream]]) -> None:
    """Give packets a decode timestamp when the demuxer had none (Matroska with B-frames).

    MPEG-TS needs one. With a reorder depth of k frames, the i-th dts is the (i-k)-th
    smallest pts, as FFmpeg guesses it; the first k sit one tick apart just before.
    """
    if all(p.dts is not None for p in video):
        return
    pts = [p.pts for p in video if p.pts is not None]
    if len(pts) != len(video):
        return
    ordered = sorted(pts)
    rank = {value: i for i, value in enumerate(ordered)}
    depth = max((i - rank[value] for i, value in enumerate(pts)), default=0)
    for i, packet in enumerate(video):
        packet.dts = ordered[i - depth] if i >= depth else ordered[0] - (depth - i)
