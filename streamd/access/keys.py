"""Publish keys: who may send media into a stream.

Keys for every stream come from `[auth] publish_keys`; with none configured, the first start
makes a random one and keeps it in the data dir (`publish.key`, mode 0600), so a fresh
install is never open. Keys for one stream are made through the admin API and kept as their
SHA-256 in the state store. Every comparison is in constant time. Keyless publishing exists
for local development only, and only on a loopback address.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from streamd.clock import Clock, SystemClock
from streamd.config import Config
from streamd.errors import ConfigError, NotFound, Unauthorized
from streamd.model.stream import StreamKey
from streamd.store.state import StateStore

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


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Publishers:
    """Checks the key a publisher presents for a stream."""

    def __init__(
        self, config: Config, state: StateStore | None = None, clock: Clock | None = None
    ) -> None:
        self.state, self.clock = state, clock or SystemClock()
        self._stream_keys: dict[str, StreamKey] = {}  # by key id, revoked ones included
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

    async def load(self) -> None:
        """The per-stream keys, from the state store (once it is open)."""
        if self.state is not None:
            self._stream_keys = {k.key_id: k for k in await self.state.load_keys()}

    def check(self, video_id: str, key: str | None) -> None:
        """Raise Unauthorized unless `key` may publish to `video_id`."""
        if self.keyless:
            return
        if key is None:
            raise Unauthorized("publishing needs a key", "send it as `Authorization: Bearer KEY`")
        presented, digest = key.encode(), _sha256(key).encode()
        # Compare against every key, always: the time taken says nothing about which matched.
        matched = False
        for k in self._keys:
            matched |= hmac.compare_digest(presented, k)
        for sk in self._stream_keys.values():
            ok = hmac.compare_digest(digest, sk.key_sha256.encode())
            matched |= ok and sk.video_id == video_id and sk.revoked_wall_s is None
        if not matched:
            raise Unauthorized(f"wrong publish key for {video_id!r}", "check the key you send")

    # -- per-stream keys (the admin API) -----------------------------------------------------
    async def make_stream_key(self, video_id: str) -> tuple[str, str]:
        """A new key that publishes to `video_id` only: (its id, the key)."""
        assert self.state is not None
        key = secrets.token_urlsafe(KEY_BYTES)
        made = StreamKey(secrets.token_hex(8), video_id, _sha256(key), self.clock.wall_s())
        await self.state.save_key(made)
        self._stream_keys[made.key_id] = made
        log.info("made publish key %s for %s", made.key_id, video_id)
        return made.key_id, key

    def stream_keys(self, video_id: str) -> list[dict[str, Any]]:
        """A stream's keys as the admin API lists them: ids and dates, never the keys."""
        return [
            {"keyId": k.key_id, "createdWallS": k.created_wall_s, "revokedWallS": k.revoked_wall_s}
            for k in self._stream_keys.values()
            if k.video_id == video_id
        ]

    async def revoke(self, key_id: str) -> None:
        assert self.state is not None
        key = self._stream_keys.get(key_id)
        if key is None:
            raise NotFound(f"no key {key_id[:40]!r}")
        if key.revoked_wall_s is None:
            revoked = dataclasses.replace(key, revoked_wall_s=self.clock.wall_s())
            await self.state.save_key(revoked)
            self._stream_keys[key_id] = revoked
            log.info("revoked publish key %s of %s", key_id, key.video_id)

    def forget_stream(self, video_id: str) -> None:
        """A deleted stream's keys (the state store drops their rows with the stream)."""
        for key_id in [k for k, v in self._stream_keys.items() if v.video_id == video_id]:
            del self._stream_keys[key_id]
