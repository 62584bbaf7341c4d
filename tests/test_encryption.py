"""HLS AES-128: segments encrypted on disk in both packagings, a key every N segments served
only with a viewer token (by the primary and by edges), init segments in clear, and the
stream's secret nowhere but in the state database."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import m3u8
import pytest
from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from streamd.access import tokens
from streamd.app import create_app
from streamd.config import AuthConfig, Config, ProtectionConfig, load_config
from streamd.errors import ConfigError
from streamd.manifests.hls import StreamPlaylists
from streamd.manifests.hls.tags import MediaPlaylist, MediaSegment
from streamd.model.layout import STATE_FILE
from streamd.model.protection import Protection
from streamd.model.stream import Stream
from streamd.store.sqlite import SCHEMA_VERSION, SqliteState
from streamd.web import feed
from tests.conftest import (
    AUTH,
    FFMPEG,
    FFPROBE,
    TEST_KEY,
    AppClient,
    MediaFactory,
    fetch,
    ffmpeg_hls_put,
    ffprobe,
    published,
    server_process,
    wait_for,
)
from tests.test_state import RUNGS, _segment

SECRET = "viewer-secret-for-aes"
ROTATION = 2


def _packet_hashes(path: Path) -> dict[str, list[str]]:
    """Each stream's packets' MD5s, in order (ffmpeg's framemd5 without the times and the
    interleaving, which a remux may change)."""
    out = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-c", "copy", "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    streams: dict[str, list[str]] = {}
    for line in out.splitlines():
        if not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            streams.setdefault(fields[0], []).append(fields[5])  # then side data, if any
    return streams


def _decrypt(key: bytes, sequence: int, data: bytes) -> bytes:
    """AES-128-CBC + PKCS7 as a player does it, IV from the media sequence (RFC 8216 5.2)."""
    decryptor = Cipher(algorithms.AES(key), modes.CBC(sequence.to_bytes(16, "big"))).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(decryptor.update(data) + decryptor.finalize()) + unpadder.finalize()


def _is_plain_ts(data: bytes) -> bool:
    return len(data) >= 188 and all(data[i] == 0x47 for i in range(0, len(data) - 187, 188))


def _secret_of(data_dir: Path, video_id: str) -> bytes:
    db = sqlite3.connect(data_dir / STATE_FILE)
    try:
        row = db.execute("SELECT key_secret FROM streams WHERE video_id = ?", (video_id,))
        secret: bytes = row.fetchone()[0]
    finally:
        db.close()
    return secret


# -- values --------------------------------------------------------------------------------
def test_keys_rotate_and_segments_round_trip() -> None:
    p = Protection(b"s" * 32, rotation_segments=3)
    assert [p.key_index(s) for s in range(7)] == [0, 0, 0, 1, 1, 1, 2]
    assert p.key("cam", 0) != p.key("cam", 1) != p.key("other", 1)
    assert p.key("cam", 1) == hmac.new(b"s" * 32, b"cam/1", hashlib.sha256).digest()[:16]
    for size in (0, 1, 15, 16, 17, 188 * 7):
        data = os.urandom(size)
        sealed = p.encrypt("cam", 4, data)
        assert len(sealed) == (size // 16 + 1) * 16  # PKCS7 always pads
        assert _decrypt(p.key("cam", 1), 4, sealed) == data
        assert p.decrypt("cam", 4, sealed) == data
    assert "s" * 8 not in repr(p)  # the secret stays out of logs


def _playlist(entries: list[tuple[str, str]]) -> str:
    return MediaPlaylist(
        tuple(
            MediaSegment(f"seg{i}.m4s", 2.0, None, m, key_uri=k) for i, (m, k) in enumerate(entries)
        ),
        2,
    ).render()


def test_init_segments_stay_clear_as_rfc_8216_4_3_2_4_says() -> None:
    text = _playlist([("a.mp4", "k0"), ("a.mp4", "k0"), ("a.mp4", "k1"), ("b.mp4", "k1")])
    lines = [line for line in text.splitlines() if not line.startswith(("#EXTINF", "seg"))]
    assert lines[-6:] == [
        '#EXT-X-MAP:URI="a.mp4"',
        '#EXT-X-KEY:METHOD=AES-128,URI="k0"',
        '#EXT-X-KEY:METHOD=AES-128,URI="k1"',
        "#EXT-X-KEY:METHOD=NONE",  # a key applies to every EXT-X-MAP after it
        '#EXT-X-MAP:URI="b.mp4"',
        '#EXT-X-KEY:METHOD=AES-128,URI="k1"',
    ]
    parsed = m3u8.loads(text)
    assert [s.key.uri for s in parsed.segments] == ["k0", "k0", "k1", "k1"]
    assert {s.key.method for s in parsed.segments} == {"AES-128"}
    assert all(s.key.iv is None for s in parsed.segments)  # the media sequence is the IV


async def test_appended_playlists_equal_a_full_render_and_edges_get_the_keys() -> None:
    protection = Protection(os.urandom(32), ROTATION)
    stream = Stream("s1", 1.7e9, rungs=RUNGS, frame_rate=30.0, protection=protection)
    playlists = StreamPlaylists("s1", 2.0)
    inits = ["init-a.mp4"] * 3 + ["init-b.mp4"] * 4
    on_disk: dict[str, bytes] = {}
    for i, init in enumerate(inits):
        seg = _segment(i, 2.0 * i, 2.0, init)
        stream.add_segment(seg)
        change = playlists.add(stream, seg)
        for key, data in change.appended.items():
            on_disk[key] += data
        on_disk.update(change.replaced)
    whole = MediaPlaylist(
        tuple(
            MediaSegment(
                f"seg{i:06d}.m4s", 2.0, None, init, key_uri=f"../../keys/{i // ROTATION}.key"
            )
            for i, init in enumerate(inits)
        ),
        2,
    ).render()
    assert on_disk["hls/s1/fmp4/240p/index.m3u8"].decode() == whole
    ts = m3u8.loads(on_disk["hls/s1/ts/144p/index.m3u8"].decode())
    assert [s.key.uri for s in ts.segments] == [f"../../keys/{i // 2}.key" for i in range(7)]
    assert playlists.key(3) == protection.key("s1", 3)
    assert playlists.key(4) is None  # past what the playlists name
    assert playlists.key(-1) is None
    # What an edge is sent: the secret too, so it serves the same keys.
    reader = StreamReader(BaseProtocol(asyncio.get_running_loop()), 1 << 16)
    reader.feed_data(feed.encode(playlists.change(replaced=playlists.files())))
    reader.feed_eof()
    changes = [c async for c in feed.decode(reader)]
    assert changes[0] is not None
    assert (changes[0].protection, changes[0].key_count) == (protection, 4)


async def test_state_keeps_the_secret_and_upgrades_a_version_1_database(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    # A database as streamd wrote it before encryption (schema 1), with a stream "old".
    fixture = Path(__file__).parent / "fixtures" / "state-v1.sql"
    with sqlite3.connect(path) as db:
        db.executescript(fixture.read_text())
    db.close()

    state = SqliteState(path)
    await state.open()
    protection = Protection(os.urandom(32), 7)
    await state.record(Stream("locked", 2.0, protection=protection))
    streams = {s.video_id: s for s in await state.load()}
    await state.close()
    assert streams["old"].protection is None
    assert streams["locked"].protection == protection
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
    db.close()


# -- configuration and refusals ------------------------------------------------------------
def test_global_encryption_needs_a_viewer_secret(tmp_path: Path, config: Config) -> None:
    with pytest.raises(ConfigError, match="viewer_secret"):
        create_app(replace(config, protection=ProtectionConfig(encryption="aes-128")))
    with pytest.raises(ConfigError, match="aes-256"):
        create_app(replace(config, protection=ProtectionConfig(encryption="aes-256")))
    with pytest.raises(ConfigError, match="key_rotation_segments"):
        create_app(replace(config, protection=ProtectionConfig(key_rotation_segments=0)))
    env = {"STREAMD_PROTECTION_ENCRYPTION": "aes-128"}
    assert load_config(env=env).protection.encryption == "aes-128"
    # `streamd serve` says so and stops, before it listens.
    cmd = [sys.executable, "-m", "streamd", "serve", "--data-dir", str(tmp_path / "d")]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMD_")}
    out = subprocess.run(
        cmd, env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 2
    assert "viewer_secret" in out.stderr


async def test_per_stream_encryption_is_checked_before_the_body(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    clip = media("ts", duration_s=1.0).read_bytes()
    client = await make_client()  # no viewer secret
    resp = await client.post("/upload/a?encryption=aes-128", data=clip)
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "bad_request"
    assert "viewer" in body["message"]
    resp = await client.post("/upload/a?encryption=aes-256", data=clip)
    assert (resp.status, (await resp.json())["error"]) == (400, "bad_request")
    assert (await client.get("/api/videos/a")).status == 404  # nothing was kept

    auth = AuthConfig(publish_keys=[TEST_KEY], viewer_secret=SECRET)
    signed = await make_client(replace(config, auth=auth))
    assert (await signed.post("/upload/clear", data=clip)).status == 202
    resp = await signed.post("/upload/clear?encryption=aes-128", data=clip)
    assert (resp.status, (await resp.json())["error"]) == (409, "conflict")
    everything = await make_client(
        replace(config, auth=auth, protection=ProtectionConfig(encryption="aes-128"))
    )
    resp = await everything.post("/upload/b?encryption=none", data=clip)
    assert (resp.status, (await resp.json())["error"]) == (400, "bad_request")


# -- end to end ----------------------------------------------------------------------------
@pytest.fixture
async def encrypted(make_client: AppClient, config: Config, media: MediaFactory) -> TestClient:
    """A stream of 4 segments, encrypted by its first upload's ?encryption=aes-128."""
    auth = AuthConfig(publish_keys=[TEST_KEY], viewer_secret=SECRET)
    protection = ProtectionConfig(key_rotation_segments=ROTATION)
    client = await make_client(replace(config, auth=auth, protection=protection))
    parts = media.split(media("mp4", duration_s=8, gop=30), 2.0)
    for i, part in enumerate(parts):
        query = "?encryption=aes-128" if i == 0 else ""
        resp = await client.post(
            f"/upload/aes{query}", data=part.read_bytes(), headers={"X-Segment-Number": str(i)}
        )
        assert resp.status == 202, await resp.text()
    await wait_for(client, "aes", published(len(parts)))
    return client


