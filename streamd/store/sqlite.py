"""Stream state in SQLite (the standard library's sqlite3) under the data dir.

WAL mode, one connection on one thread of its own, so the event loop never waits on the
disk. Publishing a segment inserts a row for it and one per rung: the cost is the same at
hour 10 as at minute 1. `synchronous=NORMAL`: a crash of the process loses nothing; a power
cut may lose the last transactions, which the worker's files (written first) survive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from streamd.model.audio import AudioLanguage
from streamd.model.captions import CaptionTrack, Cue
from streamd.model.jobs import RungOutput
from streamd.model.ladder import Rung
from streamd.model.protection import Protection
from streamd.model.stream import Segment, Stream, StreamKey, Upload
from streamd.store.rows import AUDIO_POSITION, Rows, output_row, pipeline_from_json
from streamd.store.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION

T = TypeVar("T")
STREAM_COLUMNS = (
    "video_id",
    "created_wall_s",
    "updated_wall_s",
    "next_upload",
    "ending",
    "ended",
    "end_after",
    "start_wall_s",
    "ingest_init",
    "rungs",
    "frame_rate",
    "encryption",
    "key_secret",
    "key_rotation_segments",
    "session",
    "session_base",
    "session_first",
    "first_sequence",
    "discontinuity_sequence",
)
UPSERT_STREAM = (
    f"INSERT INTO streams ({', '.join(STREAM_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(STREAM_COLUMNS))})"
    " ON CONFLICT (video_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in STREAM_COLUMNS[1:])
)


class SqliteState:
    """The state store in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="state")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- lifetime ----------------------------------------------------------------------------
    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} is from a newer streamd (schema {version})")
        if version == 0:  # a new database (every streamd since SQLite set a version)
            _transaction(db, SCHEMA.split(";"), SCHEMA_VERSION)
            version = SCHEMA_VERSION
        for step in range(version + 1, SCHEMA_VERSION + 1):
            _transaction(db, MIGRATIONS[step], step)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    # -- reading -----------------------------------------------------------------------------
    async def load(self) -> list[Stream]:
        return await self._run(self._load)

    def _load(self) -> list[Stream]:
        assert self._db is not None
        db = self._db
        streams: dict[str, Stream] = {}
        for row in db.execute("SELECT * FROM streams ORDER BY created_wall_s"):
            (vid, created, updated, next_upload, ending, ended, end_after, start, init) = row[:9]
            streams[vid] = Stream(
                video_id=vid,
                created_wall_s=created,
                updated_wall_s=updated,
                next_upload=next_upload,
                ending=bool(ending),
                ended=bool(ended),
                end_after=end_after,
                start_wall_s=start,
                ingest_init=init,
                rungs=tuple(Rung(**r) for r in json.loads(row[9])),
                frame_rate=row[10],
                protection=None if row[12] is None else Protection(row[12], row[13], row[11]),
                session=row[14],
                session_base=row[15],
                session_first=row[16],
                first_sequence=row[17],
                discontinuity_sequence=row[18],
            )
        for vid, state in db.execute("SELECT video_id, state FROM pipelines"):
            streams[vid].pipeline = pipeline_from_json(json.loads(state))
        for row in db.execute("SELECT * FROM uploads ORDER BY video_id, number"):
            streams[row[0]].add_upload(
                Upload(
                    number=row[1],
                    sha256=row[2],
                    size_bytes=row[3],
                    keys=tuple(json.loads(row[4])),
                    received_wall_s=row[5],
                    state=row[6],
                    error=row[7],
                    source=None if row[8] is None else json.loads(row[8]),
                    session_start=bool(row[9]),
                    ingest=row[10],
                )
            )
        outputs: dict[tuple[str, int], list[RungOutput]] = {}
        query = "SELECT * FROM rung_outputs ORDER BY video_id, sequence, position"
        audio: dict[tuple[str, int], list[RungOutput]] = {}
        for vid, seq, rung, position, sizes, codecs, inits, iframes in db.execute(query):
            ranges = {k: (v[0], v[1]) for k, v in json.loads(iframes).items()}
            out = RungOutput(rung, json.loads(sizes), codecs, json.loads(inits), ranges)
            kind = audio if position >= AUDIO_POSITION else outputs
            kind.setdefault((vid, seq), []).append(out)
        for row in db.execute("SELECT * FROM segments ORDER BY video_id, sequence"):
            vid, seq = row[0], row[1]
            rungs = tuple(outputs.get((vid, seq), ()))
            segment = Segment(
                seq,
                row[2],
                row[3],
                row[4],
                row[5],
                rungs,
                bool(row[6]),
                tuple(audio.get((vid, seq), ())),
            )
            stream = streams[vid]
            if seq < stream.first_sequence:  # retired before a restart: its files go now
                stream.retired.append((0.0, segment))
            else:
                stream.add_segment(segment)
        for vid, rendition, lang, name, init, _ in db.execute(
            "SELECT * FROM audio_languages ORDER BY video_id, position"
        ):
            streams[vid].audio_languages[rendition] = AudioLanguage(rendition, lang, name, init)
        for vid, lang, name, _ in db.execute("SELECT * FROM caption_tracks ORDER BY position"):
            streams[vid].captions[lang] = CaptionTrack(lang, name)
        for vid, lang, start, end, text, settings in db.execute(
            "SELECT * FROM cues ORDER BY video_id, lang, start_s, end_s"
        ):
            track = streams[vid].captions[lang]
            track.cues.append(Cue(start, end, text, settings))
            track.longest_s = max(track.longest_s, end - start)
        return list(streams.values())

    # -- writing -----------------------------------------------------------------------------
    async def record(
        self,
        stream: Stream,
        *,
        uploads: Sequence[Upload] = (),
        segments: Sequence[Segment] = (),
        pipeline: bool = False,
    ) -> None:
        # Rows are built here, on the loop, from the record as it is now; the thread only
        # writes them (the record may change while it does).
        rows = Rows(stream, uploads, segments, pipeline)
        await self._run(self._write, rows)

    def _write(self, rows: Rows) -> None:
        assert self._db is not None
        db = self._db
        with _atomic(db):
            # An upsert, not REPLACE: a REPLACE deletes the row first, and the foreign-key
            # check of that delete visits every upload and segment of the stream (measured:
            # 2.8 ms at 43,200 segments, against 4 us for the upsert).
            db.execute(UPSERT_STREAM, rows.stream)
            if rows.pipeline is not None:
                db.execute("INSERT OR REPLACE INTO pipelines VALUES (?,?)", rows.pipeline)
            db.executemany(
                "INSERT OR REPLACE INTO uploads VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows.uploads
            )
            db.executemany("INSERT INTO segments VALUES (?,?,?,?,?,?,?)", rows.segments)
            db.executemany("INSERT INTO rung_outputs VALUES (?,?,?,?,?,?,?,?)", rows.outputs)

    async def forget(
        self,
        video_id: str,
        segments: Sequence[int],
        uploads: Sequence[int],
        cues_before_s: float = 0.0,
    ) -> None:
        await self._run(self._forget, video_id, list(segments), list(uploads), cues_before_s)

    def _forget(
        self, video_id: str, segments: list[int], uploads: list[int], cues_before_s: float
    ) -> None:
        assert self._db is not None
        db = self._db
        with _atomic(db):
            for table in ("rung_outputs", "segments"):
                db.executemany(
                    f"DELETE FROM {table} WHERE video_id = ? AND sequence = ?",
                    [(video_id, n) for n in segments],
                )
            db.executemany(
                "DELETE FROM uploads WHERE video_id = ? AND number = ?",
                [(video_id, n) for n in uploads],
            )
            db.execute(
                "DELETE FROM cues WHERE video_id = ? AND end_s <= ?", (video_id, cues_before_s)
            )

    async def add_cues(self, video_id: str, track: CaptionTrack, cues: Sequence[Cue]) -> None:
        rows = [(video_id, track.lang, c.start_s, c.end_s, c.text, c.settings) for c in cues]
        await self._run(self._add_cues, (video_id, track.lang, track.name), rows)

    def _add_cues(self, track: tuple[str, str, str], rows: list[tuple[Any, ...]]) -> None:
        assert self._db is not None
        db = self._db
        with _atomic(db):
            db.execute(
                "INSERT OR IGNORE INTO caption_tracks VALUES (?,?,?,"
                " (SELECT COUNT(*) FROM caption_tracks))",
                track,
            )
            db.executemany("INSERT INTO cues VALUES (?,?,?,?,?,?)", rows)

    async def add_audio(
        self,
        video_id: str,
        language: AudioLanguage,
        position: int,
        outputs: Sequence[tuple[int, RungOutput]] = (),
    ) -> None:
        lang = (video_id, language.rendition, language.lang, language.name, language.init)
        rows = [output_row(video_id, seq, AUDIO_POSITION + position, r) for seq, r in outputs]
        await self._run(self._add_audio, lang, rows)

    def _add_audio(self, language: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        assert self._db is not None
        db = self._db
        with _atomic(db):
            db.execute(
                "INSERT INTO audio_languages VALUES (?,?,?,?,?,"
                " (SELECT COUNT(*) FROM audio_languages WHERE video_id = ?))"
                " ON CONFLICT (video_id, rendition) DO UPDATE SET"
                " lang = excluded.lang, name = excluded.name, init = excluded.init",
                (*language, language[0]),
            )
            db.executemany("INSERT OR REPLACE INTO rung_outputs VALUES (?,?,?,?,?,?,?,?)", rows)

    async def delete_stream(self, video_id: str) -> None:
        await self._run(self._delete_stream, video_id)

    def _delete_stream(self, video_id: str) -> None:
        assert self._db is not None
        db = self._db
        with _atomic(db):
            # Children before the stream row they point at.
            for table in (
                "rung_outputs",
                "segments",
                "uploads",
                "pipelines",
                "stream_keys",
                "cues",
                "audio_languages",
                "caption_tracks",
            ):
                db.execute(f"DELETE FROM {table} WHERE video_id = ?", (video_id,))
            db.execute("DELETE FROM streams WHERE video_id = ?", (video_id,))

    async def load_keys(self) -> list[StreamKey]:
        return await self._run(self._load_keys)

    def _load_keys(self) -> list[StreamKey]:
        assert self._db is not None
        rows = self._db.execute("SELECT * FROM stream_keys ORDER BY created_wall_s")
        return [StreamKey(*row) for row in rows]

    async def save_key(self, key: StreamKey) -> None:
        row = (key.key_id, key.video_id, key.key_sha256, key.created_wall_s, key.revoked_wall_s)
        await self._run(self._save_key, row)

    def _save_key(self, row: tuple[object, ...]) -> None:
        assert self._db is not None
        self._db.execute("INSERT OR REPLACE INTO stream_keys VALUES (?,?,?,?,?)", row)


@contextlib.contextmanager
def _atomic(db: sqlite3.Connection) -> Iterator[None]:
    """One transaction: everything in the block, or (on any exception) none of it."""
    db.execute("BEGIN")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _transaction(db: sqlite3.Connection, statements: Sequence[str], version: int) -> None:
    """Statements and the new user_version in one transaction: all of them, or none."""
    with _atomic(db):
        for statement in statements:
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version={version}")
