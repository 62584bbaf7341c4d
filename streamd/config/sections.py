"""The settings, section by section: each field has a default and a one-line help text
(`setting`), which the README's table and `config.toml` are made from (`streamd.config.table`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamd.errors import ConfigError


def setting(default: Any, help: str) -> Any:
    """A config field with its one-line help text."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


WEBM_MODES = ("on_demand", "eager", "off")


@dataclass(frozen=True)
class TranscodeConfig:
    ladder: list[str] = setting(
        ["1080p:5000k", "720p:2800k", "480p:1400k", "360p:800k"],
        "Rungs as NAMEp:VIDEO_BITRATE; rungs taller than the source are dropped.",
    )
    segment_duration_s: float = setting(2.0, "Target duration of output segments (seconds).")
    workers: int = setting(0, "Transcode worker processes; 0 means one per CPU core.")
    preset: str = setting("veryfast", "libx264 preset for every rung of uploaded segments.")
    live_preset: str = setting(
        "superfast",
        "libx264 preset for live sessions (RTMP, SRT, chunked HTTP), which must keep real "
        "time: superfast costs 57% of veryfast's CPU for 0.3-0.6 dB less PSNR.",
    )
    audio_bitrate_bps: int = setting(128_000, "AAC-LC stereo 48 kHz bitrate of every rung.")
    webm: str = setting(
        "on_demand",
        "WebM (VP9 + Opus) files from /viewstream: on_demand (a segment is encoded the first "
        "time it is asked for, then kept), eager (each segment as it is published, at the "
        "lowest priority: twice the encoding work) or off.",
    )
    encoder_threads: int = setting(
        0, "Threads per x264 encoder; 0 means 2 for the tallest rung and 1 for the others."
    )
    upload_timeout_s: float = setting(
        120.0, "Longest a worker may spend on one upload before it is killed and the upload fails."
    )
    worker_memory_bytes: int = setting(
        4 << 30, "Address space a worker process may use (RLIMIT_AS); 0: no limit."
    )
    passthrough: bool = setting(
        True,
        "A live H.264 source no larger than the tallest rung, nor above its bitrate, is "
        "published as that rung without re-encoding; segments follow its keyframes.",
    )
    overload_delay_s: float = setting(
        3.0,
        "A live stream publishing this long after uploads arrive drops its tallest rung "
        "until it catches up; 0: never.",
    )

    def __post_init__(self) -> None:
        if self.webm not in WEBM_MODES:
            raise ConfigError(
                f"bad value for transcode.webm: {self.webm!r}", "on_demand, eager or off"
            )


@dataclass(frozen=True)
class UploadConfig:
    max_bytes: int = setting(1 << 30, "Largest accepted upload body (bytes).")
    probe_timeout_s: float = setting(20.0, "Longest time to inspect an upload before refusing.")
    idle_timeout_s: float = setting(30.0, "An upload that sends nothing for this long is cut.")
    min_rate_bytes_per_s: float = setting(
        2048.0, "After its first idle timeout, an upload slower than this on average is cut."
    )
    gap_timeout_s: float = setting(
        30.0, "How long a live stream waits for a missing segment before an EXT-X-GAP in its place."
    )
    max_pixels: int = setting(7680 * 4320, "Largest video frame of an upload (width x height).")
    max_frame_rate: float = setting(120.0, "Highest video frame rate of an upload.")
    max_duration_s: float = setting(600.0, "Longest upload (seconds of media).")
    max_recording_bytes: int = setting(
        64 << 30, "Largest recording uploaded whole (?mode=vod), in bytes."
    )
    max_recording_s: float = setting(
        12 * 3600.0, "Longest recording uploaded whole (?mode=vod), in seconds of media."
    )
    resumable_keep_s: float = setting(
        7 * 86400.0, "A resumable recording upload (tus) left unfinished this long is removed."
    )
    max_streams: int = setting(16, "Most streams (video, audio, data...) in one upload.")
    max_concurrent: int = setting(
        32, "Uploads received and checked at once; more get 503 with Retry-After."
    )


@dataclass(frozen=True)
class IngestConfig:
    rtmp_port: int = setting(1935, "RTMP listener for OBS, ffmpeg and encoders; 0 turns it off.")
    rtmp_app: str = setting(
        "live", "The RTMP app publishers use: rtmp://HOST:PORT/APP/{videoId}?key=KEY."
    )
    srt_port: int = setting(
        9000, "SRT listener (UDP) for encoders: streamid=#!::r={videoId},m=publish,s=KEY; 0: off."
    )
    idle_timeout_s: float = setting(10.0, "A live publisher that sends nothing this long is cut.")
    takeover_after_s: float = setting(
        2.0, "A new publisher takes a live stream whose publisher has been silent this long."
    )
    reconnect_window_s: float = setting(
        30.0, "How long a live stream waits for its publisher to come back before it ends."
    )


@dataclass(frozen=True)
class CacheConfig:
    max_bytes: int = setting(
        256 << 20, "RAM held by the LRU of recent segments, per serving process (bytes)."
    )


