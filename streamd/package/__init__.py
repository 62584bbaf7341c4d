"""Packaging, in worker processes: one module per container, registered by the name
`streamd.model.formats` gives it. A new container is a module here and one line below."""

from __future__ import annotations

from streamd.model.formats import PACKAGINGS
from streamd.package import fmp4, ts
from streamd.package.base import EncodedPacket, Packaged, Packager, PartMedia, SegmentMedia

PACKAGERS: dict[str, Packager] = {"fmp4": fmp4.package, "ts": ts.package}
assert PACKAGERS.keys() == PACKAGINGS.keys(), "every packaging needs its packager"

__all__ = ["PACKAGERS", "EncodedPacket", "Packaged", "Packager", "PartMedia", "SegmentMedia"]
