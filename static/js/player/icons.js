// Inline SVG icons for the player's buttons (emoji glyphs are missing on many Linux installs).

const svg = (d) => '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" fill="currentColor">' + d + '</svg>';

const ICONS = {
  play: svg('<path d="M8 5v14l11-7z"/>'),
  pause: svg('<path d="M6 5h4v14H6zM14 5h4v14h-4z"/>'),
  volume: svg('<path d="M4 9v6h4l5 5V4L8 9H4z"/><path d="M16 8.5a5 5 0 0 1 0 7" stroke="currentColor" stroke-width="2" fill="none"/>'),
  muted: svg('<path d="M4 9v6h4l5 5V4L8 9H4z"/><path d="M16 9l5 6M21 9l-5 6" stroke="currentColor" stroke-width="2"/>'),
  fullscreen: svg('<path d="M4 4h6v2H6v4H4zM14 4h6v6h-2V6h-4zM4 14h2v4h4v2H4zM18 14h2v6h-6v-2h4z"/>'),
};

// Show icon `name` on button `btn` (no-op when it already shows it).
export function setIcon(btn, name) {
  if (btn.dataset.icon !== name) {
    btn.innerHTML = ICONS[name];
    btn.dataset.icon = name;
  }
}
