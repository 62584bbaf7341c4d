/* streamd player: hls.js (or native HLS) with a DVR seek bar, go-live,
 * latency readout and a quality menu. Plain JS, no build step.
 *
 * Test hooks (keep stable): window.streamd = { hls, video, errors: [] },
 * element ids #video #quality #golive #latency #seek #current-rung #status.
 */
(function () {
  'use strict';

  const RETRY_MS = 2000;        // poll interval while the stream does not exist yet
  const INFO_MS = 3000;         // /api/videos/{id} refresh interval
  const UI_MS = 250;            // seek bar / readout refresh interval
  const AT_LIVE_EDGE_S = 3;     // "LIVE" (red) when within target latency + this

  const $ = (id) => document.getElementById(id);
  const video = $('video');
  const ui = {
    title: $('title'), badge: $('live-badge'), status: $('status'),
    overlay: $('overlay'), overlayText: $('overlay-text'), unmuteHint: $('unmute-hint'), retry: $('retry'),
    seek: $('seek'), timePos: $('time-pos'), timeEnd: $('time-end'), wall: $('time-wall'),
    playpause: $('playpause'), mute: $('mute'), volume: $('volume'),
    golive: $('golive'), latency: $('latency'), quality: $('quality'),
    currentRung: $('current-rung'), fullscreen: $('fullscreen'),
    info: $('info'), links: $('links'), stats: $('stats'), stage: $('stage'),
  };

  const streamd = { hls: null, video: video, errors: [], mode: null, videoId: null };
  window.streamd = streamd;

  const params = new URLSearchParams(location.search);
  const videoId = params.get('v') || params.get('id') || '';
  streamd.videoId = videoId;
  const enc = encodeURIComponent(videoId);
  const masterUrl = '/viewstream/metadata/' + enc;
  const apiUrl = '/api/videos/' + enc;

  let hls = null;
  let seeking = false;          // user is dragging the seek bar
  let recoveredAt = {};         // fatal error type -> time of last recovery attempt
  let ended = false;            // stream has EXT-X-ENDLIST
  let started = false;          // player attached to a source
  let pendingSwitch = null;     // level chosen in the menu, not yet playing
  let errorsBase = 0;           // streamd.errors index where the current attempt began

  // Inline SVG icons (emoji glyphs are missing on many Linux installs).
  const svg = (d) => '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" fill="currentColor">' + d + '</svg>';
  const ICONS = {
    play: svg('<path d="M8 5v14l11-7z"/>'),
    pause: svg('<path d="M6 5h4v14H6zM14 5h4v14h-4z"/>'),
    volume: svg('<path d="M4 9v6h4l5 5V4L8 9H4z"/><path d="M16 8.5a5 5 0 0 1 0 7" stroke="currentColor" stroke-width="2" fill="none"/>'),
    muted: svg('<path d="M4 9v6h4l5 5V4L8 9H4z"/><path d="M16 9l5 6M21 9l-5 6" stroke="currentColor" stroke-width="2"/>'),
    fullscreen: svg('<path d="M4 4h6v2H6v4H4zM14 4h6v6h-2V6h-4zM4 14h2v4h4v2H4zM18 14h2v6h-6v-2h4z"/>'),
  };
  const { clock, fmtMbps, humanKey, fmtExtra } = window.streamdFormat;

  function setIcon(btn, name) {
    if (btn.dataset.icon !== name) {
      btn.innerHTML = ICONS[name];
      btn.dataset.icon = name;
    }
  }
  setIcon(ui.fullscreen, 'fullscreen');
  setIcon(ui.playpause, 'play');
  setIcon(ui.mute, 'volume');

  // ---------- helpers ----------
  function rungName(level) {
    if (!level) return '?';
    if (level.height) return level.height + 'p';
    return level.name || (level.bitrate ? fmtMbps(level.bitrate) : '?');
  }
  function levelBitrate(level) {
    return level.averageBitrate || level.bitrate || 0;
  }
  function setStatus(text, kind) {
    ui.status.textContent = text;
    ui.status.className = 'status' + (kind ? ' status-' + kind : '');
  }
  // Overlay over the video: a spinner + text, or (kind 'error') text + Retry.
  function showOverlay(text, kind) {
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
  function clearOverlay() {
    ui.overlay.classList.remove('overlay-error');
    ui.retry.hidden = true;
    ui.overlay.hidden = true;
  }
  function fail(message) {
    setStatus(message + ' Press Retry to reload the stream.', 'error');
    showOverlay(message, 'error');
  }
  function setBadge(text, cls) {
    ui.badge.textContent = text;
    ui.badge.className = 'badge ' + cls;
  }
  function seekableRange() {
    const r = video.seekable;
    if (r && r.length) {
      const start = r.start(0), end = r.end(r.length - 1);
      if (isFinite(start) && isFinite(end) && end > start) return { start, end };
    }
    if (isFinite(video.duration) && video.duration > 0) return { start: 0, end: video.duration };
    return null;
  }
  function currentDetails() {
    if (!hls || !hls.levels || !hls.levels.length) return null;
    const idx = hls.currentLevel >= 0 ? hls.currentLevel : hls.loadLevel;
    const lvl = hls.levels[idx];
    return (lvl && lvl.details) || hls.latestLevelDetails || null;
  }
  function isLive() {
    if (hls) {
      const d = currentDetails();
      return d ? !!d.live : !ended;
    }
    return !ended && !isFinite(video.duration);
  }
  function kv(dl, rows) {
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

  // ---------- playback start ----------
  function tryPlay() {
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

  function goLive() {
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

  // ---------- quality menu ----------
  function buildQualityMenu() {
    const q = ui.quality;
    q.replaceChildren();
    const auto = document.createElement('option');
    auto.value = '-1';
    auto.textContent = 'Auto';
    q.append(auto);
    if (!hls) {
      auto.textContent = 'Auto (native)';
      q.disabled = true;
      return;
    }
    // hls.js orders levels by bitrate ascending; list the best first.
    const order = hls.levels.map((l, i) => i).sort((a, b) =>
      (hls.levels[b].height - hls.levels[a].height) || (levelBitrate(hls.levels[b]) - levelBitrate(hls.levels[a])));
    for (const i of order) {
      const l = hls.levels[i];
      const o = document.createElement('option');
      o.value = String(i);
      o.textContent = rungName(l) + ' · ' + fmtMbps(levelBitrate(l));
      o.title = (l.width && l.height ? l.width + '×' + l.height + ' ' : '') + (l.codecSet || l.attrs?.CODECS || '');
      q.append(o);
    }
    q.value = hls.autoLevelEnabled ? '-1' : String(hls.manualLevel);
    q.disabled = hls.levels.length < 1;
  }

  function updateRungReadout() {
    if (!hls) return;
    const idx = hls.currentLevel;
    const l = idx >= 0 ? hls.levels[idx] : null;
    const name = l ? rungName(l) : '…';
    ui.currentRung.textContent = l
      ? '▶ ' + name + (l.width ? ' · ' + l.width + '×' + l.height : '') + ' · ' + fmtMbps(levelBitrate(l))
      : '…';
    ui.currentRung.dataset.level = String(idx);
    const auto = ui.quality.querySelector('option[value="-1"]');
    if (auto) auto.textContent = 'Auto (' + name + ')';
    for (const o of ui.quality.options) {
      o.classList.toggle('playing', o.value === String(idx));
    }
  }

  ui.quality.addEventListener('change', () => {
    if (!hls) return;
    const idx = parseInt(ui.quality.value, 10);
    // Immediate switch (flushes the forward buffer); -1 re-enables ABR.
    const already = idx >= 0 && idx === hls.currentLevel;
    hls.currentLevel = Number.isFinite(idx) ? idx : -1;
    pendingSwitch = idx >= 0 && !already ? idx : null;
    if (idx < 0) setStatus('Quality: auto (ABR).', 'info');
    else if (already) setStatus('Playing ' + rungName(hls.levels[idx]) + ' (manual).', 'ok');
    else setStatus('Switching to ' + rungName(hls.levels[idx]) + '…', 'info');
  });

  // ---------- hls.js ----------
  function attachHls() {
    const Hls = window.Hls;
    hls = new Hls({
      lowLatencyMode: false,
      backBufferLength: 90,          // keep memory bounded on long DVR sessions
      liveSyncDurationCount: 3,      // start / go-live ~3 segments behind the edge
      manifestLoadingMaxRetry: 4,
      levelLoadingMaxRetry: 6,
      fragLoadingMaxRetry: 6,
    });
    streamd.hls = hls;
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
    hls.on(Hls.Events.LEVEL_SWITCHED, () => {
      updateRungReadout();
      if (pendingSwitch != null && hls.currentLevel === pendingSwitch) {
        pendingSwitch = null;
        setStatus('Playing ' + rungName(hls.levels[hls.currentLevel]) + ' (manual).', 'ok');
      }
    });
    hls.on(Hls.Events.LEVEL_UPDATED, (_e, data) => {
      if (data && data.details && !data.details.live) ended = true;
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

  // Retry after a terminal failure: tear the player down and start over
  // (window.streamd.hls then points at the new instance).
  function restart() {
    clearOverlay();
    if (hls) {
      try { hls.destroy(); } catch (e) { /* already destroyed */ }
      hls = null;
      streamd.hls = null;
    } else {
      video.removeAttribute('src');
      video.load();
    }
    recoveredAt = {};
    errorsBase = streamd.errors.length;
    pendingSwitch = null;
    ended = false;
    started = false;
    waitForStream();
  }
  ui.retry.addEventListener('click', restart);

  function attachNative() {
    streamd.mode = 'native';
    video.src = masterUrl;
    buildQualityMenu();
    ui.currentRung.textContent = 'native HLS';
    tryPlay();
  }

  function start() {
    if (started) return;
    started = true;
    showOverlay('Loading stream…');
    const Hls = window.Hls;
    // Check hls.js FIRST: Chromium answers "maybe" for native HLS but must use MSE.
    if (Hls && Hls.isSupported()) {
      attachHls();
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      attachNative();
    } else {
      started = false;
      showOverlay('This browser cannot play HLS.', 'error');
      ui.retry.hidden = true;
      setStatus('This browser supports neither Media Source Extensions (hls.js) nor native HLS.', 'error');
    }
  }

  // Wait until the master playlist exists (a viewer may arrive before the
  // first segment is published), then start the player.
  async function waitForStream() {
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

  // ---------- UI refresh ----------
  function refreshUi() {
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

    if (!started) return;
    const live = isLive();
    if (live) {
      let behind = null;
      if (hls) {
        behind = hls.latency;
      } else if (r) {
        behind = r.end - t;
      }
      const target = hls && hls.targetLatency != null ? hls.targetLatency : 6;
      const atEdge = behind != null && behind <= target + AT_LIVE_EDGE_S;
      ui.latency.textContent = behind != null && isFinite(behind) && behind > 0
        ? behind.toFixed(1) + ' s behind live'
        : 'live';
      ui.latency.dataset.latency = behind != null ? behind.toFixed(3) : '';
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

  function refreshStats(r) {
    const rows = [['Engine', streamd.mode === 'hls.js' ? 'hls.js ' + (window.Hls && window.Hls.version || '') : 'native HLS']];
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

  // ---------- stream info from the API ----------
  const KNOWN = new Set(['videoId', 'state', 'createdAt', 'updatedAt', 'durationS', 'segments', 'uploads', 'rungs', 'links']);
  async function refreshInfo() {
    try {
      const res = await fetch(apiUrl, { cache: 'no-store' });
      if (!res.ok) {
        kv(ui.info, [['State', res.status === 404 ? 'not found (yet)' : 'HTTP ' + res.status]]);
        return;
      }
      const s = await res.json();
      if (s.state === 'ended') ended = true;
      const rows = [
        ['State', s.state || '?'],
        ['Duration', s.durationS != null ? clock(s.durationS) + ' (' + Number(s.durationS).toFixed(1) + ' s)' : '?'],
        ['Segments', s.segments != null ? String(s.segments) : '?'],
      ];
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

  // ---------- controls ----------
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
    const r = seekableRange();
    switch (e.key) {
      case ' ': case 'k': e.preventDefault(); ui.playpause.click(); break;
      case 'm': ui.mute.click(); break;
      case 'l': case 'L': goLive(); break;
      case 'f': ui.fullscreen.click(); break;
      case 'ArrowLeft':
        if (e.target === ui.seek) return;
        if (r) video.currentTime = Math.max(r.start, video.currentTime - 5);
        break;
      case 'ArrowRight':
        if (e.target === ui.seek) return;
        if (r) video.currentTime = Math.min(r.end, video.currentTime + 5);
        break;
      default: return;
    }
  });

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

  // ---------- boot ----------
  if (!videoId) {
    ui.title.textContent = 'No stream selected';
    setBadge('—', 'badge-waiting');
    setStatus('Open this page as /player.html?v=VIDEO_ID, or pick a stream on the index page.', 'error');
    showOverlay('No stream selected', 'error');
    ui.retry.hidden = true;
    const a = document.createElement('a');
    a.href = '/';
    a.textContent = 'All streams';
    ui.links.append(a);
    return;
  }
  ui.title.textContent = videoId;
  document.title = videoId + ' · streamd';
  setInterval(refreshUi, UI_MS);
  ['timeupdate', 'progress', 'durationchange', 'play', 'pause', 'volumechange'].forEach((ev) =>
    video.addEventListener(ev, () => { if (!seeking) refreshUi(); }));
  refreshInfo();
  setInterval(refreshInfo, INFO_MS);
  waitForStream();
})();
