/* streamd index page (ES module, loaded by /index.html): lists streams from
 * /api/videos as cards, refreshed every 2 s.
 * Cards are keyed by videoId and updated in place (no flicker); thumbnails are
 * preloaded with a cache-busting query and swapped in once loaded.
 */
import { clock, fmtMbps, humanKey, fmtExtra } from './format.js';

const REFRESH_MS = 2000;
const STATE_ORDER = { live: 0, waiting: 1, ended: 2 };
const KNOWN = new Set(['videoId', 'state', 'createdAt', 'updatedAt', 'durationS', 'segments', 'uploads', 'rungs', 'links', 'ingest', 'recording', 'audio', 'subtitles']);
const UPLOAD_ORDER = ['published', 'transcoding', 'queued', 'held', 'failed'];

const grid = document.getElementById('streams');
const empty = document.getElementById('empty');
const banner = document.getElementById('banner');
const summary = document.getElementById('summary');
const memory = document.getElementById('memory');
const memoryLine = document.querySelector('#memory-line polyline');
const memoryArea = document.querySelector('#memory-line polygon');
const memoryText = document.getElementById('memory-text');
const MEMORY_SAMPLES = 90;  // three minutes of refreshes: a leak shows as a climbing line
const memoryHistory = [];
document.getElementById('upload-hint').textContent = 'curl -H "Authorization: Bearer KEY" ' +
  '--data-binary @seg0.mp4 ' + location.protocol + '//' + location.host + '/upload/myevent';
document.getElementById('rtmp-hint').textContent = 'rtmp://' + location.hostname + ':1935/live';

const cards = new Map();   // videoId -> { root, refs..., thumbKey }
let refreshNo = 0;
let lastOk = null;

// ---------- helpers ----------
const fmtDuration = (s) => (s == null || !isFinite(s) ? '–' : clock(s));

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v);
    }
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}
function ago(iso) {
  const t = Date.parse(iso);
  if (!isFinite(t)) return '';
  const d = Math.max(0, (Date.now() - t) / 1000);
  if (d < 60) return Math.round(d) + ' s ago';
  if (d < 3600) return Math.round(d / 60) + ' min ago';
  if (d < 86400) return Math.round(d / 3600) + ' h ago';
  return new Date(t).toLocaleDateString();
}
function extraRows(s) {
  const rows = [];
  for (const [k, v] of Object.entries(s)) {
    if (KNOWN.has(k)) continue;
    if (typeof v === 'number' && isFinite(v)) {
      rows.push(fmtExtra(k, v));
    } else if (v && typeof v === 'object' && !Array.isArray(v)) {
      // One level of nested numbers, e.g. {"viewers": {"now": 3, "peak": 7}}.
      for (const [k2, v2] of Object.entries(v)) {
        if (typeof v2 === 'number' && isFinite(v2)) {
          const [label, val] = fmtExtra(k2, v2);
          rows.push([humanKey(k) + ' · ' + label.toLowerCase(), val]);
        }
      }
    }
  }
  return rows;
}

// ---------- cards ----------
function makeCard(id) {
  const img = el('img', { alt: 'Thumbnail of ' + id, loading: 'lazy' });
  img.hidden = true;
  const placeholder = el('div', { class: 'placeholder', text: id.slice(0, 2) });
  const badge = el('span', { class: 'badge' });
  const duration = el('span', { class: 'duration' });
  const thumb = el('a', { class: 'thumb' }, placeholder, img, badge, duration);
  const title = el('a', { class: 'name', title: id, text: id });
  const agoEl = el('span', { class: 'ago' });
  const ingest = el('div', { class: 'chips ingest' });
  const rungs = el('div', { class: 'chips rungs' });
  const uploads = el('div', { class: 'chips uploads' });
  const kv = el('dl', { class: 'kv' });
  const watch = el('a', { class: 'watch', text: '▶ Watch' });
  const master = el('a', { text: 'fMP4 master' });
  const masterTs = el('a', { text: 'TS master' });
  const dash = el('a', { text: 'DASH' });
  const root = el('article', { class: 'card', 'data-video-id': id },
    thumb,
    el('div', { class: 'card-body' },
      el('div', { class: 'card-title' }, title, agoEl),
      ingest, rungs, uploads, kv,
      el('div', { class: 'card-links' }, watch, master, masterTs, dash)));
  const c = { root, img, placeholder, badge, duration, thumb, title, agoEl, ingest, rungs, uploads, kv, watch, master, masterTs, dash, thumbKey: null };
  img.addEventListener('error', () => { img.hidden = true; placeholder.hidden = false; });
  return c;
}

function setLink(a, href) {
  if (href) { a.href = href; a.hidden = false; } else { a.removeAttribute('href'); a.hidden = true; }
}

