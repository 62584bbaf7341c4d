#!/usr/bin/env node
// End-to-end playback check for the streamd player, driving Debian's chromium
// through playwright-core (no browser download).
//
//   node tests/browser/play.mjs --url http://127.0.0.1:PORT/player.html?v=ID \
//        [--min-time 3] [--switch] [--watch SECONDS] [--timeout 60] [--screenshot out.png]
//
// --watch: after reaching --min-time, keep playing for SECONDS and report stalls
// (the video's "waiting" events), hls.js's low-latency state, the parts it loaded,
// the frames decoded and presented (and any jump between presented frames: frames
// the browser dropped) and how far behind real time it plays (EXT-X-PROGRAM-DATE-TIME).
// Prints exactly one JSON line on stdout and exits 0 iff ok.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const USAGE = 'usage: node tests/browser/play.mjs --url URL [--min-time 3] [--switch] [--watch SECONDS] [--timeout 60] [--screenshot FILE] [--subtitles LANG]';

function parseArgs(argv) {
  const opts = { url: null, minTime: 3, switch: false, watch: 0, timeout: 60, screenshot: null, hover: null, clip: null, mark: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => (inline !== undefined ? inline : argv[++i]);
    switch (flag) {
      case '--url': opts.url = value(); break;
      case '--min-time': opts.minTime = Number(value()); break;
      case '--timeout': opts.timeout = Number(value()); break;
      case '--switch': opts.switch = true; break;
      case '--watch': opts.watch = Number(value()); break;
      case '--screenshot': opts.screenshot = value(); break;
      case '--hover': opts.hover = Number(value()); break;
      case '--clip': opts.clip = value(); break;
      case '--mark': opts.mark = value().split(',').map(Number); break;  // IN,AT: media times
      case '--subtitles': opts.subtitles = value(); break;  // chosen in the menu first
      case '--audio': opts.audio = value(); break;  // chosen in the menu after --min-time
      case '-h': case '--help': opts.help = true; break;
      default: throw new Error('unknown argument ' + a);
    }
  }
  if (!opts.help) {
    if (!opts.url) throw new Error('--url is required');
    if (!Number.isFinite(opts.minTime) || opts.minTime < 0) throw new Error('--min-time must be a number >= 0');
    if (!Number.isFinite(opts.timeout) || opts.timeout <= 0) throw new Error('--timeout must be a number > 0');
  }
  return opts;
}

const result = {
  ok: false,
  currentTime: 0,
  levels: [],
  startLevel: null,
  switchedTo: null,
  levelAfter: null,
  latency: null,
  live: null,
  videoHeight: null,
  fatalErrors: [],
  errors: [],
  consoleErrors: [],
  watch: null,
  reason: '',
};

let finished = false;
let browser = null;
let userDataDir = null;

function cleanupDir() {
  if (userDataDir) {
    try { rmSync(userDataDir, { recursive: true, force: true }); } catch { /* ignore */ }
    userDataDir = null;
  }
}

