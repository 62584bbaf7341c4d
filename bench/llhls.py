"""LL-HLS under load: N viewers blocking on the next part of one live RTMP stream.

    .venv/bin/python -m bench.llhls [--viewers 2000] [--seconds 30] [--source 360]

`streamd serve` on its defaults (`http.processes` one per core: edges on SO_REUSEPORT;
ladder 1080/720/480/360, rungs taller than the source dropped; parts of 0.1 s) takes one
live stream over RTMP: testsrc2 + tone, x264 veryfast, -g 60, encoded beforehand and sent
with `ffmpeg -re -c copy` (a live x264 would take a third of a core). The source is modest
on purpose so that the transcode leaves CPU for serving: by default 640x360 at 700 kbit/s,
i.e. one rung, 360p, passed through (the worker still decodes, packages and cuts parts:
~0.35 core); `--source 480` gives 480p (passed through) + 360p, `--source 720` 720/480/360
at 3 Mbit/s, and the viewers are dealt round-robin over the rungs.

Viewers run in one separate process (uvloop, aiohttp). Each behaves like hls.js in
low-latency mode: the master once, its rung's media playlist once, the last part listed,
then in a loop a blocking reload with hls.js's directives (the part after its last, or
part 0 of the next segment once the last part's segment is whole) and `_HLS_skip=YES`; each
new part is downloaded by a second task while the next reload already waits (hls.js's
playlist and fragment loaders run side by side: two connections per viewer, one aiohttp
session each). A viewer more than PART-HOLD-BACK (3) parts behind in downloading skips to
the newest, as a player jumping back to the live edge would, instead of asking for parts
that have expired. Viewers join over the first seconds (ramp); figures cover a steady
window after it.

What is measured, per part ("publish to viewer"):

- publish: this process (not the viewers') holds one blocking reload per rung on the
  primary's own socket (the unix socket the edges follow; the port when there are no
  edges): when its answer arrives is when the primary published the part, within the
  primary's event loop. Only parts that came alone in an answer are timed. Also printed:
  that time against the part's end in PDT time (EXT-X-PROGRAM-DATE-TIME plus the parts
  before it). streamd anchors PDT at the moment the first segment's last frame reached the
  worker, so this is the part's packaging-and-publish delay relative to that first
  segment's; a value that grows means the stream is falling behind real time.
- edge probes: `--edge-probes` (8) more blocking-reload connections, from this lightly
  loaded process through the port (SO_REUSEPORT deals them over the edges): publish at the
  primary -> the edge's answer read, for requests already waiting. This is the server's
  side of the latency (feed to the edge, wake-up, response), free of the viewers' process.
- each viewer's sighting: when its first playlist answer holding the part arrived, minus
  the publish; for all sightings, and for requests already waiting at publish. Also the
  spread after the earliest viewer's sighting (needs no probe), the part's download
  finished, and the lateness of a 50 ms timer in the viewers' process: what a loaded
  generator adds to every figure of this paragraph by itself.
- requests/s and bytes/s (playlists and parts), every status other than 200, client
  timeouts and connection errors, answers without what was asked for, each with when.
- server RSS by process kind: idle with the stream running before viewers, with viewers
  waiting (median over the window), 2 s after they left; per 1000 viewers from the edges'
  growth (the edges hold every viewer's connection; `--viewers 0` shows what the stream
  alone adds over the same time). CPU (cores) over the window by process kind, of the
  viewers' process and ffmpeg, and of the whole machine (other work on it included).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import os
import pickle
import re
import resource
import statistics
import sys
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp

from bench.media import FFMPEG, h264_aac, lavfi_source
from bench.server import Server, cpu_s, memory_by_kind, process_kind, process_tree

VIDEO = "ll"
PART = re.compile(rb'#EXT-X-PART:DURATION=([0-9.]+),URI="(part([0-9]+)\.([0-9]+)\.m4s)"')
PDT = re.compile(rb"#EXT-X-PROGRAM-DATE-TIME:(\S+)")
MEDIA_SEQUENCE = re.compile(rb"#EXT-X-MEDIA-SEQUENCE:([0-9]+)")
SKIPPED = re.compile(rb"#EXT-X-SKIP:SKIPPED-SEGMENTS=([0-9]+)")
SOURCES = {  # --source: size, video bitrate, VBV peak (within passthrough's limit for 360/480)
    "360": ("640x360", "700k", "800k"),
    "480": ("854x480", "1200k", "1400k"),
    "720": ("1280x720", "3M", "3600k"),
}
HOLD_BACK_PARTS = 3  # PART-HOLD-BACK: a player plays about this many parts from the end
REQUEST_TIMEOUT_S = 10.0  # the server answers 503 after 3 target durations (6 s)
LAG_TICK_S = 0.05


def part_id(rung: int, msn: int, index: int) -> int:
    return (rung << 40) | (msn << 12) | index


def parts_in(body: bytes) -> list[tuple[int, int, str]]:
    """(msn, index, uri) of every EXT-X-PART in a playlist, in order."""
    return [(int(m[3]), int(m[4]), m[2].decode()) for m in PART.finditer(body)]


def live_edge(body: bytes) -> tuple[int, list[tuple[int, int, str]]]:
    """(the last whole segment's media sequence number, the parts) of a full or delta
    playlist."""
    seq, skipped = MEDIA_SEQUENCE.search(body), SKIPPED.search(body)
    whole = body.count(b"#EXTINF:")
    end_sn = (int(seq[1]) if seq else 0) + (int(skipped[1]) if skipped else 0) + whole - 1
    return end_sn, parts_in(body)


def next_directive(end_sn: int, last: tuple[int, int] | None) -> tuple[int, int]:
    """hls.js's low-latency `_HLS_msn`/`_HLS_part` (base-playlist-controller.ts): the part
    after the last one, or part 0 of the next segment once the last part's segment is whole."""
    if last is not None and last[0] > end_sn:
        return last[0], last[1] + 1
    return end_sn + 1, 0


def satisfies(end_sn: int, newest: tuple[int, int] | None, msn: int, part: int) -> bool:
    """Whether a blocking answer holds what was asked for (6.2.5.2): the part, or a later
    one, or the segment whole (a part past a segment's last is the next segment's first)."""
    return (newest is not None and newest >= (msn, part)) or end_sn >= msn + (part > 0)


def quantiles(values: list[float], unit: float = 1000.0) -> str:
    """'p50 .. p95 .. p99 .. max .. (n)' in ms."""
    if not values:
        return "no samples"
    v = sorted(values)

    def q(f: float) -> float:
        return v[min(len(v) - 1, round(f * (len(v) - 1)))] * unit

    return (
        f"p50 {q(0.5):.1f}, p95 {q(0.95):.1f}, p99 {q(0.99):.1f}, max {v[-1] * unit:.1f} ms"
        f" ({len(v)} samples)"
    )


# -- the viewers' process ---------------------------------------------------------------------
@dataclass
class Plan:
    base: str
    rungs: list[str]  # media playlist paths under /hls/VIDEO/fmp4/
    viewers: int
    start_at: float  # monotonic (CLOCK_MONOTONIC: the same in every process)
    ramp_s: float
    until: float
    window: tuple[float, float]  # what requests/s and bytes/s count


@dataclass
class Observed:
    """What the viewers saw: flat arrays so 2000 viewers' sightings pickle cheaply."""

    seen_id: array[int] = field(default_factory=lambda: array("q"))
    seen_at: array[float] = field(default_factory=lambda: array("d"))
    seen_sent: array[float] = field(default_factory=lambda: array("d"))
    got_id: array[int] = field(default_factory=lambda: array("q"))
    got_at: array[float] = field(default_factory=lambda: array("d"))
    requests: Counter[str] = field(default_factory=Counter)  # in the window
    bytes: Counter[str] = field(default_factory=Counter)  # in the window
    statuses: Counter[str] = field(default_factory=Counter)  # whole run, "kind status"
    errors: Counter[str] = field(default_factory=Counter)  # whole run
    per_rung: Counter[int] = field(default_factory=Counter)  # viewers per rung
    started: int = 0  # viewers that got their first playlist
    examples: list[str] = field(default_factory=list)  # the first few anomalies, whole
    when: dict[str, list[float]] = field(default_factory=dict)  # statuses, errors: first, last
    skipped: int = 0  # parts a viewer behind did not download (it jumped to the live edge)
    lag_s: array[float] = field(default_factory=lambda: array("d"))  # event loop lateness

    def count(self, counter: Counter[str], key: str) -> None:
        counter[key] += 1
        now = time.monotonic()
        self.when.setdefault(key, [now, now])[1] = now


class Viewer:
    def __init__(self, plan: Plan, rung: int, obs: Observed) -> None:
        self.plan, self.rung, self.obs = plan, rung, obs
        self.url = f"{plan.base}/hls/{VIDEO}/fmp4/{plan.rungs[rung]}"
        self.folder = self.url.rsplit("/", 1)[0]
        self.todo: asyncio.Queue[tuple[int, int, str]] = asyncio.Queue()

    async def get(self, http: aiohttp.ClientSession, kind: str, url: str) -> bytes | None:
        try:
            async with http.get(url) as r:
                body = await r.read()
                status = r.status
        except TimeoutError:
            self.obs.count(self.obs.errors, f"{kind} timeout")
            return None
        except aiohttp.ClientError as exc:
            self.obs.count(self.obs.errors, f"{kind} {type(exc).__name__}")
            return None
        now = time.monotonic()
        if self.plan.window[0] <= now < self.plan.window[1]:
            self.obs.requests[kind] += 1
            self.obs.bytes[kind] += len(body)
        if status != 200:
            self.obs.count(self.obs.statuses, f"{kind} {status}")
            return None
        return body

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as playlists,
            aiohttp.ClientSession(timeout=timeout) as parts,
        ):
            fetcher = asyncio.create_task(self.fetch_parts(parts))
            try:
                await self.follow(playlists)
            finally:
                fetcher.cancel()

    async def follow(self, http: aiohttp.ClientSession) -> None:
        """Master once; the playlist until it has parts; then blocking reloads."""
        await self.get(http, "master", f"{self.plan.base}/hls/{VIDEO}/fmp4/master.m3u8")
        last: tuple[int, int] | None = None
        while last is None:
            body = await self.get(http, "playlist", self.url)
            end_sn, found = live_edge(body or b"")
            if found:
                msn, index, uri = found[-1]
                last = (msn, index)
                self.todo.put_nowait((msn, index, uri))  # hls.js starts near the live edge
            else:
                await asyncio.sleep(0.5)
        self.obs.started += 1
        while True:
            msn, index = next_directive(end_sn, last)
            sent = time.monotonic()
            body = await self.get(
                http, "playlist", f"{self.url}?_HLS_msn={msn}&_HLS_part={index}&_HLS_skip=YES"
            )
            arrived = time.monotonic()
            if body is None:
                await asyncio.sleep(0.2)
                continue
            end_sn, found = live_edge(body)
            new = [p for p in found if (p[0], p[1]) > last]
            for p_msn, p_index, uri in new:
                self.obs.seen_id.append(part_id(self.rung, p_msn, p_index))
                self.obs.seen_at.append(arrived)
                self.obs.seen_sent.append(sent)
                self.todo.put_nowait((p_msn, p_index, uri))
            if new:
                last = (new[-1][0], new[-1][1])
            if not satisfies(end_sn, last, msn, index):
                self.obs.count(self.obs.errors, "answer without what was asked for")
                if len(self.obs.examples) < 3:
                    self.obs.examples.append(
                        f"asked msn={msn} part={index} after waiting {arrived - sent:.3f} s,"
                        f" got:\n{body.decode(errors='replace')}"
                    )
                if b"#EXT-X-ENDLIST" in body:
                    return
                await asyncio.sleep(0.2)

    async def fetch_parts(self, http: aiohttp.ClientSession) -> None:
        while True:
            msn, index, uri = await self.todo.get()
            if self.todo.qsize() >= HOLD_BACK_PARTS:  # behind: on to the live edge
                self.obs.skipped += 1
                continue
            if await self.get(http, "part", f"{self.folder}/{uri}") is not None:
                self.obs.got_id.append(part_id(self.rung, msn, index))
                self.obs.got_at.append(time.monotonic())


