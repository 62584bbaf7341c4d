"""Glass-to-glass latency of a live stream (issue 12): streamd against nginx-rtmp, same run.

    .venv/bin/python -m bench.latency [--seconds 30] [--servers streamd nginx] [--gop 30]
        [--join 6] [--max-height H] [--page bench|streamd] [--env KEY=VALUE] [--verbose]

Source: `ffmpeg -re` making 720p30 testsrc2 and a 440 Hz tone, x264 `veryfast` (its own
lookahead and B-frames, not `zerolatency`: an encoder's delay is part of the figure, as
OBS's would be) at 3 Mbit/s CBR, AAC, published over RTMP (`-f flv`); `--noise N` adds
camera-like noise, which costs x264 ~0.4 of a core more than this box has to spare. Before
encoding, each frame gets its number N drawn along the top as a barcode: 18 columns of
64x64 px from x = 64, column 0 white and column 1 black (the thresholds), column 2 + k bit
k of N (white if set) in the top row and its opposite in the row below (a check per bit).
The same picture, cut back to the barcode, also goes to a raw pipe that this process reads,
so it knows when ffmpeg made each frame. The capture time of frame N is t0 + N/30: with
`-re` ffmpeg makes frame N no earlier than that, and t0 is the least (time made - N/30)
over the run (0.2-0.45 s after ffmpeg is spawned). How late ffmpeg made frames against that
schedule is printed as "source lag": 10-40 ms at the median when the box keeps up, more
when x264 cannot keep real time (a camera would not wait, so that counts as latency, as an
encoder's queue would).

Player: headless Chromium (playwright-core, `bench/glass.mjs`) with hls.js in low-latency
mode, `new Hls({lowLatencyMode: true, maxLiveSyncPlaybackRate: 1, backBufferLength: 90})`
with the catch-up of `static/js/catchup.js` up to 1.5x (streamd's player's config), on a
page of the bench's own served at each server's origin, so both servers get the very same
player (`--page streamd` plays streamd's `/player.html` instead; `--max-height` caps hls.js's
ABR). It joins the running stream `--join` s after the publisher started; from the first
`playing` event, on shown frames (`requestVideoFrameCallback`, at most every 150 ms) it
draws the picture to a canvas and decodes the barcode: latency = the time the frame is
shown - (t0 + N/30), both on this machine's wall clock. Samples failing the checks are
dropped (and counted). Stalls are `waiting` events after playback started.

Servers, one after the other (2 cores), the same source command and player:
- streamd (`streamd serve` on its defaults, RTMP ingest; `--env` changes a setting): ladder
  720/480/360 from a 720p source, the source passed through as the 720p rung (3 Mbit/s is
  within 1.2x its 2.8 Mbit/s), 2 s segments, 0.2 s LL-HLS parts; hls.js plays the fMP4
  master and picks its rung.
- nginx-rtmp (Debian's nginx with libnginx-mod-rtmp; `hls on; hls_fragment 1s;
  hls_playlist_length 10s`), its MPEG-TS HLS served over HTTP by the same nginx.

nginx-rtmp cuts fragments only at keyframes, so with `-g 60` its fragments are 2 s whatever
`hls_fragment` says. The default `--gop 30` gives it the 1 s fragments the issue's
reference was measured with; streamd is unaffected (it cuts a passed-through source at the
first keyframe once a segment's 2 s are due: still 2 s segments with 0.2 s parts).
`--gop 60` (OBS's usual 2 s) measures both with 2 s keyframes.

Each run also prints, per server, the CPU of source, server and player against the whole
box: streamd transcodes two rungs, nginx-rtmp nothing, so on 2 cores streamd's run is the
one near saturation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from bench.media import FFMPEG
from bench.server import Server, cpu_s, free_port, process_tree
from streamd.model.layout import STATE_FILE

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"  # dpkg -L libnginx-mod-rtmp
FPS = 30
BITS = 16  # frame numbers up to 65535: 36 minutes at 30 fps
BLOCK = 64  # px of a barcode column in the 1280x720 picture (glass.mjs has the same)
X0 = 64  # where the barcode starts
VIDEO_ID = "glass"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else 0.0


def percentiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {statistics.median(values):.2f} s, p95 {p95(values):.2f} s, "
        f"max {max(values):.2f} s ({len(values)} samples)"
    )


def _delays(data_dir: Path, query: str, video_id: str) -> list[float]:
    """One delay per segment of `video_id`, in sequence order, from the state database."""
    db = sqlite3.connect(f"file:{data_dir / STATE_FILE}?mode=ro", uri=True)
    try:
        return [delay for (delay,) in db.execute(query, (video_id,)).fetchall()]
    finally:
        db.close()


def publish_delays(data_dir: Path, video_id: str) -> list[float]:
    """Per segment: published time minus the arrival of the upload it came from."""
    return _delays(
        data_dir,
        "SELECT s.published_wall_s - u.received_wall_s FROM segments s JOIN uploads u"
        " ON u.video_id = s.video_id AND u.number = s.upload"
        " WHERE s.video_id = ? ORDER BY s.sequence",
        video_id,
    )


def live_publish_delays(data_dir: Path, video_id: str) -> list[float]:
    """Per live segment: published time minus the wall time its last frame arrived."""
    return _delays(
        data_dir,
        "SELECT g.published_wall_s - (s.start_wall_s + g.start_s + g.duration_s)"
        " FROM segments g JOIN streams s ON s.video_id = g.video_id"
        " WHERE g.video_id = ? ORDER BY g.sequence",
        video_id,
    )


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of every core since boot, from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


class Usage:
    """CPU seconds of the processes of one run (each with its descendants, sampled twice a
    second while it lives) and how busy the whole box was meanwhile."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.cpu: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None
        self.started = (0, 0)
        self.started_s = 0.0
        self.wall_s = 0.0
        self.box_cores = 0.0

    def add(self, label: str, pid: int) -> None:
        self.pids[label] = pid

    async def __aenter__(self) -> Usage:
        self.started, self.started_s = busy_jiffies(), time.monotonic()
        self.task = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.5)

    def sample(self) -> None:
        for label, pid in self.pids.items():
            if Path(f"/proc/{pid}").exists():
                self.cpu[label] = max(self.cpu.get(label, 0.0), cpu_s(process_tree(pid)))

    async def __aexit__(
        self, *exc: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        busy, total = busy_jiffies()
        self.wall_s = time.monotonic() - self.started_s
        cores = os.cpu_count() or 1
        self.box_cores = cores * (busy - self.started[0]) / max(1, total - self.started[1])

    def summary(self) -> str:
        ours = sum(self.cpu.values())
        parts = ", ".join(f"{k} {v / self.wall_s:.2f}" for k, v in self.cpu.items())
        return (
            f"cores used over {self.wall_s:.0f} s: {parts}; whole box {self.box_cores:.2f} "
            f"of {os.cpu_count()} (others ~{max(0.0, self.box_cores - ours / self.wall_s):.2f})"
        )


def source_command(url: str, seconds: float, gop: int, noise: int) -> list[str]:
    """ffmpeg: the barcoded 720p30 source with a tone to `url` over RTMP, and the barcode
    alone (BITS + 2 columns x 2 rows of gray bytes a frame) to stdout as each frame is made."""
    cols = BITS + 2
    bit = "255*abs(Y-mod(floor(N/pow(2\\,X-2))\\,2))"  # top row: bit X-2 of N; bottom: not
    lum = f"if(eq(X\\,0)\\,255\\,if(eq(X\\,1)\\,0\\,{bit}))"
    graph = (
        f"nullsrc=s={cols}x2:r={FPS},format=gray,geq=lum='{lum}',"
        f"scale={cols * BLOCK}:{2 * BLOCK}:flags=neighbor,format=yuv420p[bar];"
        f"[0:v]{f'noise=alls={noise}:allf=t' if noise else 'null'}[bg];"
        f"[bg][bar]overlay={X0}:0:shortest=1,format=yuv420p,split[v][t];"
        f"[t]crop={cols * BLOCK}:{2 * BLOCK}:{X0}:0,scale={cols}:2:flags=area,format=gray[code]"
    )
    t = f"{seconds:.0f}"
    return [
        FFMPEG, "-v", "error", "-nostdin",
        "-re", "-f", "lavfi", "-i", f"testsrc2=s=1280x720:r={FPS}",
        "-re", "-f", "lavfi", "-i", "sine=f=440:r=48000",
        "-filter_complex", graph,
        "-map", "[v]", "-map", "1:a", "-t", t,
        "-c:v", "libx264", "-preset", "veryfast", "-g", str(gop), "-pix_fmt", "yuv420p",
        "-b:v", "3M", "-maxrate", "3M", "-bufsize", "6M",
        "-c:a", "aac", "-b:a", "128k", "-f", "flv", url,
        "-map", "[code]", "-t", t, "-f", "rawvideo", "-pix_fmt", "gray",
        "-flush_packets", "1", "pipe:1",
    ]  # fmt: skip


def read_code(row: bytes) -> int | None:
    """The frame number in one raw barcode (None if its checks fail)."""
    cols = BITS + 2
    white, black = row[0], row[1]
    if white - black < 100:
        return None
    threshold = (white + black) / 2
    n = 0
    for k in range(BITS):
        top, bottom = row[2 + k], row[cols + 2 + k]
        if (top > threshold) == (bottom > threshold):
            return None
        n |= (top > threshold) << k
    return n


class Source:
    """The ffmpeg publisher; knows when it made each frame (and so t0)."""

    def __init__(self, url: str, seconds: float, args: argparse.Namespace, log: Path) -> None:
        self.cmd = source_command(url, seconds, args.gop, args.noise)
        self.log = log
        self.made: list[tuple[int, float]] = []  # (frame number, wall time read)
        self.bad = 0
        self.spawned_s = 0.0
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Source:
        self.spawned_s = time.time()
        with self.log.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.cmd, stdout=asyncio.subprocess.PIPE, stderr=err
            )
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        size = 2 * (BITS + 2)
        while True:
            try:
                row = await self.proc.stdout.readexactly(size)
            except asyncio.IncompleteReadError:
                return
            now = time.time()
            n = read_code(row)
            if n is None:
                self.bad += 1
            else:
                self.made.append((n, now))

    async def __aexit__(
        self, *exc: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)  # ffmpeg ends the FLV and the RTMP session
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.reader is not None:
            await self.reader

    @property
    def t0(self) -> float:
        """When frame 0 was due: the least (made - N/FPS) over every frame made."""
        return min(t - n / FPS for n, t in self.made)

    def capture_s(self, n: int) -> float:
        return self.t0 + n / FPS

    def lag(self) -> list[float]:
        """How late ffmpeg made each frame against its -re schedule."""
        t0 = self.t0
        return [t - n / FPS - t0 for n, t in self.made]


