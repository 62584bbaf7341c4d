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
from streamd.model.audio import AudioLanguage
from streamd.model.formats import SUBTITLES, Packaging
from streamd.model.language import match
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
    audio, audio_peak, audio_average = _audio(stream, packaging, base_uri, lang)
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


def _audio(
    stream: Stream, packaging: Packaging, base_uri: str, lang: str | None
) -> tuple[list[AudioRendition], int, int]:
    """The audio group, and the highest rates in it: where the audio is apart, the main
    and every alternate in a playlist of its own; else (TS) the main in the variants (no
    URI, 4.3.4.1) and the alternates beside them, when there are any."""
    main = stream.audio_languages.get(layout.AUDIO)
    named = [a for a in stream.alternates if a.init]  # made for a segment at least
    if layout.AUDIO not in stream.audio_codecs or not (packaging.audio_apart or named):
        return [], 0, 0
    languages = [main or AudioLanguage(layout.AUDIO, "", "Audio"), *named]
    default = match(lang, [a.lang for a in languages]) if lang else None
    default = default or languages[0].lang
    audio, audio_peak, audio_average = [], 0, 0
    for track in languages:
        in_variant = track.main and not packaging.audio_apart
        if not in_variant:
            peak, average = stream.rates(track.rendition, packaging.name)
            audio_peak, audio_average = max(audio_peak, peak), max(audio_average, average)
        audio.append(
            AudioRendition(
                None if in_variant else f"{base_uri}{track.rendition}/index.m3u8",
                AUDIO_GROUP,
                track.name,
                2,
                None if track.lang in ("", "und") else track.lang,
                track.lang == default,
            )
        )
    return audio, audio_peak, audio_average


def absolute_master(stream: Stream, packaging: Packaging, lang: str | None = None) -> str:
    """The master as served at /viewstream/metadata/ID, whose URL is not beside the media,
    with the viewer's language as the default."""
    base = layout.url_for(layout.master_key(stream.video_id, packaging.name)).rsplit("/", 1)[0]
    return master_playlist(stream, packaging, base + "/", lang).render()
