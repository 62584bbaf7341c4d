"""Signed viewer tokens: who may watch, when `[auth] viewer_secret` is set.

A token is `EXPIRY.SIGNATURE`: the expiry in Unix seconds and an HMAC-SHA256, over the video
id and that expiry, in URL-safe base64. It goes in the query string (`?token=`), and the
master playlist hands it on to every URL it names; media playlists get it on every segment,
init segment and key URI as they are served. No token is 401, a bad one 403, an expired one
410.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from streamd.errors import Expired, Forbidden, Unauthorized
from streamd.model.formats import PACKAGINGS, SUBTITLES

QUERY = "token"
_MAX_LENGTH = 200


def _signature(secret: str, video_id: str, expires_s: int) -> str:
    mac = hmac.new(secret.encode(), f"{video_id}\n{expires_s}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def sign(secret: str, video_id: str, expires_s: int) -> str:
    """A token that lets its holder watch `video_id` until `expires_s` (Unix seconds)."""
    return f"{expires_s}.{_signature(secret, video_id, expires_s)}"


def verify(secret: str, video_id: str, token: str | None, now_s: float) -> None:
    """Raise unless `token` lets its holder watch `video_id` now."""
    if not token:
        raise Unauthorized(f"watching {video_id!r} needs a signed link", "add ?token=...")
    expiry, _, signature = token[:_MAX_LENGTH].partition(".")
    if not (expiry.isascii() and expiry.isdigit()) or len(expiry) > 12:  # "¹".isdigit()
        raise Forbidden("malformed viewer token", "expected EXPIRY.SIGNATURE")
    expected = _signature(secret, video_id, int(expiry))
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise Forbidden(f"the token is not valid for {video_id!r}")
    if int(expiry) < now_s:
        raise Expired("the signed link has expired", f"it expired at {expiry} (Unix seconds)")


def tokenized_playlist(body: bytes, token: str) -> bytes:
    """A playlist with `?token=` on every URI it names: a master's media playlists (and
    its renditions'), a media playlist's segments (WebVTT ones too), init segments and
    AES-128 keys."""
    suffix = f"?{QUERY}={token}".encode()
    packagings = (*PACKAGINGS.values(), SUBTITLES)
    for ext in [b".m3u8", *(f".{p.extension}".encode() for p in packagings)]:
        body = body.replace(ext + b"\n", ext + suffix + b"\n")
    # EXT-X-MAP:URI="init-....mp4", EXT-X-KEY:...URI="....key", and LL-HLS parts, preload
    # hints and rendition reports: URI="part....m4s", URI="../480p/index.m3u8"; an MPD's
    # SegmentTemplate media="...m4s" and initialization="....mp4", "....webm".
    for quoted in (b".mp4", b".key", b".m4s", b".m3u8", b".webm"):
        body = body.replace(quoted + b'"', quoted + suffix + b'"')
    return body
