"""A stream's record as the state database's rows (streamd.store.schema), built on the
event loop from the record as it is, for the database's thread to write."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from streamd.model.jobs import RungOutput
from streamd.model.ladder import Rung
from streamd.model.pipeline import PipelineState
from streamd.model.protection import method_of
from streamd.model.stream import Segment, Stream, Upload

# rung_outputs rows at this position and after are a segment's audio renditions, not rungs.
AUDIO_POSITION = 1000


def pipeline_json(state: PipelineState) -> dict[str, Any]:
    return {
        "nextSegment": state.next_segment,
        "videoPts90k": state.video_pts_90k,
        "audioBaseSample": state.audio_base_sample,
        "audioEmitFrom": state.audio_emit_from,
        "audioCarry": base64.b64encode(state.audio_carry).decode(),
        "rungs": [asdict(r) for r in state.rungs],
        "levels": list(state.levels),
        "frameRate": state.frame_rate,
        "inputAudioTail": base64.b64encode(state.input_audio_tail).decode(),
    }


def pipeline_from_json(d: dict[str, Any]) -> PipelineState:
    return PipelineState(
        next_segment=d["nextSegment"],
        video_pts_90k=d["videoPts90k"],
        audio_base_sample=d["audioBaseSample"],
        audio_emit_from=d["audioEmitFrom"],
        audio_carry=base64.b64decode(d["audioCarry"]),
        rungs=tuple(Rung(**r) for r in d["rungs"]),
        levels=tuple(d["levels"]),
        frame_rate=d["frameRate"],
        input_audio_tail=base64.b64decode(d.get("inputAudioTail", "")),
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def output_row(video_id: str, sequence: int, position: int, r: RungOutput) -> tuple[Any, ...]:
    """A segment's rung (or audio rendition) in `rung_outputs`."""
    return (
        video_id,
        sequence,
        r.name,
        position,
        _json(r.size_bytes),
        r.codecs,
        _json(r.inits),
        _json(r.iframes),
    )


class Rows:
    """A change to a stream, as the rows that record it."""

    def __init__(
        self,
        s: Stream,
        uploads: Sequence[Upload],
        segments: Sequence[Segment],
        pipeline: bool,
    ) -> None:
        vid = s.video_id
        self.stream = (
            vid,
            s.created_wall_s,
            s.updated_wall_s,
            s.next_upload,
            int(s.ending),
            int(s.ended),
            s.end_after,
            s.start_wall_s,
            s.ingest_init,
            _json([asdict(r) for r in s.rungs]),
            s.frame_rate,
            method_of(s.protection),
            None if s.protection is None else s.protection.secret,
            None if s.protection is None else s.protection.rotation_segments,
            s.session,
            s.session_base,
            s.session_first,
            s.first_sequence,
            s.discontinuity_sequence,
        )
        self.pipeline = (vid, _json(pipeline_json(s.pipeline))) if pipeline else None
        self.uploads = [
            (
                vid,
                u.number,
                u.sha256,
                u.size_bytes,
                _json(list(u.keys)),
                u.received_wall_s,
                u.state,
                u.error,
                None if u.source is None else _json(u.source),
                int(u.session_start),
                u.ingest,
            )
            for u in uploads
        ]
        self.segments = [
            (
                vid,
                g.sequence,
                g.start_s,
                g.duration_s,
                g.upload,
                g.published_wall_s,
                int(g.discontinuity),
            )
            for g in segments
        ]
        self.outputs = [
            output_row(vid, g.sequence, i, r)
            for g in segments
            for i, r in [
                *enumerate(g.rungs),
                *((AUDIO_POSITION + s.audio_position(a.name), a) for a in g.audio),
            ]
        ]
