"""`streamd push`: a recording cut without re-encoding, uploaded in order, watched back."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from streamd.cli import main
from streamd.client.push import push_file
from tests.conftest import AUTH, MediaFactory, wait_for


async def test_push_a_recording(client: TestClient, media: MediaFactory) -> None:
    recording = media("mp4", duration_s=6, gop=30)
    report = await push_file(
        recording, str(client.make_url("")), "pushed", progress=False, headers=AUTH
    )
    assert report.segments == 3
    assert report.duration_s == pytest.approx(6.0, abs=0.05)
    info = await wait_for(client, "pushed", lambda v: v["state"] == "ended")
    assert info["uploads"]["published"] == 3
    assert info["durationS"] == pytest.approx(6.0, abs=0.05)


def test_cli_push_needs_a_video_id(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["push", "x.mp4"])
    assert "--video" in capsys.readouterr().err
