"""HLS (RFC 8216): tags as values (`tags`), a stream's playlists kept as it grows
(`playlists`), its master playlist (`master`)."""

from streamd.manifests.hls.master import absolute_master
from streamd.manifests.hls.playlists import PlaylistChange, PlaylistText, StreamPlaylists
from streamd.manifests.hls.tags import MIME

__all__ = ["MIME", "PlaylistChange", "PlaylistText", "StreamPlaylists", "absolute_master"]
