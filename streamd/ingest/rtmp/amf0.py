"""AMF0, the value encoding of RTMP commands and FLV script data (Adobe AMF0 spec, 2.1-2.18).

Objects decode to `dict`, ECMA arrays to `EcmaArray` (a dict, so they encode back as ECMA
arrays, as `onMetaData` must be), strict arrays to `list`, numbers to `float`. Every
malformed input raises `RtmpError`; nesting is bounded so hostile bytes cannot recurse deep.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import TypeAlias

from streamd.ingest.rtmp import RtmpError

NUMBER, BOOLEAN, STRING, OBJECT, MOVIECLIP, NULL, UNDEFINED_MARKER = range(7)
REFERENCE, ECMA_ARRAY, OBJECT_END, STRICT_ARRAY, DATE, LONG_STRING = range(7, 13)
UNSUPPORTED, RECORDSET, XML_DOCUMENT, TYPED_OBJECT, AVMPLUS = range(13, 18)

MAX_DEPTH = 64
_OBJECT_END = b"\x00\x00\x09"


class Undefined(enum.Enum):
    """AMF0's `undefined`, distinct from `null` (None)."""

    UNDEFINED = 0


UNDEFINED = Undefined.UNDEFINED


@dataclass(frozen=True)
class Date:
    """An AMF0 date: milliseconds since the Unix epoch (the time zone field is reserved)."""

    epoch_ms: float
    timezone_min: int = 0


class EcmaArray(dict[str, "Value"]):
    """An associative array (marker 0x08), kept apart from objects so it re-encodes as one."""


Value: TypeAlias = (
    float | bool | str | Undefined | Date | EcmaArray | dict[str, "Value"] | list["Value"] | None
)


class _Reader:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.pos = offset

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise RtmpError("truncated AMF0 value", f"need {n} bytes at offset {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def utf8(self, n: int) -> str:
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, depth: int = 0) -> Value:
        if depth > MAX_DEPTH:
            raise RtmpError("AMF0 nesting too deep", f"more than {MAX_DEPTH} levels")
        marker = self.u8()
        if marker == NUMBER:
            return float(struct.unpack(">d", self.take(8))[0])
        if marker == BOOLEAN:
            return self.u8() != 0
        if marker == STRING:
            return self.utf8(self.u16())
        if marker in (LONG_STRING, XML_DOCUMENT):
            return self.utf8(self.u32())
        if marker == OBJECT:
            return self.pairs(dict(), depth)
        if marker == TYPED_OBJECT:
            self.utf8(self.u16())  # the class name: no use to a media server
            return self.pairs(dict(), depth)
        if marker == ECMA_ARRAY:
            self.u32()  # the count is advisory (encoders get it wrong); the end marker is not
            return self.pairs(EcmaArray(), depth)
        if marker == STRICT_ARRAY:
            count = self.u32()
            if count > len(self.data) - self.pos:  # each value takes at least one byte
                raise RtmpError("AMF0 strict array longer than its message", f"{count} items")
            return [self.value(depth + 1) for _ in range(count)]
        if marker in (NULL, UNSUPPORTED):
            return None
        if marker == UNDEFINED_MARKER:
            return UNDEFINED
        if marker == DATE:
            epoch_ms = float(struct.unpack(">d", self.take(8))[0])
            return Date(epoch_ms, int.from_bytes(self.take(2), "big", signed=True))
        raise RtmpError("unsupported AMF0 marker", f"0x{marker:02x} at offset {self.pos - 1}")

    def pairs(self, out: dict[str, Value], depth: int) -> dict[str, Value]:
        while True:
            key = self.utf8(self.u16())
            if not key and self.data[self.pos : self.pos + 1] == bytes([OBJECT_END]):
                self.pos += 1
                return out
            out[key] = self.value(depth + 1)


def decode(data: bytes, offset: int = 0) -> tuple[Value, int]:
    """One value at `offset`, and the offset after it."""
    reader = _Reader(data, offset)
    return reader.value(), reader.pos


def decode_all(data: bytes, offset: int = 0) -> list[Value]:
    """Every value from `offset` to the end (a command: name, transaction id, arguments)."""
    reader = _Reader(data, offset)
    values = []
    while reader.pos < len(data):
        values.append(reader.value())
    return values


def _string_body(text: str) -> tuple[bool, bytes]:
    raw = text.encode("utf-8")
    return len(raw) > 0xFFFF, raw


def _key(key: str) -> bytes:
    raw = key.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"AMF0 key too long: {len(raw)} bytes")
    return len(raw).to_bytes(2, "big") + raw


def _encode(value: Value, out: bytearray) -> None:
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out += bytes([BOOLEAN, int(value)])
    elif isinstance(value, int | float):
        out.append(NUMBER)
        out += struct.pack(">d", float(value))
    elif isinstance(value, str):
        long, raw = _string_body(value)
        if long:
            out.append(LONG_STRING)
            out += len(raw).to_bytes(4, "big")
        else:
            out.append(STRING)
            out += len(raw).to_bytes(2, "big")
        out += raw
    elif isinstance(value, Date):
        out.append(DATE)
        out += struct.pack(">dh", value.epoch_ms, value.timezone_min)
    elif isinstance(value, list):
        out.append(STRICT_ARRAY)
        out += len(value).to_bytes(4, "big")
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        if isinstance(value, EcmaArray):
            out.append(ECMA_ARRAY)
            out += len(value).to_bytes(4, "big")
        else:
            out.append(OBJECT)
        for key, item in value.items():
            out += _key(key)
            _encode(item, out)
        out += _OBJECT_END
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def encode(*values: Value) -> bytes:
    """The AMF0 bytes of `values`, one after another (ints become numbers)."""
    out = bytearray()
    for value in values:
        _encode(value, out)
    return bytes(out)
