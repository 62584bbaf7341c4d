"""RTMP ingest as pure code: bytes in, events and bytes out (sans-I/O, like h11).

`handshake` (C0/C1/C2), `chunks` (the chunk stream both ways), `amf0` (command values),
`flv` (audio/video tag headers, FLV re-wrap) and `session` (a publisher's conversation)
know no sockets; the asyncio server feeds them what it reads and writes what they return.
"""

from streamd.errors import StreamdError


class RtmpError(StreamdError, ValueError):
    """A peer broke the RTMP protocol (malformed or oversized input): drop the connection."""

    code = "rtmp_protocol_error"
    http_status = 400