NGINX_CONF = """
load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 1024; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        application live {{
            live on;
            hls on;
            hls_path {root}/hls;
            hls_fragment 1s;
            hls_playlist_length 10s;
        }}
    }}
}}
http {{
    access_log off;
    sendfile on;
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{http_port};
        root {root};
        location /hls/ {{ add_header Cache-Control no-cache; }}
    }}
}}
"""


class Nginx:
    """nginx-rtmp in the foreground, one process, everything under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rtmp_port = free_port()
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Nginx:
        for d in ("hls", "tmp"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        conf = self.root / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                module=RTMP_MODULE,
                root=self.root,
                rtmp_port=self.rtmp_port,
                http_port=self.http_port,
            )
        )
        self.proc = await asyncio.create_subprocess_exec(
            NGINX, "-p", str(self.root), "-c", str(conf), "-e", str(self.root / "stderr.log")
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_connection("127.0.0.1", self.http_port)
                w.close()
                return self
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        raise RuntimeError(f"nginx did not start: {(self.root / 'nginx-error.log').read_text()}")

    async def __aexit__(
        self, *exc: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def fetch_text(url: str) -> str | None:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(url) as r:
                return await r.text() if r.status == 200 else None
        except aiohttp.ClientError:
            return None


async def wait_for(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while await fetch_text(url) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not appear in {timeout_s:.0f} s")
        await asyncio.sleep(0.2)


async def watch(
    stream_url: str, args: argparse.Namespace, page_url: str | None, usage: Usage
) -> dict[str, Any]:
    """bench/glass.mjs on the stream: its JSON (Chromium and all killed on a timeout)."""
    seconds = args.seconds
    proc = await asyncio.create_subprocess_exec(
        "node", str(ROOT / "bench" / "glass.mjs"), stream_url, str(seconds),
        *(["--page", page_url] if page_url else []),
        *(["--max-height", str(args.max_height)] if args.max_height else []),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    usage.add("player", proc.pid)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + 120)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)  # node and the Chromium it started
        await proc.wait()
        return {"samples": [], "errors": ["glass.mjs timed out"]}
    lines = out.decode().strip().splitlines()
    if not lines:
        return {"samples": [], "errors": [f"glass.mjs exited {proc.returncode}, no output"]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def playlist_facts(text: str | None) -> str:
    """Target duration, segment and part durations and server control of a media playlist."""
    if not text:
        return "playlist not read"
    target = re.search(r"#EXT-X-TARGETDURATION:(\d+)", text)
    durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+)", text)]
    parts = re.findall(r"#EXT-X-PART:DURATION=([\d.]+)", text)
    facts = [f"TARGETDURATION {target.group(1) if target else '?'}"]
    if durations:
        facts.append(f"segments {min(durations):.2f}-{max(durations):.2f} s")
    control = re.search(r"#EXT-X-SERVER-CONTROL:(.*)", text)
    part_inf = re.search(r"#EXT-X-PART-INF:(.*)", text)
    if part_inf:
        facts.append(part_inf.group(1))
    if parts:
        facts.append(f"{len(parts)} parts listed")
    if control:
        facts.append(control.group(1))
    return "; ".join(facts)


def top_variant(master: str) -> str:
    """The URI of a master playlist's variant of the highest BANDWIDTH."""
    lines = master.splitlines()
    variants = [
        (int(m.group(1)), lines[i + 1])
        for i, line in enumerate(lines[:-1])
        if (m := re.search(r"#EXT-X-STREAM-INF:(?:.*,)?BANDWIDTH=(\d+)", line))
    ]
    return max(variants)[1] if variants else ""