function updateThumb(c, s) {
  const src = s.links && s.links.thumbnail;
  if (!src) {
    c.img.hidden = true;
    c.placeholder.hidden = false;
    c.thumbKey = null;
    return;
  }
  // Cache-bust: live/waiting streams on every refresh, ended ones when they change.
  const key = s.state === 'ended' ? src + '|' + s.updatedAt + '|' + s.segments : src + '|' + refreshNo;
  if (key === c.thumbKey) return;
  c.thumbKey = key;
  const url = src + (src.includes('?') ? '&' : '?') + 't=' + encodeURIComponent(s.state === 'ended' ? (s.updatedAt || '') + '-' + (s.segments || 0) : Date.now());
  const pre = new Image();
  pre.onload = () => {
    if (c.thumbKey !== key) return;   // a newer refresh superseded this one
    c.img.src = url;
    c.img.hidden = false;
    c.placeholder.hidden = true;
  };
  pre.src = url;
}

function updateCard(c, s) {
  const state = s.state || 'waiting';
  const player = (s.links && s.links.player) || '/player.html?v=' + encodeURIComponent(s.videoId);
  c.root.className = 'card state-' + state;
  c.root.dataset.state = state;
  c.badge.textContent = state === 'live' ? 'Live' : state === 'ended' ? 'Ended' : state === 'waiting' ? 'Waiting' : state;
  c.badge.className = 'badge ' + (state === 'live' ? 'badge-live' : state === 'ended' ? 'badge-ended' : 'badge-waiting');
  const rec = s.recording;  // a recording uploaded whole: not live, however it is published
  if (rec) {
    c.badge.textContent = rec.done ? 'Recording' : 'Transcoding ' + Math.floor(rec.percent) + '%';
    c.badge.className = 'badge ' + (rec.done ? 'badge-ended' : 'badge-waiting');
  }
  c.duration.textContent = fmtDuration(s.durationS);
  c.thumb.href = player;
  c.title.href = player;
  c.agoEl.textContent = s.updatedAt ? 'updated ' + ago(s.updatedAt) : '';
  c.agoEl.title = (s.createdAt ? 'created ' + s.createdAt : '') + (s.updatedAt ? '\nupdated ' + s.updatedAt : '');
  setLink(c.watch, player);
  setLink(c.master, s.links && s.links.master);
  setLink(c.masterTs, s.links && s.links.masterTs);
  setLink(c.dash, s.links && s.links.dash);
  updateThumb(c, s);

  updateIngest(c, s.ingest, rec);
  const rungs = Array.isArray(s.rungs) ? s.rungs : [];
  c.rungs.replaceChildren(...(rungs.length
    ? rungs.map((r) => el('span', {
      class: 'chip',
      title: (r.width && r.height ? r.width + '×' + r.height + ' · ' : '') + (r.codecs || '') +
        (r.bandwidthBps ? ' · peak ' + fmtMbps(r.bandwidthBps) : ''),
      text: (r.name || (r.height ? r.height + 'p' : '?')) + ' · ' + fmtMbps(r.averageBandwidthBps || r.bandwidthBps),
    }))
    : [el('span', { class: 'chip dim', text: 'no renditions yet' })]));

  const up = s.uploads && typeof s.uploads === 'object' ? s.uploads : {};
  const keys = UPLOAD_ORDER.filter((k) => k in up).concat(Object.keys(up).filter((k) => !UPLOAD_ORDER.includes(k)));
  c.uploads.replaceChildren(...keys.map((k) => {
    const n = up[k];
    let cls = 'chip';
    if (k === 'failed' && n > 0) cls += ' bad';
    else if ((k === 'transcoding' || k === 'queued' || k === 'held') && n > 0) cls += ' busy';
    else if (!n) cls += ' dim';
    return el('span', { class: cls, title: 'uploads ' + k, text: k + ' ' + n });
  }));

  const rows = [
    ['Duration', s.durationS != null ? Number(s.durationS).toFixed(1) + ' s' : '–'],
    ['Segments', s.segments != null ? String(s.segments) : '–'],
  ];
  // Languages: audio (an alternate behind the video says how far it is made) and subtitles.
  const audio = Array.isArray(s.audio) ? s.audio : [];
  if (audio.length > 1 || (audio.length && audio[0].lang !== 'und')) {
    rows.push(['Audio', audio.map((a) => a.name + (a.madeUpToS != null && s.durationS - a.madeUpToS > 1
      ? ' (to ' + Number(a.madeUpToS).toFixed(0) + ' s)' : '')).join(', ')]);
  }
  if (Array.isArray(s.subtitles) && s.subtitles.length) {
    rows.push(['Subtitles', s.subtitles.map((t) => t.name).join(', ')]);
  }
  rows.push(...extraRows(s));
  c.kv.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
}