async def loop_lag(obs: Observed, until: float) -> None:
    """How late a 50 ms timer fires in the viewers' process: how long a response that has
    arrived may wait there before its viewer reads it."""
    while time.monotonic() < until:
        due = time.monotonic() + LAG_TICK_S
        await asyncio.sleep(LAG_TICK_S)
        obs.lag_s.append(time.monotonic() - due)


async def viewers(plan: Plan, out: str) -> None:
    """Start the viewers over the ramp; at the end, write what they saw to `out` (pickled
    builtins: no class of __main__) before tearing anything down."""
    obs = Observed()
    await asyncio.sleep(max(0.0, plan.start_at - time.monotonic()))
    tasks: list[asyncio.Task[None]] = []
    lag = asyncio.create_task(loop_lag(obs, plan.until))
    while len(tasks) < plan.viewers:  # in batches: a busy loop wakes a sleeper late
        elapsed = time.monotonic() - plan.start_at
        due = min(plan.viewers, 1 + int(plan.viewers * elapsed / plan.ramp_s))
        for i in range(len(tasks), due):
            rung = i % len(plan.rungs)
            obs.per_rung[rung] += 1
            tasks.append(asyncio.create_task(Viewer(plan, rung, obs).run()))
        await asyncio.sleep(0.02)
    await asyncio.sleep(max(0.0, plan.until - time.monotonic()))
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            obs.errors[f"viewer died: {t.exception()!r}"[:120]] += 1
    Path(out + ".part").write_bytes(pickle.dumps(vars(obs)))
    os.replace(out + ".part", out)
    late = time.monotonic() - plan.until
    if late > 1:
        print(f"viewers' process: results written {late:.1f} s after the end", file=sys.stderr)
    lag.cancel()
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks, timeout=10)  # sessions closed, as players leaving would


