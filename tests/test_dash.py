"""DASH: an MPD over the CMAF segments the fMP4 HLS playlists name (one encode, two
manifests), dynamic while live and static once ended; dash.js plays both in Chromium."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import m3u8
import pytest
from aiohttp.test_utils import TestClient

from streamd.config import Config, RetentionConfig
from streamd.manifests.dash import DashManifest
from streamd.model.jobs import RungOutput
from streamd.model.ladder import Rung
from streamd.model.stream import Segment, Stream
from tests.conftest import (
    TEST_KEY,
    AppClient,
    MediaFactory,
    browser,
    fetch,
    ffprobe,
    files_encoded,
    published,
    upload,
    wait_for,
)
from tests.test_rtmp_live import ffmpeg_rtmp, live_client, start_ffmpeg, until

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def _outputs(init: str = "init-a.mp4") -> tuple[tuple[RungOutput, ...], tuple[RungOutput, ...]]:
    video = RungOutput("240p", {"fmp4": 1000}, "avc1.64000d,mp4a.40.2", {"fmp4": init})
    audio = RungOutput("audio", {"fmp4": 100}, "mp4a.40.2", {"fmp4": "init-b.mp4"})
    return (video,), (audio,)


def _segment(sequence: int, start_s: float, init: str = "init-a.mp4", **kw: object) -> Segment:
    video, audio = _outputs(init)
    return Segment(sequence, start_s, 2.0, sequence, 0.0, video, audio=audio, **kw)  # type: ignore[arg-type]


def expand(mpd: bytes, url: str) -> dict[str, list[str]]:
    """Every URL an MPD's CMAF adaptation sets name, by representation, in order: its init
    segments and media segments (SegmentTemplate with $RepresentationID$ and $Number$,
    SegmentTimeline). The WebM ones are made on demand, not published objects."""
    root = ET.fromstring(mpd)
    base = root.find("d:BaseURL", NS)
    url = urljoin(url, base.text or "") if base is not None else url
    out: dict[str, list[str]] = {}
    for period in root.findall("d:Period", NS):
        for adaptation in period.findall("d:AdaptationSet", NS):
            if not adaptation.get("mimeType", "").endswith("/mp4"):
                continue
            template = adaptation.find("d:SegmentTemplate", NS)
            assert template is not None
            number = int(template.get("startNumber", "1"))
            count = sum(
                1 + int(s.get("r", "0")) for s in template.findall("d:SegmentTimeline/d:S", NS)
            )
            for rep in adaptation.findall("d:Representation", NS):
                rid = rep.get("id", "")
                init = rep.find("d:SegmentTemplate", NS)
                assert init is not None
                urls = out.setdefault(rid, [])
                urls.append(urljoin(url, init.get("initialization", "")))
                media = template.get("media", "").replace("$RepresentationID$", rid)
                urls += [
                    urljoin(url, media.replace("$Number%06d$", f"{n:06d}"))
                    for n in range(number, number + count)
                ]
    return out


async def hls_objects(client: TestClient, video_id: str) -> dict[str, list[str]]:
    """Every URL the fMP4 HLS playlists name, by rendition, in the same order."""
    master_url = f"/hls/{video_id}/fmp4/master.m3u8"
    master = m3u8.loads((await fetch(client, master_url)).decode())
    out: dict[str, list[str]] = {}
    for uri in [p.uri for p in master.playlists] + [m.uri for m in master.media]:
        url = urljoin(master_url, uri)
        playlist = m3u8.loads((await fetch(client, url)).decode())
        urls = out.setdefault(uri.split("/")[0], [])
        init = None
        for seg in playlist.segments:
            if seg.init_section is not None and seg.init_section.uri != init:
                init = seg.init_section.uri
                urls.append(urljoin(url, init))
            urls.append(urljoin(url, seg.uri))
    return out


def test_timeline_runs_and_periods() -> None:
    """Equal durations make one S with @r; a restart, a gap or a new init segment starts a
    period, whose numbers go on from the segments' own."""
    stream = Stream("t", 0.0, rungs=(Rung("240p", 320, 240, 400_000, 128_000),))
    dash = DashManifest("t")
    segments = [_segment(i, 2.0 * i) for i in range(3)]
    segments.append(_segment(3, 6.0, discontinuity=True))
    segments.append(Segment(4, 8.0, 2.0, 4, 0.0, ()))  # a gap
    segments += [_segment(5, 10.0), _segment(6, 12.0, init="init-c.mp4")]
    for seg in segments:
        stream.add_segment(seg)
        dash.add(seg)
    stream.ended = True
    root = ET.fromstring(dash.render(stream, 0.0, 2.0))
    assert root.get("type") == "static"
    assert root.get("mediaPresentationDuration") == "PT14S"
    periods = root.findall("d:Period", NS)
    assert [p.get("start") for p in periods] == ["PT0S", "PT6S", "PT10S", "PT12S"]
    first = periods[0].find("d:AdaptationSet/d:SegmentTemplate", NS)
    assert first is not None
    assert [s.attrib for s in first.findall("d:SegmentTimeline/d:S", NS)] == [
        {"t": "900000", "d": "180000", "r": "2"}
    ]
    assert first.get("presentationTimeOffset") == "900000"  # the internal origin, 10 s
    numbers = [p.find("d:AdaptationSet/d:SegmentTemplate", NS) for p in periods]
    assert [t.get("startNumber") for t in numbers if t is not None] == ["0", "3", "5", "6"]
    inits = [p.find("d:AdaptationSet/d:Representation/d:SegmentTemplate", NS) for p in periods]
    assert [i.get("initialization") for i in inits if i is not None][-2:] == [
        "240p/init-a.mp4",
        "240p/init-c.mp4",
    ]


