"""Who may publish: a key in `Authorization: Bearer`, checked before any byte is written."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from streamd.access.keys import KEY_FILE, Publishers, bearer_key
from streamd.app import create_app
from streamd.config import AuthConfig, Config
from streamd.errors import ConfigError, Unauthorized
from tests.conftest import TEST_KEY, AppClient, MediaFactory, wait_for


def _written(data_dir: Path) -> list[str]:
    """Every upload or published object in the data dir."""
    return sorted(
        str(p.relative_to(data_dir))
        for top in ("ingest", "hls", ".incoming")
        for p in (data_dir / top).rglob("*")
        if p.is_file()
    )


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "publishing needs a key"),
        ({"Authorization": "Bearer wrong-key"}, "wrong publish key"),
        ({"Authorization": f"Bearer {TEST_KEY}x"}, "wrong publish key"),
        ({"Authorization": f"Basic {TEST_KEY}"}, "publishing needs a key"),
        ({"Authorization": "Bearer"}, "publishing needs a key"),
    ],
)
async def test_publishing_without_the_key_is_refused_and_writes_nothing(
    make_client: AppClient, media: MediaFactory, config: Config, headers: dict[str, str], why: str
) -> None:
    client = await make_client(headers=headers)
    clip = media("ts", duration_s=1.0)
    requests = [
        ("POST", "/upload/cam", clip.read_bytes()),
        ("PUT", "/upload/cam/index0.ts", clip.read_bytes()),
        ("PUT", "/upload/cam/index.m3u8", b"#EXTM3U\n#EXT-X-ENDLIST\n"),
        ("DELETE", "/upload/cam/index0.ts", b""),
        ("POST", "/upload/cam/end", b""),
    ]
    for method, url, body in requests:
        resp = await client.request(method, url, data=body)
        assert resp.status == 401, (method, url)
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="streamd"'
        error = await resp.json()
        assert error["error"] == "unauthorized"
        assert why in error["message"]
    assert _written(config.data_dir) == []
    assert (await client.get("/api/videos/cam")).status == 404


async def test_the_right_key_publishes(
    make_client: AppClient, media: MediaFactory, config: Config
) -> None:
    other = replace(config, auth=AuthConfig(publish_keys=["first", TEST_KEY]))
    client = await make_client(other)  # sends TEST_KEY, the second of two keys
    resp = await client.post("/upload/cam", data=media("ts", duration_s=1.0).read_bytes())
    assert resp.status == 202
    await wait_for(client, "cam", lambda v: v["segments"] == 1)


async def test_with_no_key_configured_one_is_made_and_kept(
    make_client: AppClient, media: MediaFactory, config: Config
) -> None:
    open_config = replace(config, auth=AuthConfig())
    made = Publishers(open_config).generated
    assert made is not None
    assert len(made) >= 32
    path = config.data_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Publishers(open_config).generated == made  # the same on every start
    client = await make_client(open_config, headers={"Authorization": f"Bearer {made}"})
    resp = await client.post("/upload/cam", data=media("ts", duration_s=1.0).read_bytes())
    assert resp.status == 202
    refused = await make_client(open_config, headers={})
    assert (await refused.post("/upload/cam2", data=b"x")).status == 401


async def test_keyless_only_on_loopback(
    make_client: AppClient, media: MediaFactory, config: Config
) -> None:
    keyless = replace(config, auth=AuthConfig(keyless=True))
    client = await make_client(keyless, headers={})
    resp = await client.post("/upload/dev", data=media("ts", duration_s=1.0).read_bytes())
    assert resp.status == 202
    for host in ("0.0.0.0", "192.168.1.10", "::"):
        with pytest.raises(ConfigError, match="local development only"):
            create_app(replace(keyless, host=host))
    assert not (config.data_dir / KEY_FILE).exists(), "keyless mode makes no key"


def test_bearer_parsing_and_constant_time_check(config: Config) -> None:
    assert bearer_key("Bearer abc") == "abc"
    assert bearer_key("bearer   abc  ") == "abc"
    assert bearer_key("Basic abc") is None
    assert bearer_key("") is None
    assert bearer_key(None) is None
    publishers = Publishers(config)
    publishers.check("cam", TEST_KEY)
    for key in (None, "", TEST_KEY[:-1], TEST_KEY + "\x00", "é" * 8):
        with pytest.raises(Unauthorized):
            publishers.check("cam", key)


async def test_streamd_push_sends_its_key(make_client: AppClient, media: MediaFactory) -> None:
    client = await make_client()
    recording = media("mp4", duration_s=4, gop=30)
    streamd = [sys.executable, "-m", "streamd", "push", str(recording)]
    server = ["--server", str(client.make_url(""))]
    env = {k: v for k, v in os.environ.items() if k != "STREAMD_PUBLISH_KEY"}

    async def push(*args: str, **extra_env: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *streamd,
            *server,
            *args,
            env={**env, **extra_env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        return proc.returncode or 0, (out + err).decode()

    code, text = await push("--video", "nokey")
    assert code != 0
    assert "publishing needs a key" in text
    code, text = await push("--video", "withkey", "--key", TEST_KEY)
    assert code == 0, text
    code, text = await push("--video", "fromenv", STREAMD_PUBLISH_KEY=TEST_KEY)
    assert code == 0, text
    for vid in ("withkey", "fromenv"):
        await wait_for(client, vid, lambda v: v["state"] == "ended")
