"""A full disk, for real on a small tmpfs: uploads are refused with 507 before it is full
(and when a write still hits ENOSPC), nothing half-written is kept, and what was published
stays readable."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from streamd.config import Config
from tests.conftest import AppClient, MediaFactory, fetch, published, upload, wait_for

DISK_BYTES = 24 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path, leave_bytes: int) -> Path:
    """A file taking all but `leave_bytes` of the disk's free space."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with filler.open("ab") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler


def _partial_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file() and ".tmp-" in p.name] + [
        p for p in (data_dir / ".incoming").rglob("*") if p.is_file()
    ]


async def test_uploads_stop_at_the_low_mark(
    make_client: AppClient, config: Config, media: MediaFactory, small_disk: Path
) -> None:
    data_dir = small_disk / "data"
    cfg = replace(config, data_dir=data_dir, min_free_bytes=8 << 20)
    client = await make_client(cfg)
    await upload(client, "cam", media("ts", duration_s=1.0), number=0)
    await wait_for(client, "cam", published(1))
    playlist = await fetch(client, "/hls/cam/ts/240p/index.m3u8")
    segment = await fetch(client, "/hls/cam/ts/240p/seg000000.ts")

    filler = _fill(small_disk, 4 << 20)  # under the 8 MB mark, not yet full
    second = media("ts", duration_s=1.0, tone_hz=880)
    resp = await client.post("/upload/cam", data=second.read_bytes())
    error = await resp.json()
    assert resp.status == 507, error
    assert error["error"] == "storage_error"
    assert "min_free_bytes" in error["detail"]
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["freeSpace"] is False
    assert await fetch(client, "/hls/cam/ts/240p/index.m3u8") == playlist
    assert await fetch(client, "/hls/cam/ts/240p/seg000000.ts") == segment
    assert _partial_files(data_dir) == []

    filler.unlink()  # room again: uploads go on where they were
    await upload(client, "cam", second, number=1)
    await wait_for(client, "cam", published(2))


async def test_a_write_that_hits_enospc_keeps_nothing(
    make_client: AppClient, config: Config, media: MediaFactory, small_disk: Path
) -> None:
    data_dir = small_disk / "data"
    client = await make_client(replace(config, data_dir=data_dir, min_free_bytes=0))
    await upload(client, "cam", media("ts", duration_s=1.0), number=0)
    await wait_for(client, "cam", published(1))
    playlist = await fetch(client, "/hls/cam/ts/240p/index.m3u8")

    _fill(small_disk, 16 << 10)  # 16 KB left; the upload is ~100 KB
    big = media("ts", duration_s=2.0, noise=True)
    assert big.stat().st_size > 64 << 10
    resp = await client.post("/upload/cam", data=io.BytesIO(big.read_bytes()))
    error = await resp.json()
    assert resp.status == 507, error
    assert error["message"] == "the disk is full"
    assert _partial_files(data_dir) == []
    assert await fetch(client, "/hls/cam/ts/240p/index.m3u8") == playlist
    assert (await client.get("/api/videos/cam")).status == 200
