"""HLS AES-128 content protection (RFC 8216 4.3.2.4, 5.2): which streams are encrypted, the
key of each segment, and the cipher.

A protected stream has a random secret kept only in the state store. The key of key period i
(segments i*N to i*N+N-1) is HMAC-SHA256(secret, "VIDEO/i")[:16]: any process holding the
secret serves any key without a key file beside the segments it opens, and a worker that
writes a segment again after a restart encrypts it with the same key. There is no IV in the
playlist, so players use the segment's media sequence number (5.2), which is its sequence:
playlists start at EXT-X-MEDIA-SEQUENCE 0 and never drop a segment.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from streamd.config import Config
from streamd.errors import BadRequest, ConfigError

NONE, AES_128 = "none", "aes-128"
METHODS = (NONE, AES_128)
KEY_BYTES = 16
SECRET_BYTES = 32
QUERY = "encryption"  # ?encryption=aes-128 on a stream's first upload


@dataclass(frozen=True)
class Protection:
    """How one stream's segments are encrypted: AES-128-CBC with PKCS7 padding, a new key
    every `rotation_segments` segments, each derived from `secret`."""

    secret: bytes = field(repr=False)  # never logged, never served, never in the data tree
    rotation_segments: int
    method: str = AES_128

    @classmethod
    def new(cls, rotation_segments: int) -> Protection:
        return cls(secrets.token_bytes(SECRET_BYTES), rotation_segments)

    def key_index(self, sequence: int) -> int:
        """The key period a segment falls in."""
        return sequence // self.rotation_segments

    def key(self, video_id: str, index: int) -> bytes:
        """The 16-byte key of key period `index`."""
        mac = hmac.new(self.secret, f"{video_id}/{index}".encode(), hashlib.sha256)
        return mac.digest()[:KEY_BYTES]

    def _cipher(self, video_id: str, sequence: int) -> Cipher[modes.CBC]:
        key = self.key(video_id, self.key_index(sequence))
        return Cipher(algorithms.AES(key), modes.CBC(iv_for(sequence)))

    def encrypt(self, video_id: str, sequence: int, data: bytes) -> bytes:
        """A whole media segment as the playlist's key and IV open it."""
        padder = padding.PKCS7(128).padder()
        encryptor = self._cipher(video_id, sequence).encryptor()
        padded = padder.update(data) + padder.finalize()
        return encryptor.update(padded) + encryptor.finalize()

    def decrypt(self, video_id: str, sequence: int, data: bytes) -> bytes:
        """What `encrypt` was given (ValueError for bytes it did not make)."""
        decryptor = self._cipher(video_id, sequence).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        padded = decryptor.update(data) + decryptor.finalize()
        return unpadder.update(padded) + unpadder.finalize()


def iv_for(sequence: int) -> bytes:
    """RFC 8216 5.2: with no IV attribute, the media sequence number as a 128-bit big-endian
    integer (hls.js's createInitializationVector does the same)."""
    return sequence.to_bytes(16, "big")


def check_config(config: Config) -> None:
    """Refuse `[protection]` settings that cannot work (at start, before anything runs)."""
    p = config.protection
    if p.encryption not in METHODS:
        raise ConfigError(
            f"bad protection.encryption {p.encryption!r}", "use " + " or ".join(METHODS)
        )
    if p.key_rotation_segments < 1:
        raise ConfigError("protection.key_rotation_segments must be 1 or more")
    if p.encryption != NONE and not config.auth.viewer_secret:
        raise ConfigError(
            "protection.encryption needs auth.viewer_secret",
            "keys are served only with a viewer token; without one anybody could fetch them",
        )


def new_stream_method(config: Config, requested: str | None) -> str:
    """A new stream's method: `requested` (its first upload's ?encryption=), else the
    configured default. No stream may opt out of encryption set for every stream."""
    default = config.protection.encryption
    method = default if requested is None else check_method(requested)
    if method == NONE and default != NONE:
        raise BadRequest("this server encrypts every stream", f"protection.encryption is {default}")
    if method != NONE and not config.auth.viewer_secret:
        raise BadRequest(
            f"{QUERY}={method} needs viewer tokens, and this server has none",
            "set auth.viewer_secret: keys are served only with a viewer token",
        )
    return method


def check_method(value: str) -> str:
    """A ?encryption= value, checked."""
    if value not in METHODS:
        raise BadRequest(f"bad {QUERY} {value[:40]!r}", "use " + " or ".join(METHODS))
    return value


def published_key(
    video_id: str, protection: Protection | None, key_count: int, index: int
) -> bytes | None:
    """Key period `index`'s key, if the stream is protected and its playlists name it."""
    if protection is None or not 0 <= index < key_count:
        return None
    return protection.key(video_id, index)


def method_of(protection: Protection | None) -> str:
    return NONE if protection is None else protection.method