// A live session: its protocol, whether the publisher is connected, what it sends. A
// recording uploaded whole: how far its transcode is, and how fast.
function updateIngest(c, live, rec) {
  c.ingest.hidden = !live && !rec;
  if (rec) {
    const speed = rec.speed ? ' · ' + Number(rec.speed).toFixed(1) + '× realtime' : '';
    c.ingest.replaceChildren(el('span', {
      class: 'chip ' + (rec.done ? 'ok' : 'busy'),
      title: rec.pieces + ' pieces transcoded at once',
      text: 'VOD · ' + (rec.done ? 'done' : Math.floor(rec.percent) + '%') + speed,
    }));
    return;
  }
  if (!live) return;
  const src = live.source || {};
  const chips = [el('span', {
    class: 'chip ' + (live.connected ? 'ok' : 'dim'),
    title: live.peer ? 'from ' + live.peer : '',
    text: String(live.protocol || '?').toUpperCase() + (live.connected ? ' · connected' : ' · publisher gone'),
  })];
  if (src.width && src.height) {
    chips.push(el('span', {
      class: 'chip',
      title: [src.videoCodec, src.audioCodec].filter(Boolean).join(' + '),
      text: src.width + '×' + src.height + (src.frameRate ? ' · ' + Math.round(src.frameRate) + ' fps' : ''),
    }));
  }
  if (live.connected && live.bitrateBps) {
    chips.push(el('span', { class: 'chip', title: 'what the publisher sends', text: 'in ' + fmtMbps(live.bitrateBps) }));
  }
  c.ingest.replaceChildren(...chips);
}

function sortKey(s) {
  return [STATE_ORDER[s.state] ?? 3, -(Date.parse(s.updatedAt) || 0)];
}

function render(videos) {
  videos = videos.filter((s) => s && s.videoId != null).map((s) => Object.assign({}, s, { videoId: String(s.videoId) }));
  videos.sort((a, b) => {
    const ka = sortKey(a), kb = sortKey(b);
    return ka[0] - kb[0] || ka[1] - kb[1] || a.videoId.localeCompare(b.videoId);
  });
  const seen = new Set();
  videos.forEach((s, i) => {
    seen.add(s.videoId);
    let c = cards.get(s.videoId);
    if (!c) {
      c = makeCard(s.videoId);
      cards.set(s.videoId, c);
    }
    updateCard(c, s);
    if (grid.children[i] !== c.root) grid.insertBefore(c.root, grid.children[i] || null);
  });
  for (const [id, c] of cards) {
    if (!seen.has(id)) { c.root.remove(); cards.delete(id); }
  }
  empty.hidden = videos.length > 0;
  const live = videos.filter((s) => s.state === 'live').length;
  summary.textContent = videos.length + ' stream' + (videos.length === 1 ? '' : 's') +
    (live ? ' · ' + live + ' live' : '') + ' · updated ' + new Date().toLocaleTimeString();
}

// The server's resident memory (all its processes): a line over the last few minutes, the
// total now, and each kind of process in the tooltip.
function showMemory(server) {
  const kinds = server && server.residentBytes;
  if (!kinds) return;
  const total = Object.values(kinds).reduce((a, b) => a + b, 0);
  memoryHistory.push(total);
  if (memoryHistory.length > MEMORY_SAMPLES) memoryHistory.shift();
  const top = Math.max(...memoryHistory) * 1.1 || 1;
  const step = 120 / (MEMORY_SAMPLES - 1);
  const start = 120 - step * (memoryHistory.length - 1);
  const points = memoryHistory
    .map((v, i) => (start + i * step).toFixed(1) + ',' + (24 - 22 * v / top).toFixed(1)).join(' ');
  memoryLine.setAttribute('points', points);  // from 0: a leak climbs, noise stays flat
  memoryArea.setAttribute('points', start.toFixed(1) + ',24 ' + points + ' 120,24');
  const mb = (n) => Math.round(n / 1e6) + ' MB';
  memoryText.textContent = 'RAM ' + mb(total);
  memory.title = Object.entries(kinds).filter(([, n]) => n > 0)
    .map(([kind, n]) => kind + ' ' + mb(n)).join(', ');
  memory.hidden = false;
}

async function refresh() {
  refreshNo++;
  try {
    const res = await fetch('/api/videos', { cache: 'no-store' });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    const body = await res.json();
    render(Array.isArray(body.videos) ? body.videos : []);
    showMemory(body.server);
    banner.hidden = true;
    lastOk = Date.now();
  } catch (e) {
    banner.textContent = 'Cannot load /api/videos (' + (e && e.message ? e.message : e) + ') — retrying every ' +
      REFRESH_MS / 1000 + ' s' + (lastOk ? '; showing data from ' + new Date(lastOk).toLocaleTimeString() : '') + '.';
    banner.hidden = false;
    if (!lastOk) summary.textContent = 'offline';
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
