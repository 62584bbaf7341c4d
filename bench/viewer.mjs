// Watches a live stream in headless Chromium with the streamd player (hls.js) and prints, as one
// JSON line, how far behind the live edge and behind real time (EXT-X-PROGRAM-DATE-TIME) it
// plays: node bench/viewer.mjs URL SECONDS
import { chromium } from 'playwright-core';

const [url, seconds = '20'] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
const out = { url, samples: [], errors: [] };
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.waitForFunction(() => window.streamd && window.streamd.video &&
    window.streamd.video.currentTime > 0 && !window.streamd.video.paused, null,
  { timeout: 60000 });
  for (let i = 0; i < Number(seconds); i++) {
    await page.waitForTimeout(1000);
    out.samples.push(await page.evaluate(() => {
      const { hls, video } = window.streamd;
      const date = hls && hls.playingDate;
      return {
        edge: hls ? hls.latency : null, // seconds behind the live edge, as hls.js reports it
        realtime: date ? (Date.now() - date.getTime()) / 1000 : null, // behind the wall clock
        time: video.currentTime,
      };
    }));
  }
  out.errors = await page.evaluate(() => window.streamd.errors.filter((e) => e.fatal));
} catch (e) {
  out.errors.push(String(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
