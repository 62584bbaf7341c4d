// Glass-to-glass sampler for bench/latency.py: plays a live stream in headless Chromium with
// hls.js and reads the frame number the source drew into each picture as a barcode.
//
//   node bench/glass.mjs STREAM_URL SECONDS [--page PAGE_URL] [--max-height H]
//
// Without --page the page is the bench's own (hls.js from node_modules, served at
// ORIGIN/__bench/ of the stream's own origin through Playwright's router, so no CORS is
// involved); with it (streamd's /player.html?v=ID) the page's own hls.js plays
// (window.streamd.video and .hls). --max-height caps hls.js's ABR (autoLevelCapping) to the
// rungs at most H lines tall. Either way the same sampler runs in the page: on
// requestVideoFrameCallback, at most every 150 ms, the frame being shown is drawn to a
// canvas and its barcode decoded. Prints one JSON line: samples [wallMs, frameNumber,
// videoHeight, hls.latency, playbackRate], stalls, hls.js facts and errors.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const [streamUrl, seconds = '30', ...rest] = process.argv.slice(2);
const option = (name) => (rest.includes(name) ? rest[rest.indexOf(name) + 1] : '');
const pageUrl = option('--page');
const maxHeight = Number(option('--max-height')) || 0;
const HLS_MJS = fileURLToPath(new URL('../node_modules/hls.js/dist/hls.mjs', import.meta.url));
const CATCHUP_JS = fileURLToPath(new URL('../static/js/catchup.js', import.meta.url));
const origin = new URL(streamUrl).origin;

// The same config as streamd's player (issue 12): low-latency mode with its catch-up.
const PAGE = `<!doctype html><meta charset="utf-8"><title>glass</title>
<video id="video" muted autoplay playsinline></video>
<script type="module">
import Hls from '/__bench/hls.mjs';
import { installCatchUp } from '/__bench/catchup.js';
const video = document.getElementById('video');
const hls = new Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1, backBufferLength: 90 });
installCatchUp(hls, video, 1.5);
window.streamd = { video, hls, errors: [] };
const t0 = Date.now();
const since = () => (Date.now() - t0) / 1000;
hls.on(Hls.Events.ERROR, (_e, d) => window.streamd.errors.push({
  details: d.details, fatal: !!d.fatal, at: since(),
  why: d.error ? String(d.error.message || d.error).slice(0, 160) : d.reason,
}));
window.streamd.switches = [];
hls.on(Hls.Events.LEVEL_SWITCHED,
  (_e, d) => window.streamd.switches.push([since(), hls.levels[d.level].height]));
hls.on(Hls.Events.MANIFEST_PARSED, () => { // before the first level loads
  if (window.glassCap) window.glassCap(hls);
  video.play().catch(() => {});
});
hls.loadSource(${JSON.stringify(streamUrl)});
hls.attachMedia(video);
</script>`;

