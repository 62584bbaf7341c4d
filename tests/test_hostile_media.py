"""Uploads that try to make FFmpeg open something else: an image sequence, a playlist or
concat list in disguise, a network session description, an MP4 whose track lives in another
file. Each is a 422 JSON error before anything is decoded or stored; a table, one row each."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from streamd.appkeys import CONFIG
from streamd.errors import UnsupportedMedia
from streamd.media.probe import SAFE_OPTIONS, probe
from streamd.model.jobs import MediaLimits
from tests.conftest import FFMPEG, AppClient, MediaFactory, run

HLS = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n"
BOM = b"\xef\xbb\xbf"
VICTIM = "ingest/victim/000000.mp4"  # another stream's upload, where a dref alias points


def _image(tmp: Path, ext: str) -> bytes:
    path = tmp / f"still.{ext}"
    run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=64x48", "-frames:v", "1",
         str(path)])  # fmt: skip
    return path.read_bytes()


def _boxes(data: bytes | bytearray, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """ISO BMFF boxes between start and end: type -> (offset, size)."""
    found, pos = {}, start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        found.setdefault(kind, (pos, size))
        pos += max(size, 8)
    return found


def _alias(path: bytes, nlvl_from: int, nlvl_to: int) -> bytes:
    """A QuickTime `alis` data reference: with drefs on, FFmpeg opens the last `nlvl_to`
    components of `path`, `nlvl_from - 1` directories above the file being read."""
    body = bytes(10 + 1 + 27 + 12 + 1 + 63 + 16)  # volume, file name: empty
    body += struct.pack(">HH", nlvl_from, nlvl_to) + bytes(16)
    body += struct.pack(">HH", 2, len(path)) + path + b"\0" * (len(path) % 2)  # 2: full path
    body += struct.pack(">hH", -1, 0)
    return struct.pack(">I4sI", 12 + len(body), b"alis", 0) + body


def dref_to_victim(mp4: bytes) -> bytes:
    """`mp4` with its samples blanked and its video track's data said to live in VICTIM,
    reached from `<data>/.incoming/upload-*` (where bodies wait) by going one level up."""
    data = bytearray(mp4)
    chain, start, end = [], 0, len(data)
    for kind in (b"moov", b"trak", b"mdia", b"minf", b"dinf", b"dref"):
        pos, size = _boxes(data, start, end)[kind]
        chain.append((pos, size))
        start, end = pos + 8, pos + size
    entry = _alias(f"/elsewhere/{VICTIM}".encode(), nlvl_from=2, nlvl_to=3)
    dref = struct.pack(">I4sII", 16 + len(entry), b"dref", 0, 1) + entry
    (pos, size), grow = chain[-1], len(dref) - chain[-1][1]
    data[pos : pos + size] = dref
    for pos, size in chain[:-1]:  # moov follows mdat, so no sample offset moves
        data[pos : pos + 4] = struct.pack(">I", size + grow)
    pos, size = _boxes(data, 0, len(data))[b"mdat"]
    data[pos + 8 : pos + size] = bytes(size - 8)
    return bytes(data)


FTYP = struct.pack(">I4s4sI4s", 20, b"ftyp", b"isom", 512, b"isom")
CONCAT = b"ffconcat version 1.0\nfile '/etc/passwd'\n"
DASH = (
    b'<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period><AdaptationSet>'
    b"<Representation><BaseURL>file:///etc/passwd</BaseURL></Representation></AdaptationSet>"
    b"</Period></MPD>"
)
SDP = (  # the sdp demuxer opens RTP sockets
    b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
    b"m=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n"
)


def _clip(media: MediaFactory) -> bytes:
    return media("mp4", duration_s=1.0, acodec=None).read_bytes()


Maker = Callable[[Path, MediaFactory], bytes]
CASES: list[tuple[str, str, Maker]] = [
    # (what, the file name the publisher claims, the bytes)
    ("png, image2 pattern name", "frame%03d.png", lambda t, m: _image(t, "png")),
    ("jpeg named as a segment", "index1.ts", lambda t, m: _image(t, "jpg")),
    ("animated gif", "index1.mp4", lambda t, m: _image(t, "gif")),
    ("hls named .ts", "index1.ts", lambda t, m: HLS + b"file:///etc/passwd\n"),
    ("hls named .mp4 behind a BOM", "index1.mp4", lambda t, m: BOM + HLS + b"/etc/passwd\n"),
    ("hls behind blank lines", "a.m3u8", lambda t, m: b"\n\n  " + HLS + b"/etc/passwd\n"),
    ("hls behind an mp4 ftyp", "index1.mp4", lambda t, m: FTYP + HLS + b"http://127.0.0.1:9/\n"),
    ("hls behind mkv magic", "index1.mkv", lambda t, m: b"\x1a\x45\xdf\xa3" + HLS + b"x.ts\n"),
    ("hls behind a ts sync byte", "index1.ts", lambda t, m: b"G" + HLS + b"x.ts\n"),
    ("hls with a data: uri", "index1.ts", lambda t, m: HLS + b"data:video/mp2t;base64,R0E=\n"),
    ("hls with subfile", "index1.ts", lambda t, m: HLS + b"subfile,,start,0,end,9,,:/etc/passwd\n"),
    ("ffconcat behind a BOM", "index1.ts", lambda t, m: BOM + CONCAT),
    ("dash manifest", "index1.mp4", lambda t, m: DASH),
    ("sdp", "index1.ts", lambda t, m: SDP),
    ("mp4 with a dref alias to another upload", "x.mp4", lambda t, m: dref_to_victim(_clip(m))),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize(("what", "filename", "make"), CASES, ids=IDS)
async def test_hostile_uploads_are_refused_and_leave_nothing(
    make_client: AppClient,
    media: MediaFactory,
    tmp_path: Path,
    what: str,
    filename: str,
    make: Maker,
) -> None:
    client = await make_client()
    data_dir = client.app[CONFIG].data_dir
    victim = data_dir / VICTIM
    victim.parent.mkdir(parents=True)
    victim.write_bytes(_clip(media))
    headers = {"X-Segment-Number": "0", "X-Segment-Filename": filename}
    resp = await client.post("/upload/cam", data=make(tmp_path, media), headers=headers)
    body = await resp.json()
    assert resp.status == 422, (what, body)
    assert body["error"] == "unsupported_media", body
    assert body["message"], body
    assert str(data_dir) not in (body["detail"] or ""), body  # no server path in the answer
    assert not (data_dir / "ingest" / "cam").exists()
    assert not list((data_dir / ".incoming").iterdir())
    assert (await client.get("/api/videos/cam")).status == 404


@pytest.mark.parametrize(("what", "filename", "make"), CASES, ids=IDS)
def test_probe_refuses_them_from_memory_too(
    media: MediaFactory, tmp_path: Path, what: str, filename: str, make: Maker
) -> None:
    """An fMP4 fragment is probed as bytes (init + fragment): the same rules hold."""
    with pytest.raises(UnsupportedMedia):
        probe(make(tmp_path, media), MediaLimits())


def test_the_dref_row_is_a_real_attack(media: MediaFactory, tmp_path: Path) -> None:
    """With drefs on, the crafted MP4 decodes from the other upload's bytes even inside our
    format and protocol whitelists: only enable_drefs=0 stops it."""
    victim, upload = tmp_path / VICTIM, tmp_path / ".incoming" / "upload-x"
    victim.parent.mkdir(parents=True)
    upload.parent.mkdir()
    victim.write_bytes(_clip(media))
    upload.write_bytes(dref_to_victim(victim.read_bytes()))
    with av.open(str(upload), container_options={**SAFE_OPTIONS, "enable_drefs": "1"}) as c:
        assert next(c.decode(video=0), None) is not None
    with pytest.raises(UnsupportedMedia, match="no video frames"):
        probe(upload, MediaLimits())


def test_the_format_is_checked_again_after_ffmpeg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Should FFmpeg ever not apply format_whitelist, the demuxer it chose is checked again."""
    monkeypatch.delitem(SAFE_OPTIONS, "format_whitelist")
    with pytest.raises(UnsupportedMedia, match="not a media file") as refused:
        probe(_image(tmp_path, "png"), MediaLimits())
    assert "png_pipe" in (refused.value.detail or "")
