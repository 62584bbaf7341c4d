"""The resolution ladder: which rungs a source gets and their exact output sizes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from streamd.errors import ConfigError

_SPEC = re.compile(r"^\s*(\d+)p\s*:\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")


@dataclass(frozen=True)
class RungSpec:
    """A configured rung: `720p:2800k` means 720 lines on the short side at 2.8 Mbit/s."""

    lines: int
    video_bitrate_bps: int

    @property
    def name(self) -> str:
        return f"{self.lines}p"

    @classmethod
    def parse(cls, text: str) -> RungSpec:
        m = _SPEC.match(text)
        if not m:
            raise ConfigError(
                f"bad ladder rung {text!r}", "expected NAMEp:BITRATE, e.g. 720p:2800k"
            )
        scale = {"": 1, "k": 1000, "m": 1_000_000}[m.group(3).lower()]
        lines, bitrate = int(m.group(1)), int(float(m.group(2)) * scale)
        if lines < 16 or lines % 2 or bitrate < 10_000:
            raise ConfigError(f"bad ladder rung {text!r}", "lines must be even and >= 16")
        return cls(lines, bitrate)


def parse_ladder(specs: list[str]) -> list[RungSpec]:
    """Configured rungs, tallest first."""
    rungs = sorted((RungSpec.parse(s) for s in specs), key=lambda r: -r.lines)
    if not rungs:
        raise ConfigError("the ladder is empty")
    if len({r.lines for r in rungs}) != len(rungs):
        raise ConfigError("two ladder rungs have the same height")
    return rungs


@dataclass(frozen=True)
class Geometry:
    """How a source is shown: coded size, sample aspect ratio and rotation."""

    width: int
    height: int
    sample_aspect: Fraction = Fraction(1)
    rotation_deg: int = 0

    @property
    def display_size(self) -> tuple[Fraction, Fraction]:
        w, h = Fraction(self.width) * self.sample_aspect, Fraction(self.height)
        return (h, w) if self.rotation_deg % 180 else (w, h)

    @property
    def short_side(self) -> int:
        w, h = self.display_size
        return int(min(w, h))


@dataclass(frozen=True)
class Rung:
    """A rung planned for one stream: its output size and bitrates."""

    name: str
    width: int
    height: int
    video_bitrate_bps: int
    audio_bitrate_bps: int

    @property
    def bandwidth_hint_bps(self) -> int:
        return self.video_bitrate_bps + self.audio_bitrate_bps


def _even(x: Fraction | float) -> int:
    return max(2, 2 * round(x / 2))


def _size_for(lines: int, geometry: Geometry) -> tuple[int, int]:
    w, h = geometry.display_size
    if w >= h:
        return _even(lines * w / h), lines
    return lines, _even(lines * h / w)


def plan_ladder(specs: list[RungSpec], geometry: Geometry, audio_bitrate_bps: int) -> list[Rung]:
    """Rungs for this source, tallest first, never upscaling and keeping the aspect ratio."""
    short = geometry.short_side
    kept = [s for s in specs if s.lines <= short]
    if not kept:
        smallest = specs[-1]
        lines = _even(short) if short >= 2 else 2
        scale = Fraction(lines, smallest.lines) ** 2
        kept = [RungSpec(lines, max(100_000, int(smallest.video_bitrate_bps * scale)))]
    rungs = []
    for spec in kept:
        width, height = _size_for(spec.lines, geometry)
        rungs.append(Rung(spec.name, width, height, spec.video_bitrate_bps, audio_bitrate_bps))
    return rungs
