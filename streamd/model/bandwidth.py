"""A rendition's bit rates as segments are published: what BANDWIDTH and
AVERAGE-BANDWIDTH say of it (RFC 8216 4.3.4.2), kept so no question walks the history."""

from __future__ import annotations

import math
from dataclasses import dataclass

SHORT_SEGMENT_S = 0.5  # shorter ones (a stream's tail) make a meaningless peak: 4.3.4.2


@dataclass
class Bandwidth:
    """A rung's bit rate in one packaging, kept as segments are added (RFC 8216 4.3.4.2:
    BANDWIDTH is the peak segment bit rate, AVERAGE-BANDWIDTH the mean)."""

    total_bytes: int = 0
    total_s: float = 0.0
    peak_bps: int = 0  # over segments of at least SHORT_SEGMENT_S
    peak_short_bps: int = 0  # over every segment, when none is long enough

    def add(self, size_bytes: int, duration_s: float) -> None:
        if duration_s <= 0:
            return
        self.total_bytes += size_bytes
        self.total_s += duration_s
        bps = math.ceil(size_bytes * 8 / duration_s)
        if duration_s >= SHORT_SEGMENT_S:
            self.peak_bps = max(self.peak_bps, bps)
        self.peak_short_bps = max(self.peak_short_bps, bps)

    def rates(self) -> tuple[int, int]:
        """(peak, average) in bit/s."""
        if not self.total_s:
            return 0, 0
        average = math.ceil(self.total_bytes * 8 / self.total_s)
        return max(self.peak_bps or self.peak_short_bps, average), average
