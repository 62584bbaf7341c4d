// The player page's DOM: element lookups (#video, #status, #seek, ...) and the
// status line, overlay, badge and key/value panels the other modules write to.

const $ = (id) => document.getElementById(id);

export const video = $('video');
export const ui = {
  title: $('title'), badge: $('live-badge'), status: $('status'),
  overlay: $('overlay'), overlayText: $('overlay-text'), unmuteHint: $('unmute-hint'), retry: $('retry'),
  seek: $('seek'), timePos: $('time-pos'), timeEnd: $('time-end'), wall: $('time-wall'),
  playpause: $('playpause'), mute: $('mute'), volume: $('volume'),
  golive: $('golive'), latency: $('latency'), quality: $('quality'),
  subtitles: $('subtitles'), subtitlesLabel: $('subtitles-label'),
  audio: $('audio'), audioLabel: $('audio-label'),
  currentRung: $('current-rung'), fullscreen: $('fullscreen'),
  back10: $('back10'), fwd10: $('fwd10'), markIn: $('markin'), saveClip: $('saveclip'),
  info: $('info'), links: $('links'), stats: $('stats'), stage: $('stage'),
};

export function setStatus(text, kind) {
  ui.status.textContent = text;
  ui.status.className = 'status' + (kind ? ' status-' + kind : '');
}

// Overlay over the video: a spinner + text, or (kind 'error') text + Retry.
export function showOverlay(text, kind) {
  const showingError = !ui.overlay.hidden && ui.overlay.classList.contains('overlay-error');
  if (showingError && kind !== 'error') return;   // only clearOverlay() removes an error
  if (text) {
    ui.overlayText.textContent = text;
    ui.overlay.hidden = false;
    ui.overlay.classList.toggle('overlay-error', kind === 'error');
    ui.retry.hidden = kind !== 'error';
  } else {
    ui.overlay.hidden = true;
  }
}

export function clearOverlay() {
  ui.overlay.classList.remove('overlay-error');
  ui.retry.hidden = true;
  ui.overlay.hidden = true;
}

// Terminal failure: error status + overlay with a Retry button.
export function fail(message) {
  setStatus(message + ' Press Retry to reload the stream.', 'error');
  showOverlay(message, 'error');
}

export function setBadge(text, cls) {
  ui.badge.textContent = text;
  ui.badge.className = 'badge ' + cls;
}

// Fill a <dl> with [label, value, optional dd class] rows.
export function kv(dl, rows) {
  dl.replaceChildren();
  for (const [k, v, cls] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    if (cls) dd.className = cls;
    dl.append(dt, dd);
  }
}
