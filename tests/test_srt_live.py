"""Live over SRT, with the real encoder: Debian's ffmpeg publishes MPEG-TS to streamd's SRT
listener with the access-control stream id, and the stream goes live through the same
pipeline as RTMP; a wrong key is refused in the listen callback."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import m3u8
import pytest

from streamd.config import Config, IngestConfig
from streamd.ingest.srt.libsrt import LibSrt
from tests.conftest import TEST_KEY, AppClient, fetch
from tests.test_rtmp_live import until
from tests.test_srt import ffmpeg_srt, finished, libsrt  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow


def _udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_ffmpeg_publishes_over_srt(
    libsrt: LibSrt,  # noqa: F811
    make_client: AppClient,
    config: Config,
) -> None:
    port = _udp_port()
    ingest = IngestConfig(rtmp_port=0, srt_port=port, reconnect_window_s=0.5)
    client = await make_client(replace(config, ingest=ingest))
    started = time.monotonic()
    proc = await ffmpeg_srt(port, f"#!::r=cam,m=publish,s={TEST_KEY}", 6)
    seen = await until(client, "cam", lambda v: v["segments"] >= 2)
    assert proc.returncode is None, "published only after the publisher finished"
    assert time.monotonic() - started < 5.5
    assert seen["ingest"]["protocol"] == "srt"
    assert seen["ingest"]["source"]["container"] == "mpegts"
    assert await finished(proc) == 0
    v = await until(client, "cam", lambda v: v["state"] == "ended")
    assert abs(v["durationS"] - 6) < 0.3, v
    playlist = m3u8.loads((await fetch(client, "/hls/cam/ts/240p/index.m3u8")).decode())
    assert playlist.is_endlist
    # x264 repeats SPS/PPS at every IDR in MPEG-TS: the source is the 240p rung as it came
    # (ultrafast's Constrained Baseline), the 144p rung streamd's own (High).
    codecs = {r["name"]: r["codecs"] for r in v["rungs"]}
    assert codecs["240p"].startswith("avc1.42"), codecs
    assert codecs["144p"].startswith("avc1.64"), codecs

    # The %-encoded form some clients send; then a wrong key, refused before any data.
    proc = await ffmpeg_srt(port, quote(f"#!::r=enc,m=publish,s={TEST_KEY}", safe=""), 2)
    assert await finished(proc) == 0
    await until(client, "enc", lambda v: v["state"] == "ended")
    proc = await ffmpeg_srt(port, "#!::r=bad,m=publish,s=wrong", 2)
    assert await finished(proc) != 0
    assert (await client.get("/api/videos/bad")).status == 404
    assert not list(Path(config.data_dir).glob("**/bad*"))  # noqa: ASYNC240
    metrics = (await fetch(client, "/metrics")).decode()
    assert 'streamd_publishes_total{protocol="srt",result="unauthorized"} 1.0' in metrics
    assert 'streamd_publishes_total{protocol="srt",result="accepted"} 2.0' in metrics
