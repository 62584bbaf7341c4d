"""Where each object lives in the store, and under which URL it is served.

Published media sits under `hls/`, so a plain web server rooted at the data dir (nginx in
`bench/serve`) serves the same URLs as streamd: `/hls/ID/fmp4/720p/index.m3u8`.
"""

from __future__ import annotations

import re

from streamd.errors import InvalidVideoId
from streamd.model.formats import PACKAGINGS, SUBTITLES

VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
AUDIO = "audio"  # the audio rendition's folder, beside the rungs' (hls/ID/fmp4/audio/)
STATE_FILE = "streamd.sqlite3"  # in the data dir: every stream's record (streamd.store.sqlite)


def check_video_id(video_id: str) -> str:
    """The id, if it is 1 to 64 of [A-Za-z0-9_-]; raises InvalidVideoId otherwise."""
    if not VIDEO_ID.match(video_id):
        raise InvalidVideoId(
            f"invalid videoId {video_id[:80]!r}", "use 1 to 64 characters from A-Z a-z 0-9 _ -"
        )
    return video_id


def upload_key(video_id: str, number: int, extension: str) -> str:
    return f"ingest/{video_id}/{number:06d}.{extension}"


def recording_key(video_id: str, extension: str) -> str:
    """A recording uploaded whole (?mode=vod), as it came."""
    return f"ingest/{video_id}/recording.{extension}"


def ingest_init_key(video_id: str, name: str) -> str:
    return f"ingest/{video_id}/{name}"


def stream_prefix(video_id: str) -> str:
    return f"hls/{video_id}/"


def master_key(video_id: str, packaging: str) -> str:
    return f"hls/{video_id}/{packaging}/master.m3u8"


def media_playlist_key(video_id: str, packaging: str, rung: str) -> str:
    return f"hls/{video_id}/{packaging}/{rung}/index.m3u8"


def mpd_key(video_id: str) -> str:
    """The stream's DASH MPD, beside the fMP4 segments it names (streamd.manifests.dash)."""
    return f"hls/{video_id}/fmp4/manifest.mpd"


def iframe_playlist_key(video_id: str, packaging: str, rung: str) -> str:
    return f"hls/{video_id}/{packaging}/{rung}/iframes.m3u8"


def segment_name(sequence: int, packaging: str) -> str:
    found = PACKAGINGS.get(packaging) or SUBTITLES
    return f"seg{sequence:06d}.{found.extension}"


def segment_key(video_id: str, packaging: str, rung: str, sequence: int) -> str:
    return f"hls/{video_id}/{packaging}/{rung}/{segment_name(sequence, packaging)}"


def part_name(sequence: int, index: int) -> str:
    """An LL-HLS part of an fMP4 segment (served from RAM, never stored)."""
    return f"part{sequence:06d}.{index}.m4s"


def part_key(video_id: str, rung: str, sequence: int, index: int) -> str:
    return f"hls/{video_id}/fmp4/{rung}/{part_name(sequence, index)}"


def init_key(video_id: str, packaging: str, rung: str, name: str) -> str:
    return f"hls/{video_id}/{packaging}/{rung}/{name}"


def key_name(index: int) -> str:
    """An AES-128 key's path under `hls/ID/`: served, never stored (streamd.model.protection)."""
    return f"keys/{index}.key"


def key_uri(index: int) -> str:
    """The key's URI as a media playlist (`hls/ID/PACKAGING/RUNG/index.m3u8`) names it: one
    URL per key for every rung and packaging, so a player switching rung fetches it once."""
    return "../../" + key_name(index)


def file_prefix(video_id: str) -> str:
    """Files made from published segments on demand (`/viewstream?format=webm`): kept, not
    published under hls/."""
    return f"files/{video_id}/"


def file_key(video_id: str, container: str, rung: str, sequence: int, variant: str = "") -> str:
    """A kept file; `variant` (see `file_variant`) names its languages when not the main's."""
    name = f"seg{sequence:06d}" + (f".{variant}" if variant else "")
    return f"files/{video_id}/{container}/{rung}/{name}.{container}"


def file_variant(audio_lang: str | None, caption_lang: str = "und") -> str:
    """A kept file's languages, in its key: an alternate audio's (else `main`) and its
    subtitles' (`und`: none). The main audio without subtitles is the plain file ('')."""
    if audio_lang is None and caption_lang == "und":
        return ""
    return f"{audio_lang or 'main'}_{caption_lang}"


def file_variants(audio_langs: list[str], caption_langs: list[str]) -> list[str]:
    """Every variant a stream with these alternates and subtitle tracks can have kept."""
    return [
        file_variant(audio, captions)
        for audio in (None, *audio_langs)
        for captions in ("und", *caption_langs)
    ]


def dash_webm_key(video_id: str, representation: str, name: str) -> str:
    """A WebM DASH object (init.webm, segNNNNNN.webm), made on demand: kept, not published
    under hls/ (it is served at /dash/ID/REPRESENTATION/NAME)."""
    return f"files/{video_id}/dash/{representation}/{name}"


def thumbnail_key(video_id: str) -> str:
    return f"hls/{video_id}/thumb.jpg"


def thumbnail_tile_key(video_id: str, sequence: int) -> str:
    """A segment's preview (streamd.media.thumbs)."""
    return f"hls/{video_id}/thumbs/seg{sequence:06d}.jpg"


THUMBS_PER_SHEET = 25  # previews per sprite sheet: segment N's is on sheet N // 25


def thumbnail_sheet_name(index: int) -> str:
    """A sprite sheet of previews, as the track beside it names it."""
    return f"thumbs/sheet{index:05d}.jpg"


def thumbnail_sheet_key(video_id: str, index: int) -> str:
    return f"hls/{video_id}/{thumbnail_sheet_name(index)}"


def thumbnail_track_key(video_id: str) -> str:
    """The WebVTT thumbnails track of the stream's previews."""
    return f"hls/{video_id}/thumbs.vtt"


def url_for(key: str) -> str:
    """The URL path a published object is served under."""
    return "/" + key
