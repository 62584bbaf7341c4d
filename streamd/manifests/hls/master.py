"""The multivariant (master) playlist of a stream in one packaging: a variant per rung with
its measured bandwidth, the audio rendition where the packaging keeps audio apart, the
subtitles in every language, and the I-frame playlists (RFC 8216 4.3.4)."""

from __future__ import annotations

from streamd.manifests.hls.tags import (
    AudioRendition,
    IFrameVariant,
    MasterPlaylist,
    SubtitleRendition,
    Variant,
)
from streamd.model import layout
from streamd.model.formats import SUBTITLES, Packaging
from streamd.model.stream import Stream

AUDIO_GROUP = "aac"
SUBTITLES_GROUP = "subs"


def master_playlist(
    stream: Stream, packaging: Packaging, base_uri: str = "", lang: str | None = None
) -> MasterPlaylist:
    """Variants relative to the master's own folder, or under `base_uri` when given. Where
    the audio is apart, every variant names its group, and its BANDWIDTH includes the
    audio's (4.3.4.2: the rates of every rendition that may play with it). Subtitles in
    `lang` (else the first language) are the DEFAULT."""
    default = lang if lang in stream.captions else next(iter(stream.captions), None)
    subtitles = tuple(
        SubtitleRendition(
            f"{base_uri}../{SUBTITLES.name}/{track.lang}/index.m3u8",
            SUBTITLES_GROUP,
            track.name,
            track.lang,
            track.lang == default,
        )
        for track in stream.captions.values()
    )
    audio = []
    audio_peak = audio_average = 0
    if packaging.audio_apart:
        for name in stream.audio_codecs:
            peak, average = stream.rates(name, packaging.name)
            audio_peak, audio_average = max(audio_peak, peak), max(audio_average, average)
            audio.append(AudioRendition(f"{base_uri}{name}/index.m3u8", AUDIO_GROUP, "Audio", 2))
    variants = []
    for rung in stream.rungs:
        if rung.name not in stream.codecs:
            continue  # left out of every segment so far (overload): no variant yet
        peak, average = stream.rates(rung.name, packaging.name)
        variants.append(
            Variant(
                uri=f"{base_uri}{rung.name}/index.m3u8",
                bandwidth_bps=peak + audio_peak,
                average_bandwidth_bps=average + audio_average,
                width=rung.width,
                height=rung.height,
                frame_rate=stream.frame_rate,
                codecs=stream.codecs[rung.name],
                audio_group=AUDIO_GROUP if audio else None,
                subtitles_group=SUBTITLES_GROUP if subtitles else None,
            )
        )
    # Players start with the first variant: a middle rung starts fast and looks decent.
    start = (len(variants) - 1) // 2
    ordered = [variants[start], *variants[:start], *variants[start + 1 :]]
    iframes = []
    for rung in stream.rungs:
        peak, _ = stream.rates(rung.name, f"{packaging.name}-iframes")
        if peak:  # only rungs whose segments' first pictures are known (TS, unencrypted)
            iframes.append(
                IFrameVariant(
                    uri=f"{base_uri}{rung.name}/iframes.m3u8",
                    bandwidth_bps=peak,
                    width=rung.width,
                    height=rung.height,
                    codecs=stream.codecs[rung.name].split(",")[0],  # the video's only
                )
            )
    return MasterPlaylist(
        tuple(ordered),
        version=packaging.hls_version,
        iframe_variants=tuple(iframes),
        audio=tuple(audio),
        subtitles=subtitles,
    )


def absolute_master(stream: Stream, packaging: Packaging, lang: str | None = None) -> str:
    """The master as served at /viewstream/metadata/ID, whose URL is not beside the media,
    with the viewer's language as the default."""
    base = layout.url_for(layout.master_key(stream.video_id, packaging.name)).rsplit("/", 1)[0]
    return master_playlist(stream, packaging, base + "/", lang).render()