@dataclass
class Run:
    """One server's measurement."""

    name: str
    glass: list[float] = field(default_factory=list)  # seconds, per decoded sample
    behind_edge: list[float] = field(default_factory=list)  # hls.latency at the samples
    heights: dict[int, list[float]] = field(default_factory=dict)  # glass by rung played
    dropped: int = 0  # samples whose barcode failed or gave an impossible number
    stalls: list[float | None] = field(default_factory=list)
    source_lag: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # hls.js errors and switches, timed
    timeline: str = ""


def timeline(samples: list[list[Any]], source: Source, step_s: float = 3.0) -> str:
    """The median latency in each `step_s` from the first sample: how the player settles."""
    steps: dict[int, list[float]] = {}
    for wall_ms, n, *_ in samples:
        latency = wall_ms / 1000 - source.capture_s(n)
        if latency > 0:
            steps.setdefault(int((wall_ms - samples[0][0]) / 1000 / step_s), []).append(latency)
    return " ".join(f"{statistics.median(v):.2f}" for _, v in sorted(steps.items()))


def measure(name: str, source: Source, viewer: dict[str, Any]) -> Run:
    run = Run(name)
    last_made = max((n for n, _ in source.made), default=0)
    for wall_ms, n, height, edge, _rate in viewer.get("samples", []):
        latency = wall_ms / 1000 - source.capture_s(n)
        if n > last_made or latency <= 0:
            run.dropped += 1
            continue
        run.glass.append(latency)
        run.heights.setdefault(height, []).append(latency)
        if edge is not None:
            run.behind_edge.append(edge)
    run.dropped += viewer.get("bad", 0)
    run.timeline = timeline(viewer.get("samples", []), source)
    run.stalls = [s["s"] for s in viewer.get("stalls", [])]
    run.source_lag = source.lag()
    played = ", ".join(
        f"{h}p {len(v)} samples p50 {statistics.median(v):.2f} s"
        for h, v in sorted(run.heights.items(), reverse=True)
    )
    started = (
        f", {(viewer['playingAt'] - viewer['openedAt']) / 1000:.1f} s after the page opened"
        if viewer.get("playingAt") and viewer.get("openedAt")
        else ""
    )
    samples = viewer.get("samples") or []
    if len(samples) > 1:
        wall_s = (samples[-1][0] - samples[0][0]) / 1000
        media_s = (samples[-1][1] - samples[0][1]) / FPS
        started += f"; {media_s:.1f} s of media shown in {wall_s:.1f} s"
    frames = viewer.get("frames") or {}
    run.notes.append(
        f"played{started}: {played or 'nothing'}; frames decoded {frames.get('shown')}, "
        f"dropped {frames.get('dropped')}"
    )
    if run.glass and run.behind_edge:
        edge = statistics.median(run.behind_edge)
        run.notes.append(
            f"hls.js behind its live edge p50 {edge:.2f} s, so the edge (the playlist's "
            f"newest media) trails capture by ~{statistics.median(run.glass) - edge:.2f} s"
        )
    hls = viewer.get("hls") or {}
    reqs = viewer.get("requests") or {}
    if hls:
        run.notes.append(
            f"hls.js {hls.get('version')}: lowLatencyMode {hls.get('lowLatencyMode')}, "
            f"targetLatency {hls.get('targetLatency')}, canBlockReload "
            f"{hls.get('canBlockReload')}, partTarget {hls.get('partTarget')}, "
            f"PART-HOLD-BACK {hls.get('partHoldBack')}, HOLD-BACK {hls.get('holdBack')}, "
            f"parts in its playlist {hls.get('partsInPlaylist')}"
        )
    if reqs:
        run.notes.append(
            f"requests: {reqs.get('playlists')} playlists ({reqs.get('blocking')} blocking "
            f"_HLS_msn, {reqs.get('skip')} delta), {reqs.get('parts')} parts, "
            f"{reqs.get('segments')} segments"
        )
    lag = run.source_lag
    run.notes.append(
        f"source lag behind -re schedule: {percentiles(lag)}; "
        f"{len(source.made)} frames made, {source.bad} unreadable"
    )
    if viewer.get("errors"):
        run.notes.append(f"player errors: {'; '.join(viewer['errors'])}")
    run.events = viewer.get("events") or []
    return run