def test_a_rung_left_out_under_overload_is_not_in_the_periods_without_it() -> None:
    rungs = (Rung("240p", 320, 240, 400_000, 128_000), Rung("144p", 192, 144, 150_000, 128_000))
    stream = Stream("t", 0.0, rungs=rungs)
    dash = DashManifest("t")
    for i in range(6):
        seg = _segment(i, 2.0 * i)
        low = RungOutput("144p", {"fmp4": 500}, "avc1.64000d", {"fmp4": "init-l.mp4"})
        # 240p is dropped for segments 2 and 3 (the stream fell behind), then comes back.
        seg = replace(seg, rungs=(low,) if i in (2, 3) else (*seg.rungs, low))
        stream.add_segment(seg)
        dash.add(seg)
    root = ET.fromstring(dash.render(stream, 0.0, 2.0))
    periods = root.findall("d:Period", NS)
    named = [
        [r.get("id") for r in p.findall("d:AdaptationSet/d:Representation", NS)] for p in periods
    ]
    assert named == [["240p", "144p", "audio"], ["144p", "audio"], ["240p", "144p", "audio"]]
    assert [p.get("start") for p in periods] == ["PT0S", "PT4S", "PT8S"]


async def _play(mpd_url: str, *args: str) -> dict[str, Any]:
    return await browser("dash.mjs", "--mpd", mpd_url, *args)


