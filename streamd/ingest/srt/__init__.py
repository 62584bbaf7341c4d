"""SRT ingest: a listener for live publishers (OBS, ffmpeg, hardware encoders) over libsrt.

`streamid` parses the access-control stream id a caller sends (pure code); `libsrt` binds
the few calls of Debian's libsrt that a listener needs, with ctypes, because no binding on
PyPI is kept up; `server` runs the listener beside the event loop and hands each accepted
publisher's MPEG-TS bytes to it.
"""

from streamd.errors import StreamdError


class SrtError(StreamdError, OSError):
    """A libsrt call failed; `srt_code` is libsrt's error number (SRT_ERRNO), 0 if none."""

    code = "srt_error"
    http_status = 502

    def __init__(self, message: str, detail: str | None = None, *, srt_code: int = 0) -> None:
        super().__init__(message, detail)
        self.srt_code = srt_code


class SrtUnavailable(SrtError):
    """libsrt cannot be loaded here: the server runs without SRT ingest."""

    code = "srt_unavailable"
    http_status = 503


class StreamIdError(StreamdError, ValueError):
    """A caller's stream id is malformed: not `#!::r=...,m=publish,s=...`."""

    code = "srt_bad_stream_id"
    http_status = 400


class UnsupportedMode(StreamIdError):
    """The stream id asks for something other than publishing (`m=request`, say)."""

    code = "srt_unsupported_mode"