def generator_main(plan: Plan, out: str) -> None:
    """The viewers' process."""
    import uvloop

    uvloop.run(viewers(plan, out))


# -- the probe: when the primary published each part ------------------------------------------
@dataclass
class Published:
    at: dict[int, float] = field(default_factory=dict)  # part id -> monotonic
    sent: dict[int, float] = field(default_factory=dict)  # part id -> its request sent
    media_age_s: dict[int, list[float]] = field(default_factory=dict)  # by rung: wall - end
    errors: Counter[str] = field(default_factory=Counter)
    when: dict[str, list[float]] = field(default_factory=dict)  # errors: first, last
    advanced: list[float] = field(default_factory=list)  # answers that brought new parts

    def error(self, key: str) -> None:
        self.errors[key] += 1
        now = time.monotonic()
        self.when.setdefault(key, [now, now])[1] = now


async def probe(http: aiohttp.ClientSession, url: str, rung: int, pub: Published) -> None:
    """Blocking reloads on the primary, one at a time; records parts answered alone (the
    request was waiting when the part came, so its arrival is the publish)."""
    last: tuple[int, int] | None = None
    end_sn = -1
    while True:
        query = ""
        if last is not None:
            msn, index = next_directive(end_sn, last)
            query = f"?_HLS_msn={msn}&_HLS_part={index}&_HLS_skip=YES"
        sent = time.monotonic()
        try:
            async with http.get(url + query) as r:
                body, status = await r.read(), r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            pub.error(type(exc).__name__)
            await asyncio.sleep(0.2)
            continue
        arrived, wall = time.monotonic(), time.time()
        if status != 200:
            pub.error(f"status {status}")
            await asyncio.sleep(0.2)
            continue
        end_sn, found = live_edge(body)
        if last is not None:
            new = [p for p in found if (p[0], p[1]) > last]
            if new:
                pub.advanced.append(arrived)
            if len(new) == 1:
                pub.at[part_id(rung, new[0][0], new[0][1])] = arrived
                pub.sent[part_id(rung, new[0][0], new[0][1])] = sent
                end = part_end_wall_s(body, new[0][0], new[0][1])
                if end is not None:
                    pub.media_age_s.setdefault(rung, []).append(wall - end)
        if found:
            last = (found[-1][0], found[-1][1])