@pytest.mark.slow
async def test_a_recording_plays_in_dash_js_over_the_hls_segments(
    client: TestClient, media: MediaFactory
) -> None:
    parts = media.split(media("mp4", duration_s=8, gop=30), 2.0)
    for i, part in enumerate(parts):
        await upload(client, "dash", part, number=i)
    await wait_for(client, "dash", published(len(parts)))
    mpd_url = "/hls/dash/fmp4/manifest.mpd"
    resp = await client.get(mpd_url)
    assert resp.headers["Content-Type"] == "application/dash+xml"
    live = await resp.read()
    root = ET.fromstring(live)
    assert root.get("type") == "dynamic"
    assert root.find("d:UTCTiming", NS) is not None
    # availabilityStartTime is the stream's second 0, as EXT-X-PROGRAM-DATE-TIME says.
    rung = m3u8.loads((await fetch(client, "/hls/dash/fmp4/240p/index.m3u8")).decode())
    start = datetime.fromisoformat(root.get("availabilityStartTime", ""))
    assert abs((start - rung.segments[0].current_program_date_time).total_seconds()) < 0.002
    # The MPD and the fMP4 playlists name the same objects, and every one is there.
    named = expand(live, str(client.make_url(mpd_url)))
    objects = await hls_objects(client, "dash")
    assert {k: [str(client.make_url(u)) for u in v] for k, v in objects.items()} == named
    assert sorted(named) == ["144p", "240p", "audio"]
    for urls in named.values():
        for url in urls:
            assert (await client.get(urlsplit(url).path)).status == 200, url
    # The API's address for it, with absolute segment URLs.
    api = await fetch(client, "/viewstream/metadata/dash?format=dash")
    assert expand(api, str(client.make_url("/viewstream/metadata/dash"))) == named

    await client.post("/upload/dash/end")
    await wait_for(client, "dash", lambda v: v["state"] == "ended")
    ended = ET.fromstring(await fetch(client, mpd_url))
    assert ended.get("type") == "static"
    total = sum(s.duration for s in rung.segments)
    assert float(ended.get("mediaPresentationDuration", "")[2:-1]) == pytest.approx(total)

    result = await _play(str(client.make_url(mpd_url)), "--min-time", "3", "--timeout", "60")
    assert result["ok"], result
    assert result["dynamic"] is False
    assert sorted(result["heights"]) == [144, 240]  # type: ignore[type-var]
    assert result["audioTracks"] == 2  # AAC (CMAF), Opus (WebM)
    assert result["errors"] == []
    every = {u for urls in named.values() for u in urls}
    fetched = [str(client.make_url(u)) for u in result["requests"]]  # type: ignore[attr-defined]
    assert fetched
    assert set(fetched) <= every


@pytest.mark.slow
async def test_a_live_stream_plays_in_dash_js_low_latency(
    make_client: AppClient, config: Config
) -> None:
    """Live with parts: the MPD announces the segment being made (availabilityTimeOffset),
    which is sent chunk by chunk as its parts come, byte for byte the segment it becomes;
    dash.js plays it in its low-latency mode, over a 16 s DVR window that slides."""
    window = RetentionConfig(dvr_window_min=0.27)
    client = await live_client(
        make_client, replace(config, retention=window), reconnect_window_s=30.0
    )
    url = f"{client.rtmp_url}/dl?key={TEST_KEY}"  # type: ignore[attr-defined]
    ffmpeg = await start_ffmpeg(ffmpeg_rtmp(url, 60))
    try:
        await until(client, "dl", lambda v: v["segments"] >= 2)
        mpd_url = "/hls/dl/fmp4/manifest.mpd"
        for _ in range(100):  # until a segment is being made (its first part is out)
            root = ET.fromstring(await fetch(client, mpd_url))
            template = root.find("d:Period/d:AdaptationSet/d:SegmentTemplate", NS)
            assert template is not None
            timeline = template.findall("d:SegmentTimeline/d:S", NS)
            listed = sum(1 + int(s.get("r", "0")) for s in timeline)
            coming = int(template.get("startNumber", "0")) + listed - 1
            done = (await fetch_json(client, "/api/videos/dl"))["segments"]
            if coming == done:  # the last S is the segment being made
                break
            await asyncio.sleep(0.05)
        assert coming == done
        assert root.find("d:ServiceDescription/d:Latency", NS) is not None
        assert template.get("availabilityTimeComplete") == "false"
        assert float(template.get("availabilityTimeOffset", "0")) > 1.5  # of a 2 s segment
        resp = await client.get(f"/hls/dl/fmp4/240p/seg{coming:06d}.m4s")
        assert resp.status == 200
        head = await resp.content.readexactly(8)
        assert head[4:8] == b"moof"
        assert (await fetch_json(client, "/api/videos/dl"))["segments"] == done, "sent early"
        body = head + await resp.read()
        await until(client, "dl", lambda v: v["segments"] > coming)
        assert body == await fetch(client, f"/hls/dl/fmp4/240p/seg{coming:06d}.m4s")

        await until(client, "dl", lambda v: v["firstS"] > 0)  # the window slides
        result = await _play(
            str(client.make_url(mpd_url)), "--min-time", "2", "--watch", "6", "--timeout", "40"
        )
        slid = ET.fromstring(await fetch(client, mpd_url))
        assert result["ok"], result
        assert result["dynamic"] is True
        assert result["lowLatency"] is True
        assert result["audioTracks"] == 2  # AAC (CMAF), Opus (WebM)
        assert result["errors"] == []
        assert 0 < float(result["latency"]) < 2.5  # type: ignore[arg-type]
        assert ffmpeg.returncode is None, "played while the publisher was still sending"
        assert slid.get("timeShiftBufferDepth")
        template = slid.find("d:Period/d:AdaptationSet/d:SegmentTemplate", NS)
        assert template is not None
        assert int(template.get("startNumber", "0")) > 0  # its first segments left
    finally:
        if ffmpeg.returncode is None:
            ffmpeg.kill()
        await ffmpeg.wait()


