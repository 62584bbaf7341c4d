"""A worker that dies on an upload takes down that upload only, never the server."""

from __future__ import annotations

import os
import signal

from aiohttp.test_utils import TestClient

from streamd.appkeys import JOBS
from tests.conftest import MediaFactory, published, upload, wait_for


async def test_worker_crash_fails_one_upload_and_the_stream_goes_on(
    client: TestClient, media: MediaFactory
) -> None:
    await upload(client, "crash", media("mp4", size="640x480", duration_s=30, gop=30), number=0)
    await wait_for(client, "crash", lambda v: v["uploads"]["transcoding"] == 1)
    jobs = client.app[JOBS]
    pids = [
        p.pid
        for w in jobs._workers
        if w.busy  # type: ignore[attr-defined]
        for p in w.pool._processes.values()
    ]
    assert len(pids) == 1
    for pid in pids:  # as if FFmpeg segfaulted on this upload
        os.kill(pid, signal.SIGKILL)
    info = await wait_for(client, "crash", published(1))
    (up,) = info["uploadList"]
    assert up["state"] == "failed"
    assert "crashed" in up["error"]
    await upload(client, "crash", media("mp4", duration_s=2, gop=30), number=1)
    info = await wait_for(client, "crash", published(2))
    assert info["uploadList"][1]["state"] == "published"
    assert jobs.healthy()