async def test_an_encrypted_stream_plays_with_its_keys(
    encrypted: TestClient, config: Config, tmp_path: Path
) -> None:
    client = encrypted
    token = tokens.sign(SECRET, "aes", int(time.time()) + 600)
    info = await (await client.get(f"/api/videos/aes?token={token}")).json()
    assert info["encryption"] == "aes-128"
    keys: dict[str, bytes] = {}
    for fmt, ext in (("fmp4", "m4s"), ("ts", "ts")):
        master_url = f"/viewstream/metadata/aes?format={fmt}&token={token}"
        master = m3u8.loads((await fetch(client, master_url)).decode())
        media_url = urljoin(master_url, master.playlists[0].uri)
        playlist = m3u8.loads((await fetch(client, media_url)).decode())
        segments = playlist.segments
        assert len(segments) >= 4
        assert {s.key.method for s in segments} == {"AES-128"}
        uris = [s.key.uri for s in segments]
        assert all(u.endswith(f".key?token={token}") for u in uris)
        # A new key every ROTATION segments, the same URL in every rung and packaging.
        assert uris == [uris[i - i % ROTATION] for i in range(len(uris))]
        assert len(set(uris)) == (len(uris) + ROTATION - 1) // ROTATION
        init = b""
        audio: list[bytes] = []  # fMP4: the audio rendition's segments, decrypted, with init
        if fmt == "fmp4":
            init = await fetch(client, urljoin(media_url, playlist.segment_map[0].uri))
            assert init[4:8] == b"ftyp"  # in clear
            audio_url = urljoin(master_url, master.media[0].uri)
            audio_playlist = m3u8.loads((await fetch(client, audio_url)).decode())
            audio_init = await fetch(client, urljoin(audio_url, audio_playlist.segment_map[0].uri))
            for sequence, seg in enumerate(audio_playlist.segments):
                key = await fetch(client, urljoin(audio_url, seg.key.uri))
                data = _decrypt(key, sequence, await fetch(client, urljoin(audio_url, seg.uri)))
                audio.append(audio_init + data)
        rung_dir = media_url.split("?")[0].rsplit("/", 1)[0]
        for sequence, seg in enumerate(segments):
            key_url = urljoin(media_url, seg.key.uri)
            resp = await client.get(key_url)
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/octet-stream"
            assert resp.headers["Cache-Control"] == "private, no-store"
            key = keys.setdefault(key_url, await resp.read())
            assert len(key) == 16
            data = await fetch(client, urljoin(media_url, seg.uri))
            on_disk = config.data_dir / rung_dir.lstrip("/") / f"seg{sequence:06d}.{ext}"
            assert on_disk.read_bytes() == data  # the cache holds what the store holds
            assert not _is_plain_ts(data)
            assert b"moof" not in data
            assert b"mdat" not in data
            clear = _decrypt(key, sequence, data)  # IV: the segment's media sequence
            assert _is_plain_ts(clear) if fmt == "ts" else clear[4:8] in (b"styp", b"moof")
            clip = tmp_path / f"{fmt}-{sequence}.{ext}"
            clip.write_bytes(init + clear)
            streams = ffprobe(clip, "-show_streams")["streams"]
            # TS carries the audio in every rung; fMP4 (CMAF) in a rendition of its own.
            assert {s["codec_type"] for s in streams} == {"video", "audio"} - {
                "audio" if audio else ""
            }
            # What the server decrypts for /viewstream is what a player decrypts (a wrong
            # IV would spoil only bytes 12-15 of the first block: ffprobe would not see it):
            # the same packets, in a file of their own.
            rung = rung_dir.rsplit("/", 1)[1]
            view = f"/viewstream/aes?timestamp={2 * sequence + 0.5}&format={fmt}"
            viewed = tmp_path / f"view-{fmt}-{sequence}.{ext}"
            viewed.write_bytes(await fetch(client, f"{view}&resolution={rung}&token={token}"))
            hashes = _packet_hashes(clip)
            if audio:
                (tmp_path / "audio.mp4").write_bytes(audio[sequence])
                hashes["1"] = _packet_hashes(tmp_path / "audio.mp4")["0"]
            assert _packet_hashes(viewed) == hashes, fmt
    assert len(set(keys.values())) == 2  # 4 segments, a key every 2
    # FFmpeg's own HLS reader follows the master, fetches the keys and decrypts (once the
    # stream has ended: it would wait for more of a live one).
    assert (await client.post("/upload/aes/end")).status == 202
    await wait_for(client, "aes", lambda v: v["state"] == "ended")
    master_url = client.make_url(f"/viewstream/metadata/aes?format=ts&token={token}")
    probe = await asyncio.create_subprocess_exec(  # not subprocess.run: the server is on this loop
        FFPROBE, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
        "stream=nb_read_frames", "-of", "csv=p=0", str(master_url),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(probe.communicate(), 60)
    assert int(out.split()[0]) >= 200  # 8 s at 30 fps: about every frame

    # Keys: the token as for any other URL, and nothing past what the playlists name.
    expired = tokens.sign(SECRET, "aes", int(time.time()) - 1)
    for query, status, error in (
        ("", 401, "unauthorized"),
        (f"?token={token}x", 403, "forbidden"),
        (f"?token={expired}", 410, "expired"),
    ):
        resp = await client.get(f"/hls/aes/keys/0.key{query}")
        assert (resp.status, (await resp.json())["error"]) == (status, error)
    for missing in ("keys/2.key", "keys/x.key", "keys/00000000001.key", "keys/"):
        assert (await client.get(f"/hls/aes/{missing}?token={token}")).status == 404

    # /viewstream hands out a piece that plays alone: decrypted, for a token holder only.
    resp = await client.get(f"/viewstream/aes?timestamp=3&token={token}")
    assert resp.status == 200
    assert resp.headers["Cache-Control"].startswith("private")
    clip = tmp_path / "view.mp4"
    clip.write_bytes(await resp.read())
    assert ffprobe(clip, "-show_streams")["streams"][0]["height"] == 240

    # The secret, and the keys it makes, are in the state database and nowhere else.
    secret = _secret_of(config.data_dir, "aes")
    assert len(secret) >= 16
    needles = [secret, secret.hex().encode(), *keys.values()]
    files = [p for p in config.data_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".m4s" for p in files)
    for path in files:
        if path.name.startswith(STATE_FILE):  # the database, its WAL and shared memory
            continue
        data = path.read_bytes()
        assert not any(n in data for n in needles), path


@pytest.mark.slow
async def test_global_encryption_through_edge_processes(
    tmp_path: Path, media: MediaFactory
) -> None:
    secret = "edge-aes-secret"
    async with server_process(
        tmp_path / "data",
        STREAMD_HTTP_PROCESSES="2",
        STREAMD_AUTH_VIEWER_SECRET=secret,
        STREAMD_PROTECTION_ENCRYPTION="aes-128",
    ) as srv:
        clip = media("ts", duration_s=1.0)
        async with (
            aiohttp.ClientSession(headers=AUTH) as s,
            s.post(f"{srv.url}/upload/edgeaes", data=clip.read_bytes()) as r,
        ):
            assert r.status == 202  # no ?encryption=: the config's choice
        token = tokens.sign(secret, "edgeaes", int(time.time()) + 600)
        url = f"{srv.url}/hls/edgeaes/ts/240p/index.m3u8?token={token}"
        seen: set[tuple[int, bytes]] = set()
        for _ in range(300):
            async with aiohttp.ClientSession() as s, s.get(url) as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.1)
        # New connections land on both edges: each serves the key, and only with the token.
        for _ in range(12):
            async with aiohttp.ClientSession() as s:
                async with s.get(url) as r:
                    playlist = m3u8.loads(await r.text())
                seg = playlist.segments[0]
                assert seg.key.method == "AES-128"
                async with s.get(urljoin(url, seg.key.uri)) as r:
                    seen.add((r.status, await r.read()))
                async with s.get(f"{srv.url}/hls/edgeaes/keys/0.key") as r:
                    assert r.status == 401
                async with s.get(urljoin(url, seg.uri)) as r:
                    data = await r.read()
        assert len(seen) == 1
        status, key = seen.pop()
        assert status == 200
        assert key == Protection(_secret_of(srv.data_dir, "edgeaes"), 10).key("edgeaes", 0)
        (tmp_path / "seg.ts").write_bytes(_decrypt(key, 0, data))
        assert ffprobe(tmp_path / "seg.ts", "-show_streams")["streams"][0]["height"] == 240


@pytest.mark.slow
async def test_ffmpeg_put_asks_for_encryption_in_its_urls(
    make_client: AppClient, config: Config
) -> None:
    auth = AuthConfig(publish_keys=[TEST_KEY], viewer_secret=SECRET)
    client = await make_client(replace(config, auth=auth))
    base = str(client.make_url("/upload/pushed/"))
    query = "?encryption=aes-128"
    cmd = ffmpeg_hls_put(
        f"{base}index.m3u8{query}", 2, "-hls_segment_filename", f"{base}index%d.ts{query}"
    )
    ffmpeg = await asyncio.create_subprocess_exec(*cmd)
    assert await ffmpeg.wait() == 0
    info = await wait_for(client, "pushed", lambda v: v["state"] == "ended")
    assert info["encryption"] == "aes-128"
    token = tokens.sign(SECRET, "pushed", int(time.time()) + 600)
    body = await fetch(client, f"/hls/pushed/ts/240p/index.m3u8?token={token}")
    assert b"METHOD=AES-128" in body
