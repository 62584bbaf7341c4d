"""The `streamd` command: a thin layer over the library."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

from streamd.config import load_config, settings_markdown, settings_toml
from streamd.errors import StreamdError
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
    edges = config.http_processes if config.http_processes > 1 else 0
    with tempfile.TemporaryDirectory(prefix="streamd-") as run_dir:
        # With edges, they alone take the port and the primary listens on a unix socket.
        socket_path = str(Path(run_dir) / "primary.sock") if edges else None
        if socket_path:
            from streamd.web.edge import Edges

            running = Edges(config, socket_path, edges)
        try:
            web.run_app(
                create_app(config),
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


def _push(args: argparse.Namespace) -> int:
    from streamd.client.push import push_file

    logging.basicConfig(level=logging.WARNING)
    report = asyncio.run(
        push_file(
            Path(args.file),
            args.server,
            args.video,
            realtime=args.realtime,
            segment_duration_s=args.segment_duration,
        )
    )
    print(
        f"pushed {report.segments} segments ({report.duration_s:.1f} s of video) "
        f"in {report.elapsed_s:.1f} s"
    )
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
    push.add_argument("--segment-duration", type=float, default=2.0)
    push.set_defaults(run=_push)
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
