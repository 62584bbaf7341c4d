// Seek-bar previews: the stream's WebVTT thumbnails track (links.thumbnails in
// /api/videos/{id}; cues of "sheet.jpg#xywh=x,y,w,h"), shown above the seek bar where the
// pointer is. Cue times are stream seconds; the seek bar runs on hls.js's media time, whose
// first segment (an EVENT playlist's, segment 0) is stream time 0.
import { video, ui } from './page.js';
import { seekableRange, streamTime, token } from './state.js';

const RELOAD_MS = 10000;      // a live track grows: fetched again when older than this

let trackUrl = null;
let cues = [];                // { start, end, image, x, y, w, h }, in time order
let loadedAt = 0;
let loading = null;
const box = document.createElement('div');
box.className = 'preview';
box.hidden = true;

export function setPreviewTrack(url) {
  if (!url || url === trackUrl) return;
  trackUrl = url;
  loadedAt = 0;
}

function withToken(url) {
  return token ? url + (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token) : url;
}

function seconds(stamp) {
  return stamp.split(':').reduce((total, part) => total * 60 + parseFloat(part), 0);
}

export function parseTrack(text, base) {
  const out = [];
  const cue = /^(\S+) --> (\S+)[^\n]*\n(\S+)/gm;
  for (let m; (m = cue.exec(text)) !== null;) {
    const [image, frag] = m[3].split('#xywh=');
    const [x, y, w, h] = (frag || '').split(',').map(Number);
    out.push({ start: seconds(m[1]), end: seconds(m[2]), image: new URL(image, base).href, x, y, w, h });
  }
  return out;
}

async function load() {
  if (!trackUrl || Date.now() - loadedAt < RELOAD_MS) return;
  if (!loading) {
    loading = (async () => {
      try {
        const url = new URL(trackUrl, location.href).href;
        const resp = await fetch(withToken(url), { cache: 'no-cache' });
        if (resp.ok) cues = parseTrack(await resp.text(), url);
        loadedAt = Date.now();
      } catch (e) { /* keep what we had */ }
      loading = null;
    })();
  }
  await loading;
}

function cueAt(t) {
  let lo = 0, hi = cues.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cues[mid].end <= t) lo = mid + 1;
    else if (cues[mid].start > t) hi = mid - 1;
    else return cues[mid];
  }
  return null;
}

// What the preview shows for a pointer at `clientX` over the seek bar (null: nothing).
export function previewAt(clientX) {
  const r = seekableRange();
  const rect = ui.seek.getBoundingClientRect();
  if (!r || !rect.width) return null;
  const frac = Math.min(1, Math.max(0, (clientX - rect.left) / rect.width));
  const cue = cueAt(streamTime(r.start + frac * (r.end - r.start)));
  const row = ui.seek.parentElement.getBoundingClientRect();  // the box's frame
  return cue ? { cue, left: clientX - row.left } : null;
}

function show(e) {
  load().then(() => {
    const at = previewAt(e.clientX);
    if (!at) { box.hidden = true; return; }
    const { cue } = at;
    box.style.width = cue.w + 'px';
    box.style.height = cue.h + 'px';
    box.style.backgroundImage = `url("${withToken(cue.image)}")`;
    box.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
    box.style.left = Math.max(0, at.left - cue.w / 2) + 'px';
    box.dataset.image = cue.image;
    box.dataset.start = String(cue.start);
    box.hidden = false;
  });
}

export function startPreviews() {
  ui.seek.parentElement.append(box);
  ui.seek.addEventListener('mousemove', show);
  ui.seek.addEventListener('mouseleave', () => { box.hidden = true; });
  video.addEventListener('loadedmetadata', () => { loadedAt = 0; });
}
