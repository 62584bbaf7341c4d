"""streamd: upload video segments, transcode an adaptive HLS ladder, watch live or seek back."""

__version__ = "0.2.0"
