// The control bar: seek bar over the DVR window, play/pause, mute/volume,
// fullscreen, go-live, keyboard shortcuts, and the periodic refresh of the
// time / latency readouts, LIVE badge and button icons.
import { clock } from '../format.js';
import { setIcon } from './icons.js';
import { video, ui, setBadge } from './page.js';
import { player, isLive, seekableRange, streamTime, token, videoId } from './state.js';
import { tryPlay } from './source.js';
import { refreshStats } from './info.js';

const UI_MS = 250;            // seek bar / readout refresh interval
const JUMP_S = 10;            // ±10 s buttons and arrow keys
const CLIP_S = 30;            // "Save last 30 s"
const AT_LIVE_EDGE_S = 3;     // "LIVE" (red) when within target latency + this
const AT_LIVE_EDGE_LL_S = 1;  // the same for a low-latency (LL-HLS) stream

let seeking = false;          // user is dragging the seek bar

function goLive() {
  const hls = player.hls;
  let target = null;
  if (hls && hls.liveSyncPosition != null && isFinite(hls.liveSyncPosition)) {
    target = hls.liveSyncPosition;
  } else {
    const r = seekableRange();
    if (r) target = Math.max(r.start, r.end - 6);
  }
  if (target != null) video.currentTime = target;
  if (video.paused) tryPlay();
}

function refreshUi() {
  const hls = player.hls;
  const r = seekableRange();
  const t = video.currentTime;
  if (r) {
    ui.seek.disabled = false;
    ui.seek.min = String(r.start);
    ui.seek.max = String(r.end);
    if (!seeking) ui.seek.value = String(t);
    const span = r.end - r.start;
    const played = Math.min(100, Math.max(0, ((seeking ? +ui.seek.value : t) - r.start) / span * 100));
    let bufEnd = t;
    for (let i = 0; i < video.buffered.length; i++) {
      if (video.buffered.start(i) <= t + 0.5 && video.buffered.end(i) >= t) bufEnd = video.buffered.end(i);
    }
    const buffered = Math.min(100, Math.max(played, (bufEnd - r.start) / span * 100));
    ui.seek.style.setProperty('--played', played.toFixed(2) + '%');
    ui.seek.style.setProperty('--buffered', buffered.toFixed(2) + '%');
    ui.timePos.textContent = clock((seeking ? +ui.seek.value : t) - r.start);
    ui.timeEnd.textContent = clock(span);
  } else {
    ui.seek.disabled = true;
  }

  setIcon(ui.playpause, video.paused ? 'play' : 'pause');
  ui.playpause.setAttribute('aria-label', video.paused ? 'Play' : 'Pause');
  setIcon(ui.mute, video.muted || video.volume === 0 ? 'muted' : 'volume');
  ui.mute.setAttribute('aria-label', video.muted ? 'Unmute' : 'Mute');
  if (!video.muted) ui.unmuteHint.hidden = true;

  // Wall-clock time of the current position (from EXT-X-PROGRAM-DATE-TIME).
  const pd = hls && video.readyState >= 2 ? hls.playingDate : null;
  ui.wall.textContent = pd ? pd.toLocaleTimeString() : '';

  if (!player.started) return;
  if (isLive()) {
    let behind = null;
    if (hls) {
      behind = hls.latency;
    } else if (r) {
      behind = r.end - t;
    }
    const target = hls && hls.targetLatency != null ? hls.targetLatency : 6;
    const lowLatency = !!(hls && hls.lowLatencyMode && hls.latestLevelDetails &&
      hls.latestLevelDetails.partTarget);
    const atEdge = behind != null &&
      behind <= target + (lowLatency ? AT_LIVE_EDGE_LL_S : AT_LIVE_EDGE_S);
    // Behind real time: now against the wall-clock time of the picture on screen (PDT).
    const realtime = pd ? (Date.now() - pd.getTime()) / 1000 : null;
    if (realtime != null && isFinite(realtime) && realtime > 0) {
      ui.latency.textContent = realtime.toFixed(1) + ' s behind real time' + (lowLatency ? ' · LL-HLS' : '');
    } else {
      ui.latency.textContent = behind != null && isFinite(behind) && behind > 0
        ? behind.toFixed(1) + ' s behind live'
        : 'live';
    }
    ui.latency.dataset.latency = behind != null ? behind.toFixed(3) : '';
    ui.latency.dataset.realtime = realtime != null ? realtime.toFixed(3) : '';
    setBadge('LIVE', atEdge && !video.paused ? 'badge-live' : 'badge-behind');
    ui.golive.disabled = false;
    ui.golive.classList.toggle('at-edge', atEdge);
  } else {
    ui.latency.textContent = 'ended / VOD';
    ui.latency.dataset.latency = '';
    setBadge('ENDED · VOD', 'badge-ended');
    ui.golive.disabled = true;
    ui.golive.classList.remove('at-edge');
  }
  refreshStats(r);
}

