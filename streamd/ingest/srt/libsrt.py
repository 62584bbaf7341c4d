"""The few calls of libsrt's C API that an SRT listener needs, bound with ctypes.

No SRT binding on PyPI is kept up, and a listener needs only a dozen calls, so they are
declared here from `srtcore/srt.h` and `srtcore/access_control.h` of libsrt 1.5.1 (the
values below are stable since 1.4). Every call that fails raises `SrtError` with libsrt's
own message; "would block" on a non-blocking socket is a result, not an error. ctypes
releases the GIL for each call, so a thread waiting in `epoll_uwait` costs the loop nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import socket
import struct
from typing import TYPE_CHECKING

from streamd.ingest.srt import SrtError, SrtUnavailable

if TYPE_CHECKING:
    from ctypes import _CFunctionType

# Debian's packages (libsrt1.5-gnutls, libsrt1.5-openssl), then whatever ldconfig knows.
LIBRARY_NAMES = ("libsrt-gnutls.so.1.5", "libsrt-openssl.so.1.5", "libsrt.so.1.5")
MIN_VERSION = 0x010400  # srt_listen_callback, srt_epoll_uwait, the REJX codes
SRT_ERROR = -1
SOCKADDR_STORAGE_BYTES = 128
STREAMID_MAX_BYTES = 512  # SRTO_STREAMID's limit
LIVE_MAX_PAYLOAD_BYTES = 1456  # SRT_LIVE_MAX_PLSIZE: MTU 1500 - UDP 28 - SRT header 16


class SockOpt(enum.IntEnum):
    """SRT_SOCKOPT values used here (srt.h)."""

    RCVSYN = 2  # bool: blocking reads (and accept)
    RCVDATA = 20  # int32, read only: packets in the receive buffer, due or not
    LATENCY = 23  # int32 ms: TSBPD delay, both directions
    STREAMID = 46  # string, up to 512 bytes
    TRANSTYPE = 50  # int32 SRT_TRANSTYPE
    PEERIDLETIMEO = 55  # int32 ms: a silent peer is broken after this


TRANSTYPE_LIVE = 0  # SRTT_LIVE


class SockStatus(enum.IntEnum):
    """SRT_SOCKSTATUS, what `srt_getsockstate` says."""

    INIT = 1
    OPENED = 2
    LISTENING = 3
    CONNECTING = 4
    CONNECTED = 5
    BROKEN = 6
    CLOSING = 7
    CLOSED = 8
    NONEXIST = 9


class Epoll(enum.IntFlag):
    """SRT_EPOLL_OPT flags."""

    IN = 0x1  # data to read; on a listener, a connection to accept
    OUT = 0x4
    ERR = 0x8  # broken or closed: the socket will only fail from now on


class Errno(enum.IntEnum):
    """SRT_ERRNO values the listener tells apart (1000 * major + minor)."""

    ECONNLOST = 2001
    ENOCONN = 2002
    EINVSOCK = 5004
    EASYNCRCV = 6002  # non-blocking read or accept: nothing there yet


class Reject(enum.IntEnum):
    """SRT_REJX_* codes (access_control.h) a listen callback may set; HTTP's numbers + 1000."""

    BAD_REQUEST = 1400
    UNAUTHORIZED = 1401
    FORBIDDEN = 1403
    BAD_MODE = 1405
    INTERNAL = 1500  # SRT_REJX_ISE


class EpollEvent(ctypes.Structure):
    """SRT_EPOLL_EVENT: one ready socket from `srt_epoll_uwait`."""

    _fields_ = (("fd", ctypes.c_int32), ("events", ctypes.c_int))


# srt_listen_callback_fn(void* opaque, SRTSOCKET ns, int hsversion,
#                        const struct sockaddr* peeraddr, const char* streamid)
LISTEN_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
)


