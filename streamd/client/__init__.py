"""The provider's side: `streamd push` (`push`: upload a recording segment by segment, with
retries and pacing) and the cutter it uses (`segmenter`: keyframe cuts, no re-encode)."""
