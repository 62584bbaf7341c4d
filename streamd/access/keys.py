"""Publish keys: who may send media into a stream.

Keys come from `[auth] publish_keys`; with none configured, the first start makes a random
one and keeps it in the data dir (`publish.key`, mode 0600), so a fresh install is never
open. Every comparison is in constant time. Keyless publishing exists for local development
only, and only on a loopback address.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
from pathlib import Path

from streamd.config import Config
from streamd.errors import ConfigError, Unauthorized

log = logging.getLogger("streamd.access")
KEY_FILE = "publish.key"
KEY_BYTES = 24  # 192 bits, as 32 URL-safe characters


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bearer_key(authorization: str | None) -> str | None:
    """The key in an `Authorization: Bearer KEY` header (RFC 6750 2.1), or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def load_or_make_key(data_dir: Path) -> str:
    """The key kept in the data dir, made (randomly) on first use."""
    path = data_dir / KEY_FILE
    try:
        key = path.read_text().strip()
        if key:
            return key
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


class Publishers:
    """Checks the key a publisher presents for a stream."""

    def __init__(self, config: Config) -> None:
        auth = config.auth
        if auth.keyless and not is_loopback(config.host):
            raise ConfigError(
                "auth.keyless is for local development only",
                f"it needs host = 127.0.0.1 (or ::1), not {config.host!r}",
            )
        self.keyless = auth.keyless
        self.generated: str | None = None
        if not auth.keyless and not auth.publish_keys:
            self.generated = load_or_make_key(config.data_dir)
        keys = [] if auth.keyless else [*auth.publish_keys, *filter(None, [self.generated])]
        self._keys = [k.encode() for k in keys]

    def check(self, video_id: str, key: str | None) -> None:
        """Raise Unauthorized unless `key` may publish to `video_id`."""
        if self.keyless:
            return
        if key is None:
            raise Unauthorized("publishing needs a key", "send it as `Authorization: Bearer KEY`")
        presented = key.encode()
        # Compare against every key, always: the time taken says nothing about which matched.
        matched = False
        for k in self._keys:
            matched |= hmac.compare_digest(presented, k)
        if not matched:
            raise Unauthorized(f"wrong publish key for {video_id!r}", "check the key you send")
