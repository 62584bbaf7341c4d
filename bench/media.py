"""The test source every benchmark feeds: ffmpeg's testsrc2 (optionally noisy) and a tone."""

from __future__ import annotations

import shutil
from pathlib import Path

from streamd.model.ladder import RungSpec

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


def split_scale(rungs: list[RungSpec]) -> list[str]:
    """ffmpeg's filter graph for a ladder: the picture split and scaled (bicubic) to each
    rung's lines, as `[o0]`, `[o1]`..."""
    n = len(rungs)
    graph = f"[0:v]split={n}" + "".join(f"[v{i}]" for i in range(n)) + ";"
    graph += ";".join(f"[v{i}]scale=-2:{r.lines}:flags=bicubic[o{i}]" for i, r in enumerate(rungs))
    return ["-filter_complex", graph]


def hls_ladder(out: Path, rungs: int) -> list[str]:
    """ffmpeg output arguments: a 2 s-segment fMP4 HLS ladder of `rungs` variants (video i
    with audio i), IDRs every 2 s, under `out`."""
    return [
        "-force_key_frames", "expr:gte(t,n_forced*2)",
        "-f", "hls", "-hls_time", "2", "-hls_segment_type", "fmp4",
        "-hls_playlist_type", "event", "-master_pl_name", "master.m3u8",
        "-var_stream_map", " ".join(f"v:{i},a:{i}" for i in range(rungs)),
        str(out / "v%v" / "index.m3u8"),
    ]  # fmt: skip
