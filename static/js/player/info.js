// The two panels under the player: "Stream" (polls /api/videos/{id} for state,
// duration, rungs, uploads and any extra fields, plus playlist links) and
// "Playback" (engine, DVR window, buffer, bandwidth, dropped frames, errors).
import Hls from '/vendor/hls.mjs';
import { clock, fmtMbps, humanKey, fmtExtra } from '../format.js';
import { video, ui, kv } from './page.js';
import { streamd, player, apiUrl, isLive } from './state.js';
import { setPreviewTrack } from './previews.js';

const INFO_MS = 3000;         // /api/videos/{id} refresh interval
const KNOWN = new Set(['videoId', 'state', 'createdAt', 'updatedAt', 'durationS', 'segments', 'uploads', 'rungs', 'links', 'ingest']);

// The Playback panel; `r` is the seekable range (or null) the caller already computed.
export function refreshStats(r) {
  const hls = player.hls;
  const rows = [['Engine', streamd.mode === 'hls.js' ? 'hls.js ' + (Hls && Hls.version || '') : 'native HLS']];
  if (r) rows.push(['DVR window', clock(r.end - r.start)]);
  let ahead = 0;
  for (let i = 0; i < video.buffered.length; i++) {
    if (video.buffered.start(i) <= video.currentTime + 0.5 && video.buffered.end(i) >= video.currentTime) {
      ahead = video.buffered.end(i) - video.currentTime;
    }
  }
  rows.push(['Buffer ahead', ahead.toFixed(1) + ' s']);
  if (hls) {
    if (isFinite(hls.bandwidthEstimate)) rows.push(['Bandwidth estimate', fmtMbps(hls.bandwidthEstimate)]);
    rows.push(['Quality mode', hls.autoLevelEnabled ? 'auto (ABR)' : 'manual']);
    if (isLive() && hls.targetLatency != null) rows.push(['Target latency', hls.targetLatency.toFixed(1) + ' s']);
    const details = hls.latestLevelDetails;
    if (isLive() && details && details.partTarget) {
      rows.push(['Low latency', 'LL-HLS, parts of ' + (details.partTarget * 1000).toFixed(0) + ' ms' +
        (video.playbackRate > 1 ? ' · catching up at ' + video.playbackRate.toFixed(2) + '×' : '')]);
    }
  }
  if (video.getVideoPlaybackQuality) {
    const q = video.getVideoPlaybackQuality();
    rows.push(['Dropped frames', q.droppedVideoFrames + ' / ' + q.totalVideoFrames]);
  }
  if (video.videoWidth) rows.push(['Decoded size', video.videoWidth + '×' + video.videoHeight]);
  const fatal = streamd.errors.filter((e) => e.fatal).length;
  rows.push(['hls.js errors', streamd.errors.length + (fatal ? ' (' + fatal + ' fatal)' : '')]);
  kv(ui.stats, rows);
}

async function refreshInfo() {
  try {
    const res = await fetch(apiUrl, { cache: 'no-store' });
    if (!res.ok) {
      kv(ui.info, [['State', res.status === 404 ? 'not found (yet)' : 'HTTP ' + res.status]]);
      return;
    }
    const s = await res.json();
    if (s.state === 'ended') player.ended = true;
    if (s.startedAt) player.startedAtMs = Date.parse(s.startedAt);
    const rows = [
      ['State', s.state || '?'],
      ['Duration', s.durationS != null ? clock(s.durationS) + ' (' + Number(s.durationS).toFixed(1) + ' s)' : '?'],
      ['Segments', s.segments != null ? String(s.segments) : '?'],
    ];
    const live = s.ingest;
    if (live) {
      const src = live.source || {};
      rows.push(['Ingest', String(live.protocol).toUpperCase() +
        (live.connected ? ' · publisher connected' + (live.peer ? ' (' + live.peer + ')' : '') : ' · publisher gone'),
        live.connected ? '' : 'warn']);
      if (src.width) {
        rows.push(['Source', src.width + '×' + src.height + ' ' + (src.videoCodec || '') +
          (src.frameRate ? ' · ' + Math.round(src.frameRate) + ' fps' : '') +
          (live.connected && live.bitrateBps ? ' · ' + fmtMbps(live.bitrateBps) : '')]);
      }
    }
    if (Array.isArray(s.rungs) && s.rungs.length) {
      rows.push(['Rungs', s.rungs.map((x) => x.name + ' ' + fmtMbps(x.averageBandwidthBps || x.bandwidthBps)).join(', ')]);
    }
    if (s.uploads && typeof s.uploads === 'object') {
      rows.push(['Uploads', Object.entries(s.uploads).map(([k, v]) => k + ' ' + v).join(' · '),
        s.uploads.failed > 0 ? 'warn' : '']);
    }
    for (const [k, v] of Object.entries(s)) {
      if (KNOWN.has(k)) continue;
      if (typeof v === 'number' && isFinite(v)) rows.push(fmtExtra(k, v));
      else if (typeof v === 'string' || typeof v === 'boolean') rows.push([humanKey(k), String(v)]);
    }
    if (s.updatedAt) rows.push(['Updated', new Date(s.updatedAt).toLocaleTimeString()]);
    kv(ui.info, rows);
    if (s.links) setPreviewTrack(s.links.thumbnails);
    if (s.links && !ui.links.childElementCount) {
      const add = (href, text) => {
        if (!href) return;
        const a = document.createElement('a');
        a.href = href;
        a.textContent = text;
        ui.links.append(a);
      };
      add(s.links.master, 'Master playlist (fMP4)');
      add(s.links.masterTs, 'Master playlist (TS)');
      add('/', 'All streams');
    }
  } catch (e) {
    /* server unreachable; keep the last info */
  }
}

// Poll the Stream panel now and every INFO_MS.
export function startInfo() {
  refreshInfo();
  setInterval(refreshInfo, INFO_MS);
}
