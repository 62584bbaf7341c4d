"""One rendition's media playlist (or I-frame playlist), held encoded and kept up to date
as segments and parts are published, and the change each publish makes.

Media playlists are EVENT playlists, which only ever gain lines at the end (RFC 8216
6.2.1), so a published segment appends its few lines: the cost of a publish does not grow
with the stream. A playlist is rendered whole only when it starts, when its header changes
(a segment longer than EXT-X-TARGETDURATION allowed), and once at start-up. With a DVR
window (retention), live playlists slide instead: not EVENT, and when their oldest segments
leave, the body (as long as the window, not the stream) is written again.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field, replace

from streamd.manifests.hls.lowlatency import LivePlaylistTail, LiveView, Part, server_control
from streamd.manifests.hls.tags import ENDLIST, MediaPlaylist, MediaSegment, round_half_up
from streamd.model import layout
from streamd.model.audio import ALTERNATE_PREFIX
from streamd.model.formats import SUBTITLES, Packaging
from streamd.model.jobs import PublishedPart
from streamd.model.protection import Protection
from streamd.model.stream import Segment, Stream


class PlaylistText:
    """A playlist's bytes that grow at the end: appending is O(1); the whole body is joined
    again only when someone asks for it after a change."""

    def __init__(self, body: bytes = b"") -> None:
        self._parts = [body] if body else []
        self._body: bytes | None = body

    def append(self, data: bytes) -> None:
        self._parts.append(data)
        self._body = None

    def set(self, body: bytes) -> None:
        self._parts, self._body = [body], body

    def body(self) -> bytes:
        if self._body is None:
            self._body = b"".join(self._parts)
            self._parts = [self._body]
        return self._body


@dataclass
class PlaylistChange:
    """What one publish did to a stream's playlists: bytes added at the end of some, whole
    new bodies for others (media playlists first, then masters)."""

    video_id: str
    ended: bool
    appended: dict[str, bytes] = field(default_factory=dict)
    replaced: dict[str, bytes] = field(default_factory=dict)
    removed: bool = False  # the stream was deleted: its playlists are gone
    protection: Protection | None = None  # so an edge serves the stream's keys too
    key_count: int = 0  # key periods its playlists name (keys past these are 404)
    live: dict[str, LiveView] = field(default_factory=dict)  # LL-HLS tails, by playlist
    parts: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # new parts: (msn, bytes)


class RenditionPlaylist:
    """One rung's media playlist in one packaging, or (`iframes`) its I-frame playlist: the
    same segments, each as the byte range of its first picture."""

    def __init__(
        self,
        key: str,
        packaging: Packaging,
        rung: str,
        target_s: int,
        iframes: bool = False,
        sliding: bool = False,
    ) -> None:
        self.key, self.packaging, self.rung = key, packaging, rung
        self.iframes = iframes
        self.target_s = target_s
        self.text = PlaylistText()
        self.header = ""
        self.longest = 0  # longest rounded EXTINF so far
        self.current_map: str | None = None
        self.current_key: str | None = None
        self.body_segments = 0  # in the body (the rest are in the tail)
        self.vod = False
        self.tail: LivePlaylistTail | None = None  # LL-HLS, once the first part came
        # Sliding (retention): the body's segments by media sequence number, so the oldest
        # can leave and the body be written again from the new first one.
        self.sliding = sliding
        self.media_sequence: int | None = None  # the first segment's
        self.discontinuity_sequence = 0
        self.body: deque[tuple[int, MediaSegment, bytes]] = deque()  # and its lines
        self.next_sequence: int | None = None  # the segment it takes next
        self.ended = False
        # An alternate audio rendition: made after its segments, it may lag the others.
        self.alternate = rung.startswith(ALTERNATE_PREFIX)

    def entry(self, stream: Stream, seg: Segment) -> MediaSegment:
        pdt = None if stream.start_wall_s is None else stream.start_wall_s + seg.start_s
        if self.packaging is SUBTITLES:  # a WebVTT segment for every video segment, in clear
            return MediaSegment(
                uri=layout.segment_name(seg.sequence, SUBTITLES.name),
                duration_s=seg.duration_s,
                program_date_time_s=pdt,
                gap=seg.gap,
                discontinuity=seg.discontinuity,
            )
        out = seg.rung(self.rung)
        if out is None:  # a missing upload, or a rung dropped under overload
            map_uri = self.current_map
        else:
            map_uri = out.inits.get(self.packaging.name) if self.packaging.has_init else None
        byterange = None
        if self.iframes:
            byterange = None if out is None else out.iframes.get(self.packaging.name)
            out = out if byterange is not None else None
        protection = stream.protection
        return MediaSegment(
            uri=layout.segment_name(seg.sequence, self.packaging.name),
            duration_s=seg.duration_s,
            program_date_time_s=pdt,
            map_uri=map_uri,
            gap=out is None,
            discontinuity=seg.discontinuity,
            key_uri=None
            if protection is None
            else layout.key_uri(protection.key_index(seg.sequence)),
            byterange=byterange,
        )

    @property
    def target_duration_s(self) -> int:
        return max(self.target_s, self.longest)

    def _set_header(self, entry: MediaSegment, change: PlaylistChange) -> None:
        """The header as MediaPlaylist.render would write it for every segment so far (all
        segments of a packaging carry a map, or none does); a changed header (the first
        segment, a longer one, parts) writes the playlist whole."""
        header = self._header(entry)
        if header == self.header:
            return
        old_header, self.header = self.header, header
        self.text.set(header.encode() + self.text.body()[len(old_header) :])
        change.replaced[self.key] = self.text.body()
        change.appended.pop(self.key, None)

    def _header(self, entry: MediaSegment) -> str:
        control = ""
        if self.tail is not None:
            control = server_control(self.target_duration_s, self.tail.part_target_s)
        return MediaPlaylist(
            (entry,),
            self.target_duration_s,
            media_sequence=self.media_sequence or 0,
            discontinuity_sequence=self.discontinuity_sequence,
            sliding=self.sliding,
            server_control=control,
            iframes_only=self.iframes,
            vod=self.vod,
        ).header()

    def _append(self, lines: bytes, change: PlaylistChange) -> None:
        self.text.append(lines)
        if self.key in change.replaced:
            change.replaced[self.key] = self.text.body()
        else:
            change.appended[self.key] = change.appended.get(self.key, b"") + lines

    def _append_segment(self, msn: int, entry: MediaSegment, change: PlaylistChange) -> None:
        lines = entry.render(self.current_map, self.current_key).encode()
        self.current_map = entry.map_uri or self.current_map
        self.current_key = entry.key_uri
        self.body_segments += 1
        if self.sliding:
            self.body.append((msn, entry, lines))
        self._append(lines, change)

    def add(self, stream: Stream, seg: Segment, change: PlaylistChange) -> None:
        entry, msn = self.entry(stream, seg), seg.sequence
        self.next_sequence = msn + 1
        self.longest = max(self.longest, round_half_up(entry.duration_s))
        if self.media_sequence is None:  # the first (or, restarted, where a window stood)
            self.media_sequence = msn
            self.discontinuity_sequence = stream.discontinuity_sequence
        self._set_header(entry, change)
        if self.tail is None:
            self._append_segment(msn, entry, change)
            return
        self.tail.target_s = self.target_duration_s
        self.tail.add_segment(entry, msn)
        for number, old in self.tail.leaving():
            self._append_segment(number, old, change)

    def trim(self, first_msn: int, discontinuity_sequence: int, change: PlaylistChange) -> None:
        """Sliding: the body's segments before `first_msn` leave (6.2.2), and the body is
        written again, its new first segment with the EXT-X-MAP and EXT-X-KEY it needs.
        The LL-HLS tail is never cut into (retention keeps more than it holds)."""
        if not self.sliding or not self.body or self.body[0][0] >= first_msn:
            return
        while self.body and self.body[0][0] < first_msn:
            self.body.popleft()
        self.body_segments = len(self.body)
        self.media_sequence = self.body[0][0] if self.body else first_msn
        self.discontinuity_sequence = discontinuity_sequence
        head = self.body[0][1] if self.body else MediaSegment("", 0.0, map_uri=self.current_map)
        self.header = self._header(head)
        # Only the new first segment's lines change (its map and key written out); the
        # others follow the same segments as before.
        lines = [self.header.encode(), head.render(None, None).encode() if self.body else b""]
        lines += [rendered for _, _, rendered in itertools.islice(self.body, 1, None)]
        self.text.set(b"".join(lines))
        change.replaced[self.key] = self.text.body()
        change.appended.pop(self.key, None)

    def add_part(
        self, part: PublishedPart, init: str, head: MediaSegment, change: PlaylistChange
    ) -> None:
        """A part of the segment being made (`head`: its tags, before its first part)."""
        if self.tail is None:  # the playlist becomes LL-HLS: its header says so
            self.tail = LivePlaylistTail(self.target_duration_s, part.target_s)
            self._set_header(replace(head, map_uri=init or head.map_uri), change)
        uri = layout.part_name(part.sequence, part.index)
        entry = Part(part.sequence, part.index, part.duration_s, uri, part.independent)
        self.tail.add_part(entry, replace(head, map_uri=init or None), part.next_begins_segment)

    def view(self, reports: str) -> LiveView:
        assert self.tail is not None
        hint = self.tail.hint_uri(layout.part_name)
        tail, resume = self.tail.render(self.current_map, self.current_key, hint, reports)
        return LiveView(
            tail, len(self.header.encode()), self.body_segments, resume, self.tail.position()
        )

    def end(self, change: PlaylistChange, vod: bool) -> None:
        """ENDLIST; `vod`: a recording uploaded whole, now done, is a VOD playlist."""
        if not self.header or self.ended:
            return
        self.ended = True
        if self.tail is not None:  # whole segments only, and no blocking (6.2.5.2)
            tail, self.tail = self.tail, None
            for msn, entry in tail.segments():
                self._append_segment(msn, entry, change)
        self.vod = vod
        self._set_header(MediaSegment("", 0.0, map_uri=self.current_map), change)
        self._append(ENDLIST.encode(), change)