def part_end_wall_s(body: bytes, msn: int, index: int) -> float | None:
    """The wall-clock time a part's media ends: its segment's PROGRAM-DATE-TIME plus the
    durations of its parts so far (each segment's tags, PDT among them, precede its parts)."""
    pdt: float | None = None
    offset, current = 0.0, -1
    pos = 0
    for m in PART.finditer(body):
        before = list(PDT.finditer(body, pos, m.start()))
        if before:
            pdt = datetime.fromisoformat(before[-1][1].decode()).timestamp()
        pos = m.end()
        p_msn, p_index = int(m[3]), int(m[4])
        if p_msn != current:
            current, offset = p_msn, 0.0
        offset += float(m[1])
        if (p_msn, p_index) == (msn, index):
            return None if pdt is None else pdt + offset
    return None


# -- the run ----------------------------------------------------------------------------------
def cpu_by_kind(root: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for pid in process_tree(root):
        kind = process_kind(pid, root)
        out[kind] = out.get(kind, 0.0) + cpu_s([pid])
    return out


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (/proc/stat: all but idle and iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def rss_by_kind(root: int) -> dict[str, float]:
    """MB resident, by process kind."""
    return {kind: rss for kind, (rss, _) in memory_by_kind(root).items()}


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    kinds = {k for s in samples for k in s}
    return {k: statistics.median(s.get(k, 0.0) for s in samples) for k in kinds}


SERVING = ("primary", "edge")


def primary_socket(run_dir: Path) -> Path | None:
    found = list(run_dir.glob("streamd-*/primary.sock"))
    return found[0] if found else None


async def wait_for_parts(base: str, deadline_s: float = 60) -> list[str]:
    """The rungs' playlist paths, once every one of them lists parts."""
    deadline = time.monotonic() + deadline_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(f"{base}/hls/{VIDEO}/fmp4/master.m3u8") as r:
                master = (await r.read()).decode() if r.status == 200 else ""
            rungs = [x for x in master.splitlines() if x and not x.startswith("#")]
            ready = 0
            for rung in rungs:
                async with http.get(f"{base}/hls/{VIDEO}/fmp4/{rung}") as r:
                    ready += r.status == 200 and bool(parts_in(await r.read()))
            if rungs and ready == len(rungs):
                return rungs
            await asyncio.sleep(0.5)
    raise RuntimeError("no playlist with parts within a minute of publishing")


def report(
    args: argparse.Namespace,
    plan: Plan,
    obs: Observed,
    pub: Published,
    edge_pubs: list[Published],
    steady_s: float,
) -> None:
    window_start, window_end = plan.window
    last_part_at = plan.until - 1.5  # a part later than this may not reach every viewer
    arrivals: dict[int, list[tuple[float, float]]] = {}
    for pid, at, sent in zip(obs.seen_id, obs.seen_at, obs.seen_sent, strict=True):
        arrivals.setdefault(pid, []).append((at, sent))
    in_window = {
        pid: t for pid, t in pub.at.items() if window_start <= t < last_part_at
    }  # parts the probe timed, published in the steady window
    rung_of = {pid: pid >> 40 for pid in in_window}
    all_s, waiting_s, spread_s, missing = [], [], [], 0
    for pid, t_pub in in_window.items():
        seen = arrivals.get(pid, [])
        missing += obs.per_rung[rung_of[pid]] - len(seen)
        for at, sent in seen:
            all_s.append(at - t_pub)
            if sent < t_pub:
                waiting_s.append(at - t_pub)
        if seen:
            first = min(at for at, _ in seen)
            spread_s += [at - first for at, _ in seen]
    got_s = [
        at - in_window[pid]
        for pid, at in zip(obs.got_id, obs.got_at, strict=True)
        if pid in in_window
    ]
    edge_s = [
        at - in_window[pid]
        for ep in edge_pubs
        for pid, at in ep.at.items()
        if pid in in_window and ep.sent[pid] < in_window[pid]
    ]
    print(f"parts published in the steady window and timed by the probe: {len(in_window)}")
    print(
        f"  publish at primary -> edge probes' playlist ({len(edge_pubs)} connections from"
        f" this process, not the viewers'): {quantiles(edge_s)}"
    )
    print(f"  publish at primary -> viewer's playlist, all sightings: {quantiles(all_s)}")
    print(f"  same, viewer's request already waiting at publish:      {quantiles(waiting_s)}")
    print(f"  spread after the earliest viewer's sighting:            {quantiles(spread_s)}")
    print(f"  publish -> part downloaded by the viewer:               {quantiles(got_s)}")
    print(f"  viewers' process event loop lateness (50 ms timer): {quantiles(list(obs.lag_s))}")
    print(f"  sightings missing (viewer never saw the part): {missing}")
    print(f"  parts a viewer behind skipped (jumped to the live edge): {obs.skipped}")
    for rung, ages in sorted(pub.media_age_s.items()):
        print(f"  {plan.rungs[rung]}: publish after the part's end in PDT time: {quantiles(ages)}")
    span = window_end - window_start
    for kind in ("playlist", "part"):
        print(
            f"{kind}s: {obs.requests[kind] / span:.0f} req/s, "
            f"{obs.bytes[kind] / span / 1e6:.2f} MB/s"
        )
    t0 = plan.start_at

    def counted(name: str, counter: Counter[str], when: dict[str, list[float]]) -> None:
        listed = ", ".join(
            f"{k}: {n} (from {when[k][0] - t0:.1f} s to {when[k][1] - t0:.1f} s)"
            for k, n in sorted(counter.items())
        )
        print(f"{name}: {listed or 'none'}")

    print(
        f"times below from the first viewer's start; ramp {plan.ramp_s:g} s, window"
        f" {window_start - t0:.1f}-{window_end - t0:.1f} s, viewers stop at {plan.until - t0:.1f} s"
    )
    counted("statuses other than 200", obs.statuses, obs.when)
    counted("client errors and anomalies", obs.errors, obs.when)
    counted("probe errors", pub.errors, pub.when)
    for i, ep in enumerate(edge_pubs):
        if ep.errors:
            counted(f"edge probe {i} errors", ep.errors, ep.when)
    during = [t for t in pub.advanced if t0 <= t <= plan.until]
    gaps = [(b - a, a - t0) for a, b in itertools.pairwise(during)]
    if gaps:
        gap, at = max(gaps)
        print(
            f"longest the primary probe saw no new part while viewers ran: {gap:.2f} s"
            f" at {at:.1f} s"
        )
    for example in obs.examples:
        print(f"anomaly: {example}")
    fives = sum(n for k, n in obs.statuses.items() if k.split()[-1].startswith("5"))

    def p99(values: list[float]) -> str:
        ordered = sorted(values)
        return f"{ordered[round(0.99 * (len(ordered) - 1))] * 1000:.0f} ms" if values else "-"

    print(
        f"result: {args.viewers} viewers ({obs.started} started), p99 publish to viewer"
        f" {p99(all_s)} (target < 100 ms; the viewers' process itself p99 {p99(list(obs.lag_s))}"
        f" late), to the edge probes {p99(edge_s)}; {fives} 5xx (target 0);"
        f" steady window {steady_s:.1f} s"
    )


async def main_async(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 3 * args.viewers + 1024  # 2 sockets a viewer: the viewers' process, the server
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
        print(f"open files soft limit {soft} -> {min(need, hard)}")
    size, bitrate, peak = SOURCES[args.source]
    with tempfile.TemporaryDirectory(prefix="bench-llhls-") as tmp:
        run_dir = Path(tmp) / "run"
        run_dir.mkdir()
        # Encoded once beforehand and sent with -c copy: a live x264 would take a third of
        # a core from the server and the viewers.
        source = Path(tmp) / "source.flv"
        width, height = (int(x) for x in size.split("x"))
        encode = h264_aac("veryfast", "-b:v", bitrate, "-maxrate", peak, "-bufsize", peak)
        made = await asyncio.create_subprocess_exec(
            FFMPEG, "-v", "error", *lavfi_source(width, height, args.seconds + 90),
            *encode, "-f", "flv", str(source),
        )  # fmt: skip
        if await made.wait():
            raise RuntimeError("ffmpeg could not make the source")
        async with Server(Path(tmp) / "data", {"TMPDIR": str(run_dir)}) as server:
            assert server.proc is not None
            rtmp = server.env["STREAMD_INGEST_RTMP_PORT"]
            encoder = await asyncio.create_subprocess_exec(
                FFMPEG, "-v", "error", "-re", "-i", str(source), "-c", "copy",
                "-f", "flv", f"rtmp://127.0.0.1:{rtmp}/live/{VIDEO}?key={server.key}",
            )  # fmt: skip
            try:
                await run(args, server, encoder, run_dir, size, bitrate)
            finally:
                if encoder.returncode is None:
                    encoder.terminate()
                    await encoder.wait()


async def run(
    args: argparse.Namespace,
    server: Server,
    encoder: asyncio.subprocess.Process,
    run_dir: Path,
    size: str,
    bitrate: str,
) -> None:
    assert server.proc is not None
    root = server.proc.pid
    rungs = await wait_for_parts(server.url)
    sock = primary_socket(run_dir)
    if sock is not None:
        connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=str(sock))
        primary = "http://primary"
    else:
        connector, primary = aiohttp.TCPConnector(), server.url
    edges = sum(process_kind(p, root) == "edge" for p in process_tree(root))
    print(
        f"source {size} at {bitrate}bit/s over RTMP; rungs {', '.join(rungs)}; "
        f"{edges} edge processes; probe on {'the primary socket' if sock else 'the port'}"
    )
    pub = Published()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    edge_pubs = [Published() for _ in range(args.edge_probes)]
    async with contextlib.AsyncExitStack() as stack:
        probe_http = await stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, timeout=timeout)
        )
        probes = [
            asyncio.create_task(probe(probe_http, f"{primary}/hls/{VIDEO}/fmp4/{rung}", i, pub))
            for i, rung in enumerate(rungs)
        ]
        for i, edge_pub in enumerate(edge_pubs):  # a session each: SO_REUSEPORT deals them
            http = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
            url = f"{server.url}/hls/{VIDEO}/fmp4/{rungs[i % len(rungs)]}"
            probes.append(asyncio.create_task(probe(http, url, i % len(rungs), edge_pub)))
        await asyncio.sleep(5)  # the stream settles; then idle RSS
        idle = []
        for _ in range(4):
            idle.append(rss_by_kind(root))
            await asyncio.sleep(0.5)
        start_at = time.monotonic() + 2.0  # the viewers' process starts meanwhile
        ramp_s = min(5.0, args.seconds / 4)
        until = start_at + args.seconds
        window = (start_at + ramp_s + 2.0, until - 0.5)
        plan = Plan(server.url, rungs, args.viewers, start_at, ramp_s, until, window)
        out = run_dir.parent / "observed.pickle"
        ctx = multiprocessing.get_context("spawn")
        gen = ctx.Process(target=generator_main, args=(plan, str(out)), daemon=True)
        gen.start()
        assert gen.pid is not None
        loaded: list[dict[str, float]] = []
        cpu0 = cpu1 = None

        def cpu_now() -> tuple[dict[str, float], float, float, float, float]:
            """(server by kind, viewers' process, ffmpeg, when, the whole machine)"""
            assert gen.pid is not None
            gen_s, ffmpeg_s = cpu_s([gen.pid]), cpu_s([encoder.pid])
            return cpu_by_kind(root), gen_s, ffmpeg_s, time.monotonic(), machine_busy_s()

        while time.monotonic() < until + 0.2:
            now = time.monotonic()
            if cpu0 is None and now >= window[0]:
                cpu0 = cpu_now()
            if cpu1 is None and now >= window[1]:
                cpu1 = cpu_now()
            if window[0] <= now < window[1]:
                loaded.append(rss_by_kind(root))
            await asyncio.sleep(0.25)
        await asyncio.get_running_loop().run_in_executor(None, gen.join, 30)
        if gen.is_alive():
            print("the viewers' process did not close its sessions within 30 s", file=sys.stderr)
            gen.kill()
        await asyncio.sleep(2)
        after = rss_by_kind(root)
        for p in probes:
            p.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
    if not out.exists():
        raise RuntimeError(f"the viewers' process failed (exit {gen.exitcode})")
    obs = Observed(**pickle.loads(out.read_bytes()))
    assert cpu0 is not None
    assert cpu1 is not None
    steady_s = cpu1[3] - cpu0[3]
    rss = {"idle": medians(idle), "waiting": medians(loaded), "after": after}
    print("server RSS (MB) idle before viewers / viewers waiting (window median) / 2 s after:")
    for kind in sorted(rss["idle"]):
        print(f"  {kind}: " + " / ".join(f"{r.get(kind, 0.0):.0f}" for r in rss.values()))
    total = {name: sum(r.values()) for name, r in rss.items()}
    serving = {name: sum(r.get(k, 0.0) for k in SERVING) for name, r in rss.items()}
    print(
        f"  tree: {' / '.join(f'{v:.0f}' for v in total.values())}; serving processes"
        f" (primary and edges): {' / '.join(f'{v:.0f}' for v in serving.values())}: "
        f"+{serving['waiting'] - serving['idle']:.1f} MB, the tree"
        f" +{total['waiting'] - total['idle']:.1f} MB"
    )
    edge_mb = rss["waiting"].get("edge", 0.0) - rss["idle"].get("edge", 0.0)
    print(
        f"  edges (they hold every viewer's connection and request): +{edge_mb:.1f} MB,"
        f" {edge_mb * 1000 / max(1, args.viewers):.1f} MB per 1000 waiting viewers"
        " (a run with --viewers 0 shows what the stream alone adds meanwhile)"
    )
    kinds = sorted(set(cpu0[0]) | set(cpu1[0]))
    by_kind = ", ".join(
        f"{k} {(cpu1[0].get(k, 0) - cpu0[0].get(k, 0)) / steady_s:.2f}" for k in kinds
    )
    cpu_total = sum(cpu1[0].values()) - sum(cpu0[0].values())
    ours = cpu_total + cpu1[1] - cpu0[1] + cpu1[2] - cpu0[2]
    machine = cpu1[4] - cpu0[4]
    print(
        f"CPU over the steady window, in cores: server {cpu_total / steady_s:.2f} ({by_kind}); "
        f"viewers' process {(cpu1[1] - cpu0[1]) / steady_s:.2f}; "
        f"ffmpeg {(cpu1[2] - cpu0[2]) / steady_s:.2f}; whole machine {machine / steady_s:.2f}"
        f" of {os.cpu_count()}, of which outside this bench {(machine - ours) / steady_s:.2f}"
    )
    report(args, plan, obs, pub, edge_pubs, steady_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument(
        "--edge-probes",
        type=int,
        default=8,
        help="blocking-reload connections through the port from this (lightly loaded) process",
    )
    parser.add_argument("--source", choices=sorted(SOURCES), default="360")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
