"""The test source every benchmark feeds: ffmpeg's testsrc2 (optionally noisy) and a tone."""

from __future__ import annotations

import shutil

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def lavfi_source(width: int, height: int, seconds: int, noise: int = 0) -> list[str]:
    """ffmpeg input arguments: 30 fps picture (camera-like noise if `noise`) and a 440 Hz tone."""
    video = f"testsrc2=s={width}x{height}:r=30:d={seconds}"
    if noise:
        video += f",noise=alls={noise}:allf=t"
    return ["-f", "lavfi", "-i", video, "-f", "lavfi", "-i", f"sine=f=440:r=48000:d={seconds}"]


def h264_aac(preset: str, *video: str) -> list[str]:
    """ffmpeg output arguments: x264 at `preset` with 2 s GOPs (and `video` options), AAC."""
    return [
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-g",
        "60",
        "-pix_fmt",
        "yuv420p",
        *video,
        "-c:a",
        "aac",
    ]
