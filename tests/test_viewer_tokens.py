"""Signed links: with `[auth] viewer_secret`, every playlist, segment and /viewstream URL
needs a token, and the master playlist hands it on to every URL it names."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import m3u8
import pytest
from aiohttp.test_utils import TestClient

from streamd.access import tokens
from streamd.config import AuthConfig, Config
from streamd.errors import Expired, Forbidden, Unauthorized
from tests.conftest import TEST_KEY, AppClient, MediaFactory, fetch, published, upload, wait_for

SECRET = "viewer-secret-for-tests"


def test_tokens_sign_and_verify() -> None:
    now = 1_800_000_000
    token = tokens.sign(SECRET, "cam", now + 60)
    tokens.verify(SECRET, "cam", token, now)
    with pytest.raises(Unauthorized):
        tokens.verify(SECRET, "cam", None, now)
    with pytest.raises(Forbidden):
        tokens.verify(SECRET, "other", token, now)  # a token is for one video
    with pytest.raises(Forbidden):
        tokens.verify("another-secret", "cam", token, now)
    expiry, _, signature = token.partition(".")
    with pytest.raises(Forbidden):
        tokens.verify(SECRET, "cam", f"{int(expiry) + 3600}.{signature}", now)  # extended
    for bad in ("", "x", "123", "abc.def", "1.2.3", "-5.abc", "9" * 40 + ".x"):
        with pytest.raises((Forbidden, Unauthorized)):
            tokens.verify(SECRET, "cam", bad, now)
    with pytest.raises(Expired):
        tokens.verify(SECRET, "cam", token, now + 61)


@pytest.fixture
async def signed(make_client: AppClient, config: Config, media: MediaFactory) -> TestClient:
    auth = AuthConfig(publish_keys=[TEST_KEY], viewer_secret=SECRET)
    client = await make_client(replace(config, auth=auth))
    parts = media.split(media("mp4", duration_s=4, gop=30), 2.0)
    for i, part in enumerate(parts):
        await upload(client, "cam", part, number=i)
    await wait_for(client, "cam", published(len(parts)))
    # Subtitles and a second audio language: their playlists and segments need it too.
    key = {"Authorization": f"Bearer {TEST_KEY}"}
    cues = "WEBVTT\n\n00:00:00.500 --> 00:00:01.000\nhi\n"
    assert (await client.post("/upload/cam/captions?lang=en", data=cues, headers=key)).status == 202
    tone = media("mp4", duration_s=2, tone_hz=880).read_bytes()
    resp = await client.post("/upload/cam/audio?lang=fr&segment=0", data=tone, headers=key)
    assert resp.status == 202, await resp.text()
    for _ in range(200):
        if b"audio-fr" in await (await client.get("/api/videos/cam", headers=key)).read():
            break
        await asyncio.sleep(0.05)
    return client


async def _status(client: TestClient, url: str) -> tuple[int, str]:
    resp = await client.get(url)
    error = (await resp.json())["error"] if resp.status >= 400 else ""
    return resp.status, error


async def test_every_media_url_needs_the_token(signed: TestClient) -> None:
    client = signed
    token = tokens.sign(SECRET, "cam", int(time.time()) + 600)
    expired = tokens.sign(SECRET, "cam", int(time.time()) - 1)
    other = tokens.sign(SECRET, "other", int(time.time()) + 600)
    urls = [
        "/viewstream/metadata/cam",
        "/viewstream/metadata/cam?format=ts",
        "/viewstream/cam?timestamp=1",
        "/hls/cam/fmp4/240p/index.m3u8",
        "/hls/cam/ts/144p/index.m3u8",
        "/hls/cam/fmp4/240p/seg000000.m4s",
        "/hls/cam/ts/240p/seg000001.ts",
        "/hls/cam/thumb.jpg",
    ]
    # No token: not even told whether the stream exists.
    assert await _status(client, "/hls/nosuch/fmp4/240p/index.m3u8") == (401, "unauthorized")
    for url in urls:
        sep = "&" if "?" in url else "?"
        assert await _status(client, url) == (401, "unauthorized"), url
        assert await _status(client, f"{url}{sep}token={other}") == (403, "forbidden"), url
        assert await _status(client, f"{url}{sep}token={token}x") == (403, "forbidden"), url
        assert await _status(client, f"{url}{sep}token={expired}") == (410, "expired"), url
    assert (await client.get(f"/viewstream/cam?timestamp=1&token={token}")).status == 200

    # A player follows the master: every URL it is handed carries the token, and works:
    # the variants', the alternate audio's and the subtitles'.
    for fmt in ("fmp4", "ts"):
        master_url = f"/viewstream/metadata/cam?format={fmt}&token={token}"
        master = m3u8.loads((await fetch(client, master_url)).decode())
        assert master.playlists
        renditions = [m.uri for m in master.media if m.uri]
        assert {m.type for m in master.media if m.uri} == {"AUDIO", "SUBTITLES"}
        for uri in [*(v.uri for v in master.playlists), *renditions]:
            assert uri.endswith(f"?token={token}")
            media_url = urljoin(master_url, uri)
            playlist = m3u8.loads((await fetch(client, media_url)).decode())
            uris = [s.uri for s in playlist.segments]
            if fmt == "fmp4" and "/subs/" not in uri:
                uris.append(playlist.segment_map[0].uri)
            assert len(uris) >= 2
            for uri in uris:
                assert uri.endswith(f"?token={token}"), uri
                assert len(await fetch(client, urljoin(media_url, uri))) > 0


async def test_watching_stays_open_without_a_secret(
    client: TestClient, media: MediaFactory
) -> None:
    await upload(client, "open", media("ts", duration_s=1.0), number=0)
    await wait_for(client, "open", published(1))
    assert (await client.get("/viewstream/metadata/open")).status == 200
    body = await fetch(client, "/hls/open/ts/240p/index.m3u8")
    assert b"token=" not in body


def test_streamd_sign_prints_a_link_that_verifies(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "streamd", "sign", "cam", "--ttl", "2h", "--base", "https://tv.x"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMD_")}
    refused = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode == 2
    assert "no viewer secret" in refused.stderr
    out = subprocess.run(
        cmd,
        env={**env, "STREAMD_AUTH_VIEWER_SECRET": SECRET},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    url = urlsplit(out)
    assert (url.scheme, url.netloc, url.path) == ("https", "tv.x", "/player.html")
    query = parse_qs(url.query)
    assert query["v"] == ["cam"]
    (token,) = query["token"]
    now = time.time()
    tokens.verify(SECRET, "cam", token, now + 7000)
    with pytest.raises(Expired):
        tokens.verify(SECRET, "cam", token, now + 7300)
