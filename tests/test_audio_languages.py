"""Audio in several languages (issue 14): an upload's further audio tracks and commentary
uploaded apart become audio renditions of their own, named by every master and the MPD,
aligned with the video, the viewer's language the default."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import av
import m3u8
import numpy as np
from aiohttp.test_utils import TestClient

from tests.conftest import FFMPEG, MediaFactory, fetch, published, run, upload, wait_for

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
        audio = [m for m in master.media if m.type == "AUDIO"]
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