function jump(by) {
  const r = seekableRange();
  if (r) video.currentTime = Math.min(r.end, Math.max(r.start, video.currentTime + by));
}

// A clip's start marked with "Mark in" (stream seconds), or null: the last CLIP_S seconds.
let markedFrom = null;

function markIn() {
  markedFrom = markedFrom === null ? Math.max(0, streamTime(video.currentTime)) : null;
  ui.markIn.textContent = markedFrom === null ? 'Mark in' : 'Clear mark (' + clock(markedFrom) + ')';
  ui.saveClip.textContent = markedFrom === null ? 'Save last 30 s' : 'Save from mark';
}

// From the mark (or CLIP_S seconds back) to the current position, as one MP4 at the rung
// playing (GET /viewstream/{id}/clip: whole segments, remuxed by the server).
function clipUrl() {
  const now = streamTime(video.currentTime);
  const to = Math.max(1, now);
  const from = markedFrom !== null && markedFrom < to ? markedFrom : Math.max(0, to - CLIP_S);
  const hls = player.hls;
  const level = hls && hls.levels && hls.levels[hls.currentLevel >= 0 ? hls.currentLevel : 0];
  const q = new URLSearchParams({ from: from.toFixed(3), to: to.toFixed(3), format: 'mp4' });
  if (level && level.height) q.set('resolution', level.height + 'p');
  if (token) q.set('token', token);
  return '/viewstream/' + encodeURIComponent(videoId) + '/clip?' + q;
}

// Initial icons and the control listeners (the buttons work before a stream is chosen).
export function wireControls() {
  setIcon(ui.fullscreen, 'fullscreen');
  setIcon(ui.playpause, 'play');
  setIcon(ui.mute, 'volume');

  ui.playpause.addEventListener('click', () => {
    if (video.paused) tryPlay(); else video.pause();
  });
  video.addEventListener('click', () => {
    if (video.paused) tryPlay(); else video.pause();
  });
  ui.mute.addEventListener('click', () => {
    video.muted = !video.muted;
    if (!video.muted && video.volume === 0) video.volume = 0.5;
  });
  ui.unmuteHint.addEventListener('click', () => {
    video.muted = false;
    ui.unmuteHint.hidden = true;
  });
  ui.volume.addEventListener('input', () => {
    video.volume = +ui.volume.value;
    video.muted = video.volume === 0;
  });
  video.addEventListener('volumechange', () => {
    if (!video.muted) ui.volume.value = String(video.volume);
  });
  ui.golive.addEventListener('click', goLive);
  ui.back10.addEventListener('click', () => jump(-JUMP_S));
  ui.fwd10.addEventListener('click', () => jump(JUMP_S));
  ui.markIn.addEventListener('click', markIn);
  ui.saveClip.addEventListener('click', () => { ui.saveClip.href = clipUrl(); });
  ui.fullscreen.addEventListener('click', () => {
    if (document.fullscreenElement) document.exitFullscreen();
    else if (ui.stage.requestFullscreen) ui.stage.requestFullscreen();
  });
  ui.seek.addEventListener('input', () => {
    seeking = true;
    refreshUi();
  });
  ui.seek.addEventListener('change', () => {
    seeking = false;
    video.currentTime = +ui.seek.value;
    refreshUi();
  });
  document.addEventListener('keydown', (e) => {
    if (e.target && (e.target.tagName === 'SELECT' || e.target.tagName === 'INPUT' && e.target.type !== 'range')) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    switch (e.key) {
      case ' ': case 'k': e.preventDefault(); ui.playpause.click(); break;
      case 'm': ui.mute.click(); break;
      case 'l': case 'L': goLive(); break;
      case 'f': ui.fullscreen.click(); break;
      case 'i': markIn(); break;
      case 'ArrowLeft':
        if (e.target === ui.seek) return;
        jump(-JUMP_S);
        break;
      case 'ArrowRight':
        if (e.target === ui.seek) return;
        jump(JUMP_S);
        break;
      default: return;
    }
  });
}

// Keep the readouts current: on a timer, and at once when the viewer acts. Not on
// 'timeupdate', 'progress' and 'durationchange': a live stream fires those for every
// LL-HLS part appended, over 20 times a second, and each redraw lays the page out again.
export function startUiRefresh() {
  setInterval(refreshUi, UI_MS);
  ['play', 'pause', 'volumechange', 'seeked'].forEach((ev) =>
    video.addEventListener(ev, () => { if (!seeking) refreshUi(); }));
}