async function finish(ok, reason) {
  if (finished) return;
  finished = true;
  result.ok = ok;
  result.reason = reason;
  process.stdout.write(JSON.stringify(result) + '\n');
  // Closing must never hang the script: give it 5 s, then exit anyway
  // (playwright kills the browser process it launched on exit).
  const hardExit = setTimeout(() => { cleanupDir(); process.exit(ok ? 0 : 1); }, 5000);
  try { if (browser) await browser.close(); } catch { /* ignore */ }
  clearTimeout(hardExit);
  cleanupDir();
  process.exit(ok ? 0 : 1);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Snapshot of the player state, read through the page's test hooks.
function snapshotInPage() {
  const s = window.streamd;
  const video = (s && s.video) || document.getElementById('video');
  const hls = s && s.hls;
  let live = null;
  let latency = null;
  if (hls && hls.levels && hls.levels.length) {
    const idx = hls.currentLevel >= 0 ? hls.currentLevel : hls.loadLevel;
    const d = (hls.levels[idx] && hls.levels[idx].details) || null;
    if (d) live = !!d.live;
    if (live && Number.isFinite(hls.latency)) latency = hls.latency;
  }
  const statusEl = document.getElementById('status');
  const rungEl = document.getElementById('current-rung');
  return {
    hooks: !!s,
    hasHls: !!hls,
    mode: s ? s.mode : null,
    currentTime: video ? video.currentTime : 0,
    paused: video ? video.paused : true,
    ended: video ? video.ended : false,
    readyState: video ? video.readyState : 0,
    videoHeight: video ? video.videoHeight : 0,
    hasSource: !!(video && (video.currentSrc || video.src)),
    levels: hls && hls.levels ? hls.levels.map((l) => l.height || 0) : [],
    currentLevel: hls ? hls.currentLevel : null,
    autoLevelEnabled: hls ? hls.autoLevelEnabled : null,
    live,
    latency,
    errors: s && Array.isArray(s.errors) ? s.errors.map((e) => ({ type: e.type, details: e.details, fatal: !!e.fatal })) : [],
    status: statusEl ? statusEl.textContent : '',
    currentRung: rungEl ? rungEl.textContent : '',
    mediaError: video && video.error ? video.error.code + ' ' + (video.error.message || '') : null,
    bufferedStart: video && video.buffered.length ? video.buffered.start(0) : null,
    subtitleTracks: hls && hls.subtitleTracks ? hls.subtitleTracks.map((t) => t.lang) : [],
    audioTracks: hls && hls.audioTracks ? hls.audioTracks.map((t) => t.lang) : [],
    audioTrack: hls ? hls.audioTrack : null,
    audioMenu: document.getElementById('audio') ? [...document.getElementById('audio').options].map((o) => o.textContent) : [],
    subtitleMenu: document.getElementById('subtitles') ? [...document.getElementById('subtitles').options].map((o) => o.textContent) : [],
    textTracks: video ? [...video.textTracks].map((t) => ({
      language: t.language, label: t.label, mode: t.mode,
      cues: t.cues ? [...t.cues].map((c) => ({ start: c.startTime, end: c.endTime, text: c.text })) : [],
      active: t.activeCues ? [...t.activeCues].map((c) => c.text) : [],
    })) : [],
  };
}

function absorb(snap) {
  result.currentTime = Math.round(snap.currentTime * 1000) / 1000;
  result.levels = snap.levels;
  result.errors = snap.errors;
  result.fatalErrors = snap.errors.filter((e) => e.fatal);
  result.live = snap.live;
  result.videoHeight = snap.videoHeight;
  result.latency = snap.latency == null ? null : Math.round(snap.latency * 1000) / 1000;
  if (result.bufferedStart == null && snap.bufferedStart != null) result.bufferedStart = snap.bufferedStart;
  result.subtitleTracks = snap.subtitleTracks;
  result.audioTracks = snap.audioTracks;
  result.audioMenu = snap.audioMenu;
  result.subtitleMenu = snap.subtitleMenu;
  result.textTracks = snap.textTracks.map((t) => ({ ...t, active: undefined }));
  // What was on screen when: the showing tracks' active cues at each snapshot.
  const active = snap.textTracks.filter((t) => t.mode === 'showing').flatMap((t) => t.active);
  if (active.length) (result.activeCues ??= []).push({ time: snap.currentTime, texts: active });
}

function describe(snap) {
  if (!snap) return 'page not loaded';
  return `currentTime=${snap.currentTime.toFixed(2)} paused=${snap.paused} readyState=${snap.readyState} ` +
    `videoHeight=${snap.videoHeight} mode=${snap.mode} levels=${JSON.stringify(snap.levels)} currentLevel=${snap.currentLevel} ` +
    `status=${JSON.stringify(snap.status)}` + (snap.mediaError ? ` mediaError=${snap.mediaError}` : '');
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(USAGE + '\n');
    await finish(false, 'bad arguments: ' + e.message);
    return;
  }
  if (opts.help) {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  }

  const deadline = Date.now() + opts.timeout * 1000;
  let lastSnap = null;
  let phase = 'launching chromium';
  const watchdog = setTimeout(() => {
    finish(false, `timeout after ${opts.timeout}s while ${phase}: ${describe(lastSnap)}`);
  }, opts.timeout * 1000);

  const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  userDataDir = mkdtempSync(join(tmpdir(), 'streamd-play-'));
  const args = [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
  ];
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args,
    viewport: { width: 1280, height: 900 },
    timeout: Math.max(1000, deadline - Date.now()),
  });
  browser = context;
  const page = context.pages()[0] || await context.newPage();
  const MAX_CONSOLE = 50;
  const addConsole = (text) => {
    if (result.consoleErrors.length < MAX_CONSOLE) result.consoleErrors.push(text.slice(0, 500));
  };
  page.on('console', (msg) => {
    if (msg.type() === 'error') addConsole(msg.text());
  });
  page.on('pageerror', (err) => addConsole('pageerror: ' + String((err && err.message) || err)));
  page.on('crash', () => finish(false, 'page crashed'));

  phase = 'loading ' + opts.url;
  await page.goto(opts.url, { waitUntil: 'domcontentloaded', timeout: Math.max(1000, deadline - Date.now()) });

  const snap = async () => {
    lastSnap = await page.evaluate(snapshotInPage);
    absorb(lastSnap);
    return lastSnap;
  };
  const checkFatal = (s) => {
    const f = s.errors.filter((e) => e.fatal);
    if (f.length) {
      finish(false, `fatal hls.js error: ${f.map((e) => e.type + '/' + e.details).join(', ')} (${describe(s)})`);
      return true;
    }
    return false;
  };

  // ---- 0. optional: pick a subtitle language in the player's menu ----
  if (opts.subtitles) {
    phase = `waiting for the subtitles menu to offer ${opts.subtitles}`;
    await page.waitForFunction((lang) => {
      const menu = document.getElementById('subtitles');
      return menu && [...menu.options].some((o) => o.lang === lang);
    }, opts.subtitles, { timeout: Math.max(1000, deadline - Date.now()) });
    await page.evaluate((lang) => {
      const menu = document.getElementById('subtitles');
      menu.value = [...menu.options].find((o) => o.lang === lang).value;
      menu.dispatchEvent(new Event('change'));
    }, opts.subtitles);
  }

  // ---- 1. playback starts and reaches --min-time ----
  phase = `waiting for currentTime >= ${opts.minTime}`;
  let pausedSince = null;
  let clickedPlay = false;
  let forcedPlay = false;
  let startTime = null;
  for (;;) {
    if (finished) return;
    const s = await snap();
    if (checkFatal(s)) return;
    if (s.mediaError) {
      await finish(false, 'media element error: ' + describe(s));
      return;
    }
    if (result.startLevel == null && s.currentLevel != null && s.currentLevel >= 0 && s.currentTime > 0) {
      result.startLevel = s.currentLevel;
    }
    if (startTime == null && s.currentTime > 0) startTime = s.currentTime;
    // Count playback from when it actually started: a live stream starts near
    // the live edge, so currentTime is large from the first frame on.
    const base = s.live ? (startTime ?? s.currentTime) : 0;
    if (s.currentTime > 0 && (!s.paused || s.ended) && s.currentTime - base >= opts.minTime) break;
    if (s.ended) {
      await finish(false, `stream ended before --min-time ${opts.minTime}: ${describe(s)}`);
      return;
    }

    // Make sure playback starts if autoplay was blocked.
    if (s.hasSource && s.paused && s.readyState >= 2) {
      pausedSince ??= Date.now();
      const pausedFor = Date.now() - pausedSince;
      if (!clickedPlay && pausedFor > 1500) {
        clickedPlay = true;
        await page.click('#playpause', { timeout: 2000 }).catch(() => {});
      } else if (clickedPlay && !forcedPlay && pausedFor > 4000) {
        forcedPlay = true;
        await page.evaluate(() => {
          const v = document.getElementById('video');
          v.muted = true;
          return v.play().then(() => 'ok', (e) => String(e));
        });
      }
    } else {
      pausedSince = null;
    }
    await sleep(250);
  }
  if (result.startLevel == null && lastSnap.currentLevel != null && lastSnap.currentLevel >= 0) {
    result.startLevel = lastSnap.currentLevel;
  }

  // ---- 1b. optional seek-bar preview: the pointer at fraction `hover` of the seek bar ----
  if (opts.hover !== null) {
    phase = `hovering the seek bar at ${opts.hover}`;
    const box = await page.locator('#seek').boundingBox();
    let preview = null;
    for (let i = 0; i < 40 && !preview; i++) {  // the track comes with the API's first poll
      await page.mouse.move(box.x + box.width * opts.hover, box.y + box.height / 2 + (i % 2));
      await sleep(250);
      preview = await page.evaluate(async () => {
        const el = document.querySelector('.preview');
        if (!el || el.hidden) return null;
        const img = new Image();
        img.src = el.style.backgroundImage.slice(5, -2);
        await img.decode().catch(() => {});
        return {
          start: Number(el.dataset.start), image: el.dataset.image,
          width: el.offsetWidth, height: el.offsetHeight,
          position: el.style.backgroundPosition,
          sheet: [img.naturalWidth, img.naturalHeight],
        };
      });
    }
    result.preview = preview;
  }

  // ---- 1c. optional "Save last 30 s": the download saved at opts.clip ----
  if (opts.clip) {
    phase = 'saving a clip';
    await page.evaluate(() => window.streamd.video.pause());
    if (opts.mark) {  // "Mark in" at the first time, then the position at the second
      const seekTo = (t) => page.evaluate((to) => new Promise((resolve) => {
        const v = window.streamd.video;
        v.addEventListener('seeked', resolve, { once: true });
        v.currentTime = to;
      }), t);
      await seekTo(opts.mark[0]);
      await page.click('#markin');
      await seekTo(opts.mark[1]);
      result.markLabel = await page.locator('#saveclip').textContent();
    }
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 20000 }),
      page.click('#saveclip'),
    ]);
    await download.saveAs(opts.clip);
    result.clip = {
      url: download.url(),
      filename: download.suggestedFilename(),
      currentTime: await page.evaluate(() => window.streamd.video.currentTime),
    };
    // Then -10 s by its button and +10 s by the arrow key, each clamped to what is seekable.
    result.jumps = await page.evaluate(async () => {
      const v = window.streamd.video;
      const settle = () => new Promise((r) => setTimeout(r, 300));
      const at = [v.currentTime];
      document.getElementById('back10').click();
      await settle();
      at.push(v.currentTime);
      document.dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowRight' }));
      await settle();
      at.push(v.currentTime, v.duration);
      return at;
    });
  }

  // ---- 1d. optional audio language switch through the menu: playback goes on ----
  if (opts.audio) {
    phase = `switching the audio to ${opts.audio}`;
    const before = await snap();
    result.audioBefore = before.audioTracks[before.audioTrack] ?? null;
    await page.evaluate((lang) => {
      const menu = document.getElementById('audio');
      menu.value = [...menu.options].find((o) => o.lang === lang).value;
      menu.dispatchEvent(new Event('change'));
    }, opts.audio);
    const from = before.currentTime;
    for (;;) {
      if (finished) return;
      const t = await snap();
      if (checkFatal(t)) return;
      if (t.mediaError) {
        await finish(false, 'media element error after the audio switch: ' + describe(t));
        return;
      }
      if (t.audioTracks[t.audioTrack] === opts.audio && t.currentTime >= from + 2 && !t.paused) {
        result.audioAfter = opts.audio;
        result.audioSwitchFrom = from;
        result.audioSwitchTo = t.currentTime;
        result.remembered = await page.evaluate(() => localStorage.getItem('streamd.audio'));
        break;
      }
      if (t.ended) {
        await finish(false, `ended before 2 s played after the audio switch: ${describe(t)}`);
        return;
      }
      await sleep(250);
    }
  }

  // ---- 2. optional quality switch through the UI ----
  if (opts.switch) {
    const s = await snap();
    if (s.levels.length < 2) {
      await finish(false, `cannot test --switch: only ${s.levels.length} level(s) (${describe(s)})`);
      return;
    }
    const cur = s.currentLevel >= 0 ? s.currentLevel : 0;
    // Jump to the far end of the ladder from where we are.
    const target = cur === s.levels.length - 1 ? 0 : s.levels.length - 1;
    result.switchedTo = target;
    phase = `switching from level ${cur} to ${target} via #quality`;
    await page.selectOption('#quality', String(target), { timeout: 5000 });
    let reachedAt = null;
    for (;;) {
      if (finished) return;
      const t = await snap();
      result.levelAfter = t.currentLevel;
      if (checkFatal(t)) return;
      if (t.mediaError) {
        await finish(false, 'media element error after switch: ' + describe(t));
        return;
      }
      // hls.currentLevel flips as soon as the new level's fragment is at the
      // playhead; the decoder can still show old-level frames for ~1 s, so
      // also wait for the decoded picture to have the new level's height.
      const heightOk = !t.levels[target] || t.levels[target] === t.levels[cur] || t.videoHeight === t.levels[target];
      if (t.currentLevel === target && heightOk && reachedAt == null) {
        reachedAt = t.currentTime;
        phase = `waiting for playback to advance 1 s on level ${target}`;
      }
      if (reachedAt != null && t.currentTime >= reachedAt + 1 && !t.paused) {
        const wanted = `${t.levels[target]}p`;
        if (!t.currentRung.includes(wanted)) {
          await finish(false, `#current-rung shows ${JSON.stringify(t.currentRung)}, expected ${wanted}`);
          return;
        }
        break;
      }
      await sleep(250);
    }
  }

  // ---- 3. optional watch: stalls, low-latency mode, delay behind real time ----
  if (opts.watch > 0) {
    phase = `watching for ${opts.watch}s`;
    await page.evaluate(() => {
      const w = { stalls: 0, parts: 0, maxRate: 1 };
      const q = window.streamd.video.getVideoPlaybackQuality();
      w.frames0 = q.totalVideoFrames;
      w.dropped0 = q.droppedVideoFrames;
      w.times = [];
      const v = window.streamd.video;
      const onFrame = (_now, meta) => {
        if (w.times.length < 3000) w.times.push(meta.mediaTime);
        v.requestVideoFrameCallback(onFrame);
      };
      if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(onFrame);
      window.__watch = w;
      const video = window.streamd.video;
      w.at = [];
      video.addEventListener('waiting', () => {
        if (video.seeking) return;
        w.stalls++;
        let ahead = 0;
        for (let i = 0; i < video.buffered.length; i++) {
          if (video.buffered.end(i) >= video.currentTime) ahead = Math.max(ahead, video.buffered.end(i) - video.currentTime);
        }
        const d = window.streamd.hls && window.streamd.hls.latestLevelDetails;
        if (w.at.length < 40) w.at.push({ t: +video.currentTime.toFixed(3), ahead: +ahead.toFixed(3), edge: d ? +d.edge.toFixed(3) : null, wall: Date.now() % 100000 });
      });
      video.addEventListener('ratechange', () => { w.maxRate = Math.max(w.maxRate, video.playbackRate); });
      const hls = window.streamd.hls;
      if (hls) hls.on('hlsFragLoaded', (_e, data) => { if (data.part) w.parts++; });
    });
    const samples = [];
    for (let i = 0; i < opts.watch * 2; i++) {
      if (finished) return;
      await sleep(500);
      const t = await snap();
      if (checkFatal(t)) return;
      samples.push(await page.evaluate(() => {
        const { hls, video } = window.streamd;
        const date = hls && hls.playingDate;
        const d = hls && hls.latestLevelDetails;
        return {
          time: video.currentTime,
          paused: video.paused,
          realtime: date ? (Date.now() - date.getTime()) / 1000 : null,
          latency: hls ? hls.latency : null,
          target: hls ? hls.targetLatency : null,
          edge: d ? d.edge : null,
          partTarget: d ? d.partTarget : 0,
          lowLatency: !!(hls && hls.lowLatencyMode),
        };
      }));
    }
    const w = await page.evaluate(() => {
      const q = window.streamd.video.getVideoPlaybackQuality();
      window.__watch.frames = q.totalVideoFrames - window.__watch.frames0;
      window.__watch.dropped = q.droppedVideoFrames - window.__watch.dropped0;
      const t = window.__watch.times;
      const gaps = [];
      for (let i = 1; i < t.length; i++) {
        const d = t[i] - t[i - 1];
        if (d > 0.05 && gaps.length < 40) gaps.push([+t[i - 1].toFixed(3), +d.toFixed(3)]);
      }
      window.__watch.gaps = gaps;
      window.__watch.presented = t.length;
      return window.__watch;
    });
    const realtime = samples.map((x) => x.realtime).filter((x) => x != null).sort((a, b) => a - b);
    // How far behind its target latency the player sat over the second half: caught up?
    const overTarget = samples.slice(samples.length / 2)
      .filter((x) => x.latency != null && x.target != null)
      .map((x) => x.latency - x.target).sort((a, b) => a - b);
    result.watch = {
      seconds: opts.watch,
      stalls: w.stalls,
      stallsAt: w.at,
      framesShown: w.frames,
      framesDropped: w.dropped,
      framesPresented: w.presented,
      presentGaps: w.gaps,
      partsLoaded: w.parts,
      maxPlaybackRate: w.maxRate,
      partTarget: samples.length ? samples[samples.length - 1].partTarget : 0,
      lowLatency: samples.every((x) => x.lowLatency),
      advanced: samples.length ? samples[samples.length - 1].time - samples[0].time : 0,
      realtimeP50: realtime.length ? realtime[Math.floor(realtime.length / 2)] : null,
      realtimeMax: realtime.length ? realtime[realtime.length - 1] : null,
      overTargetP50: overTarget.length ? overTarget[Math.floor(overTarget.length / 2)] : null,
      first: samples[0],
      last: samples[samples.length - 1],
    };
  }

  await snap();
  if (opts.screenshot) {
    await page.screenshot({ path: opts.screenshot, fullPage: true, timeout: 5000 }).catch(() => {});
  }
  clearTimeout(watchdog);
  await finish(true, opts.switch
    ? `played to ${result.currentTime.toFixed(2)}s and switched to level ${result.switchedTo}`
    : `played to ${result.currentTime.toFixed(2)}s`);
}

main().catch((e) => finish(false, 'error: ' + String(e && e.message || e).split('\n')[0]));
