"""HLS (RFC 8216): tags as values (`tags`), one rendition's media playlist kept as it grows
(`media`), a stream's playlists (`playlists`), its master playlist (`master`)."""

from streamd.manifests.hls.master import absolute_master
from streamd.manifests.hls.media import PlaylistChange, PlaylistText
from streamd.manifests.hls.playlists import StreamPlaylists
from streamd.manifests.hls.tags import MIME

__all__ = ["MIME", "PlaylistChange", "PlaylistText", "StreamPlaylists", "absolute_master"]
