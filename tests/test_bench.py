"""Each benchmark still runs end to end (a few seconds' worth; the real runs are in bench/)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def _bench(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_transcode_bench_smoke() -> None:
    out = _bench("bench.transcode", "--seconds", "2", "--height", "360", "--no-capacity")
    assert "speed ratio = ffmpeg_time / streamd_time" in out
    assert "PSNR  360p: streamd" in out
    assert "peak RSS by process kind: " in out


def test_vod_bench_smoke() -> None:
    out = _bench("bench.vod", "--seconds", "4", "--height", "360")
    assert "speed ratio = ffmpeg_time / streamd_time" in out
    assert "workers speed-up = 1 worker /" in out


def test_latency_bench_smoke() -> None:
    """Glass to glass through streamd (nginx-rtmp's run is the same code, and costs as much
    again): a barcoded source, hls.js reading the frame numbers back."""
    out = _bench("bench.latency", "--seconds", "5", "--servers", "streamd")
    assert "server           p50" in out
    row = next(line for line in out.splitlines() if line.startswith("streamd "))
    assert int(row.split()[-1]) > 0, out  # samples: frames read back from the picture


def test_publish_bench_smoke() -> None:
    out = _bench("bench.publish", "--segments", "200", "--window", "20")
    assert "     200 segments" in out
    for measure in ("CPU on loop (us)", "bytes written"):
        for stat in ("median", "mean"):
            assert f"ratio last/10th, {measure}, window {stat}: " in out


HAS_NGINX = bool(shutil.which("nginx")) or Path("/usr/sbin/nginx").exists()


@pytest.mark.skipif(
    not (HAS_NGINX and shutil.which("wrk")), reason="needs wrk and nginx (.ci/run installs them)"
)
def test_serve_bench_smoke() -> None:
    out = _bench("bench.serve", "--seconds", "1", "--connections", "8")
    assert out.count("ratio streamd/nginx = ") == 2


def test_overload_bench_smoke() -> None:
    out = _bench("bench.overload", "--seconds", "4", "--streams", "1", "--height", "360")
    assert "no degrading (reference): transcode.overload_delay_s = 0" in out
    assert "live0: publish delay p50" in out
    assert "worst publish delay:" in out


def test_audio_bench_smoke() -> None:
    out = _bench("bench.audio", "--seconds", "10", "--runs", "1")
    assert "ratio ffmpeg/streamd = " in out
    assert "5 segments of 2 s" in out


def test_retention_bench_smoke() -> None:
    out = _bench("bench.retention", "--segments", "1300", "--window-min", "10")
    assert "ratio sliding/EVENT = " in out
    assert "trims: " in out
