"""Low-Latency HLS, end to end: ffmpeg publishes over RTMP, and the fMP4 playlists carry
parts, preload hints, server control and rendition reports that the `m3u8` parser reads;
blocking reloads answer as the part is published; delta updates skip what they may."""

from __future__ import annotations

import time
from dataclasses import replace

import m3u8
import pytest
from aiohttp.test_utils import TestClient

from streamd.appkeys import PUBLISHER
from streamd.config import Config, HlsConfig
from streamd.manifests.hls import PlaylistChange
from tests.conftest import TEST_KEY, AppClient, fetch
from tests.test_rtmp_live import ffmpeg_rtmp, live_client, start_ffmpeg, until

pytestmark = pytest.mark.slow

PLAYLIST = "/hls/ll/fmp4/240p/index.m3u8"


async def playlist(client: TestClient, query: str = "", status: int = 200) -> m3u8.M3U8:
    return m3u8.loads((await fetch(client, PLAYLIST + query, status)).decode())


def last_part(p: m3u8.M3U8) -> tuple[int, int]:
    """(msn, index) of a full playlist's last part (the segment being made comes last)."""
    i, seg = next((i, s) for i, s in reversed(list(enumerate(p.segments))) if s.parts)
    return p.media_sequence + i, len(seg.parts) - 1


async def test_low_latency_hls_from_rtmp(make_client: AppClient, config: Config) -> None:
    cfg = replace(
        config,
        transcode=replace(config.transcode, segment_duration_s=1.0),
        hls=HlsConfig(part_duration_s=0.2),
    )
    client = await live_client(make_client, cfg, reconnect_window_s=30.0)
    url = f"{client.rtmp_url}/ll?key={TEST_KEY}"  # type: ignore[attr-defined]
    ffmpeg = await start_ffmpeg(ffmpeg_rtmp(url, 14))
    try:
        await until(client, "ll", lambda v: v["segments"] >= 3)
        p = await playlist(client)
        # Server control, part target, parts, the hint and reports, as the draft has them.
        assert p.version == 9
        target = p.part_inf.part_target
        assert target == pytest.approx(0.202)
        sc = p.server_control
        assert sc.can_block_reload == "YES"
        assert sc.part_hold_back >= 3 * target - 1e-9
        assert sc.can_skip_until >= 6 * p.target_duration
        parts = [part for seg in p.segments for part in seg.parts]
        assert len(parts) >= 5
        assert all(part.duration <= target for part in parts)
        assert all(part.independent == "YES" for seg in p.segments for part in seg.parts[:1])
        assert p.preload_hint.hint_type == "PART"
        assert [r.uri for r in p.rendition_reports] == ["../144p/index.m3u8", "../audio/index.m3u8"]
        assert p.program_date_time is not None
        # The audio rendition has parts too, at the video's boundaries, each independent.
        audio = m3u8.loads((await fetch(client, "/hls/ll/fmp4/audio/index.m3u8")).decode())
        assert audio.part_inf.part_target == target
        assert [r.uri for r in audio.rendition_reports] == [
            "../240p/index.m3u8",
            "../144p/index.m3u8",
        ]
        audio_parts = [part for seg in audio.segments for part in seg.parts]
        assert all(part.independent == "YES" for part in audio_parts)
        video_parts = {part.uri: part.duration for seg in p.segments for part in seg.parts}
        shared = [part for part in audio_parts if part.uri in video_parts]
        assert len(shared) >= 5
        assert all(video_parts[part.uri] == part.duration for part in shared)

        # A whole segment listed with its parts: the parts are its bytes, in order.
        whole = next(seg for seg in p.segments if seg.uri and seg.parts)
        joined = b"".join(
            [await fetch(client, f"/hls/ll/fmp4/240p/{part.uri}") for part in whole.parts]
        )
        assert joined == await fetch(client, f"/hls/ll/fmp4/240p/{whole.uri}")
        joined = b"".join(
            [await fetch(client, f"/hls/ll/fmp4/audio/{part.uri}") for part in whole.parts]
        )
        assert joined == await fetch(client, f"/hls/ll/fmp4/audio/{whole.uri}")

        # Blocking reload: the next part, answered as soon as it is published.
        published: dict[str, float] = {}

        def on_change(change: PlaylistChange) -> None:
            for key in change.parts:
                published.setdefault(key.rsplit("/", 1)[1], time.monotonic())

        client.app[PUBLISHER].listeners.add(on_change)
        p = await playlist(client)
        msn, index = last_part(p)
        started = time.monotonic()
        p2 = await playlist(client, f"?_HLS_msn={msn}&_HLS_part={index + 1}")
        answered = time.monotonic()
        assert answered - started > 0.02, "it waited for the part"
        new = p2.segments[-1].parts[-1].uri
        assert new in published
        assert answered - published[new] < 0.1
        # The hinted part: held, then sent whole.
        p = await playlist(client)
        hinted = p.preload_hint.uri
        data = await fetch(client, f"/hls/ll/fmp4/240p/{hinted}")
        assert data[4:8] == b"moof"

        # Too far ahead, malformed, or a part without its segment: 400 with a JSON error.
        msn, index = last_part(await playlist(client))
        for query in (
            f"?_HLS_msn={msn + 3}",
            f"?_HLS_msn={msn}&_HLS_part={index + 40}",
            "?_HLS_msn=x",
            "?_HLS_part=1",
            "?_HLS_msn=1&_HLS_skip=maybe",
        ):
            resp = await client.get(PLAYLIST + query)
            assert resp.status == 400, query
            assert (await resp.json())["error"] == "bad_request"

        # Delta update: what lies beyond CAN-SKIP-UNTIL is replaced by EXT-X-SKIP.
        await until(client, "ll", lambda v: v["segments"] >= 9)
        full = await playlist(client)
        delta = await playlist(client, "?_HLS_skip=YES")
        skipped = delta.skip.skipped_segments
        assert skipped > 0
        assert [s.uri for s in delta.segments] == [s.uri for s in full.segments[skipped:]]
        kept = sum(s.duration for s in full.segments[skipped:] if s.uri)
        assert kept >= full.server_control.can_skip_until - 1e-6
        _, err = await ffmpeg.communicate()
        assert ffmpeg.returncode == 0, err.decode()

        # The publisher is gone (the stream waits for it): a blocked request gives up.
        await until(client, "ll", lambda v: not v["ingest"]["connected"])
        msn, index = last_part(await playlist(client))
        started = time.monotonic()
        resp = await client.get(PLAYLIST + f"?_HLS_msn={msn + 1}")
        assert resp.status == 503
        assert time.monotonic() - started >= 3 * full.target_duration - 0.1
    finally:
        if ffmpeg.returncode is None:
            ffmpeg.kill()
            await ffmpeg.wait()
