// Player page entry point (loaded by /player.html as a module): wires the
// player modules together and boots the player for ?v=VIDEO_ID.
//
//   state.js    ?v=ID, window.streamd test hooks, hls instance, live/ended
//   page.js     DOM lookups, status line, overlay, badge
//   source.js   hls.js / native HLS attach, error recovery, Retry, waiting for the stream
//   controls.js seek bar, play/pause, volume, fullscreen, go-live, latency readout, keys
//   quality.js  quality menu and current-rung readout
//   tracks.js   subtitles and audio-language menus, remembered
//   info.js     Stream panel (/api/videos/{id}) and Playback stats panel
//   previews.js seek-bar previews from the stream's WebVTT thumbnails track
//   icons.js    inline SVG button icons
import { ui, setBadge, setStatus, showOverlay } from './page.js';
import { videoId } from './state.js';
import { wireControls, startUiRefresh } from './controls.js';
import { wireQuality } from './quality.js';
import { wireTracks } from './tracks.js';
import { wireSource, waitForStream } from './source.js';
import { startInfo } from './info.js';
import { startPreviews } from './previews.js';

wireControls();
wireQuality();
wireTracks();
wireSource();

if (!videoId) {
  ui.title.textContent = 'No stream selected';
  setBadge('—', 'badge-waiting');
  setStatus('Open this page as /player.html?v=VIDEO_ID, or pick a stream on the index page.', 'error');
  showOverlay('No stream selected', 'error');
  ui.retry.hidden = true;
  const a = document.createElement('a');
  a.href = '/';
  a.textContent = 'All streams';
  ui.links.append(a);
} else {
  ui.title.textContent = videoId;
  document.title = videoId + ' · streamd';
  startUiRefresh();
  startInfo();
  startPreviews();
  waitForStream();
}
