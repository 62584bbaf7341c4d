"""A stream's HLS playlists: every rendition's media playlist (streamd.manifests.hls.media),
the masters and the MPD, by store key, as served and as written to the store. Masters are a
few lines per rung; they are rendered again and replaced only when different.
"""

from __future__ import annotations

import math
from dataclasses import replace

from streamd.manifests.dash import DashManifest
from streamd.manifests.hls.lowlatency import LiveState, rendition_report
from streamd.manifests.hls.master import master_playlist
from streamd.manifests.hls.media import PlaylistChange, PlaylistText, RenditionPlaylist
from streamd.manifests.hls.tags import MediaSegment
from streamd.model import layout
from streamd.model.formats import FMP4, PACKAGINGS, SUBTITLES, Packaging
from streamd.model.jobs import PublishedPart
from streamd.model.protection import Protection, published_key
from streamd.model.stream import Segment, Stream


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
        self._media: dict[str, RenditionPlaylist] = {}
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
        for alternate in stream.alternates:
            self._catch_up(stream, alternate.rendition, change)
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
            if media.alternate and not self._takes_parts(stream, media, part):
                continue  # an alternate still without the segments before: whole ones only
            head = MediaSegment(
                uri="",
                duration_s=0.0,
                program_date_time_s=pdt_s,
                map_uri=out.init or None,
                discontinuity=stream.discontinuity_due,
            )
            if out.name == layout.AUDIO or media.alternate:  # every audio frame is a sync sample
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

    @staticmethod
    def _takes_parts(stream: Stream, media: RenditionPlaylist, part: PublishedPart) -> bool:
        """Whether an alternate's playlist has every segment before this part's (its
        audio comes with a live session's segments, the silence before them later), and
        the part's segment from its start."""
        caught_up = max(media.next_sequence or 0, stream.first_sequence) == part.sequence
        return caught_up and (part.index == 0 or media.tail is not None)

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

    def add_audio(self, stream: Stream, rendition: str) -> PlaylistChange:
        """An alternate audio rendition was made for more segments: its playlists take
        them, and the masters name it."""
        change = self.change()
        self._catch_up(stream, rendition, change)
        self._refresh_masters(stream, change)
        return change

    def _catch_up(self, stream: Stream, rendition: str, change: PlaylistChange) -> None:
        """An alternate's playlists take the segments after their last that it was made
        for, in order (its audio comes after the video: a playlist stops at the first
        segment still without it). Closed once the stream ended and it has them all."""
        for packaging in PACKAGINGS.values():
            media = self._media_for(packaging, rendition)
            sequence = max(media.next_sequence or 0, stream.first_sequence)
            made = stream.audio_from(rendition)
            while sequence < made and (seg := stream.segment(sequence)) is not None:
                media.add(stream, seg, change)  # EXT-X-GAP where it has none (too short)
                sequence += 1
            if self.ended and not media.ended and sequence == stream.next_sequence:
                media.end(change, stream.vod)

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

    def _renditions(self, stream: Stream, packaging: Packaging) -> list[RenditionPlaylist]:
        """The media playlists of a packaging a segment is published in: a rung's each,
        and the main audio's if apart (alternates follow, `add_audio`)."""
        names = [r.name for r in stream.rungs]
        if packaging.audio_apart:
            names += [name for name in stream.audio_codecs if name == layout.AUDIO]
        return [self._media_for(packaging, name) for name in names]

    def _media_for(self, packaging: Packaging, rung: str) -> RenditionPlaylist:
        key = layout.media_playlist_key(self.video_id, packaging.name, rung)
        media = self._media.get(key)
        if media is None:
            media = self._media[key] = RenditionPlaylist(
                key, packaging, rung, self.target_s, sliding=self.sliding
            )
        return media

    def _iframes_for(
        self, packaging: Packaging, rung: str, start: bool
    ) -> RenditionPlaylist | None:
        """A rung's I-frame playlist, from its first segment whose first picture is known
        (TS, unencrypted: the worker finds its bytes)."""
        key = layout.iframe_playlist_key(self.video_id, packaging.name, rung)
        media = self._media.get(key)
        if media is None and start:
            media = self._media[key] = RenditionPlaylist(
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
            if media.next_sequence in (None, stream.next_sequence) or not media.alternate:
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