def sockaddr(host: str, port: int) -> bytes:
    """A `struct sockaddr_in` or `sockaddr_in6` (Linux layout) for a numeric host."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        address = socket.inet_pton(family, host)
    except OSError:
        raise SrtError(f"SRT listens on an IP address, not {host!r}") from None
    if family == socket.AF_INET:
        return struct.pack("=H", family) + struct.pack("!H", port) + address + bytes(8)
    return struct.pack("=H", family) + struct.pack("!HI", port, 0) + address + bytes(4)


def peer_name(address: int | None) -> str:
    """`host:port` (`[host]:port` for IPv6) of the `struct sockaddr` at `address`."""
    if not address:
        return "?"
    (family,) = struct.unpack("=H", ctypes.string_at(address, 2))
    if family == socket.AF_INET:
        raw = ctypes.string_at(address, 8)
        return f"{socket.inet_ntop(socket.AF_INET, raw[4:8])}:{struct.unpack('!H', raw[2:4])[0]}"
    if family == socket.AF_INET6:
        raw = ctypes.string_at(address, 24)
        host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        return f"[{host}]:{struct.unpack('!H', raw[2:4])[0]}"
    return f"?family={family}"


class LibSrt:
    """libsrt's C API, the part a listener uses; made by `load()`."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.path = lib._name
        self._lib = lib
        c_int, c_int32, c_int64 = ctypes.c_int, ctypes.c_int32, ctypes.c_int64
        c_void_p, c_char_p = ctypes.c_void_p, ctypes.c_char_p
        declare = {
            "srt_getversion": (ctypes.c_uint32, ()),
            "srt_startup": (c_int, ()),
            "srt_cleanup": (c_int, ()),
            "srt_create_socket": (c_int32, ()),
            "srt_setsockflag": (c_int, (c_int32, c_int, c_void_p, c_int)),
            "srt_getsockflag": (c_int, (c_int32, c_int, c_void_p, ctypes.POINTER(c_int))),
            "srt_bind": (c_int, (c_int32, c_char_p, c_int)),
            "srt_getsockname": (c_int, (c_int32, c_void_p, ctypes.POINTER(c_int))),
            "srt_listen": (c_int, (c_int32, c_int)),
            "srt_listen_callback": (c_int, (c_int32, LISTEN_CALLBACK, c_void_p)),
            "srt_accept": (c_int32, (c_int32, c_void_p, ctypes.POINTER(c_int))),
            "srt_recvmsg": (c_int, (c_int32, c_void_p, c_int)),
            "srt_close": (c_int, (c_int32,)),
            "srt_getsockstate": (c_int, (c_int32,)),
            "srt_getlasterror": (c_int, (ctypes.POINTER(c_int),)),
            "srt_getlasterror_str": (c_char_p, ()),
            "srt_epoll_create": (c_int, ()),
            "srt_epoll_add_usock": (c_int, (c_int, c_int32, ctypes.POINTER(c_int))),
            "srt_epoll_remove_usock": (c_int, (c_int, c_int32)),
            "srt_epoll_uwait": (c_int, (c_int, ctypes.POINTER(EpollEvent), c_int, c_int64)),
            "srt_epoll_release": (c_int, (c_int,)),
        }
        for name, (restype, argtypes) in declare.items():
            function = getattr(lib, name)  # AttributeError names a missing symbol
            function.restype, function.argtypes = restype, argtypes
        # Since 1.4.2; without it a rejected caller hears the generic SRT_REJ_RESOURCE.
        self._setrejectreason = getattr(lib, "srt_setrejectreason", None)
        if self._setrejectreason is not None:
            self._setrejectreason.restype = c_int
            self._setrejectreason.argtypes = (c_int32, c_int)
        self.version = int(lib.srt_getversion())

    @property
    def version_text(self) -> str:
        return f"{self.version >> 16}.{(self.version >> 8) & 0xFF}.{self.version & 0xFF}"

    def last_error(self) -> tuple[int, str]:
        """libsrt's last error on this thread: (SRT_ERRNO, message)."""
        code = int(self._lib.srt_getlasterror(None))
        message: bytes | None = self._lib.srt_getlasterror_str()
        return code, (message or b"").decode(errors="replace")

    def _check(self, result: int, what: str) -> int:
        if result == SRT_ERROR:
            code, message = self.last_error()
            raise SrtError(f"{what} failed: {message}", f"SRT error {code}", srt_code=code)
        return result

    def startup(self) -> None:
        """Start libsrt's threads; counted, so each call needs one `cleanup`."""
        self._check(self._lib.srt_startup(), "srt_startup")

    def cleanup(self) -> None:
        self._check(self._lib.srt_cleanup(), "srt_cleanup")

    def create_socket(self) -> int:
        return self._check(self._lib.srt_create_socket(), "srt_create_socket")

    def set_int(self, sock: int, option: SockOpt, value: int) -> None:
        """Set an int32 (or bool: libsrt takes an int for those) option."""
        raw = ctypes.c_int32(value)
        self._check(
            self._lib.srt_setsockflag(sock, option, ctypes.byref(raw), ctypes.sizeof(raw)),
            f"srt_setsockflag({option.name})",
        )

    def get_int(self, sock: int, option: SockOpt) -> int:
        raw = ctypes.c_int32()
        size = ctypes.c_int(ctypes.sizeof(raw))
        self._check(
            self._lib.srt_getsockflag(sock, option, ctypes.byref(raw), ctypes.byref(size)),
            f"srt_getsockflag({option.name})",
        )
        return raw.value

    def get_string(self, sock: int, option: SockOpt) -> bytes:
        """A string option (SRTO_STREAMID) as libsrt holds it."""
        buffer = ctypes.create_string_buffer(STREAMID_MAX_BYTES + 1)
        size = ctypes.c_int(len(buffer))
        self._check(
            self._lib.srt_getsockflag(sock, option, buffer, ctypes.byref(size)),
            f"srt_getsockflag({option.name})",
        )
        return buffer.raw[: size.value]

    def bind(self, sock: int, host: str, port: int) -> None:
        address = sockaddr(host, port)
        self._check(self._lib.srt_bind(sock, address, len(address)), f"srt_bind({host}:{port})")

    def local_port(self, sock: int) -> int:
        """The port a socket is bound to (what port 0 became)."""
        buffer = ctypes.create_string_buffer(SOCKADDR_STORAGE_BYTES)
        size = ctypes.c_int(len(buffer))
        self._check(self._lib.srt_getsockname(sock, buffer, ctypes.byref(size)), "srt_getsockname")
        return int(struct.unpack("!H", buffer.raw[2:4])[0])

    def listen(self, sock: int, backlog: int) -> None:
        self._check(self._lib.srt_listen(sock, backlog), "srt_listen")

    def listen_callback(self, sock: int, hook: _CFunctionType) -> None:
        """Install `hook` (made with `LISTEN_CALLBACK`; the caller keeps it alive)."""
        self._check(self._lib.srt_listen_callback(sock, hook, None), "srt_listen_callback")

    def set_reject_reason(self, sock: int, reason: int) -> bool:
        """Tell a caller why it was refused; False if this libsrt cannot."""
        if self._setrejectreason is None:
            return False
        return int(self._setrejectreason(sock, reason)) != SRT_ERROR

    def accept(self, sock: int) -> tuple[int, str] | None:
        """A connection waiting on a non-blocking listener, with its peer, or None."""
        buffer = ctypes.create_string_buffer(SOCKADDR_STORAGE_BYTES)
        size = ctypes.c_int(len(buffer))
        accepted = int(self._lib.srt_accept(sock, buffer, ctypes.byref(size)))
        if accepted == SRT_ERROR:
            code, message = self.last_error()
            if code == Errno.EASYNCRCV:
                return None
            raise SrtError(f"srt_accept failed: {message}", f"SRT error {code}", srt_code=code)
        return accepted, peer_name(ctypes.addressof(buffer))

    def recvmsg(self, sock: int, buffer: ctypes.Array[ctypes.c_char]) -> int:
        """Read one message (in live mode: one packet, up to 1456 bytes) into `buffer`: its
        size, or 0 if none is ready on a non-blocking socket. A broken connection raises."""
        size = int(self._lib.srt_recvmsg(sock, buffer, len(buffer)))
        if size == SRT_ERROR:
            code, message = self.last_error()
            if code == Errno.EASYNCRCV:
                return 0
            raise SrtError(f"srt_recvmsg failed: {message}", f"SRT error {code}", srt_code=code)
        return size

    def close(self, sock: int) -> None:
        self._check(self._lib.srt_close(sock), "srt_close")

    def sock_state(self, sock: int) -> SockStatus:
        return SockStatus(int(self._lib.srt_getsockstate(sock)))

    def epoll_create(self) -> int:
        return self._check(self._lib.srt_epoll_create(), "srt_epoll_create")

    def epoll_add(self, eid: int, sock: int, events: Epoll) -> None:
        flags = ctypes.c_int(events)
        self._check(
            self._lib.srt_epoll_add_usock(eid, sock, ctypes.byref(flags)), "srt_epoll_add_usock"
        )

    def epoll_remove(self, eid: int, sock: int) -> None:
        self._check(self._lib.srt_epoll_remove_usock(eid, sock), "srt_epoll_remove_usock")

    def epoll_uwait(
        self, eid: int, events: ctypes.Array[EpollEvent], timeout_ms: int
    ) -> list[tuple[int, Epoll]]:
        """Wait up to `timeout_ms` for sockets to be ready: (socket, flags) of each, [] when
        the time passed. More ready sockets than `events` holds are reported next time."""
        ready = self._check(
            self._lib.srt_epoll_uwait(eid, events, len(events), timeout_ms), "srt_epoll_uwait"
        )
        return [(events[i].fd, Epoll(events[i].events)) for i in range(min(ready, len(events)))]

    def epoll_release(self, eid: int) -> None:
        self._check(self._lib.srt_epoll_release(eid), "srt_epoll_release")


def load(path: str | None = None) -> LibSrt:
    """libsrt from `path` or where Debian puts it, or `SrtUnavailable` saying why not."""
    names = [path] if path else [*LIBRARY_NAMES]
    failures: list[str] = []
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            failures.append(str(exc))
            continue
        try:
            srt = LibSrt(lib)
        except AttributeError as exc:
            raise SrtUnavailable(f"{name} is not a usable libsrt", str(exc)) from None
        if srt.version < MIN_VERSION:
            raise SrtUnavailable(f"{name} is libsrt {srt.version_text}; 1.4 or newer is needed")
        return srt
    if path is None and (found := ctypes.util.find_library("srt")):
        return load(found)
    raise SrtUnavailable(
        "libsrt is not installed (Debian: apt-get install libsrt1.5-gnutls)", "; ".join(failures)
    )
