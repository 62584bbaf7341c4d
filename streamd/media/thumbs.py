"""Seek-bar previews: a JPEG of each segment's first picture, tiled into sprite sheets, and a
WebVTT track whose cues point into them (`#xywh=`), as players' thumbnail tracks expect.

The work per segment stays the same however long the stream: one small JPEG, its sheet
(at most SHEET_COLUMNS x SHEET_ROWS tiles) written again, one cue appended to the track.
"""

from __future__ import annotations

import io
import re
from fractions import Fraction

import av
import numpy as np

from streamd.model import layout
from streamd.store import Store

TILE_WIDTH = 160
SHEET_COLUMNS = 5
SHEET_ROWS = 5
PER_SHEET = layout.THUMBS_PER_SHEET
assert SHEET_COLUMNS * SHEET_ROWS == PER_SHEET
TRIM_EVERY_S = 60.0  # a windowed track is written again when this much has left it
_CUE_TIMES = re.compile(r"(\d+:\d\d:\d\d\.\d+) --> (\d+:\d\d:\d\d\.\d+)")


def _jpeg(frame: av.VideoFrame) -> bytes:
    cc = av.CodecContext.create("mjpeg", "w")
    cc.width, cc.height, cc.pix_fmt = frame.width, frame.height, "yuvj420p"
    cc.time_base = Fraction(1, 25)
    cc.options = {"qscale": "4"}
    cc.open()
    return b"".join(bytes(p) for p in [*cc.encode(frame), *cc.encode(None)])


def _pixels(jpeg: bytes) -> np.ndarray:
    with av.open(io.BytesIO(jpeg), "r") as c:
        frame = next(c.decode(video=0))
        return frame.to_ndarray(format="rgb24")


def _seconds(timestamp: str) -> float:
    hours, minutes, seconds = timestamp.split(":")
    return 3600 * int(hours) + 60 * int(minutes) + float(seconds)


def _timestamp(s: float) -> str:
    ms = round(s * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


class ThumbnailTrack:
    """One stream's previews, written to the store as its segments are made."""

    def __init__(self, store: Store, video_id: str, window_s: float = 0.0) -> None:
        self.store, self.video_id = store, video_id
        self.window_s = window_s  # retention: cues older than this leave the track
        self.first_cue_s: float | None = None
        self.tiles: dict[int, np.ndarray] = {}  # the current sheet's, by segment
        self.made: dict[int, int] = {}  # tile height, by segment: the last few made

    def wants(self, sequence: int) -> bool:
        """Whether the segment still needs its picture (asked at every frame)."""
        return sequence not in self.made

    def picture(self, sequence: int, frame: av.VideoFrame) -> None:
        """A segment's first picture (any rung: it is scaled down): its JPEG, its sheet."""
        height = max(2, round(frame.height * TILE_WIDTH / frame.width / 2) * 2)
        small = frame.reformat(TILE_WIDTH, height, "yuvj420p")
        jpeg = _jpeg(small)
        self.store.put(layout.thumbnail_tile_key(self.video_id, sequence), jpeg)
        sheet = sequence // PER_SHEET
        self.tiles = {s: t for s, t in self.tiles.items() if s // PER_SHEET == sheet}
        if not self.tiles:  # a new job: the sheet's earlier tiles are in the store
            for s in range(sheet * PER_SHEET, sequence):
                key = layout.thumbnail_tile_key(self.video_id, s)
                try:
                    self.tiles[s] = _pixels(self.store.get(key))
                except (FileNotFoundError, av.FFmpegError):
                    continue
        self.tiles[sequence] = small.to_ndarray(format="rgb24")
        self.made = {s: h for s, h in self.made.items() if s > sequence - PER_SHEET}
        self.made[sequence] = height
        canvas = np.zeros((SHEET_ROWS * height, SHEET_COLUMNS * TILE_WIDTH, 3), np.uint8)
        for s, tile in self.tiles.items():
            if tile.shape != (height, TILE_WIDTH, 3):
                continue  # made before the picture's shape changed
            x, y = self.tile_origin(s, height)
            canvas[y : y + height, x : x + TILE_WIDTH] = tile
        image = av.VideoFrame.from_ndarray(canvas, format="rgb24").reformat(format="yuvj420p")
        self.store.put(layout.thumbnail_sheet_key(self.video_id, sheet), _jpeg(image))

    @staticmethod
    def tile_origin(sequence: int, height: int) -> tuple[int, int]:
        i = sequence % PER_SHEET
        return (i % SHEET_COLUMNS) * TILE_WIDTH, (i // SHEET_COLUMNS) * height

    def cue(self, sequence: int, start_s: float, duration_s: float) -> None:
        """The published segment's cue, appended to the track (which starts with its
        header)."""
        height = self.made.get(sequence)
        if height is None:
            return  # no picture was made for it (it began in an earlier job)
        key = layout.thumbnail_track_key(self.video_id)
        try:
            self.store.size(key)
        except FileNotFoundError:
            self.store.put(key, b"WEBVTT\n\n")
        x, y = self.tile_origin(sequence, height)
        sheet = layout.thumbnail_sheet_name(sequence // PER_SHEET)
        cue = (
            f"{_timestamp(start_s)} --> {_timestamp(start_s + duration_s)}\n"
            f"{sheet}#xywh={x},{y},{TILE_WIDTH},{height}\n\n"
        )
        self.store.append(key, cue.encode())
        if self.window_s:
            self._trim(key, start_s + duration_s - self.window_s)

    def _trim(self, key: str, keep_from_s: float) -> None:
        """Cues that end before `keep_from_s` leave the track, once a minute's worth has
        gathered (the track is written again whole: as long as the window, not the stream;
        a live stream's jobs run one at a time, so nothing appends meanwhile)."""
        if self.first_cue_s is None:
            head = self.store.get(key, 0, 200).decode(errors="replace")
            match = _CUE_TIMES.search(head)
            self.first_cue_s = _seconds(match.group(1)) if match else keep_from_s
        if self.first_cue_s > keep_from_s - TRIM_EVERY_S:
            return
        header, *cues = self.store.get(key).decode().split("\n\n")
        kept = [
            c for c in cues if (m := _CUE_TIMES.match(c)) and _seconds(m.group(2)) > keep_from_s
        ]
        self.store.put(key, "\n\n".join([header, *kept, ""]).encode())
        first = _CUE_TIMES.match(kept[0]) if kept else None
        self.first_cue_s = _seconds(first.group(1)) if first else keep_from_s
