"""For operators: /metrics moves with uploads and views, health and readiness, JSON logs."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from streamd.appkeys import CONFIG
from streamd.logs import JsonFormatter
from tests.conftest import MediaFactory, fetch, published, upload, wait_for


async def _metrics(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _get(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_when_a_segment_is_uploaded_and_watched(
    client: TestClient, media: MediaFactory
) -> None:
    before = await _metrics(client)
    clip = media("mp4")
    await upload(client, "m", clip, number=0)
    await upload(client, "m", clip, number=0, expect=200)
    await wait_for(client, "m", published(1))
    await fetch(client, "/viewstream/metadata/m")
    await fetch(client, "/hls/m/fmp4/240p/index.m3u8")
    await fetch(client, "/hls/m/fmp4/240p/seg000000.m4s")
    await fetch(client, "/hls/m/ts/240p/seg000000.ts")
    after = await _metrics(client)

    def moved(name: str, **labels: str) -> float:
        return _get(after, name, **labels) - _get(before, name, **labels)

    assert moved("streamd_uploads_total", result="accepted") == 1
    assert moved("streamd_uploads_total", result="duplicate") == 1
    assert moved("streamd_upload_bytes_total") == clip.stat().st_size
    assert moved("streamd_segments_published_total", rung="240p") == 1
    assert moved("streamd_segments_published_total", rung="144p") == 1
    assert moved("streamd_transcode_seconds_total", rung="240p") > 0
    assert moved("streamd_publish_delay_seconds_count") == 1
    assert moved("streamd_cache_hits_total") >= 2
    assert _get(after, "streamd_cache_bytes") > 0
    assert _get(after, "streamd_viewers", stream="m") == 1
    assert _get(after, "streamd_realtime_factor", stream="m") > 0
    assert _get(after, "streamd_queue_depth", state="queued") == 0
    assert _get(after, "streamd_workers_healthy") == 1
    assert _get(after, "streamd_processes", kind="worker") >= 1
    assert _get(after, "streamd_process_resident_bytes", kind="worker") > 30e6  # PyAV's at least
    assert _get(after, "streamd_process_resident_bytes", kind="primary") > 20e6
    assert _get(after, "streamd_processes", kind="edge") == 0  # the test app has none
    assert _get(after, "streamd_processes", kind="forkserver") == 1  # the workers' parent
    assert _get(after, "streamd_process_resident_bytes", kind="forkserver") > 30e6
    assert moved("streamd_http_requests_total", route="/hls/{video_id}/{path}", status="200") == 3
    assert moved("streamd_http_requests_total", route="/upload/{video_id}", status="202") == 1
    api = await (await client.get("/api/videos/m")).json()
    assert api["viewers"] == 1
    assert api["publishDelayS"] > 0
    assert api["realtimeFactor"] > 0


async def test_refused_uploads_are_counted_by_reason(client: TestClient) -> None:
    before = await _metrics(client)
    resp = await client.post("/upload/x", data=b"not a video" * 50)
    assert resp.status == 422
    after = await _metrics(client)
    assert (
        _get(after, "streamd_uploads_total", result="unsupported_media")
        - _get(before, "streamd_uploads_total", result="unsupported_media")
        == 1
    )


async def test_health_and_readiness(client: TestClient) -> None:
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["checks"] == {"workers": True, "dataDirWritable": True, "freeSpace": True}


async def test_readyz_turns_unready_when_the_data_dir_is_not_writable(client: TestClient) -> None:
    data_dir = client.app[CONFIG].data_dir
    shutil.rmtree(data_dir)
    data_dir.write_text("a file where the data dir should be")  # root ignores chmod
    try:
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503
        assert body["ready"] is False
        assert body["checks"]["dataDirWritable"] is False
    finally:
        data_dir.unlink()
        data_dir.mkdir()


def test_json_log_lines_keep_their_fields() -> None:
    record = logging.makeLogRecord(
        {
            "name": "streamd.scheduler",
            "levelname": "INFO",
            "msg": "segment %d published",
            "args": (3,),
            "stream": "cam",
            "segment": 3,
            "publish_delay_ms": 412,
        }
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "segment 3 published"
    assert (line["stream"], line["segment"], line["publish_delay_ms"]) == ("cam", 3, 412)
    assert line["level"] == "info"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_serve_accepts_log_format(fmt: str) -> None:
    from streamd.config import load_config

    assert load_config(None, env={"STREAMD_LOG_FORMAT": fmt}).log_format == fmt
