// Plays the first track of the player page in Debian's Chromium and
// prints what happened as JSON: the mode (hls or stream), where a seek
// landed, whether playback reached the end, the codec of the variant
// heard last and what the page said it played. With "lossless", the
// page's lossless choice is ticked first; with "switch", once playing.
//
//	node play.mjs http://127.0.0.1:8080/ [seekTo] [lossless|switch]
import { chromium } from 'playwright-core';

const url = process.argv[2];
const seekTo = Number(process.argv[3] || 6);
const choice = process.argv[4] || '';
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.error('page:', m.text()));
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(url);
  if (choice === 'lossless') {
    await page.check('#lossless', { timeout: 15000 });
  }
  await page.click('button[data-track]', { timeout: 15000 });
  const audio = () => window.playgate.audio;
  await page.waitForFunction(() => window.playgate && window.playgate.audio.currentTime > 0.5, null, { timeout: 30000 });
  const mode = await page.evaluate(() => window.playgate.audio.dataset.mode);
  if (choice === 'switch') {
    await page.check('#lossless');
    await page.waitForFunction(() => /flac/i.test(window.playgate.audio.dataset.codec || '') &&
      window.playgate.audio.currentTime > 0.5, null, { timeout: 15000 });
  }
  await page.evaluate((t) => { window.playgate.audio.currentTime = t; }, seekTo);
  await page.waitForFunction((t) => {
    const a = window.playgate.audio;
    return !a.seeking && a.currentTime >= t && a.currentTime < t + 2;
  }, seekTo, { timeout: 15000 });
  const afterSeek = await page.evaluate(() => window.playgate.audio.currentTime);
  await page.waitForFunction(() => window.playgate.audio.ended, null, { timeout: 60000 });
  const duration = await page.evaluate(() => window.playgate.audio.duration);
  const heard = await page.evaluate(() => window.playgate.audio.dataset.codec || '');
  const shown = await page.evaluate(() => document.getElementById('now').textContent);
  console.log(JSON.stringify({ mode, afterSeek, ended: true, duration, codec: heard, shown }));
} finally {
  await browser.close();
}
