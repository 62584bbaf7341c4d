// Catching up with the live edge, for hls.js (used by /player.html and bench/glass.mjs).
//
// hls.js's own catch-up (maxLiveSyncPlaybackRate) speeds up only while more than 1 s is
// buffered ahead. An LL-HLS player holds PART-HOLD-BACK (3 parts: 0.3 s) behind the edge,
// so it never has that much: a viewer who started 0.5 s late (loading the first parts)
// stays 0.5 s late for good. This one needs two parts buffered instead (one second for a
// classic stream, as hls.js), and otherwise follows hls.js's curve: the further behind
// the target latency, the faster, up to `maxRate`; within one target duration of it only,
// beyond which the viewer is watching the DVR, not live.
export function installCatchUp(hls, video, maxRate = 1.5) {
  const onTimeupdate = () => {
    const details = hls.latestLevelDetails;
    const target = hls.targetLatency;
    if (!details || !details.live || target === null || video.paused) return;
    const behind = hls.latency - target;
    const ranges = video.buffered;
    const ahead = ranges.length ? ranges.end(ranges.length - 1) - video.currentTime : 0;
    const guard = details.partTarget ? 2 * details.partTarget : 1;
    let rate = 1;
    if (behind > 0.05 && behind < details.targetduration && ahead > guard) {
      const curve = Math.round((2 / (1 + Math.exp(-0.75 * behind))) * 20) / 20;
      rate = Math.min(maxRate, Math.max(1, curve));
    }
    if (video.playbackRate !== rate && video.playbackRate !== 0) video.playbackRate = rate;
  };
  video.addEventListener('timeupdate', onTimeupdate);
  return () => video.removeEventListener('timeupdate', onTimeupdate);
}
