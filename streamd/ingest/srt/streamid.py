"""The SRT access-control stream id a publisher sends: `#!::r={videoId},m=publish,s={key}`.

The syntax is SRT's own convention (docs/features/access-control.md in Haivision/srt):
`#!::` then comma-separated `key=value` pairs in any order; `r` names the resource, `m` the
mode, `s` a session id (here: the publish key), `u` a user. Some clients %-encode the whole
id because `#` starts a URL fragment, so one that begins with `%23` is decoded once. Error
messages never repeat the id itself: it carries the key, and errors are logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from streamd.ingest.srt import StreamIdError, UnsupportedMode

PREFIX = "#!::"
MAX_CHARS = 512  # SRTO_STREAMID's limit in libsrt
PUBLISH = "publish"
REQUIRED = ("r", "m", "s")


@dataclass(frozen=True)
class StreamId:
    """Who publishes what: the video id (`r=`), the mode (`m=`, always publish here), the
    publish key (`s=`) and the user (`u=`) if the caller gave one."""

    resource: str
    mode: str
    key: str
    user: str | None = None

    def __str__(self) -> str:
        user = f",u={self.user}" if self.user is not None else ""
        return f"{PREFIX}r={self.resource},m={self.mode},s={self.key}{user}"


def parse_stream_id(text: str) -> StreamId:
    """The publisher's stream id, or `StreamIdError` (`UnsupportedMode` for an `m` other than
    publish) saying what is wrong with it."""
    if len(text) > MAX_CHARS:
        raise StreamIdError(f"stream id longer than {MAX_CHARS} characters")
    if text[:3].lower() == "%23":
        try:
            text = unquote(text, errors="strict")
        except UnicodeDecodeError:
            raise StreamIdError("%-encoded stream id is not UTF-8") from None
    if not text.startswith(PREFIX):
        raise StreamIdError(f"stream id must start with {PREFIX!r} (SRT access control)")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise StreamIdError("stream id contains control characters")
    fields: dict[str, str] = {}
    for item in text[len(PREFIX) :].split(","):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise StreamIdError("stream id fields must be key=value, separated by commas")
        if name in fields:
            raise StreamIdError(f"stream id repeats {name!r}")
        fields[name] = value
    missing = [name for name in REQUIRED if not fields.get(name)]
    if missing:
        raise StreamIdError(f"stream id lacks {', '.join(f'{m}=' for m in missing)}")
    if fields["m"] != PUBLISH:
        raise UnsupportedMode(f"stream id asks for m={fields['m'][:16]!r}; only publish is served")
    return StreamId(fields["r"], fields["m"], fields["s"], fields.get("u") or None)