async def play(
    name: str,
    source: Source,
    master: str,
    args: argparse.Namespace,
    page: str | None,
    usage: Usage,
) -> Run:
    """Wait for the stream's playlist, join at `--join` s after the publisher, sample."""
    assert source.proc is not None
    usage.add("source ffmpeg", source.proc.pid)
    await wait_for(master, 30)
    await asyncio.sleep(max(0.0, source.spawned_s + args.join - time.time()))
    viewer = await watch(master, args, page, usage)
    usage.sample()
    return measure(name, source, viewer)


async def streamd_run(root: Path, args: argparse.Namespace) -> Run:
    rtmp_port = free_port()
    env = dict(kv.split("=", 1) for kv in args.env)
    async with (
        Usage() as usage,
        Server(root / "streamd", {"STREAMD_INGEST_RTMP_PORT": str(rtmp_port), **env}) as server,
    ):
        assert server.proc is not None
        usage.add("streamd", server.proc.pid)
        url = f"rtmp://127.0.0.1:{rtmp_port}/live/{VIDEO_ID}?key={server.key}"
        master = f"{server.url}/hls/{VIDEO_ID}/fmp4/master.m3u8"
        page = f"{server.url}/player.html?v={VIDEO_ID}" if args.page == "streamd" else None
        async with Source(url, source_seconds(args), args, root / "ffmpeg-streamd.log") as src:
            run = await play("streamd", src, master, args, page, usage)
            top = top_variant(await fetch_text(master) or "")
            media = await fetch_text(f"{server.url}/hls/{VIDEO_ID}/fmp4/{top}")
            run.notes.append(f"{top}: {playlist_facts(media)}")
            delays = live_publish_delays(server.data_dir, VIDEO_ID)
            run.notes.append(f"segment publish delay after its last frame: {percentiles(delays)}")
            await src.stop()
    run.notes.append(usage.summary())
    return run


