"""Upgrades lose nothing: a data dir written by streamd 0.1 (JSON manifests, revision
8d664d5; see tests/fixtures/datadir-v1/README.md) is served byte for byte after the first
start of this release, and its streams go on where they were."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import m3u8

from streamd.model.layout import STATE_FILE
from tests.conftest import AppClient, MediaFactory, fetch, upload, wait_for

FIXTURE = Path(__file__).parent / "fixtures" / "datadir-v1"
STREAMS = ("v1live", "v1ended")


def _placeholder(key: str, size: int) -> bytes:
    """Stand-in bytes for a media object of the old data dir (the fixture keeps no media)."""
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def _old_data_dir(data_dir: Path) -> dict[str, bytes]:
    shutil.copytree(FIXTURE / "data", data_dir)
    media = json.loads((FIXTURE / "media.json").read_text())
    objects = {}
    for key, size in media.items():
        path = data_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(objects.setdefault(key, _placeholder(key, size)))
    return objects


def _served(name: str) -> bytes:
    return (FIXTURE / "served" / name).read_bytes()


def _api(name: str) -> dict[str, Any]:
    return json.loads(_served(name))  # type: ignore[no-any-return]


async def test_a_v1_data_dir_is_served_byte_for_byte(
    make_client: AppClient, media: MediaFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    objects = _old_data_dir(data_dir)
    old_disk = {p: p.read_bytes() for p in data_dir.rglob("*.m3u8")}
    client = await make_client(data_dir=data_dir)

    for vid in STREAMS:
        for packaging in ("fmp4", "ts"):
            body = await fetch(client, f"/viewstream/metadata/{vid}?format={packaging}")
            assert body == _served(f"{vid}.master-{packaging}.m3u8")
            for rung in ("240p", "144p"):
                url = f"/hls/{vid}/{packaging}/{rung}/index.m3u8"
                assert await fetch(client, url) == _served(f"{vid}.{packaging}.{rung}.m3u8")
        old, new = _api(f"{vid}.api.json"), await (await client.get(f"/api/videos/{vid}")).json()
        for field in ("state", "durationS", "segments", "frameRate", "uploads", "rungs"):
            assert new[field] == old[field], field
        assert [(u["number"], u["state"], u["source"]) for u in new["uploadList"]] == [
            (u["number"], u["state"], u["source"]) for u in old["uploadList"]
        ]
    # Every object (segments, init segments, thumbnails) is where it was, unchanged.
    for key, data in objects.items():
        if key.startswith("hls/"):
            assert await fetch(client, "/" + key) == data, key
    # The playlists on disk are the ones 0.1 wrote, and each manifest is kept, renamed.
    assert {p: p.read_bytes() for p in data_dir.rglob("*.m3u8")} == old_disk
    for vid in STREAMS:
        assert not (data_dir / "streams" / vid / "manifest.json").exists()
        assert (data_dir / "streams" / vid / "manifest.json.migrated").is_file()
    db = sqlite3.connect(data_dir / STATE_FILE)
    assert db.execute("SELECT COUNT(*) FROM segments").fetchone() == (6,)
    db.close()

    # The live stream goes on: the next upload number, the next segment, the same timeline.
    before = await fetch(client, "/hls/v1live/ts/240p/index.m3u8")
    accepted = await upload(client, "v1live", media("ts", duration_s=2.0, gop=30))
    assert accepted["segment"] == 3
    await wait_for(client, "v1live", lambda v: v["segments"] == 4)
    after = await fetch(client, "/hls/v1live/ts/240p/index.m3u8")
    assert after.startswith(before), "EVENT playlists only grow at the end"
    playlist = m3u8.loads(after.decode())
    assert playlist.segments[-1].uri == "seg000003.ts"
    assert playlist.segments[-1].duration == 2.0
    assert (await (await client.get("/api/videos/v1live")).json())["durationS"] == 8.0
    # The ended one stays ended.
    resp = await client.post("/upload/v1ended", data=b"x")
    assert resp.status == 409
    assert (await resp.json())["error"] == "stream_ended"


async def test_a_second_start_does_not_import_again(make_client: AppClient, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _old_data_dir(data_dir)
    first = await make_client(data_dir=data_dir)
    await first.close()
    again = await make_client(data_dir=data_dir)
    body = await fetch(again, "/hls/v1ended/fmp4/240p/index.m3u8")
    assert body == _served("v1ended.fmp4.240p.m3u8")
    db = sqlite3.connect(data_dir / STATE_FILE)
    assert db.execute("SELECT COUNT(*) FROM uploads").fetchone() == (6,)
    db.close()
