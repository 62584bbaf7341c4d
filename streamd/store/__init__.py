"""Where things are kept: published objects (`base.Store`, the data dir first), stream state
(`state.StateStore`, SQLite first), recent segments in RAM (`cache`), upgrades (`migrate`).
Back ends are chosen by a spec string so worker processes can rebuild them."""

from __future__ import annotations

from pathlib import Path

from streamd.store.base import AsyncStore, Store
from streamd.store.cache import SegmentCache
from streamd.store.fs import FileStore

__all__ = ["AsyncStore", "FileStore", "SegmentCache", "Store", "open_store"]


def open_store(spec: str) -> Store:
    """Build a store from `spec()` of another: `file:///abs/path` (more back ends later)."""
    if spec.startswith("file://"):
        return FileStore(Path(spec.removeprefix("file://")))
    raise ValueError(f"unknown store spec {spec!r}")
