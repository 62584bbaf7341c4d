"""The admin API: off without `[auth] admin_token`; with it, per-stream publish keys and
deleting a stream with everything it published."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from streamd.config import AuthConfig, Config
from streamd.model.layout import STATE_FILE
from tests.conftest import TEST_KEY, AppClient, MediaFactory, published, upload, wait_for

ADMIN = "admin-token-for-tests"


def _with_admin(config: Config) -> Config:
    return replace(config, auth=AuthConfig(publish_keys=[TEST_KEY], admin_token=ADMIN))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_admin_api_is_off_without_a_token(make_client: AppClient) -> None:
    client = await make_client(headers=_bearer("anything"))
    for method, url in [
        ("POST", "/admin/streams/cam/keys"),
        ("GET", "/admin/streams/cam/keys"),
        ("DELETE", "/admin/keys/abc"),
        ("DELETE", "/admin/streams/cam"),
        ("DELETE", "/api/videos/cam"),
    ]:
        resp = await client.request(method, url)
        assert resp.status == 404, (method, url)
        assert "admin API is off" in (await resp.json())["message"]


@pytest.mark.parametrize("headers", [{}, _bearer("wrong"), _bearer(TEST_KEY)])
async def test_admin_needs_the_admin_token(
    make_client: AppClient, config: Config, headers: dict[str, str]
) -> None:
    client = await make_client(_with_admin(config), headers=headers)
    resp = await client.post("/admin/streams/cam/keys")
    assert resp.status == 401
    assert (await resp.json())["error"] == "unauthorized"


async def test_stream_keys_publish_to_their_stream_only_until_revoked(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    cfg = _with_admin(config)
    client = await make_client(cfg, headers={})  # one server; credentials per request
    resp = await client.post("/admin/streams/cam/keys", headers=_bearer(ADMIN))
    assert resp.status == 201
    made = await resp.json()
    key, key_id = made["key"], made["keyId"]
    assert key != TEST_KEY
    clip = media("ts", duration_s=1.0).read_bytes()

    def segment(n: int) -> dict[str, str]:
        return {**_bearer(key), "X-Segment-Number": str(n)}

    assert (await client.post("/upload/cam", data=clip, headers=segment(0))).status == 202
    other = await client.post("/upload/other", data=clip, headers=segment(0))
    assert other.status == 401, "a stream's key publishes to that stream only"
    listed = await (await client.get("/admin/streams/cam/keys", headers=_bearer(ADMIN))).json()
    assert [k["keyId"] for k in listed["keys"]] == [key_id]
    assert key not in str(listed), "keys are shown once, when made"

    # Kept across a restart (as a hash only), and revoked for good.
    await client.close()
    client = await make_client(cfg, headers={})
    assert (await client.post("/upload/cam", data=clip, headers=segment(1))).status == 202
    db = sqlite3.connect(config.data_dir / STATE_FILE)
    assert key not in str(db.execute("SELECT * FROM stream_keys").fetchall())
    db.close()
    assert (await client.delete(f"/admin/keys/{key_id}", headers=_bearer(ADMIN))).status == 204
    assert (await client.post("/upload/cam", data=clip, headers=segment(2))).status == 401
    assert (await client.delete("/admin/keys/nosuch", headers=_bearer(ADMIN))).status == 404


async def test_deleting_a_stream_removes_everything_it_had(
    make_client: AppClient, config: Config, media: MediaFactory
) -> None:
    client = await make_client(_with_admin(config))  # sends the publish key
    admin = _bearer(ADMIN)
    for vid in ("gone", "kept"):
        await upload(client, vid, media("ts", duration_s=1.0), number=0)
        await wait_for(client, vid, published(1))
    await client.post("/admin/streams/gone/keys", headers=admin)
    assert (await client.get("/hls/gone/ts/240p/index.m3u8")).status == 200

    assert (await client.delete("/api/videos/gone")).status == 401  # the publish key: no
    assert (await client.delete("/api/videos/gone", headers=admin)).status == 204
    assert (await client.get("/api/videos/gone")).status == 404
    assert (await client.get("/hls/gone/ts/240p/index.m3u8")).status == 404
    assert (await client.get("/hls/gone/ts/240p/seg000000.ts")).status == 404
    assert (await client.get("/viewstream/metadata/gone")).status == 404
    assert not list((config.data_dir / "hls" / "gone").rglob("*.*"))
    assert not list((config.data_dir / "ingest" / "gone").rglob("*.*"))
    db = sqlite3.connect(config.data_dir / STATE_FILE)
    for table in ("streams", "uploads", "segments", "rung_outputs", "pipelines", "stream_keys"):
        rows = db.execute(f"SELECT COUNT(*) FROM {table} WHERE video_id = 'gone'").fetchone()
        assert rows == (0,), table
    db.close()
    assert (await client.get("/admin/streams/gone/keys", headers=admin)).status == 200
    assert (await (await client.get("/admin/streams/gone/keys", headers=admin)).json())[
        "keys"
    ] == []
    # The other stream is untouched, and the id can start again.
    assert (await client.get("/hls/kept/ts/240p/index.m3u8")).status == 200
    await upload(client, "gone", media("ts", duration_s=1.0), number=0)
    await wait_for(client, "gone", published(1))
    assert (await client.delete("/admin/streams/nosuch", headers=admin)).status == 404