async def nginx_run(root: Path, args: argparse.Namespace) -> Run:
    async with Usage() as usage, Nginx(root / "nginx") as nginx:
        assert nginx.proc is not None
        usage.add("nginx", nginx.proc.pid)
        url = f"rtmp://127.0.0.1:{nginx.rtmp_port}/live/{VIDEO_ID}"
        playlist = f"{nginx.url}/hls/{VIDEO_ID}.m3u8"
        async with Source(url, source_seconds(args), args, root / "ffmpeg-nginx.log") as src:
            run = await play("nginx-rtmp", src, playlist, args, None, usage)
            run.notes.append(f"{VIDEO_ID}.m3u8: {playlist_facts(await fetch_text(playlist))}")
            await src.stop()
    run.notes.append(usage.summary())
    return run


def source_seconds(args: argparse.Namespace) -> float:
    """A bound on the publisher's life: joining, starting to play, sampling, and spare."""
    return float(args.join + 45 + args.seconds + 30)


async def main_async(args: argparse.Namespace) -> None:
    runs = {"streamd": streamd_run, "nginx": nginx_run}
    page = "streamd's /player.html" if args.page == "streamd" else "the bench's page"
    print(
        f"720p30 barcoded source, x264 veryfast -g {args.gop} at 3 Mbit/s + AAC over RTMP; "
        f"hls.js (lowLatencyMode, static/js/catchup.js up to 1.5x) joins after {args.join:.0f} s, "
        f"samples {args.seconds} s; streamd played with {page}"
        + (f", rungs capped at {args.max_height}p" if args.max_height else "")
        + (f", {' '.join(args.env)}" if args.env else "")
    )
    load = os.getloadavg()[0]
    if load > 1.0:
        print(f"warning: load average {load:.1f} before the run; the box is busy")
    results: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        for name in args.servers:
            if name == "nginx" and not Path(RTMP_MODULE).exists():
                print(f"\nnginx-rtmp skipped: no {RTMP_MODULE} (libnginx-mod-rtmp)")
                continue
            run = await runs[name](Path(tmp), args)
            results.append(run)
            print(f"\n{run.name}:")
            for note in run.notes:
                print(f"  {note}")
            if args.verbose:
                print(f"  latency, median of each 3 s: {run.timeline}")
                for event in run.events:
                    print(f"    {event}")
            if not run.glass:
                for log in Path(tmp).glob("**/*.log"):
                    if log.stat().st_size:
                        print(f"  {log.name}: {log.read_text()[-1500:]}")
    print(f"\n{'server':12} {'p50':>7} {'p95':>7} {'max':>7} {'stalls':>14} {'samples':>8}")
    for r in results:
        stalled = sum(s or 0.0 for s in r.stalls)
        g = r.glass or [float("nan")]
        print(
            f"{r.name:12} {statistics.median(g):6.2f}s {p95(g):6.2f}s {max(g):6.2f}s "
            f"{len(r.stalls):>3} ({stalled:5.2f} s) {len(r.glass):>8}"
            + (f"  ({r.dropped} dropped)" if r.dropped else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="sampling time per server")
    parser.add_argument(
        "--servers", nargs="+", choices=["streamd", "nginx"], default=["streamd", "nginx"]
    )
    parser.add_argument("--gop", type=int, default=30, help="source keyframe interval, frames")
    parser.add_argument(
        "--noise", type=int, default=0, help="camera-like noise in the source (costs CPU)"
    )
    parser.add_argument("--join", type=float, default=6.0, help="s after the publisher starts")
    parser.add_argument(
        "--page",
        choices=["bench", "streamd"],
        default="bench",
        help="streamd's run: the bench's page or streamd's /player.html",
    )
    parser.add_argument(
        "--max-height", type=int, default=0, help="cap hls.js's ABR to rungs this tall or less"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="streamd setting for this run, e.g. STREAMD_TRANSCODE_PASSTHROUGH=false",
    )
    parser.add_argument("--verbose", action="store_true", help="print hls.js's events")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
