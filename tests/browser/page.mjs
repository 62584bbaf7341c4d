#!/usr/bin/env node
// The / page in Debian's chromium (playwright-core): waits until it lists the streams and
// has drawn the server's memory line, then reports what a person sees.
//
//   node tests/browser/page.mjs --url http://127.0.0.1:PORT/ --stream ID [--samples 3]
//        [--timeout 30] [--screenshot out.png]
//
// Prints exactly one JSON line on stdout and exits 0 iff ok.
import { chromium } from 'playwright-core';

const opts = { url: null, stream: null, samples: 3, timeout: 30, screenshot: null };
for (let i = 2; i < process.argv.length; i += 2) {
  const [flag, value] = [process.argv[i], process.argv[i + 1]];
  if (flag === '--url') opts.url = value;
  else if (flag === '--stream') opts.stream = value;
  else if (flag === '--samples') opts.samples = Number(value);
  else if (flag === '--timeout') opts.timeout = Number(value);
  else if (flag === '--screenshot') opts.screenshot = value;
  else throw new Error('unknown argument ' + flag);
}

const result = { ok: false, reason: null, cards: [], summary: null, memoryText: null,
  memoryTitle: null, points: 0, errors: [] };
let browser = null;
async function finish(ok, reason) {
  result.ok = ok;
  result.reason = reason;
  process.stdout.write(JSON.stringify(result) + '\n');
  const hardExit = setTimeout(() => process.exit(ok ? 0 : 1), 5000);
  try { if (browser) await browser.close(); } catch { /* ignore */ }
  clearTimeout(hardExit);
  process.exit(ok ? 0 : 1);
}
setTimeout(() => finish(false, `timeout after ${opts.timeout}s`), opts.timeout * 1000);

browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
page.on('pageerror', (err) => result.errors.push(String((err && err.message) || err)));
page.on('console', (msg) => { if (msg.type() === 'error') result.errors.push(msg.text()); });
await page.goto(opts.url);
// Each refresh (every 2 s) adds a point to the line.
await page.waitForFunction(
  (n) => (document.querySelector('#memory-line polyline').getAttribute('points') || '')
    .trim().split(/\s+/).filter(Boolean).length >= n,
  opts.samples, { timeout: opts.timeout * 1000 });
const seen = await page.evaluate(() => ({
  cards: [...document.querySelectorAll('#streams > *')].map((c) => c.textContent),
  summary: document.getElementById('summary').textContent,
  memoryText: document.getElementById('memory-text').textContent,
  memoryTitle: document.getElementById('memory').title,
  points: document.querySelector('#memory-line polyline').getAttribute('points').trim().split(/\s+/).length,
  memoryShown: !document.getElementById('memory').hidden,
}));
Object.assign(result, seen);
if (opts.screenshot) await page.screenshot({ path: opts.screenshot });
if (!seen.memoryShown) await finish(false, 'the memory line is hidden');
else if (opts.stream && !seen.cards.some((t) => t.includes(opts.stream))) {
  await finish(false, `no card for ${opts.stream}`);
} else await finish(result.errors.length === 0, result.errors.length ? 'page errors' : null);
