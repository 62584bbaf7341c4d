// Player session state shared by the player modules: which stream (?v=ID), the
// window.streamd test hooks, the current hls.js instance and playback flags,
// and the queries derived from them (seekable range, live or not).
//
// Test hooks (keep stable, read by tests/browser/play.mjs and bench/viewer.mjs):
// window.streamd = { hls, video, errors: [], mode, videoId }.
import { video } from './page.js';

const params = new URLSearchParams(location.search);
export const videoId = params.get('v') || params.get('id') || '';
const enc = encodeURIComponent(videoId);
// A signed link (?token=, when the server has a viewer secret) is handed to the master
// playlist, which hands it on to every URL it names.
export const token = params.get('token');
// ?format=ts plays the MPEG-TS master (fMP4 by default).
const query = new URLSearchParams();
if (token) query.set('token', token);
if (params.get('format')) query.set('format', params.get('format'));
export const masterUrl = '/viewstream/metadata/' + enc + (query.size ? '?' + query : '');
export const apiUrl = '/api/videos/' + enc;

export const streamd = { hls: null, video: video, errors: [], mode: null, videoId: videoId };
window.streamd = streamd;

export const player = {
  hls: null,          // the hls.js instance (null in native mode / before start)
  started: false,     // player attached to a source
  ended: false,       // stream has EXT-X-ENDLIST (or the API says "ended")
  startedAtMs: null,  // wall-clock time of stream second 0 (the API's startedAt)
};

// The one place that swaps the hls.js instance, so window.streamd.hls follows it.
export function setHls(hls) {
  player.hls = hls;
  streamd.hls = hls;
}

export function seekableRange() {
  const r = video.seekable;
  if (r && r.length) {
    const start = r.start(0), end = r.end(r.length - 1);
    if (isFinite(start) && isFinite(end) && end > start) return { start, end };
  }
  if (isFinite(video.duration) && video.duration > 0) return { start: 0, end: video.duration };
  return null;
}

function currentDetails() {
  const hls = player.hls;
  if (!hls || !hls.levels || !hls.levels.length) return null;
  const idx = hls.currentLevel >= 0 ? hls.currentLevel : hls.loadLevel;
  const lvl = hls.levels[idx];
  return (lvl && lvl.details) || hls.latestLevelDetails || null;
}

// Stream seconds (what /viewstream, clips and the thumbnails track count) at media time
// `t`. The playlist's first segment is stream second 0 only until a DVR window slides
// (retention): its EXT-X-PROGRAM-DATE-TIME against the stream's start says where it is.
export function streamTime(t) {
  const d = player.hls && player.hls.latestLevelDetails;
  const first = d && d.fragments && d.fragments[0];
  if (!first) return t;
  const offset = first.programDateTime && player.startedAtMs !== null
    ? (first.programDateTime - player.startedAtMs) / 1000 : 0;
  return offset + t - first.start;
}

export function isLive() {
  if (player.hls) {
    const d = currentDetails();
    return d ? !!d.live : !player.ended;
  }
  return !player.ended && !isFinite(video.duration);
}
