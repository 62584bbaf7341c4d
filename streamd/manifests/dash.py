"""MPEG-DASH (ISO/IEC 23009-1): a stream's MPD, over the CMAF segments the fMP4 HLS
playlists name (one encode, two manifests).

One Period per stretch with the same renditions, init segments and an unbroken timeline (a
restarted encoder, a changed init segment or a gap starts a new one, as HLS's
EXT-X-DISCONTINUITY and EXT-X-MAP do; so does a rung left out under overload, which HLS
marks EXT-X-GAP). Each Period has an AdaptationSet for the rungs' video and one for the
audio, each with a `SegmentTemplate` over `$Number$` (the segment's sequence, as in the
files' names) and a `SegmentTimeline` in the tracks' own timescales, whose times are the
segments' presentation times (`presentationTimeOffset` removes the internal timeline's
origin). Live, the MPD is `dynamic` (`availabilityStartTime` is the wall-clock time of the
stream's second 0, as EXT-X-PROGRAM-DATE-TIME); once the stream has ended, `static`.

The timeline is kept as segments come: a run of equal durations is one `S` with `@r`, so
adding a segment changes one line, and a live stream's MPD (cut at one duration) stays a
few lines long however long it runs; with a DVR window, its head leaves as the playlists'
does (`timeShiftBufferDepth`). Live with parts, the segment being made is announced
for low-latency DASH. Unless WebM is off, VP9 and Opus adaptation sets follow the CMAF ones
over the same timeline (their segments made on demand, streamd.web.dash).
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from streamd.clock import iso
from streamd.manifests.periods import Period, Timeline, init_of, published_outputs
from streamd.model import layout
from streamd.model.audio import AudioLanguage
from streamd.model.formats import FMP4, SUBTITLES
from streamd.model.ladder import Rung
from streamd.model.pipeline import AUDIO_HZ
from streamd.model.stream import Segment, Stream

MIME = "application/dash+xml"
PROFILES = "urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019"
TIME_URL = "/api/time"  # UTCTiming: players set their clocks by the server's
MEDIA = "$RepresentationID$/seg$Number%06d$.m4s"  # layout.segment_name, templated
ROLE = '      <Role schemeIdUri="urn:mpeg:dash:role:2011" value="{}"/>\n'
MAIN, ALTERNATE = ROLE.format("main"), ROLE.format("alternate")
LATENCY_TARGET_SEGMENTS = 0.75  # low-latency: how far behind live players keep


def _duration(seconds: float) -> str:
    """An xs:duration in seconds, to the millisecond (PT2.5S, PT43200.125S)."""
    return "PT" + f"{seconds:.3f}".rstrip("0").rstrip(".") + "S"


class DashManifest:
    """A stream's MPD, kept as its segments are published."""

    def __init__(self, video_id: str) -> None:
        self.video_id = video_id
        self.periods: list[Period] = []
        # Low-latency (a live session with parts): the part duration, and the segment being
        # made, announced as soon as its first part is out.
        self.part_s = 0.0
        self.coming: tuple[int, float] | None = None  # (sequence, start_s)
        self.webm = False  # WebM (VP9, Opus) adaptation sets, made on demand
        self.sliding = False  # a live window: its oldest segments leave (timeShiftBufferDepth)

    def trim(self, first_sequence: int, start_s: float) -> None:
        """Segments before `first_sequence` (the first kept, at `start_s`) leave the
        timeline; a Period left empty goes."""
        while self.periods and self.periods[0].first_sequence + self.periods[0].count <= (
            first_sequence
        ):
            self.periods.pop(0)
        if self.periods and self.periods[0].first_sequence < first_sequence:
            self.periods[0].trim(first_sequence, start_s)

    def begin(self, sequence: int, start_s: float, part_s: float, discontinuity: bool) -> bool:
        """A live segment's first part is out: announce the segment (with the duration it
        will have) if it goes on the last period. Whether the MPD changed."""
        self.part_s = part_s
        last = self.periods[-1] if self.periods else None
        if discontinuity or last is None or sequence != last.first_sequence + last.count:
            return False
        self.coming = (sequence, start_s)
        return True

    def add(self, seg: Segment) -> None:
        if self.coming is not None and self.coming[0] <= seg.sequence:
            self.coming = None
        if seg.gap:
            return  # the next segment starts a new period
        last = self.periods[-1] if self.periods else None
        if last is None or not last.takes(seg):
            inits = {o.name: init_of(o) for o in published_outputs(seg)}
            last = Period(seg.sequence, seg.start_s, inits)
            self.periods.append(last)
        last.add(seg)

    def render(self, stream: Stream, now_s: float, segment_s: float) -> str:
        """The MPD: `dynamic` while live, `static` once ended."""
        attrs = [
            'xmlns="urn:mpeg:dash:schema:mpd:2011"',
            f'profiles="{PROFILES}"',
            f'minBufferTime="{_duration(segment_s)}"',
        ]
        longest = max((s.duration_s for s in stream.segments[-1:]), default=segment_s)
        attrs.append(f'maxSegmentDuration="{_duration(max(segment_s, longest))}"')
        if stream.ended:
            attrs.insert(1, 'type="static"')
            attrs.append(f'mediaPresentationDuration="{_duration(stream.duration_s)}"')
        else:
            attrs.insert(1, 'type="dynamic"')
            attrs += [
                f'availabilityStartTime="{iso(stream.start_wall_s or now_s)}"',
                f'publishTime="{iso(now_s)}"',
                f'minimumUpdatePeriod="{_duration(segment_s)}"',
                f'suggestedPresentationDelay="{_duration(3 * segment_s)}"',
            ]
            if self.sliding and stream.segments:
                depth_s = stream.segments[-1].end_s - stream.segments[0].start_s
                attrs.append(f'timeShiftBufferDepth="{_duration(depth_s)}"')
        out = ['<?xml version="1.0" encoding="UTF-8"?>\n', f"<MPD {' '.join(attrs)}>\n"]
        low_latency = self.part_s > 0 and not stream.ended
        if low_latency:  # DASH-IF IOP, low-latency modes: where players should keep to
            target_ms = round(1000 * LATENCY_TARGET_SEGMENTS * segment_s)
            out.append(
                '  <ServiceDescription id="0">\n'
                f'    <Latency target="{target_ms}" min="{target_ms // 2}" '
                f'max="{2 * target_ms}"/>\n'
                '    <PlaybackRate min="0.96" max="1.04"/>\n'
                "  </ServiceDescription>\n"
            )
        for i, period in enumerate(self.periods):
            chunked = low_latency and i == len(self.periods) - 1  # where the live edge is
            coming = None
            if chunked and self.coming is not None:
                coming = (self.coming[1], self.coming[1] + segment_s)
            out.append(self._period(stream, period, segment_s, chunked, coming))
        if not stream.ended:
            out.append(
                f'  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="{TIME_URL}"/>\n'
            )
        out.append("</MPD>\n")
        return "".join(out)

    def _period(
        self,
        stream: Stream,
        period: Period,
        segment_s: float,
        chunked: bool,
        coming: tuple[float, float] | None,
    ) -> str:
        out = [f'  <Period id="{period.id}" start="{_duration(period.start_s)}">\n']
        rungs = [r for r in stream.rungs if r.name in period.inits]
        if rungs:
            tallest = rungs[0]
            frame_rate = f"{stream.frame_rate:g}" if stream.frame_rate else ""
            out.append(
                '    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" '
                'segmentAlignment="true" startWithSAP="1" '
                f'maxWidth="{tallest.width}" maxHeight="{tallest.height}"'
                + (f' frameRate="{frame_rate}"' if frame_rate else "")
                + ">\n"
                + MAIN
            )
            out.append(self._template(period, period.video, segment_s, chunked, coming))
            for rung in rungs:
                peak, _ = stream.rates(rung.name, FMP4.name)
                codecs = stream.codecs.get(rung.name, "").split(",")[0]
                out.append(
                    f'      <Representation id="{rung.name}" bandwidth="{peak}" '
                    f'width="{rung.width}" height="{rung.height}" sar="1:1" '
                    f'codecs="{codecs}">\n'
                    f"        <SegmentTemplate initialization="
                    f"{quoteattr(rung.name + '/' + period.inits[rung.name])}/>\n"
                    "      </Representation>\n"
                )
            out.append("    </AdaptationSet>\n")
        if layout.AUDIO in period.inits:
            main = stream.audio_languages.get(layout.AUDIO)
            languages = [main or AudioLanguage(layout.AUDIO, "und", "Audio")]
            languages += [a for a in stream.alternates if a.init]
            for i, track in enumerate(languages):
                out.append(self._audio(stream, period, track, i, segment_s, chunked, coming))
        if self.webm and stream.protection is None:
            out.append(self._webm(stream, period, rungs))
        out.append(self._subtitles(stream, period))
        out.append("  </Period>\n")
        return "".join(out)

    def _audio(
        self,
        stream: Stream,
        period: Period,
        track: AudioLanguage,
        index: int,
        segment_s: float,
        chunked: bool,
        coming: tuple[float, float] | None,
    ) -> str:
        """An audio language's adaptation set: the main one (`index` 0) is the `main`
        role, every one over the same timeline as the video."""
        name = track.rendition
        peak, _ = stream.rates(name, FMP4.name)
        codecs = stream.audio_codecs.get(layout.AUDIO, "mp4a.40.2")
        init = track.init or period.inits[name]
        return (
            f'    <AdaptationSet id="{1 if index == 0 else 10 + index}" contentType="audio" '
            'mimeType="audio/mp4" segmentAlignment="true" startWithSAP="1" '
            f"lang={quoteattr(track.lang or 'und')}>\n"
            + (MAIN if index == 0 else ALTERNATE)
            + self._template(period, period.audio, segment_s, chunked, coming)
            + f'      <Representation id="{name}" bandwidth="{peak}" codecs="{codecs}" '
            f'audioSamplingRate="{AUDIO_HZ}">\n'
            "        <AudioChannelConfiguration schemeIdUri="
            '"urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2"/>\n'
            f"        <SegmentTemplate initialization={quoteattr(name + '/' + init)}/>\n"
            "      </Representation>\n"
            "    </AdaptationSet>\n"
        )

    def _webm(self, stream: Stream, period: Period, rungs: list[Rung]) -> str:
        """VP9 and Opus adaptation sets over the same timeline, for players that want open
        codecs: `alternate`, so a player takes the CMAF ones unless asked (each WebM
        segment is encoded when first asked for, streamd.web.dash)."""
        base = f"/dash/{self.video_id}/$RepresentationID$/"
        template = (
            f'      <SegmentTemplate timescale="1000" media="{base}seg$Number%06d$.webm" '
            f'initialization="{base}init.webm" startNumber="{period.first_sequence}" '
            f'presentationTimeOffset="{period.webm.ticks(period.start_s)}">\n'
            + period.webm.render("        ")
            + "      </SegmentTemplate>\n"
        )
        out = [
            '    <AdaptationSet id="2" contentType="video" mimeType="video/webm" codecs="vp9" '
            'segmentAlignment="true" startWithSAP="1" selectionPriority="0">\n'
            + ALTERNATE
            + template
        ]
        for rung in rungs:
            out.append(
                f'      <Representation id="webm-{rung.name}" '
                f'bandwidth="{rung.video_bitrate_bps}" width="{rung.width}" '
                f'height="{rung.height}" sar="1:1"/>\n'
            )
        out.append("    </AdaptationSet>\n")
        if stream.audio_codecs and rungs:
            main = stream.audio_languages.get(layout.AUDIO)  # Opus of the main audio only
            out.append(
                '    <AdaptationSet id="3" contentType="audio" mimeType="audio/webm" '
                'codecs="opus" segmentAlignment="true" startWithSAP="1" '
                f"lang={quoteattr(main.lang if main else 'und')} "
                'selectionPriority="0">\n'
                + ALTERNATE
                + template
                + f'      <Representation id="webm-audio" bandwidth="{rungs[0].audio_bitrate_bps}" '
                f'audioSamplingRate="{AUDIO_HZ}"/>\n'
                "    </AdaptationSet>\n"
            )
        return "".join(out)

    def _subtitles(self, stream: Stream, period: Period) -> str:
        """A text adaptation set per caption language, over the HLS subtitle segments
        (WebVTT, one per segment, beside the fMP4 folder)."""
        out = []
        for i, lang in enumerate(stream.captions, 4):
            name = quoteattr(stream.captions[lang].name)
            out.append(
                f'    <AdaptationSet id="{i}" contentType="text" mimeType="text/vtt" '
                f'lang="{lang}" label={name}>\n'
                + ROLE.format("subtitle")
                + '      <SegmentTemplate timescale="1000" '
                f'media="../{SUBTITLES.name}/{lang}/seg$Number%06d$.vtt" '
                f'startNumber="{period.first_sequence}" '
                f'presentationTimeOffset="{period.webm.ticks(period.start_s)}">\n'
                + period.webm.render("        ")
                + "      </SegmentTemplate>\n"
                f'      <Representation id="subs-{lang}" bandwidth="256"/>\n'
                "    </AdaptationSet>\n"
            )
        return "".join(out)

    def _template(
        self,
        period: Period,
        timeline: Timeline,
        segment_s: float,
        chunked: bool,
        coming: tuple[float, float] | None,
    ) -> str:
        """The AdaptationSet's SegmentTemplate. Low-latency, a segment is asked for one
        part after it begins, and sent chunk by chunk as it is made
        (`availabilityTimeOffset`; streamd.web.hls sends it)."""
        attrs = [
            f'timescale="{timeline.timescale}"',
            f'media="{MEDIA}"',
            f'startNumber="{period.first_sequence}"',
            f'presentationTimeOffset="{timeline.ticks(period.start_s)}"',
        ]
        if chunked:
            offset = max(0.0, segment_s - self.part_s)
            attrs += [f'availabilityTimeOffset="{offset:.3f}"', 'availabilityTimeComplete="false"']
        return (
            f"      <SegmentTemplate {' '.join(attrs)}>\n"
            + timeline.render("        ", coming)
            + "      </SegmentTemplate>\n"
        )


def with_base_url(mpd: bytes, base_url: str) -> bytes:
    """An MPD whose segments are found under `base_url` (served elsewhere than beside them,
    as at /viewstream/metadata/ID?format=dash)."""
    head, sep, rest = mpd.partition(b"<MPD ")
    tag_end = rest.index(b">\n") + 2
    base = f"  <BaseURL>{base_url}</BaseURL>\n".encode()
    return head + sep + rest[:tag_end] + base + rest[tag_end:]
