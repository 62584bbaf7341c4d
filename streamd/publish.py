"""Playlists for a stream, rendered from its record: media playlists per rung, a master per
packaging. Pure functions; the scheduler writes what they return."""

from __future__ import annotations

import math

from streamd import layout
from streamd.playlist import MasterPlaylist, MediaPlaylist, MediaSegment, Variant
from streamd.streams import Stream


def media_playlist(stream: Stream, packaging: str, rung: str, target_s: float) -> MediaPlaylist:
    segments = []
    for seg in stream.segments:
        out = seg.rung(rung)
        pdt = None if stream.start_wall_s is None else stream.start_wall_s + seg.start_s
        segments.append(
            MediaSegment(
                uri=layout.segment_name(seg.sequence, packaging),
                duration_s=seg.duration_s,
                program_date_time_s=pdt,
                map_uri=out.init if packaging == "fmp4" else None,
            )
        )
    return MediaPlaylist(tuple(segments), math.ceil(target_s), ended=stream.ended)


def master_playlist(stream: Stream, packaging: str, base_uri: str = "") -> MasterPlaylist:
    """Variants relative to the master's own folder, or under `base_uri` when given."""
    last = stream.segments[-1]
    variants = []
    for rung in stream.rungs:
        peak, average = stream.bandwidth(rung.name, packaging)
        variants.append(
            Variant(
                uri=f"{base_uri}{rung.name}/index.m3u8",
                bandwidth_bps=peak,
                average_bandwidth_bps=average,
                width=rung.width,
                height=rung.height,
                frame_rate=stream.frame_rate,
                codecs=last.rung(rung.name).codecs,
            )
        )
    # Players start with the first variant: a middle rung starts fast and looks decent.
    start = (len(variants) - 1) // 2
    ordered = [variants[start], *variants[:start], *variants[start + 1 :]]
    return MasterPlaylist(tuple(ordered), version=6 if packaging == "fmp4" else 3)


def absolute_master(stream: Stream, packaging: str) -> str:
    """The master as served at /viewstream/metadata/ID, whose URL is not beside the media."""
    base = layout.url_for(layout.master_key(stream.video_id, packaging)).rsplit("/", 1)[0]
    return master_playlist(stream, packaging, base + "/").render()


def render_all(stream: Stream, target_s: float) -> dict[str, str]:
    """Every playlist of the stream, by store key, media playlists before masters."""
    out: dict[str, str] = {}
    if not stream.segments:
        return out
    for packaging in layout.PACKAGINGS:
        for rung in stream.rungs:
            key = layout.media_playlist_key(stream.video_id, packaging, rung.name)
            out[key] = media_playlist(stream, packaging, rung.name, target_s).render()
    for packaging in layout.PACKAGINGS:
        out[layout.master_key(stream.video_id, packaging)] = master_playlist(
            stream, packaging
        ).render()
    return out
