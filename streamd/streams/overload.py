"""Overload: a live stream whose transcoding falls behind real time leaves its tallest rungs
out of new segments instead of drifting further behind, and takes them back when it catches
up. The worker leaves rungs out within a job (`media.pipeline`); this decides between jobs.
"""

from __future__ import annotations

import logging

from streamd.metrics import Metrics
from streamd.model.jobs import PublishedSegment, TranscodeResult
from streamd.model.ladder import Rung
from streamd.model.stream import Stream, Upload

log = logging.getLogger("streamd.streams.overload")
HEADROOM = 0.7  # after leaving rungs out, aim to transcode at this fraction of real time
CALM_JOBS = 3  # jobs in a row that would keep up with a rung before it comes back


class Overload:
    """One live stream's ladder under load (`transcode.overload_delay_s`; 0: never)."""

    def __init__(self, stream: Stream, metrics: Metrics, delay_s: float) -> None:
        self.stream, self.metrics, self.delay_s = stream, metrics, delay_s

    def after_job(self, upload: Upload, result: TranscodeResult, now_wall_s: float) -> None:
        """Leave rungs out of new segments while the stream publishes too late (their
        playlists show EXT-X-GAP; players switch down), and bring the last one back once
        three jobs in a row would have kept up with it."""
        stream, limit_s = self.stream, self.delay_s
        if not limit_s or len(stream.rungs) < 2:
            return
        behind_s = now_wall_s - upload.received_wall_s
        if result.skip_rungs > stream.dropped_rungs:  # the worker left rungs out mid-job
            self._left_out(stream.rungs[stream.dropped_rungs : result.skip_rungs], behind_s, result)
            stream.dropped_rungs = result.skip_rungs
        if behind_s > limit_s and stream.dropped_rungs < len(stream.rungs) - 1:
            # As many rungs as it takes for the rest to run faster than real time again, and
            # the further behind, the faster (the backlog goes through in few batched jobs).
            speed = result.media_duration_s / max(result.elapsed_s, 0.001)
            catch_up = min(1.0, limit_s / behind_s)
            budget_s = speed * HEADROOM * catch_up * self._cost_s(stream.dropped_rungs)
            drop = stream.dropped_rungs + 1
            while drop < len(stream.rungs) - 1 and self._cost_s(drop) > budget_s:
                drop += 1
            self._left_out(stream.rungs[stream.dropped_rungs : drop], behind_s, result)
            stream.dropped_rungs = drop
            return
        if not stream.dropped_rungs:
            return
        rung = stream.rungs[stream.dropped_rungs - 1].name
        cost_s = sum(result.rung_seconds.values())
        with_rung_s = result.elapsed_s * (cost_s + stream.rung_cost.get(rung, cost_s)) / cost_s
        calm = behind_s < limit_s / 2 and with_rung_s < 0.8 * result.media_duration_s
        stream.calm_jobs = stream.calm_jobs + 1 if calm else 0
        if stream.calm_jobs >= CALM_JOBS:
            stream.dropped_rungs -= 1
            stream.calm_jobs = 0
            self.metrics.ladder_changes.labels(rung, "restored").inc()
            log.info(
                "%s: caught up (%.1f s behind); %s back in new segments",
                stream.video_id,
                behind_s,
                rung,
                extra={"stream": stream.video_id, "rung": rung, "behind_s": round(behind_s, 3)},
            )

    def live_segment(self, segment: PublishedSegment) -> None:
        """A live session's worker leaves rungs out and takes them back by itself, segment
        by segment: the record, the metrics and the log follow what it publishes."""
        stream = self.stream
        skip = len(segment.ladder) - len(segment.rungs)
        if not segment.rungs or not stream.rungs or skip == stream.dropped_rungs:
            return
        if skip > stream.dropped_rungs:
            changed, change = stream.rungs[stream.dropped_rungs : skip], "dropped"
        else:
            changed, change = stream.rungs[skip : stream.dropped_rungs], "restored"
        names = [r.name for r in changed]
        for name in names:
            self.metrics.ladder_changes.labels(name, change).inc()
        log.log(
            logging.WARNING if change == "dropped" else logging.INFO,
            "%s: live transcoding %s: %s %s in new segments",
            stream.video_id,
            "fell behind" if change == "dropped" else "caught up",
            " and ".join(names),
            "left out of" if change == "dropped" else "back",
            extra={"stream": stream.video_id, "rungs": names},
        )
        stream.dropped_rungs = skip

    def _left_out(self, rungs: tuple[Rung, ...], behind_s: float, result: TranscodeResult) -> None:
        stream = self.stream
        stream.calm_jobs = 0
        names = [r.name for r in rungs]
        for rung in names:
            self.metrics.ladder_changes.labels(rung, "dropped").inc()
        log.warning(
            "%s: publishing %.1f s after upload (over transcode.overload_delay_s %g),"
            " transcoding at %.2fx real time: %s left out of new segments",
            stream.video_id,
            behind_s,
            self.delay_s,
            result.media_duration_s / max(result.elapsed_s, 0.001),
            " and ".join(names),
            extra={"stream": stream.video_id, "rungs": names, "behind_s": round(behind_s, 3)},
        )

    def _cost_s(self, skip: int) -> float:
        """Worker seconds per media second of the ladder without its `skip` tallest rungs."""
        return sum(self.stream.rung_cost.get(r.name, 0.0) for r in self.stream.rungs[skip:])