async def fetch_json(client: TestClient, url: str) -> dict[str, Any]:
    return json.loads(await fetch(client, url))  # type: ignore[no-any-return]


@pytest.mark.slow
async def test_webm_adaptation_sets_are_made_on_demand_and_play_in_dash_js(
    client: TestClient, media: MediaFactory, tmp_path: Path
) -> None:
    """The MPD also names VP9 and Opus adaptation sets (role alternate, below the CMAF
    ones); their segments are encoded when first asked for, then kept; dash.js plays them."""
    parts = media.split(media("mp4", duration_s=6, gop=30), 2.0)
    for i, part in enumerate(parts):
        await upload(client, "wd", part, number=i)
    await wait_for(client, "wd", published(len(parts)))
    await client.post("/upload/wd/end")
    await wait_for(client, "wd", lambda v: v["state"] == "ended")
    root = ET.fromstring(await fetch(client, "/hls/wd/fmp4/manifest.mpd"))
    sets = root.findall("d:Period/d:AdaptationSet", NS)
    kinds = [(a.get("mimeType"), a.get("codecs")) for a in sets]
    assert kinds == [("video/mp4", None), ("audio/mp4", None), ("video/webm", "vp9"),
                     ("audio/webm", "opus")]  # fmt: skip
    roles = [a.find("d:Role", NS).get("value") for a in sets]  # type: ignore[union-attr]
    assert roles == ["main", "main", "alternate", "alternate"]

    # A player asks for the init and its first segments at once: one encode per segment.
    init, segment, again = await asyncio.gather(
        fetch(client, "/dash/wd/webm-144p/init.webm"),
        fetch(client, "/dash/wd/webm-144p/seg000001.webm"),
        fetch(client, "/dash/wd/webm-144p/seg000001.webm"),
    )
    assert again == segment
    made = await files_encoded(client, "webm-dash")
    assert made == 2  # the init's (from the newest segment) and seg000001's
    assert await fetch(client, "/dash/wd/webm-144p/seg000001.webm") == segment
    assert await files_encoded(client, "webm-dash") == made  # kept, not encoded again
    (tmp_path / "v.webm").write_bytes(init + segment)
    (video,) = ffprobe(tmp_path / "v.webm", "-show_streams")["streams"]
    assert (video["codec_name"], video["width"], video["height"]) == ("vp9", 192, 144)
    assert (await client.get("/dash/wd/webm-144p/seg000009.webm")).status == 404

    result = await _play(
        str(client.make_url("/hls/wd/fmp4/manifest.mpd")),
        "--min-time", "3", "--timeout", "60", "--role", "alternate",
    )  # fmt: skip
    assert result["ok"], result
    assert result["errors"] == []
    fetched = result["requests"]
    assert any(u.startswith("/dash/wd/webm-audio/") for u in fetched)  # type: ignore[attr-defined]
    assert all(u.endswith(".webm") for u in fetched)  # type: ignore[attr-defined]
