// The quality menu (#quality) and the current-rendition readout (#current-rung):
// builds the menu from hls.js levels, switches level on change, and reports
// when a manually chosen level is actually playing.
import { fmtMbps } from '../format.js';
import { ui, setStatus } from './page.js';
import { player } from './state.js';

let pendingSwitch = null;     // level chosen in the menu, not yet playing

export function rungName(level) {
  if (!level) return '?';
  if (level.height) return level.height + 'p';
  return level.name || (level.bitrate ? fmtMbps(level.bitrate) : '?');
}

function levelBitrate(level) {
  return level.averageBitrate || level.bitrate || 0;
}

export function buildQualityMenu() {
  const hls = player.hls;
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
  const hls = player.hls;
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

// hls.js LEVEL_SWITCHED: refresh the readout, confirm a pending manual switch.
export function levelSwitched() {
  const hls = player.hls;
  updateRungReadout();
  if (pendingSwitch != null && hls.currentLevel === pendingSwitch) {
    pendingSwitch = null;
    setStatus('Playing ' + rungName(hls.levels[hls.currentLevel]) + ' (manual).', 'ok');
  }
}

// Forget a pending manual switch (the player is restarting).
export function resetQuality() {
  pendingSwitch = null;
}

export function wireQuality() {
  ui.quality.addEventListener('change', () => {
    const hls = player.hls;
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
}
