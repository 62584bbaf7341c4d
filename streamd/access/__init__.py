"""Who may publish, watch and administer: the one place those rules live, for every way in
(HTTP uploads today; RTMP, SRT and chunked HTTP ingest reuse the same checks)."""

from streamd.access.keys import Publishers, bearer_key

__all__ = ["Publishers", "bearer_key"]
