"""Limits on what an upload may hold, read from its headers before a frame is decoded: a
decompression bomb is a 422 naming the limit, and nothing is kept."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from streamd.config import Config
from tests.conftest import FFMPEG, AppClient, MediaFactory, run


def _bomb(directory: Path) -> Path:
    """One black 8192x8192 frame (MJPEG in Matroska): 67 Mpixels, a few KB on disk."""
    path = directory / "bomb.mkv"
    if not path.exists():
        run(
            [
                FFMPEG, "-v", "error", "-y", "-f", "lavfi",
                "-i", "color=c=black:s=8192x8192:r=25:d=0.04",
                "-frames:v", "1", "-c:v", "mjpeg", "-f", "matroska", str(path),
            ]
        )  # fmt: skip
    return path


CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    # (the limit named, settings changed, the clip)
    ("upload.max_pixels", {}, {"bomb": True}),
    ("upload.max_pixels", {"max_pixels": 320 * 240 - 1}, {}),
    ("upload.max_frame_rate", {"max_frame_rate": 60.0}, {"rate": 120}),
    ("upload.max_duration_s", {"max_duration_s": 1.0}, {"duration_s": 2.0}),
    ("upload.max_streams", {"max_streams": 1}, {}),  # video and audio: two
]


@pytest.mark.parametrize(("limit", "settings", "clip"), CASES, ids=[c[0] for c in CASES])
async def test_uploads_past_a_limit_are_refused(
    make_client: AppClient,
    config: Config,
    media: MediaFactory,
    tmp_path: Path,
    limit: str,
    settings: dict[str, Any],
    clip: dict[str, Any],
) -> None:
    client = await make_client(replace(config, upload=replace(config.upload, **settings)))
    if clip.pop("bomb", False):
        path = _bomb(tmp_path)
    else:
        path = media("mp4", **{"duration_s": 1.0, **clip})
    resp = await client.post("/upload/cam", data=path.read_bytes())
    error = await resp.json()
    assert resp.status == 422, error
    assert error["error"] == "unsupported_media"
    assert limit in error["detail"]
    assert not list((config.data_dir / "ingest").rglob("*.*"))
    assert (await client.get("/api/videos/cam")).status == 404


async def test_within_the_limits_it_goes_through(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    upload = replace(config.upload, max_pixels=320 * 240, max_frame_rate=30, max_streams=2)
    client = await make_client(replace(config, upload=upload))
    resp = await client.post("/upload/cam", data=media("mp4", duration_s=1.0).read_bytes())
    assert resp.status == 202, await resp.json()
