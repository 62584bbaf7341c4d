"""Many viewers on loopback: streamd against nginx serving the same files.

    .venv/bin/python -m bench.serve [--connections 64] [--seconds 10]

A live stream is made (720p ladder, 10 s), then `wrk` loads the same URLs from streamd (on
its defaults: `http.processes` = the cores, edges on one port) and from nginx (Debian's,
`worker_processes` = the same number, sendfile on, rooted at the
same data dir, so `/hls/...` are the same files): a media playlist (what every viewer polls)
and a recent segment (what every viewer downloads). Prints requests/s and p99 latency of both
and the ratio streamd/nginx per URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import aiohttp

from bench.media import FFMPEG, h264_aac, lavfi_source
from bench.server import Server, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WRK = shutil.which("wrk") or "wrk"

NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; video/iso.segment m4s;
             video/mp4 mp4; }}
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {data};
        location /hls/ {{ add_header Cache-Control "public, max-age=1"; }}
    }}
}}
"""


def wrk(url: str, connections: int, seconds: int) -> tuple[float, float]:
    """(requests/s, p99 ms) from wrk with two threads."""
    out = subprocess.run(
        [WRK, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert m, out
    p99_ms = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return rps, p99_ms


async def make_stream(server: Server, root: Path, seconds: int) -> None:
    encode = [*h264_aac("ultrafast"), "-f", "segment", "-segment_time", "2"]
    subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            *lavfi_source(1280, 720, seconds),
            *encode,
            str(root / "part%02d.ts"),
        ],
        check=True,
    )
    await server.upload_segments("viewers", sorted(root.glob("part*.ts")))
    while (await server.video("viewers")).get("uploads", {}).get("published", 0) < seconds // 2:
        await asyncio.sleep(0.2)


async def main_async(connections: int, seconds: int) -> None:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # nginx's workers run as another user
        # streamd on its defaults: one HTTP process (edge) per core, as nginx has workers.
        async with Server(root / "data") as server:
            await make_stream(server, root, 10)
            (root / "tmp").mkdir()
            nginx_port = free_port()
            conf = root / "nginx.conf"
            conf.write_text(
                NGINX_CONF.format(
                    workers=cores, root=root, port=nginx_port, data=(root / "data").resolve()
                )
            )
            nginx = subprocess.Popen([NGINX, "-c", str(conf)])
            try:
                await asyncio.sleep(0.5)
                paths = {
                    "playlist": "/hls/viewers/fmp4/720p/index.m3u8",
                    "segment": "/hls/viewers/fmp4/720p/seg000004.m4s",
                }
                print(
                    f"{connections} connections, {seconds} s per run, {cores} cores; "
                    f"streamd on its defaults (a process per core), nginx with {cores} workers"
                )
                async with aiohttp.ClientSession() as http:
                    for path in paths.values():
                        bodies = []
                        for base in (server.url, f"http://127.0.0.1:{nginx_port}"):
                            async with http.get(base + path) as r:
                                assert r.status == 200, (base + path, r.status)
                                bodies.append(await r.read())
                        assert bodies[0] == bodies[1], f"{path} differs"
                        print(f"{path}: {len(bodies[0])} bytes from both")
                for name, path in paths.items():
                    s_rps, s_p99 = wrk(server.url + path, connections, seconds)
                    n_rps, n_p99 = wrk(f"http://127.0.0.1:{nginx_port}{path}", connections, seconds)
                    print(
                        f"{name:8}: streamd {s_rps:9.0f} req/s p99 {s_p99:7.2f} ms | "
                        f"nginx {n_rps:9.0f} req/s p99 {n_p99:7.2f} ms | "
                        f"ratio streamd/nginx = {s_rps / n_rps:.2f}"
                    )
            finally:
                nginx.terminate()
                nginx.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main_async(args.connections, args.seconds))


if __name__ == "__main__":
    main()
