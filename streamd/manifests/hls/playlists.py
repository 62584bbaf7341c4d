"""A stream's HLS playlists, held encoded and kept up to date as segments are published.

Media playlists are EVENT playlists, which only ever gain lines at the end (RFC 8216
6.2.1), so a published segment appends its few lines to each of them: the cost of a publish
does not grow with the stream. A playlist is rendered whole only when it starts, when its
header changes (a segment longer than EXT-X-TARGETDURATION allowed), and once at start-up.
Masters are a few lines per rung; they are rendered again and replaced only when different.
With a DVR window (retention), live playlists slide instead: not EVENT, and when their
oldest segments leave, the body (as long as the window, not the stream) is written again.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass, field, replace

from streamd.manifests.dash import DashManifest
from streamd.manifests.hls.lowlatency import (
    LivePlaylistTail,
    LiveState,
    LiveView,
    Part,
    rendition_report,
    server_control,
)
from streamd.manifests.hls.master import master_playlist
from streamd.manifests.hls.tags import (
    ENDLIST,
    MediaPlaylist,
    MediaSegment,
    round_half_up,
)
from streamd.model import layout
from streamd.model.formats import FMP4, PACKAGINGS, SUBTITLES, Packaging
from streamd.model.jobs import PublishedPart
from streamd.model.protection import Protection, published_key
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


class _MediaPlaylist:
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
        if not self.header:
            return
        if self.tail is not None:  # whole segments only, and no blocking (6.2.5.2)
            tail, self.tail = self.tail, None
            for msn, entry in tail.segments():
                self._append_segment(msn, entry, change)
        self.vod = vod
        self._set_header(MediaSegment("", 0.0, map_uri=self.current_map), change)
        self._append(ENDLIST.encode(), change)


class StreamPlaylists:
    """Every playlist of one stream by store key, as served (and as written to the store)."""

    def __init__(
        self,
        video_id: str,
        target_duration_s: float,
        dash_webm: bool = False,
        sliding: bool = False,
    ) -> None:
        self.video_id = video_id
        self.sliding = sliding  # a live window (retention): media playlists lose old segments
        self.ended = False
        self.target_s = math.ceil(target_duration_s)
        self.segment_s = target_duration_s
        self.dash = DashManifest(video_id)
        self.dash.webm = dash_webm
        self.dash.sliding = sliding
        self.protection: Protection | None = None
        self.key_count = 0
        self._media: dict[str, _MediaPlaylist] = {}
        self._masters: dict[str, PlaylistText] = {}
        self.live = LiveState()

    def key(self, index: int) -> bytes | None:
        """The AES-128 key of key period `index`, if the playlists name it."""
        return published_key(self.video_id, self.protection, self.key_count, index)

    def change(self, replaced: dict[str, bytes] | None = None) -> PlaylistChange:
        """A change to these playlists, with what an edge needs to serve their keys."""
        return PlaylistChange(
            self.video_id,
            self.ended,
            replaced=dict(replaced or {}),
            protection=self.protection,
            key_count=self.key_count,
        )

    def snapshot(self) -> PlaylistChange:
        """Everything, as one change (what a newly connected edge is sent)."""
        change = self.change(replaced=self.files())
        change.live, change.parts = dict(self.live.views), dict(self.live.parts)
        return change

    def get(self, key: str, delta: bool = False) -> bytes | None:
        """A playlist as served: with parts, its body and tail (`delta`: 4.4.5.2's update)."""
        media = self._media.get(key)
        if media is not None:
            return self.live.serve(key, media.text.body(), delta) if media.header else None
        master = self._masters.get(key)
        return master.body() if master is not None else None

    def files(self) -> dict[str, bytes]:
        """Every playlist's whole body (what a newly connected edge is sent)."""
        out = {k: m.text.body() for k, m in self._media.items() if m.header}
        out.update((k, m.body()) for k, m in self._masters.items())
        return out

    def add(self, stream: Stream, seg: Segment, refresh: bool = True) -> PlaylistChange:
        """Append a published segment to every media playlist and the MPD; refresh the
        masters (`refresh`: unless more segments follow at once)."""
        self.protection = stream.protection
        if stream.protection is not None:
            self.key_count = max(self.key_count, stream.protection.key_index(seg.sequence) + 1)
        change = self.change()
        for packaging in PACKAGINGS.values():
            for media in self._renditions(stream, packaging):
                media.add(stream, seg, change)
            for rung in stream.rungs:
                out = seg.rung(rung.name)
                iframes = self._iframes_for(
                    packaging, rung.name, out is not None and packaging.name in out.iframes
                )
                if iframes is not None:
                    iframes.add(stream, seg, change)
        for lang in stream.captions:
            self._media_for(SUBTITLES, lang).add(stream, seg, change)
        self.dash.add(seg)
        if refresh:
            self._refresh_masters(stream, change)
            self._refresh_live(change)
        return change

    def add_part(self, stream: Stream, part: PublishedPart, pdt_s: float | None) -> PlaylistChange:
        """An LL-HLS part in every fMP4 media playlist it was made for."""
        change = self.change()
        for out in part.rungs:
            media = self._media_for(FMP4, out.name)
            head = MediaSegment(
                uri="",
                duration_s=0.0,
                program_date_time_s=pdt_s,
                map_uri=out.init or None,
                discontinuity=stream.discontinuity_due,
            )
            if out.name == layout.AUDIO:  # every audio frame is a sync sample
                media.add_part(replace(part, independent=True), out.init, head, change)
            else:
                media.add_part(part, out.init, head, change)
            key = layout.part_key(self.video_id, out.name, part.sequence, part.index)
            change.parts[key] = (part.sequence, out.data)
        if part.index == 0 and self.dash.begin(
            part.sequence, part.segment_start_s, part.target_s, stream.discontinuity_due
        ):
            # The MPD announces the segment, when its first part came (its media's wall time).
            self._refresh_masters(stream, change, pdt_s and pdt_s + part.duration_s)
        self._refresh_live(change)
        return change

    def add_track(self, stream: Stream, lang: str) -> PlaylistChange:
        """A new subtitle language: its playlist over every segment so far (their WebVTT
        files are written), and the masters that name it."""
        change = self.change()
        media = self._media_for(SUBTITLES, lang)
        for seg in stream.segments:
            media.add(stream, seg, change)
        if self.ended:
            media.end(change, stream.vod)
        self._refresh_masters(stream, change)
        return change

    def trim(self, stream: Stream) -> PlaylistChange:
        """The stream's oldest segments left its record (retention): they leave every media
        playlist and the MPD too."""
        change = self.change()
        for media in self._media.values():
            media.trim(stream.first_sequence, stream.discontinuity_sequence, change)
        if stream.segments:
            self.dash.trim(stream.first_sequence, stream.segments[0].start_s)
        self._refresh_masters(stream, change)
        if not self.ended:
            self._refresh_live(change)  # delta updates skip what the body holds now
        return change

    def _renditions(self, stream: Stream, packaging: Packaging) -> list[_MediaPlaylist]:
        """The media playlists of a packaging: a rung's each, and the audio's if apart."""
        names = [r.name for r in stream.rungs]
        if packaging.audio_apart:
            names += stream.audio_codecs
        return [self._media_for(packaging, name) for name in names]

    def _media_for(self, packaging: Packaging, rung: str) -> _MediaPlaylist:
        key = layout.media_playlist_key(self.video_id, packaging.name, rung)
        media = self._media.get(key)
        if media is None:
            media = self._media[key] = _MediaPlaylist(
                key, packaging, rung, self.target_s, sliding=self.sliding
            )
        return media

    def _iframes_for(self, packaging: Packaging, rung: str, start: bool) -> _MediaPlaylist | None:
        """A rung's I-frame playlist, from its first segment whose first picture is known
        (TS, unencrypted: the worker finds its bytes)."""
        key = layout.iframe_playlist_key(self.video_id, packaging.name, rung)
        media = self._media.get(key)
        if media is None and start:
            media = self._media[key] = _MediaPlaylist(
                key, packaging, rung, self.target_s, iframes=True, sliding=self.sliding
            )
        return media

    def _refresh_live(self, change: PlaylistChange) -> None:
        """Every tail rendered again, with its siblings' rendition reports (4.4.5.4)."""
        live = [m for m in self._media.values() if m.tail is not None]
        positions = {m.key: m.tail.position() for m in live if m.tail is not None}
        for media in live:
            reports = "".join(
                rendition_report(f"../{other.rung}/index.m3u8", positions[other.key])
                for other in live
                if other is not media and other.packaging is media.packaging
            )
            change.live[media.key] = media.view(reports)
        self.live.apply(change.live, change.parts)

    def end(self, stream: Stream) -> PlaylistChange:
        """EXT-X-ENDLIST at the end of every media playlist; the MPD becomes static."""
        self.ended = True
        change = self.change()
        for media in self._media.values():
            media.end(change, stream.vod)
        self._refresh_masters(stream, change)
        self.live.end()
        return change

    @classmethod
    def of(
        cls,
        stream: Stream,
        target_duration_s: float,
        dash_webm: bool = False,
        sliding: bool = False,
    ) -> StreamPlaylists:
        """Built from a stream's whole record (at start-up: the one walk over its history)."""
        playlists = cls(stream.video_id, target_duration_s, dash_webm, sliding)
        for seg in stream.segments:
            playlists.add(stream, seg, refresh=False)
        playlists._refresh_masters(stream, playlists.change())
        if stream.ended:
            playlists.end(stream)
        return playlists

    def _refresh_masters(
        self, stream: Stream, change: PlaylistChange, now_s: float | None = None
    ) -> None:
        """The masters, and the MPD (published at `now_s`, else at the last publish)."""
        bodies = {
            layout.master_key(self.video_id, packaging.name): master_playlist(stream, packaging)
            .render()
            .encode()
            for packaging in PACKAGINGS.values()
        }
        mpd = self.dash.render(stream, now_s or stream.updated_wall_s, self.segment_s)
        bodies[layout.mpd_key(self.video_id)] = mpd.encode()
        for key, body in bodies.items():
            current = self._masters.get(key)
            if current is None or current.body() != body:
                self._masters[key] = PlaylistText(body)
                change.replaced[key] = body
