// Attaching the video to the stream: waits for the master playlist to exist,
// then plays it with hls.js (MSE; preferred) or native HLS, recovers from
// fatal hls.js errors once per error type, and restarts on Retry. Also owns
// the status/overlay feedback driven by the <video> element's own events.
import Hls from '/vendor/hls.mjs';
import { video, ui, setStatus, showOverlay, clearOverlay, fail, setBadge } from './page.js';
import { streamd, player, setHls, videoId, masterUrl } from './state.js';
import { buildQualityMenu, levelSwitched, resetQuality } from './quality.js';
import { buildAudioMenu, buildSubtitlesMenu } from './tracks.js';
import { installCatchUp } from '../catchup.js';

const RETRY_MS = 2000;        // poll interval while the stream does not exist yet

let recoveredAt = {};         // fatal error type -> time of last recovery attempt
let errorsBase = 0;           // streamd.errors index where the current attempt began
let removeCatchUp = null;     // the catch-up of the current hls.js instance

export function tryPlay() {
  const p = video.play();
  if (p && p.catch) {
    p.catch((err) => {
      if (err && err.name === 'NotAllowedError' && !video.muted) {
        // Autoplay with sound blocked: start muted and offer to unmute.
        video.muted = true;
        ui.unmuteHint.hidden = false;
        video.play().catch(() => setStatus('Press ▶ to start playback.', 'info'));
      } else if (err && err.name === 'NotAllowedError') {
        setStatus('Press ▶ to start playback.', 'info');
      }
    });
  }
}

function attachHls() {
  const hls = new Hls({
    // LL-HLS streams (parts, blocking reload) play PART-HOLD-BACK behind the edge, classic
    // ones 3 segments behind (hls.js's default: setting liveSyncDurationCount would
    // override PART-HOLD-BACK). Both catch up by playing up to 1.5x when they fall behind:
    // with ../catchup.js, since hls.js's own (maxLiveSyncPlaybackRate) never does within
    // 1 s of the edge, where LL-HLS plays.
    lowLatencyMode: true,
    maxLiveSyncPlaybackRate: 1,
    backBufferLength: 90,          // keep memory bounded on long DVR sessions
    manifestLoadingMaxRetry: 4,
    levelLoadingMaxRetry: 6,
    fragLoadingMaxRetry: 6,
  });
  setHls(hls);
  removeCatchUp = installCatchUp(hls, video, 1.5);
  streamd.mode = 'hls.js';

  // Load the source once: MEDIA_ATTACHED fires again after recoverMediaError().
  let sourceLoaded = false;
  let manifestParsed = false;
  hls.on(Hls.Events.MEDIA_ATTACHED, () => {
    if (!sourceLoaded) {
      sourceLoaded = true;
      hls.loadSource(masterUrl);
    }
  });
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    if (manifestParsed) return;
    manifestParsed = true;
    buildQualityMenu();
    setStatus('Loading ' + hls.levels.length + ' rendition' + (hls.levels.length === 1 ? '' : 's') + '…', 'info');
    tryPlay();
  });
  hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, buildSubtitlesMenu);
  hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, buildAudioMenu);
  hls.on(Hls.Events.LEVEL_SWITCHED, levelSwitched);
  hls.on(Hls.Events.LEVEL_UPDATED, (_e, data) => {
    if (data && data.details && !data.details.live) player.ended = true;
  });
  hls.on(Hls.Events.FRAG_BUFFERED, () => {
    // A recovery is considered successful once media flows again for a while.
    const now = Date.now();
    for (const k of Object.keys(recoveredAt)) {
      if (now - recoveredAt[k] > 20000) delete recoveredAt[k];
    }
  });
  hls.on(Hls.Events.ERROR, (_e, data) => {
    const rec = { type: data.type, details: data.details, fatal: !!data.fatal };
    streamd.errors.push(rec);
    if (!data.fatal) return;
    const label = data.type + ' / ' + data.details;
    if (recoveredAt[data.type]) {
      fail('Playback failed: ' + label + '.');
      hls.destroy();
      return;
    }
    recoveredAt[data.type] = Date.now();
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR && /^manifest/i.test(data.details || '')) {
      // The master itself failed: startLoad() has no levels to resume, reload it.
      setStatus('Network error (' + label + '), reloading the playlist…', 'error');
      hls.loadSource(masterUrl);
    } else if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
      setStatus('Network error (' + label + '), retrying…', 'error');
      hls.startLoad();
    } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
      setStatus('Media error (' + label + '), recovering…', 'error');
      hls.recoverMediaError();
    } else {
      fail('Playback failed: ' + label + '.');
      hls.destroy();
    }
  });
  hls.attachMedia(video);
}