// Runs in the page. Barcode geometry (bench/latency.py draws it, in source pixels of a
// 1280x720 picture): bits + 2 columns of `block` px from x = x0, two rows from y = 0. Column 0 is
// white and column 1 black in both rows (the thresholds); column 2 + k is bit k of the frame
// number, white if set in the top row and the opposite in the bottom row (a check per bit).
function installSampler({ sampleMs, bits, block, x0 }) {
  const S = window.streamd;
  const video = S.video;
  const W = 640; // the picture drawn at half of 720p: whatever rung plays, same coordinates
  const H = 360;
  const scale = W / 1280;
  const canvas = document.createElement('canvas');
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const out = { samples: [], bad: 0, stalls: [], playingAt: null, rvfc: true };
  if (!video.paused && video.currentTime > 0 && video.readyState > 2) out.playingAt = Date.now();
  window.glass = out;
  let last = 0;
  let waitingSince = null;
  video.addEventListener('playing', () => {
    if (out.playingAt === null) out.playingAt = Date.now();
    if (waitingSince !== null) {
      out.stalls[out.stalls.length - 1].s = (Date.now() - waitingSince) / 1000;
    }
    waitingSince = null;
  });
  out.mediaErrors = [];
  video.addEventListener('error', () => {
    const e = video.error;
    const after = (Date.now() - (out.playingAt || Date.now())) / 1000;
    out.mediaErrors.push(`${after.toFixed(1)} s after playing: ` +
      `video error ${e ? e.code : '?'} ${e ? e.message : ''}`);
  });
  video.addEventListener('waiting', () => {
    if (out.playingAt === null || waitingSince !== null) return; // start-up is not a stall
    waitingSince = Date.now();
    out.stalls.push({ at: waitingSince, s: null });
  });
  const level = (x, y) => { // mean green of a block's middle (a quarter of it each way)
    const r = Math.max(2, Math.round(block * scale / 4));
    const left = Math.round(x * scale) - r;
    const d = ctx.getImageData(left, Math.round(y * scale) - r, 2 * r, 2 * r).data;
    let sum = 0;
    for (let i = 1; i < d.length; i += 4) sum += d[i];
    return sum / (d.length / 4);
  };
  const decode = () => {
    ctx.drawImage(video, 0, 0, W, H);
    const col = (k) => x0 + block * k + block / 2;
    const top = block / 2;
    const bottom = block + block / 2;
    const white = (level(col(0), top) + level(col(0), bottom)) / 2;
    const black = (level(col(1), top) + level(col(1), bottom)) / 2;
    if (white - black < 80) return null;
    const threshold = (white + black) / 2;
    let n = 0;
    for (let k = 0; k < bits; k++) {
      const a = level(col(2 + k), top);
      const b = level(col(2 + k), bottom);
      if ((a > threshold) === (b > threshold) || Math.abs(a - b) < (white - black) / 2) return null;
      if (a > threshold) n += 2 ** k;
    }
    return n;
  };
  const onFrame = (_now, meta) => {
    const shown = performance.timeOrigin + meta.expectedDisplayTime; // wall clock, ms
    if (shown - last >= sampleMs && out.playingAt !== null) {
      last = shown;
      const n = decode();
      if (n === null) out.bad += 1;
      else {
        const hls = window.streamd.hls;
        const edge = hls ? hls.latency : null;
        out.samples.push([shown, n, video.videoHeight, edge, video.playbackRate]);
      }
    }
    video.requestVideoFrameCallback(onFrame);
  };
  if (!video.requestVideoFrameCallback) {
    out.rvfc = false;
    return;
  }
  video.requestVideoFrameCallback(onFrame);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
const out = { streamUrl, page: pageUrl || 'bench', samples: [], bad: 0, stalls: [], errors: [],
  requests: { playlists: 0, blocking: 0, skip: 0, parts: 0, segments: 0 }, hls: {} };
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => out.errors.push(`pageerror: ${e.message}`));
  page.on('request', (r) => {
    const u = r.url();
    if (u.includes('.m3u8')) out.requests.playlists += 1;
    if (u.includes('_HLS_msn=')) out.requests.blocking += 1;
    if (u.includes('_HLS_skip=')) out.requests.skip += 1;
    if (/\/part\d+\.\d+\.m4s/.test(u)) out.requests.parts += 1;
    else if (/\.(m4s|ts)(\?|$)/.test(u)) out.requests.segments += 1;
  });
  await page.route(`${origin}/__bench/**`, (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path === '/__bench/hls.mjs') {
      return route.fulfill({ body: readFileSync(HLS_MJS), contentType: 'text/javascript' });
    }
    if (path === '/__bench/catchup.js') {
      return route.fulfill({ body: readFileSync(CATCHUP_JS), contentType: 'text/javascript' });
    }
    return route.fulfill({ body: PAGE, contentType: 'text/html' });
  });
  if (maxHeight) {
    await page.addInitScript((h) => {
      window.glassCap = (hls) => { // the tallest rung at most h lines: ABR's ceiling
        let cap = -1;
        hls.levels.forEach((l, i) => { if (l.height <= h) cap = i; });
        hls.autoLevelCapping = cap;
      };
    }, maxHeight);
  }
  out.openedAt = Date.now();
  await page.goto(pageUrl || `${origin}/__bench/player.html`);
  await page.waitForFunction(() => window.streamd && window.streamd.video, null,
    { timeout: 30000 });
  if (maxHeight && pageUrl) { // another page's hls.js: capped once its levels are known
    await page.waitForFunction(() => window.streamd.hls && window.streamd.hls.levels.length > 0,
      null, { timeout: 30000 });
    await page.evaluate(() => window.glassCap(window.streamd.hls));
  }
  await page.evaluate(installSampler, { sampleMs: 150, bits: 16, block: 64, x0: 64 });
  await page.waitForFunction(() => window.glass.playingAt !== null || !window.glass.rvfc, null,
    { timeout: 45000 });
  if (!(await page.evaluate(() => window.glass.rvfc))) {
    throw new Error('this Chromium has no requestVideoFrameCallback');
  }
  await page.waitForTimeout(Number(seconds) * 1000);
  const result = await page.evaluate(() => {
    const { hls, errors } = window.streamd;
    const level = hls && hls.levels && hls.levels[hls.currentLevel];
    const details = level && level.details;
    const q = window.streamd.video.getVideoPlaybackQuality();
    return {
      glass: window.glass,
      frames: { shown: q.totalVideoFrames, dropped: q.droppedVideoFrames },
      errors: (errors || []).map((e) => `${e.fatal ? 'fatal ' : ''}${e.details || e.type}`),
      events: [
        ...(errors || []).filter((e) => e.at !== undefined)
          .map((e) => [e.at, `${e.fatal ? 'fatal ' : ''}${e.details}${e.why ? ` (${e.why})` : ''}`])
          .slice(0, 40),
        ...(window.streamd.switches || []).map(([at, h]) => [at, `level switched to ${h}p`]),
      ].sort((a, b) => a[0] - b[0]).map(([at, what]) => `${at.toFixed(1)} s: ${what}`),
      hls: hls ? {
        version: hls.constructor.version,
        lowLatencyMode: hls.lowLatencyMode,
        targetLatency: hls.targetLatency,
        levels: hls.levels.map((l) => l.height),
        currentHeight: level ? level.height : null,
        canBlockReload: details ? details.canBlockReload : null,
        canSkipUntil: details ? details.canSkipUntil : null,
        partTarget: details ? details.partTarget : null,
        partHoldBack: details ? details.partHoldBack : null,
        holdBack: details ? details.holdBack : null,
        targetDuration: details ? details.targetduration : null,
        partsInPlaylist: details && details.partList ? details.partList.length : 0,
      } : null,
    };
  });
  Object.assign(out, {
    samples: result.glass.samples, bad: result.glass.bad, stalls: result.glass.stalls,
    playingAt: result.glass.playingAt, rvfc: result.glass.rvfc, hls: result.hls,
    events: [...result.events, ...result.glass.mediaErrors], frames: result.frames,
  });
  const counts = {};
  for (const e of result.errors) counts[e] = (counts[e] || 0) + 1;
  out.errors.push(...Object.entries(counts).map(([e, n]) => `${e} x${n}`));
} catch (e) {
  out.errors.push(String(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
