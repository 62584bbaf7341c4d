// The subtitles menu (#subtitles) and the audio menu (#audio): built from hls.js's
// subtitle and audio tracks (the master's EXT-X-MEDIA, whose DEFAULT is the viewer's
// language), switched on change, and remembered in localStorage for the next visit.
import { ui } from './page.js';
import { player } from './state.js';

const KEYS = { subtitles: 'streamd.subtitles', audio: 'streamd.audio' };

function remembered(kind) {
  try { return localStorage.getItem(KEYS[kind]); } catch { return null; }
}

function remember(kind, lang) {
  try { localStorage.setItem(KEYS[kind], lang); } catch { /* private mode */ }
}

function option(value, text, lang) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = text;
  if (lang) o.lang = lang;
  return o;
}

// Subtitles: "Off" and one entry per language; the remembered choice wins over the default.
export function buildSubtitlesMenu() {
  const hls = player.hls;
  const menu = ui.subtitles;
  const tracks = (hls && hls.subtitleTracks) || [];
  menu.replaceChildren(option('-1', 'Off'));
  tracks.forEach((t, i) => menu.append(option(String(i), t.name || t.lang || 'Track ' + (i + 1), t.lang)));
  menu.disabled = tracks.length === 0;
  ui.subtitlesLabel.hidden = menu.hidden = tracks.length === 0;
  if (!tracks.length) return;
  const want = remembered('subtitles');
  const found = want === 'off' ? -1 : tracks.findIndex((t) => t.lang === want);
  if (want !== null && (found >= 0 || want === 'off')) hls.subtitleTrack = found;
  hls.subtitleDisplay = true;
  menu.value = String(hls.subtitleTrack);
}

// Audio: shown only when there is a choice (several languages).
export function buildAudioMenu() {
  const hls = player.hls;
  const menu = ui.audio;
  const tracks = (hls && hls.audioTracks) || [];
  menu.replaceChildren(...tracks.map((t, i) => option(String(i), t.name || t.lang || 'Audio ' + (i + 1), t.lang)));
  const choice = tracks.length > 1;
  menu.disabled = !choice;
  ui.audioLabel.hidden = menu.hidden = !choice;
  if (!choice) return;
  const found = tracks.findIndex((t) => t.lang === remembered('audio'));
  if (found >= 0) hls.audioTrack = found;
  menu.value = String(hls.audioTrack);
}

export function wireTracks() {
  ui.subtitles.addEventListener('change', () => {
    const hls = player.hls;
    if (!hls) return;
    const i = Number(ui.subtitles.value);
    hls.subtitleTrack = i;
    hls.subtitleDisplay = i >= 0;
    remember('subtitles', i >= 0 ? hls.subtitleTracks[i].lang : 'off');
  });
  ui.audio.addEventListener('change', () => {
    const hls = player.hls;
    if (!hls) return;
    const i = Number(ui.audio.value);
    hls.audioTrack = i;
    remember('audio', hls.audioTracks[i].lang || '');
  });
}
