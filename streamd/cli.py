"""The `streamd` command: a thin layer over the library."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamd.config import Config, load_config, settings_markdown, settings_toml

if TYPE_CHECKING:
    from streamd.client.recording import RecordingReport
from streamd.errors import ConfigError, StreamdError
from streamd.logs import setup_logging
from streamd.process import event_loop


def _config_path(given: str | None) -> Path | None:
    if given:
        return Path(given)
    default = Path("config.toml")
    return default if default.is_file() else None


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from streamd.app import create_app

    config = load_config(
        _config_path(args.config),
        overrides={
            "host": args.host,
            "port": args.port,
            "data_dir": args.data_dir,
            "log_format": args.log_format,
        },
    )
    setup_logging(config.log_level, config.log_format)
    app = create_app(config)  # before any process starts: a refused config starts nothing
    _announce_key(app, config)
    edges = config.http_processes if config.http_processes > 1 else 0
    with tempfile.TemporaryDirectory(prefix="streamd-") as run_dir:
        # With edges, they alone take the port and the primary listens on a unix socket.
        socket_path = str(Path(run_dir) / "primary.sock") if edges else None
        if socket_path:
            from streamd.web.edge import Edges

            running = Edges(config, socket_path, edges)
        try:
            web.run_app(
                app,
                host=None if edges else config.host,
                port=None if edges else config.port,
                path=socket_path,
                access_log=None,
                print=lambda _: None,
                loop=event_loop(),
            )
        finally:
            if socket_path:
                running.stop()
    return 0


def _announce_key(app: Any, config: Config) -> None:
    """With no key configured, say which one was made (or kept) and how to use it."""
    from streamd.appkeys import PUBLISHERS

    key = app[PUBLISHERS].generated
    if key is None:
        return
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    print(
        f"publish key: {key}  (kept in {config.data_dir / 'publish.key'})\n"
        f"  curl -H 'Authorization: Bearer {key}' --data-binary @seg.mp4"
        f" http://{host}:{config.port}/upload/VIDEO_ID",
        flush=True,
    )


def _push(args: argparse.Namespace) -> int:
    from streamd.client.push import push_file

    logging.basicConfig(level=logging.WARNING)
    key = args.key or os.environ.get("STREAMD_PUBLISH_KEY")
    if args.vod:
        return _push_vod(args, key)
    report = asyncio.run(
        push_file(
            Path(args.file),
            args.server,
            args.video,
            realtime=args.realtime,
            segment_duration_s=args.segment_duration,
            headers={"Authorization": f"Bearer {key}"} if key else None,
        )
    )
    print(
        f"pushed {report.segments} segments ({report.duration_s:.1f} s of video) "
        f"in {report.elapsed_s:.1f} s"
    )
    return 0


def _push_vod(args: argparse.Namespace, key: str | None) -> int:
    from streamd.client.push import StreamdClient
    from streamd.client.recording import push_recording

    async def run() -> RecordingReport:
        headers = {"Authorization": f"Bearer {key}"} if key else None
        async with StreamdClient(args.server, headers=headers, timeout_s=600) as client:
            return await push_recording(Path(args.file), args.video, client)

    report = asyncio.run(run())
    print(
        f"uploaded {report.bytes} bytes in {report.upload_s:.1f} s; transcoded "
        f"{report.duration_s:.1f} s of video in {report.transcode_s:.1f} s "
        f"({report.pieces} pieces, {report.segments} segments)"
    )
    return 0


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _ttl_s(text: str) -> int:
    """`90`, `90s`, `30m`, `1h` or `7d` as seconds."""
    unit = _TTL_UNITS.get(text[-1:].lower())
    number = text[:-1] if unit else text
    if not (number.isascii() and number.isdigit()) or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"bad TTL {text!r}: use e.g. 90s, 30m, 1h, 7d")
    return int(number) * (unit or 1)


def _sign(args: argparse.Namespace) -> int:
    import time

    from streamd.access import tokens
    from streamd.model import layout

    config = load_config(_config_path(args.config))
    if not config.auth.viewer_secret:
        raise ConfigError(
            "no viewer secret is set, so watching is open",
            "set [auth] viewer_secret or STREAMD_AUTH_VIEWER_SECRET",
        )
    video_id = layout.check_video_id(args.video)
    expires_s = int(time.time()) + args.ttl
    token = tokens.sign(config.auth.viewer_secret, video_id, expires_s)
    base = args.base or f"http://127.0.0.1:{config.port}"
    print(f"{base.rstrip('/')}/player.html?v={video_id}&token={token}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `streamd` command."""
    parser = argparse.ArgumentParser(prog="streamd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML file (default: ./config.toml if present)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir")
    serve.add_argument("--log-format", choices=["text", "json"])
    serve.set_defaults(run=_serve)
    push = sub.add_parser("push", help="upload a local recording as a stream")
    push.add_argument("file")
    push.add_argument("--server", default="http://127.0.0.1:8080")
    push.add_argument("--video", required=True, help="the videoId to publish under")
    push.add_argument("--realtime", action="store_true", help="pace uploads like a live event")
    push.add_argument(
        "--vod",
        action="store_true",
        help="upload it whole as a recording (resumable), transcoded on every worker at once",
    )
    push.add_argument("--segment-duration", type=float, default=2.0)
    push.add_argument("--key", help="the publish key (default: $STREAMD_PUBLISH_KEY)")
    push.set_defaults(run=_push)
    sign = sub.add_parser("sign", help="print a signed player link (with auth.viewer_secret)")
    sign.add_argument("video", help="the videoId")
    sign.add_argument("--ttl", type=_ttl_s, default=3600, help="valid for (90s, 30m, 1h, 7d)")
    sign.add_argument("--base", help="the server's public URL (default: http://127.0.0.1:PORT)")
    sign.add_argument("--config", help="TOML file (default: ./config.toml if present)")
    sign.set_defaults(run=_sign)
    settings = sub.add_parser("settings", help="print every setting (Markdown table or TOML)")
    settings.add_argument("--toml", action="store_true", help="as a default config.toml")
    settings.set_defaults(
        run=lambda a: print(settings_toml() if a.toml else settings_markdown(), end="") or 0
    )
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except StreamdError as exc:
        print(
            f"streamd: {exc.message}" + (f" ({exc.detail})" if exc.detail else ""), file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        return 130
