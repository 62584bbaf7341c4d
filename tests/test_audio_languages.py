"""Audio in several languages (issue 14): an upload's further audio tracks and commentary
uploaded apart become audio renditions of their own, named by every master and the MPD,
aligned with the video, the viewer's language the default."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from pathlib import Path

import av
import m3u8
import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from streamd.config import Config, HlsConfig, IngestConfig, LanguagesConfig
from streamd.manifests.hls.tags import AudioRendition
from streamd.media.subtitles import language
from tests.conftest import (
    FFMPEG,
    TEST_KEY,
    AppClient,
    MediaFactory,
    browser,
    cue_seconds,
    fetch,
    ffprobe,
    files_encoded,
    published,
    run,
    upload,
    wait_for,
)
from tests.test_rtmp_live import start_ffmpeg

SRT = "1\n00:00:00,500 --> 00:00:01,500\nHello\n"


def _mkv(media: MediaFactory, tmp: Path, name: str, seconds: int, spanish_hz: int) -> Path:
    """Video with English audio (440 Hz), Spanish audio (`spanish_hz`) and English
    subtitles, as Matroska tags them."""
    source = media("mp4", duration_s=seconds, gop=30)
    srt = tmp / "in.srt"
    srt.write_text(SRT)
    out = tmp / name
    run([FFMPEG, "-v", "error", "-y", "-i", str(source),
         "-f", "lavfi", "-i", f"sine=f={spanish_hz}:r=48000:d={seconds}", "-i", str(srt),
         "-map", "0:v", "-map", "0:a", "-map", "1:a", "-map", "2",
         "-c:v", "copy", "-c:a", "aac", "-c:s", "srt",
         "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=spa",
         "-metadata:s:a:1", "title=Español", "-metadata:s:s:0", "language=eng",
         str(out)])  # fmt: skip
    return out


def _commentary(tmp: Path, hz: int, seconds: float) -> bytes:
    out = tmp / f"{hz}-{seconds}.m4a"
    run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=f={hz}:r=44100:d={seconds}",
         "-c:a", "aac", str(out)])  # fmt: skip
    return out.read_bytes()


def _tone(media: bytes, init: bytes = b"") -> tuple[float, float]:
    """The loudest frequency of an audio segment, and its level (RMS)."""
    with av.open(io.BytesIO(init + media)) as c:
        samples = np.concatenate(
            [f.to_ndarray()[0] for f in c.decode(c.streams.audio[0])]  # left channel
        )
    rms = float(np.sqrt(np.mean(samples**2)))
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * 48000 / len(samples)), rms


async def _until(client: TestClient, url: str, done: object) -> bytes:
    for _ in range(400):
        resp = await client.get(url)
        if resp.status == 200:
            body = await resp.read()
            if callable(done) and done(body):
                return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never came")


async def test_mkv_audio_tracks_and_a_commentary_are_renditions_in_their_languages(
    client: TestClient, media: MediaFactory, tmp_path: Path
) -> None:
    """Two MKV uploads with eng and spa audio and eng subtitles: two audio renditions and
    one subtitles rendition; French commentary sent for the second upload (before its
    video) adds a third, silent where it has nothing to say."""
    first = _mkv(media, tmp_path, "a.mkv", 4, 880)
    second = _mkv(media, tmp_path, "b.mkv", 4, 880)
    await upload(client, "dub", first, number=0)
    await wait_for(client, "dub", published(1))
    commentary = _commentary(tmp_path, 660, 4)
    resp = await client.post("/upload/dub/audio?lang=fr&segment=1", data=commentary)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["rendition"] == "audio-fr"
    await upload(client, "dub", second, number=1)
    await wait_for(client, "dub", published(2))
    await client.post("/upload/dub/end")
    await wait_for(client, "dub", lambda v: v["state"] == "ended")

    for packaging in ("fmp4", "ts"):
        url = f"/hls/dub/{packaging}/master.m3u8"
        master = m3u8.loads((await _until(client, url, lambda b: b"audio-fr" in b)).decode())
        # In the order the languages came (es, from upload 0, may come after fr).
        audio = sorted((m for m in master.media if m.type == "AUDIO"), key=lambda m: m.language)
        assert [(m.language, m.name, m.default) for m in audio] == [
            ("en", "English", "YES"),
            ("es", "Español", "NO"),
            ("fr", "Français", "NO"),
        ]
        # In TS the main audio is in the variants' own segments (no URI); fMP4 keeps every
        # language apart.
        uris = [m.uri for m in audio]
        main = "audio/index.m3u8" if packaging == "fmp4" else None
        assert uris == [main, "audio-es/index.m3u8", "audio-fr/index.m3u8"]
        assert {p.stream_info.audio for p in master.playlists} == {"aac"}
        subs = [m.language for m in master.media if m.type == "SUBTITLES"]
        assert subs == ["en"]

    video = m3u8.loads((await fetch(client, "/hls/dub/ts/240p/index.m3u8")).decode())
    for packaging in ("fmp4", "ts"):
        for rendition, tone in (("audio-es", 880), ("audio-fr", None)):
            playlist = m3u8.loads(
                (await fetch(client, f"/hls/dub/{packaging}/{rendition}/index.m3u8")).decode()
            )
            assert playlist.is_endlist
            assert [s.duration for s in playlist.segments] == [s.duration for s in video.segments]
            init = b""
            if packaging == "fmp4":
                map_uri = playlist.segments[0].init_section.uri
                init = await fetch(client, f"/hls/dub/fmp4/{rendition}/{map_uri}")
            for i, seg in enumerate(playlist.segments):
                body = await fetch(client, f"/hls/dub/{packaging}/{rendition}/{seg.uri}")
                hz, rms = _tone(body, init)
                expected = tone or (660 if i >= 2 else None)  # fr: upload 1's segments
                if expected is None:
                    assert rms < 0.001, (rendition, i, rms)
                else:
                    assert abs(hz - expected) < 30, (rendition, packaging, i, hz)
    # The MPD has an adaptation set per language over the same timeline.
    mpd = (await fetch(client, "/hls/dub/fmp4/manifest.mpd")).decode()
    assert mpd.count('contentType="audio" mimeType="audio/mp4"') == 3
    for lang in ("en", "es", "fr"):
        assert f'lang="{lang}"' in mpd


async def test_commentary_errors_are_clear(
    client: TestClient, media: MediaFactory, tmp_path: Path
) -> None:
    resp = await client.post("/upload/nobody/audio?lang=fr", data=b"x")
    assert resp.status == 404
    source = media("mp4", duration_s=2, gop=30)
    await upload(client, "late", source, number=0)
    await wait_for(client, "late", published(1))
    resp = await client.post("/upload/late/audio?lang=fr", data=b"not media")
    assert resp.status == 422
    assert (await resp.json())["error"] == "unsupported_media"
    resp = await client.post("/upload/late/audio?lang=f_r", data=b"x")
    assert resp.status == 400
    # A video without audio is not a commentary.
    silent = media("mp4", duration_s=2, acodec=None)
    resp = await client.post("/upload/late/audio?lang=fr", data=silent.read_bytes())
    assert resp.status == 422
    assert "no audio" in (await resp.json())["message"]
    # Once upload 0's French audio is made (silent, the language being new at upload 1's
    # commentary), a commentary for it is refused.
    tone = _commentary(tmp_path, 660, 2)
    resp = await client.post("/upload/late/audio?lang=fr&segment=1", data=tone)
    assert resp.status == 202
    await _until(client, "/hls/late/fmp4/audio-fr/index.m3u8", lambda b: b"seg" in b)
    resp = await client.post("/upload/late/audio?lang=fr&segment=0", data=tone)
    assert resp.status == 409, await resp.text()


async def _dubbed(client: TestClient, media: MediaFactory, tmp: Path, vid: str) -> None:
    """Two 4 s MKV uploads with English and Spanish audio, ended."""
    for i in range(2):
        await upload(client, vid, _mkv(media, tmp, f"{i}.mkv", 4, 880), number=i)
    await client.post(f"/upload/{vid}/end")
    await wait_for(client, vid, lambda v: v["state"] == "ended")
    await _until(client, f"/hls/{vid}/ts/master.m3u8", lambda b: b"audio-es" in b)


@pytest.mark.slow
@pytest.mark.parametrize("packaging", ["fmp4", "ts"])
async def test_hls_js_lists_both_languages_and_plays_on_after_a_switch(
    client: TestClient, media: MediaFactory, tmp_path: Path, packaging: str
) -> None:
    await _dubbed(client, media, tmp_path, "hlsdub")
    url = str(client.make_url(f"/player.html?v=hlsdub&format={packaging}"))
    result = await browser("play.mjs", "--url", url, "--min-time", "1", "--audio", "es")
    assert result["ok"], result
    assert result["audioTracks"] == ["en", "es"]
    assert result["audioMenu"] == ["English", "Español"]
    assert result["subtitleTracks"] == ["en"]
    assert result["audioBefore"] == "en"
    assert result["audioAfter"] == "es"
    assert result["remembered"] == "es"  # the player keeps the viewer's choice
    assert not result["fatalErrors"], result


@pytest.mark.slow
async def test_dash_js_lists_both_languages_and_plays_on_after_a_switch(
    client: TestClient, media: MediaFactory, tmp_path: Path
) -> None:
    await _dubbed(client, media, tmp_path, "dashdub")
    url = str(client.make_url("/hls/dashdub/fmp4/manifest.mpd"))
    result = await browser("dash.mjs", "--mpd", url, "--min-time", "1", "--audio", "es")
    assert result["ok"], result
    assert result["audioLangs"] == ["en", "es"]
    assert result["textLangs"] == ["en"]
    assert result["audio"] == "es"
    assert result["audioSwitchTo"] >= result["audioSwitchFrom"] + 2


async def test_the_viewers_language_picks_the_audio_and_the_file_carries_it(
    make_client: AppClient, config: Config, media: MediaFactory, tmp_path: Path
) -> None:
    languages = LanguagesConfig(geo_header="CloudFront-Viewer-Country", region_languages=["MX:es"])
    client = await make_client(replace(config, languages=languages))
    await _dubbed(client, media, tmp_path, "pick")

    async def default(query: str = "", **headers: str) -> tuple[str, str]:
        resp = await client.get(f"/viewstream/metadata/pick{query}", headers=headers)
        master = m3u8.loads(await resp.text())
        chosen = [m.language for m in master.media if m.type == "AUDIO" and m.default == "YES"]
        assert len(chosen) == 1
        return chosen[0], resp.headers["Vary"]

    assert await default() == ("en", "Accept-Language, CloudFront-Viewer-Country")
    assert (await default(**{"Accept-Language": "es-MX,es;q=0.9"}))[0] == "es"
    assert (await default(**{"CloudFront-Viewer-Country": "MX"}))[0] == "es"
    assert (await default("?lang=es&format=ts"))[0] == "es"
    # The segment at 1 s with the Spanish audio (tagged spa), in every container; the main
    # audio without ?lang=.
    for fmt in ("mp4", "mov", "ts"):
        for lang, hz in (("es", 880), ("", 440)):
            query = f"timestamp=1&format={fmt}" + (f"&lang={lang}" if lang else "")
            path = tmp_path / f"seg-{lang}.{fmt}"
            path.write_bytes(await fetch(client, f"/viewstream/pick?{query}"))
            audio = [
                s for s in ffprobe(path, "-show_streams")["streams"] if s["codec_type"] == "audio"
            ]
            assert len(audio) == 1, (fmt, lang, audio)
            if lang:
                assert audio[0]["tags"]["language"] == "spa"
            tone, _ = _tone(path.read_bytes())
            assert abs(tone - hz) < 30, (fmt, lang, tone)
    # WebM: the Spanish audio as Opus; English asked for, its subtitles as a WebVTT track.
    path = tmp_path / "es.webm"
    path.write_bytes(await fetch(client, "/viewstream/pick?timestamp=1&format=webm&lang=es"))
    (audio,) = [s for s in ffprobe(path, "-show_streams")["streams"] if s["codec_type"] == "audio"]
    assert (audio["codec_name"], audio["tags"]["language"]) == ("opus", "spa")
    assert abs(_tone(path.read_bytes())[0] - 880) < 30
    path = tmp_path / "en.webm"
    path.write_bytes(await fetch(client, "/viewstream/pick?timestamp=0&format=webm&lang=en"))
    kinds = [s["codec_name"] for s in ffprobe(path, "-show_streams")["streams"]]
    assert kinds == ["vp9", "opus", "webvtt"]
    srt = run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:s", "-f", "srt", "-"])
    # At its time from the file's first picture (the file starts at its first sample, which
    # may be audio a few ms earlier).
    start, end = srt.splitlines()[1].split(" --> ")
    assert srt.splitlines()[2] == "Hello"
    assert cue_seconds(start) == pytest.approx(0.5, abs=0.025)
    assert cue_seconds(end) - cue_seconds(start) == pytest.approx(1.0, abs=0.002)
    # Kept in each language: asked again, nothing is encoded; a late English cue in that
    # segment makes its English file again.
    made = await files_encoded(client)
    assert await fetch(client, "/viewstream/pick?timestamp=1&format=webm&lang=es") == (
        (tmp_path / "es.webm").read_bytes()
    )
    assert await files_encoded(client) == made
    late = "WEBVTT\n\n00:00:01.700 --> 00:00:01.900\nLate\n"
    assert (await client.post("/upload/pick/captions?lang=en", data=late)).status == 202
    path.write_bytes(await fetch(client, "/viewstream/pick?timestamp=0&format=webm&lang=en"))
    assert await files_encoded(client) == made + 1
    srt = run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:s", "-f", "srt", "-"])
    assert [line for line in srt.splitlines() if line.isalpha()] == ["Hello", "Late"]
    resp = await client.get("/viewstream/pick?timestamp=1&lang=de")
    assert resp.status == 404
    assert (await resp.json())["detail"] == "available: en, es"


async def test_audio_languages_survive_a_restart(
    make_client: AppClient, config: Config, media: MediaFactory, tmp_path: Path
) -> None:
    client = await make_client(config)
    await _dubbed(client, media, tmp_path, "again")
    before = {
        key: await fetch(client, key)
        for key in (
            "/hls/again/fmp4/master.m3u8",
            "/hls/again/ts/master.m3u8",
            "/hls/again/ts/audio-es/index.m3u8",
            "/hls/again/fmp4/audio-es/index.m3u8",
            "/hls/again/fmp4/manifest.mpd",
        )
    }
    await client.close()
    client = await make_client(config)
    for key, body in before.items():
        assert await fetch(client, key) == body, key


def _whole_with_parts(body: bytes) -> bool:
    return any(s.uri and s.parts for s in m3u8.loads(body.decode()).segments)


@pytest.mark.slow
async def test_a_live_source_with_two_languages_has_both_live_with_parts(
    make_client: AppClient, config: Config, media: MediaFactory, tmp_path: Path
) -> None:
    """MPEG-TS over chunked HTTP with English and Spanish audio, after an upload without
    Spanish: the Spanish rendition comes with the live segments (with LL-HLS parts, the
    same bytes as its segments), and the upload before has it silent."""
    cfg = replace(
        config,
        transcode=replace(config.transcode, segment_duration_s=1.0),
        hls=HlsConfig(part_duration_s=0.2),
        ingest=IngestConfig(rtmp_port=0, srt_port=0),
    )
    client = await make_client(cfg)
    body = b""
    await upload(client, "twolive", media("mp4", duration_s=2, gop=30), number=0)
    await wait_for(client, "twolive", published(1))
    seconds = 8
    put = [FFMPEG, "-hide_banner", "-loglevel", "error", "-re",
           "-f", "lavfi", "-i", f"testsrc2=s=320x240:r=30:d={seconds}",
           "-f", "lavfi", "-i", f"sine=f=440:d={seconds}",
           "-f", "lavfi", "-i", f"sine=f=880:d={seconds}",
           "-map", "0", "-map", "1", "-map", "2",
           "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30",
           "-c:a", "aac", "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=spa",
           "-f", "mpegts", "-method", "PUT", "-headers", f"Authorization: Bearer {TEST_KEY}\r\n",
           str(client.make_url("/ingest/twolive.ts"))]  # fmt: skip
    ffmpeg = await start_ffmpeg(put)
    try:
        url = "/hls/twolive/fmp4/audio-es/index.m3u8"
        body = await _until(client, url, _whole_with_parts)
        assert ffmpeg.returncode is None, "the Spanish audio came only after the session"
    finally:
        if ffmpeg.returncode is None and not body:
            ffmpeg.kill()
    spanish = m3u8.loads(body.decode())
    assert spanish.part_inf is not None
    master = m3u8.loads((await fetch(client, "/hls/twolive/fmp4/master.m3u8")).decode())
    assert [m.language for m in master.media if m.type == "AUDIO"] == ["en", "es"]
    # A whole segment with its parts: the parts are its bytes.
    whole = next(seg for seg in spanish.segments if seg.uri and seg.parts)
    parts = [await fetch(client, f"/hls/twolive/fmp4/audio-es/{p.uri}") for p in whole.parts]
    assert b"".join(parts) == await fetch(client, f"/hls/twolive/fmp4/audio-es/{whole.uri}")
    await asyncio.wait_for(ffmpeg.communicate(), 30)
    await client.post("/upload/twolive/end")
    await wait_for(client, "twolive", lambda v: v["state"] == "ended", timeout_s=60)
    video = m3u8.loads((await fetch(client, "/hls/twolive/ts/240p/index.m3u8")).decode())
    for packaging in ("fmp4", "ts"):
        url = f"/hls/twolive/{packaging}/audio-es/index.m3u8"
        playlist = m3u8.loads((await fetch(client, url)).decode())
        assert playlist.is_endlist
        assert [s.duration for s in playlist.segments] == [s.duration for s in video.segments]
    playlist = m3u8.loads((await fetch(client, "/hls/twolive/ts/audio-es/index.m3u8")).decode())
    first = await fetch(client, f"/hls/twolive/ts/audio-es/{playlist.segments[0].uri}")
    assert _tone(first)[1] < 0.001  # the upload before the session: silent
    live = await fetch(client, f"/hls/twolive/ts/audio-es/{playlist.segments[4].uri}")
    assert abs(_tone(live)[0] - 880) < 30


def test_names_and_language_tags_from_uploads_cannot_break_a_playlist() -> None:
    """A language tag not shaped like BCP 47 is `und` (it goes into paths and attributes);
    a name loses what a quoted-string may not hold."""

    class Tagged:
        def __init__(self, tag: str) -> None:
            self.metadata = {"language": tag}

    assert [language(Tagged(t)) for t in ("spa", "pt-BR", "../../x", 'en"', "")] == [  # type: ignore[arg-type]
        "es",
        "pt-br",
        "und",
        "und",
        "und",
    ]
    line = AudioRendition("a/index.m3u8", "aac", 'Bad "name"\nX', 2, "fr", False).render()
    assert line.count('"') == 10  # GROUP-ID, NAME, LANGUAGE, CHANNELS, URI
    assert "\n" not in line
    assert m3u8.loads(f"#EXTM3U\n{line}\n").media[0].name == "Bad 'name' X"
