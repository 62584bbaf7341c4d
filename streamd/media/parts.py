"""LL-HLS partial segments of a live session, cut from the packets the rungs put out.

Part boundaries are chosen on the input side, every `part_frames` frames from a segment's
start (so they are the same for every rung), and applied on the output side in decode
order: a part of a rung is the run of its packets whose decode position (dts plus the
rung's reorder delay, read from the segment's IDR) falls in the part's span. Decode order
keeps each part playable after the ones before it, however B-frames reorder pictures. A
part is released once every rung and the audio have gone past its end.
"""

from __future__ import annotations

from collections.abc import Callable

from streamd.media.assembly import Assembly
from streamd.model.pipeline import VIDEO_HZ, part_frames, part_target_s
from streamd.package import EncodedPacket, PartMedia


class PartCutter:
    """Where a live session's parts begin, and each one handed out when it is complete."""

    def __init__(self, part_s: float, frame_s: float, on_part: Callable[[PartMedia], None]):
        frames = part_frames(part_s, frame_s)
        self.span_90k = round(frames * frame_s * VIDEO_HZ)
        self.half_frame_90k = round(frame_s * VIDEO_HZ) // 2
        self.target_s = part_target_s(part_s, frame_s)
        self.on_part = on_part
        self.segment = 0  # index in the assembly of the segment being parted
        self.part = 0  # its next part
        self.taken: list[int] = []  # per rung: its packets of the segment already in parts
        self.taken_audio = 0
        self.taken_alternates: list[int] = []  # per alternate audio language

    def frame(self, starts: list[int], pts_90k: int) -> None:
        """A frame that does not open a segment: does it open a part? (`starts`: the
        current segment's part starts.)"""
        if pts_90k - starts[-1] >= self.span_90k - self.half_frame_90k:
            starts.append(pts_90k)

    def forget(self, segments: int) -> None:
        """The assembly dropped its first `segments` segments (all parted already)."""
        self.segment -= segments

    def release(
        self,
        a: Assembly,
        active: list[bool],
        audio_at: Callable[[int], int],
        cut_due: Callable[[int], bool],
        end_90k: int,
        final: bool,
    ) -> None:
        """Hand out every part that is complete (`final`: every part there is)."""
        while self.segment < len(a.starts_90k):
            i, j = self.segment, self.part
            starts = a.part_starts[i]
            closed = i + 1 < len(a.starts_90k)
            if j + 1 < len(starts):
                end = starts[j + 1]
            elif closed or final:
                end = a.starts_90k[i + 1] if closed else end_90k
            else:
                return  # the segment's current part is still open
            last_part = j + 1 >= len(starts)
            rungs = [r for r, on in enumerate(active) if on and r >= a.skips[i]]
            if not final and not self._ready(a, i, rungs, end, last_part, audio_at(end)):
                return
            if len(self.taken) != len(active):
                self.taken = [0] * len(active)
            video, ends = [], []
            for r in range(len(active)):
                packets = a.video[i][r] if r in rungs else []
                run = _before(packets, self.taken[r], end)
                self.taken[r] += len(run)
                video.append(tuple(run))
                following = packets[self.taken[r] :] or (
                    a.video[i + 1][r][:1] if closed and last_part else []
                )
                ends.append(following[0].dts if following else None)
            audio, self.taken_audio, audio_end = _audio_run(
                a.audio, i, self.taken_audio, audio_at(end), last_part, closed
            )
            if len(self.taken_alternates) != len(a.seen_alternates):
                self.taken_alternates = [0] * len(a.seen_alternates)
            alternates, alternate_ends = [], []
            for k, taken in enumerate(self.taken_alternates):
                column = [segment[k] for segment in a.alternates[i : i + 2]]
                run, self.taken_alternates[k], run_end = _audio_run(
                    column, 0, taken, audio_at(end), last_part, closed
                )
                alternates.append(tuple(run))
                alternate_ends.append(run_end)
            self.on_part(
                PartMedia(
                    sequence=a.first_sequence + i,
                    index=j,
                    duration_90k=end - starts[j],
                    segment_start_90k=a.starts_90k[i],
                    video=tuple(video),
                    video_end_dts=tuple(ends),
                    audio=tuple(audio),
                    audio_end_pts=audio_end,
                    target_s=self.target_s,
                    next_begins_segment=last_part or cut_due(end),
                    alternates=tuple(alternates),
                    alternate_end_pts=tuple(alternate_ends),
                )
            )
            if last_part:
                self.segment, self.part = i + 1, 0
                self.taken, self.taken_audio = [0] * len(active), 0
                self.taken_alternates = [0] * len(a.seen_alternates)
            else:
                self.part = j + 1

    def _ready(
        self, a: Assembly, i: int, rungs: list[int], end: int, last_part: bool, audio_end: int
    ) -> bool:
        if a.seen_audio < audio_end or any(seen < audio_end for seen in a.seen_alternates):
            return False
        for r in rungs:
            packets = a.video[i][r]
            if last_part and i + 1 < len(a.starts_90k) and a.video[i + 1][r]:
                continue  # the rung has begun the next segment
            if not packets or _position(packets[-1], packets[0]) < end:
                return False
        return True


def _audio_run(
    column: list[list[EncodedPacket]],
    i: int,
    taken: int,
    end_sample: int,
    last_part: bool,
    closed: bool,
) -> tuple[list[EncodedPacket], int, int | None]:
    """An audio track's run of a part of segment `i` (`column`: the track's packets by
    segment): the run, how many of the segment's packets are taken, and where the next
    packet starts.

    Audio runs ahead of video: a packet past the cut can reach the segment before the cut
    opens the next one. The segment keeps it, so its last part does too. The last audio
    sample lasts until the next one starts, not to the boundary."""
    pending = column[i][taken:]
    run = pending if last_part else [p for p in pending if p.pts < end_sample]
    taken += len(run)
    after = column[i][taken:] or (column[i + 1][:1] if closed and last_part else [])
    return run, taken, after[0].pts if after else None


def _position(p: EncodedPacket, first: EncodedPacket) -> int:
    """A packet's decode position on the presentation timeline: its dts plus the reorder
    delay of the segment's first packet (an IDR, whose presentation comes first)."""
    return p.dts + (first.pts - first.dts)


def _before(packets: list[EncodedPacket], taken: int, end_90k: int) -> list[EncodedPacket]:
    """The packets after the first `taken` whose decode position is before `end_90k`."""
    if not packets:
        return []
    first, out = packets[0], []
    for p in packets[taken:]:
        if _position(p, first) >= end_90k:
            break
        out.append(p)
    return out
