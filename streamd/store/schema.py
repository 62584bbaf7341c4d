"""The state database's tables, and the steps that bring an older database up to them.

Rows are read and written by position, so a new column goes last in its table here and in
the step that adds it.
"""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    video_id TEXT PRIMARY KEY,
    created_wall_s REAL NOT NULL,
    updated_wall_s REAL NOT NULL,
    next_upload INTEGER,
    ending INTEGER NOT NULL,
    ended INTEGER NOT NULL,
    end_after INTEGER,
    start_wall_s REAL,
    ingest_init TEXT,
    rungs TEXT NOT NULL,
    frame_rate REAL NOT NULL,
    encryption TEXT NOT NULL DEFAULT 'none',
    key_secret BLOB,
    key_rotation_segments INTEGER,
    session TEXT,
    session_base INTEGER NOT NULL DEFAULT 0,
    session_first INTEGER,
    first_sequence INTEGER NOT NULL DEFAULT 0,
    discontinuity_sequence INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pipelines (
    video_id TEXT PRIMARY KEY REFERENCES streams,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    video_id TEXT NOT NULL REFERENCES streams,
    number INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    keys TEXT NOT NULL,
    received_wall_s REAL NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    source TEXT,
    session_start INTEGER NOT NULL DEFAULT 0,
    ingest TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (video_id, number)
);
CREATE TABLE IF NOT EXISTS segments (
    video_id TEXT NOT NULL REFERENCES streams,
    sequence INTEGER NOT NULL,
    start_s REAL NOT NULL,
    duration_s REAL NOT NULL,
    upload INTEGER NOT NULL,
    published_wall_s REAL NOT NULL,
    discontinuity INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (video_id, sequence)
);
CREATE TABLE IF NOT EXISTS rung_outputs (
    video_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    rung TEXT NOT NULL,
    position INTEGER NOT NULL,
    size_bytes TEXT NOT NULL,
    codecs TEXT NOT NULL,
    inits TEXT NOT NULL,
    iframes TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (video_id, sequence, position)
);
CREATE TABLE IF NOT EXISTS caption_tracks (
    video_id TEXT NOT NULL,
    lang TEXT NOT NULL,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (video_id, lang)
);
CREATE TABLE IF NOT EXISTS cues (
    video_id TEXT NOT NULL,
    lang TEXT NOT NULL,
    start_s REAL NOT NULL,
    end_s REAL NOT NULL,
    text TEXT NOT NULL,
    settings TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cues_by_track ON cues (video_id, lang, start_s);
CREATE TABLE IF NOT EXISTS audio_languages (
    video_id TEXT NOT NULL,
    rendition TEXT NOT NULL,
    lang TEXT NOT NULL,
    name TEXT NOT NULL,
    init TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (video_id, rendition)
);
CREATE TABLE IF NOT EXISTS stream_keys (
    key_id TEXT PRIMARY KEY,
    video_id TEXT NOT NULL,
    key_sha256 TEXT NOT NULL,
    created_wall_s REAL NOT NULL,
    revoked_wall_s REAL
);
"""
# What brings a database written at version N-1 to version N, by N: SCHEMA above already
# has every step in it, so a new database starts at the last version and runs none.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (  # HLS AES-128: the stream's method and key secret (only ever kept here)
        "ALTER TABLE streams ADD COLUMN encryption TEXT NOT NULL DEFAULT 'none'",
        "ALTER TABLE streams ADD COLUMN key_secret BLOB",
        "ALTER TABLE streams ADD COLUMN key_rotation_segments INTEGER",
    ),
    3: (  # encoder sessions and gaps (issue 10)
        "ALTER TABLE streams ADD COLUMN session TEXT",
        "ALTER TABLE streams ADD COLUMN session_base INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE streams ADD COLUMN session_first INTEGER",
        "ALTER TABLE uploads ADD COLUMN session_start INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE segments ADD COLUMN discontinuity INTEGER NOT NULL DEFAULT 0",
    ),
    4: (  # live sessions (issue 11): the protocol an upload came by, '' for a segment
        "ALTER TABLE uploads ADD COLUMN ingest TEXT NOT NULL DEFAULT ''",
    ),
    5: (  # I-frame playlists (issue 13): where each segment's first picture is
        "ALTER TABLE rung_outputs ADD COLUMN iframes TEXT NOT NULL DEFAULT '{}'",
    ),
    6: (  # retention (issue 13): the first segment the playlists name (rows before it go)
        "ALTER TABLE streams ADD COLUMN first_sequence INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE streams ADD COLUMN discontinuity_sequence INTEGER NOT NULL DEFAULT 0",
    ),
    7: (  # captions (issue 14): subtitle tracks by language, and their cues
        "CREATE TABLE caption_tracks (video_id TEXT NOT NULL, lang TEXT NOT NULL,"
        " name TEXT NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (video_id, lang))",
        "CREATE TABLE cues (video_id TEXT NOT NULL, lang TEXT NOT NULL, start_s REAL NOT NULL,"
        " end_s REAL NOT NULL, text TEXT NOT NULL, settings TEXT NOT NULL)",
        "CREATE INDEX cues_by_track ON cues (video_id, lang, start_s)",
    ),
    8: (  # audio languages (issue 14): the main audio's and the alternates'
        "CREATE TABLE audio_languages (video_id TEXT NOT NULL, rendition TEXT NOT NULL,"
        " lang TEXT NOT NULL, name TEXT NOT NULL, init TEXT NOT NULL,"
        " position INTEGER NOT NULL, PRIMARY KEY (video_id, rendition))",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)
