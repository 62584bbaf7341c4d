"""Upgrades: a data dir written by streamd 0.1 (one JSON manifest per stream, rewritten on
every change) is imported into the state store on the first start of this release.

Each manifest becomes one transaction; the file is then renamed `manifest.json.migrated`
(kept, not deleted), so a second start does nothing and an operator can still read it.
Segments, init segments and playlists stay where they are: paths and bytes are unchanged.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from streamd.model.jobs import RungOutput
from streamd.model.ladder import Rung
from streamd.model.stream import Segment, Stream, Upload
from streamd.store.base import AsyncStore
from streamd.store.rows import pipeline_from_json
from streamd.store.state import StateStore

log = logging.getLogger("streamd.store.migrate")
MANIFEST = "manifest.json"


def stream_from_v1(d: dict[str, Any]) -> Stream:
    """A stream as 0.1 wrote it (`Stream.to_json` of that release)."""
    stream = Stream(
        video_id=d["videoId"],
        created_wall_s=d["createdWallS"],
        updated_wall_s=d["updatedWallS"],
        next_upload=d["nextUpload"],
        ending=d["ending"],
        ended=d["ended"],
        end_after=d.get("endAfter"),
        start_wall_s=d["startWallS"],
        ingest_init=d.get("ingestInit"),
        rungs=tuple(Rung(**r) for r in d["rungs"]),
        frame_rate=d["frameRate"],
        pipeline=pipeline_from_json(d["pipeline"]),
    )
    for u in d["uploads"]:
        stream.add_upload(Upload(**{**u, "keys": tuple(u["keys"]), "percent": 0.0}))
    for seq, start_s, duration_s, upload, wall_s, rungs in d["segments"]:
        outputs = tuple(
            RungOutput(name, {"fmp4": fmp4_bytes, "ts": ts_bytes}, codecs, {"fmp4": init})
            for name, ts_bytes, fmp4_bytes, init, codecs in rungs
        )
        stream.add_segment(Segment(seq, start_s, duration_s, upload, wall_s, outputs))
    return stream


async def migrate_v1(store: AsyncStore, state: StateStore, known: set[str]) -> list[Stream]:
    """Import every 0.1 manifest not yet in `state`; returns the streams imported."""
    imported = []
    for key in await store.list("streams/"):
        if not key.endswith("/" + MANIFEST):
            continue
        try:
            stream = stream_from_v1(json.loads(await store.get(key)))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("skipping unreadable manifest %s: %r", key, exc)
            continue
        if stream.video_id not in known:
            await state.record(
                stream,
                uploads=list(stream.uploads.values()),
                segments=stream.segments,
                pipeline=True,
            )
            imported.append(stream)
            log.info(
                "migrated %s from %s: %d uploads, %d segments",
                stream.video_id,
                key,
                len(stream.uploads),
                len(stream.segments),
            )
        await store.rename(key, key + ".migrated")
    return imported