@dataclass(frozen=True)
class HlsConfig:
    part_duration_s: float = setting(
        0.1,
        "LL-HLS: live fMP4 playlists get parts of about this long (whole frames), with"
        " blocking reload and delta updates; 0 turns them off. Shorter parts cut latency"
        " and cost more requests per viewer: 0.2 serves half as many.",
    )


@dataclass(frozen=True)
class HttpConfig:
    live_playlist_max_age_s: int = setting(1, "Cache-Control max-age of live playlists.")
    segment_max_age_s: int = setting(31_536_000, "Cache-Control max-age of segments.")
    cors_origin: str = setting("*", "Access-Control-Allow-Origin for players on other origins.")
    processes: int = setting(
        0, "Processes answering HTTP on the port (SO_REUSEPORT); 0 means one per CPU core."
    )
    header_timeout_s: float = setting(
        10.0,
        "Longest a client may take to send a request's headers, from its first byte (or from"
        " connecting); then the connection is cut. 0: no limit.",
    )
    keepalive_timeout_s: float = setting(
        75.0, "A keep-alive connection idle for this long between requests is closed."
    )
    write_timeout_s: float = setting(
        30.0, "A client that takes none of its response for this long is cut; 0: no limit."
    )


@dataclass(frozen=True)
class AuthConfig:
    publish_keys: list[str] = setting(
        [],
        "Keys that may publish (Authorization: Bearer KEY); none: one is made at first start"
        " and kept in the data dir's publish.key.",
    )
    keyless: bool = setting(
        False, "Publish without a key: local development only, refused unless host is loopback."
    )
    viewer_secret: str = setting(
        "", "When set, watching needs a link signed with it (streamd sign VIDEO); empty: open."
    )
    admin_token: str = setting(
        "", "Bearer token of the admin API (stream keys, deleting streams); empty: API off."
    )


@dataclass(frozen=True)
class ProtectionConfig:
    encryption: str = setting(
        "none",
        "none or aes-128: HLS AES-128 on every new stream (needs auth.viewer_secret); one"
        " stream: ?encryption=aes-128 on its first upload.",
    )
    key_rotation_segments: int = setting(
        10, "A new AES-128 key every this many segments (fixed per stream when it starts)."
    )


@dataclass(frozen=True)
class RetentionConfig:
    dvr_window_min: float = setting(
        0.0,
        "Minutes of a live stream its playlists and MPD keep (a sliding window: older segments"
        " leave them and are deleted); 0: keep everything (EVENT playlists). Not recordings.",
    )
    max_stream_bytes: int = setting(
        0, "Segment bytes one live stream keeps; its oldest go first. 0: no limit."
    )
    max_total_bytes: int = setting(
        0,
        "Segment bytes of all streams; over it, the oldest ended streams are deleted, then the"
        " live streams with the most lose their oldest segments. 0: no limit.",
    )

    @property
    def window_s(self) -> float:
        return 60 * self.dvr_window_min

    @property
    def sliding(self) -> bool:
        """Whether live playlists may lose their oldest segments: then they are not EVENT."""
        return bool(self.dvr_window_min or self.max_stream_bytes or self.max_total_bytes)


@dataclass(frozen=True)
class LanguagesConfig:
    geo_header: str = setting(
        "",
        "A header a CDN sets to the viewer's country (e.g. CloudFront-Viewer-Country), used"
        " when the viewer's Accept-Language matches none of a stream's languages.",
    )
    region_languages: list[str] = setting(
        [], "Countries mapped to the language their viewers get by default, as CC:lang (MX:es)."
    )

    def __post_init__(self) -> None:
        for item in self.region_languages:
            country, _, lang = item.partition(":")
            if len(country) != 2 or not lang:
                raise ConfigError(
                    f"bad languages.region_languages entry {item!r}", "use CC:lang, e.g. MX:es"
                )

    def region_language(self, country: str) -> str | None:
        for item in self.region_languages:
            code, _, lang = item.partition(":")
            if code.upper() == country.strip().upper():
                return lang
        return None


@dataclass(frozen=True)
class Config:
    host: str = setting("0.0.0.0", "Address to listen on.")
    port: int = setting(8080, "TCP port to listen on.")
    data_dir: Path = setting(Path("data"), "Where uploads, segments and playlists are kept.")
    log_level: str = setting("info", "debug, info, warning or error.")
    log_format: str = setting("text", "text for people, json (one object per line) for shippers.")
    min_free_bytes: int = setting(
        1 << 30, "Below this much free space in the data dir, /readyz fails."
    )
    transcode: TranscodeConfig = field(default_factory=TranscodeConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    hls: HlsConfig = field(default_factory=HlsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    protection: ProtectionConfig = field(default_factory=ProtectionConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    languages: LanguagesConfig = field(default_factory=LanguagesConfig)

    @property
    def worker_count(self) -> int:
        return self.transcode.workers or (os.cpu_count() or 1)

    @property
    def http_processes(self) -> int:
        return self.http.processes or (os.cpu_count() or 1)
