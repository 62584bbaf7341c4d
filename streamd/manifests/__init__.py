"""Manifests players read, rendered from stream records: HLS today (`hls/`), DASH beside it."""