function attachNative() {
  streamd.mode = 'native';
  video.src = masterUrl;
  buildQualityMenu();
  ui.currentRung.textContent = 'native HLS';
  tryPlay();
}

function start() {
  if (player.started) return;
  player.started = true;
  showOverlay('Loading stream…');
  // Check hls.js FIRST: Chromium answers "maybe" for native HLS but must use MSE.
  if (Hls && Hls.isSupported()) {
    attachHls();
  } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
    attachNative();
  } else {
    player.started = false;
    showOverlay('This browser cannot play HLS.', 'error');
    ui.retry.hidden = true;
    setStatus('This browser supports neither Media Source Extensions (hls.js) nor native HLS.', 'error');
  }
}

// Retry after a terminal failure: tear the player down and start over
// (window.streamd.hls then points at the new instance).
function restart() {
  clearOverlay();
  if (player.hls) {
    try { player.hls.destroy(); } catch (e) { /* already destroyed */ }
    setHls(null);
    removeCatchUp();
  } else {
    video.removeAttribute('src');
    video.load();
  }
  recoveredAt = {};
  errorsBase = streamd.errors.length;
  resetQuality();
  player.ended = false;
  player.started = false;
  waitForStream();
}

// Wait until the master playlist exists (a viewer may arrive before the
// first segment is published), then start the player.
export async function waitForStream() {
  let attempts = 0;
  for (;;) {
    attempts++;
    let status = 0;
    try {
      const res = await fetch(masterUrl, { cache: 'no-store' });
      status = res.status;
      if (res.ok) {
        start();
        return;
      }
    } catch (e) {
      status = -1;
    }
    const why = status === 404
      ? 'Stream “' + videoId + '” doesn’t exist yet — waiting for the first segment to be published.'
      : status === -1 ? 'Cannot reach the server.' : 'Server answered HTTP ' + status + '.';
    setStatus(why + ' Retrying every ' + RETRY_MS / 1000 + ' s (attempt ' + attempts + ')…', 'waiting');
    showOverlay(status === 404 ? 'Waiting for the stream to start…' : 'Waiting for the server…');
    setBadge('WAITING', 'badge-waiting');
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
}

// The Retry button, and status/overlay feedback from the <video> element.
export function wireSource() {
  ui.retry.addEventListener('click', restart);
  video.addEventListener('playing', () => {
    clearOverlay();
    const fatal = streamd.errors.slice(errorsBase).filter((e) => e.fatal);
    if (fatal.length) {
      const last = fatal[fatal.length - 1];
      setStatus('Playing — recovered from ' + last.type + ' / ' + last.details + '.', 'warn');
    } else {
      setStatus('Playing.', 'ok');
    }
  });
  video.addEventListener('waiting', () => {
    if (!video.seeking) showOverlay('Buffering…');
  });
  video.addEventListener('seeking', () => showOverlay(null));
  video.addEventListener('canplay', () => {
    if (!video.paused) showOverlay(null);
  });
  video.addEventListener('pause', () => {
    if (!video.ended) setStatus('Paused.', 'info');
  });
  video.addEventListener('ended', () => {
    showOverlay(null);
    setStatus('End of stream.', 'info');
  });
  video.addEventListener('error', () => {
    if (streamd.mode === 'native' && video.error) {
      fail('Video element error ' + video.error.code + (video.error.message ? ': ' + video.error.message : '') + '.');
    }
  });
}
