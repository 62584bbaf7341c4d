"""Encoders, one module per codec (as aiortc's `codecs/`): H.264 video, AAC audio."""
