#!/usr/bin/env node
// Plays an MPD with dash.js (the server's /vendor/dash.all.min.js) in Debian's chromium,
// through playwright-core, on a bare page of the server's origin.
//
//   node tests/browser/dash.mjs --mpd http://127.0.0.1:PORT/hls/ID/fmp4/manifest.mpd \
//        [--min-time 3] [--watch SECONDS] [--timeout 60] [--role alternate] [--text LANG]
//        [--audio LANG]
//
// Waits until the video has played --min-time seconds (of media), then --watch more
// seconds of wall time, counting stalls. Prints one JSON line: what dash.js saw (dynamic or
// static, low-latency mode, video heights, audio tracks, live latency), the segment URLs
// the page fetched, errors. Exits 0 iff it played. --role: the adaptation sets to take
// (streamd's WebM ones are "alternate"; the CMAF ones "main"). --text: the subtitle language
// to show; the text tracks' cues, and the cues active at each look, are in the report.
// --audio: once --min-time played, the audio language to switch to; it must then play 2 s.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const opts = { mpd: null, minTime: 3, watch: 0, timeout: 60, role: null };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const value = () => argv[++i];
  switch (argv[i]) {
    case '--mpd': opts.mpd = value(); break;
    case '--min-time': opts.minTime = Number(value()); break;
    case '--watch': opts.watch = Number(value()); break;
    case '--timeout': opts.timeout = Number(value()); break;
    case '--role': opts.role = value(); break;
    case '--text': opts.text = value(); break;  // a subtitle language to show
    case '--audio': opts.audio = value(); break;  // switched to after --min-time
    default: throw new Error('unknown argument ' + argv[i]);
  }
}
if (!opts.mpd) throw new Error('--mpd is required');

const result = { ok: false, reason: '', currentTime: 0, dynamic: null, lowLatency: null,
  heights: [], audioTracks: 0, latency: null, stalls: 0, requests: [], errors: [] };
const dir = mkdtempSync(join(tmpdir(), 'streamd-dash-'));
let context = null;

async function finish(ok, reason) {
  result.ok = ok;
  result.reason = reason;
  process.stdout.write(JSON.stringify(result) + '\n');
  const hardExit = setTimeout(() => process.exit(ok ? 0 : 1), 5000);
  try { if (context) await context.close(); } catch { /* ignore */ }
  clearTimeout(hardExit);
  rmSync(dir, { recursive: true, force: true });
  process.exit(ok ? 0 : 1);
}

setTimeout(() => finish(false, `timeout after ${opts.timeout} s`), opts.timeout * 1000);

context = await chromium.launchPersistentContext(dir, {
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--autoplay-policy=no-user-gesture-required'],
});
const page = context.pages()[0] || await context.newPage();
page.on('pageerror', (err) => result.errors.push('pageerror: ' + String(err.message || err)));
page.on('request', (req) => {
  const url = new URL(req.url());
  if (/\.(m4s|mp4|webm)$/.test(url.pathname)) result.requests.push(url.pathname);
});
const origin = new URL(opts.mpd).origin;
await page.goto(origin + '/api/time');
await page.setContent('<video id="v" muted playsinline></video>');
await page.addScriptTag({ url: origin + '/vendor/dash.all.min.js' });
await page.evaluate(([mpd, role, text]) => {
  const player = window.dashjs.MediaPlayer().create();
  window.player = player;
  window.stalls = 0;
  window.dashErrors = [];
  player.on(window.dashjs.MediaPlayer.events.ERROR, (e) => {
    window.dashErrors.push(JSON.stringify(e.error || e).slice(0, 300));
  });
  const video = document.getElementById('v');
  video.addEventListener('waiting', () => { if (video.currentTime > 0) window.stalls += 1; });
  player.initialize(video, null, true);
  if (role) {  // before the source: the tracks it starts with
    player.setInitialMediaSettingsFor('video', { role });
    player.setInitialMediaSettingsFor('audio', { role });
  }
  if (text) {
    player.updateSettings({ streaming: { text: { defaultEnabled: true } } });
    player.setInitialMediaSettingsFor('text', { lang: text });
  }
  player.attachSource(mpd);
}, [opts.mpd, opts.role, opts.text]);

const state = () => page.evaluate(() => {
  const p = window.player;
  const video = document.getElementById('v');
  let dynamic = null; let lowLatency = null; let heights = []; let audioTracks = 0; let latency = null;
  let textLangs = []; let audioLangs = []; let audio = null;
  try {
    // The CMAF sets' languages (a WebM set is the main audio again, in Opus).
    audioLangs = p.getTracksFor('audio').filter((t) => t.mimeType !== 'audio/webm').map((t) => t.lang);
    audio = (p.getCurrentTrackFor('audio') || {}).lang || null;
    dynamic = p.isDynamic();
    lowLatency = p.getLowLatencyModeEnabled();
    heights = p.getRepresentationsByType('video').map((r) => r.height);
    audioTracks = p.getTracksFor('audio').length;
    latency = dynamic ? p.getCurrentLiveLatency() : null;
    textLangs = p.getTracksFor('text').map((t) => t.lang);
  } catch { /* not initialised yet */ }
  const textTracks = [...video.textTracks].map((t) => ({
    language: t.language, mode: t.mode,
    cues: t.cues ? [...t.cues].map((c) => ({ start: c.startTime, end: c.endTime, text: c.text })) : [],
    active: t.activeCues ? [...t.activeCues].map((c) => c.text) : [],
  }));
  return { currentTime: video.currentTime, dynamic, lowLatency, heights, audioTracks, latency,
    audioLangs, audio, textLangs, textTracks, bufferedStart: video.buffered.length ? video.buffered.start(0) : null,
    stalls: window.stalls, errors: window.dashErrors, videoHeight: video.videoHeight,
    error: video.error ? video.error.code : null };
});

let played = null;
for (;;) {
  const s = await state();
  Object.assign(result, { currentTime: s.currentTime, dynamic: s.dynamic, lowLatency: s.lowLatency,
    heights: s.heights, audioTracks: s.audioTracks, latency: s.latency, stalls: s.stalls });
  result.errors = [...result.errors.filter((e) => e.startsWith('pageerror')), ...s.errors];
  result.textLangs = s.textLangs;
  result.audioLangs = s.audioLangs;
  result.audio = s.audio;
  result.textTracks = s.textTracks.map((t) => ({ ...t, active: undefined }));
  if (result.bufferedStart == null && s.bufferedStart != null) result.bufferedStart = s.bufferedStart;
  const active = s.textTracks.filter((t) => t.mode === 'showing').flatMap((t) => t.active);
  if (active.length) (result.activeCues ??= []).push({ time: s.currentTime, texts: active });
  if (s.error) await finish(false, 'media error ' + s.error);
  if (played === null && s.currentTime >= opts.minTime && s.videoHeight > 0) played = Date.now();
  if (played !== null && opts.audio && result.audioSwitchFrom == null) {
    result.audioSwitchFrom = s.currentTime;
    await page.evaluate((lang) => {
      const p = window.player;
      p.setCurrentTrack(p.getTracksFor('audio').find((t) => t.lang === lang));
    }, opts.audio);
    continue;
  }
  if (opts.audio && played !== null) {
    if (s.audio !== opts.audio || s.currentTime < result.audioSwitchFrom + 2) {
      await new Promise((r) => setTimeout(r, 250));
      continue;
    }
    result.audioSwitchTo = s.currentTime;
  }
  if (played !== null && Date.now() - played >= opts.watch * 1000) break;
  await new Promise((r) => setTimeout(r, 250));
}
await finish(true, 'played');
