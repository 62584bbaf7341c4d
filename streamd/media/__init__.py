"""Media work, in worker processes only: probe an upload, decode it once, scale it to every
rung, encode (`codecs/`: one module per codec) and hand segments to `streamd.package`.
The server never imports this package; `streamd.jobs` runs it."""
