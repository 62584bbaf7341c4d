"""The streams: which exist (`registry`), running each one's uploads in order (`runner`),
and recording and announcing what was published (`publisher`)."""

from streamd.streams.publisher import Publisher
from streamd.streams.registry import Streams
from streamd.streams.runner import StreamRunner

__all__ = ["Publisher", "StreamRunner", "Streams"]
