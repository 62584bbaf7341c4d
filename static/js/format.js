// Formatting shared by the stream list (/js/index.js) and the player (/js/player/).
// Pure functions, no DOM.

// h:mm:ss, or m:ss under an hour.
export function clock(s) {
  if (!isFinite(s) || s < 0) s = 0;
  s = Math.floor(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = h ? String(m).padStart(2, '0') : String(m);
  return (h ? h + ':' : '') + mm + ':' + String(sec).padStart(2, '0');
}

export function fmtMbps(bps) {
  if (!bps || !isFinite(bps)) return '?';
  return bps >= 1e6 ? (bps / 1e6).toFixed(1) + ' Mbps' : Math.round(bps / 1e3) + ' kbps';
}

export function humanKey(k) {
  return k.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/^./, (c) => c.toUpperCase());
}

// Label + value for an extra (not-yet-known) numeric API field, unit guessed from its name.
export function fmtExtra(k, v) {
  if (/Bps$/.test(k)) return [humanKey(k.replace(/Bps$/, '')), fmtMbps(v)];
  if (/S$/.test(k)) return [humanKey(k.replace(/S$/, '')), (Math.round(v * 100) / 100) + ' s'];
  if (/Ms$/.test(k)) return [humanKey(k.replace(/Ms$/, '')), Math.round(v) + ' ms'];
  if (/Factor$/.test(k)) return [humanKey(k), (Math.round(v * 100) / 100) + '×'];
  return [humanKey(k), String(Math.round(v * 1000) / 1000)];
}
