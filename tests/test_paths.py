"""No URL reaches a file outside the data dir or the static dir, however it is encoded, and
CORS never pairs `*` with credentials."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import MediaFactory, published, upload, wait_for

SECRET_FILES = [b"root:x:0:0", b"[build-system]", b"SQLite format 3", b"test-publish-key"]
TRAVERSALS = [
    "../../../../etc/passwd",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252f%252e%252e%252fetc%252fpasswd",  # double encoding
    "..%5c..%5c..%5cetc%5cpasswd",
    "....//....//etc/passwd",
    "%2e%2e/%2e%2e/pyproject.toml",
    "..%2f..%2fstreamd.sqlite3",
    "../../streamd.sqlite3",
    "..%2f..%2fpublish.key",
    "%00../../etc/passwd",
]
PREFIXES = [
    "/hls/cam/",
    "/hls/cam/ts/240p/",
    "/hls/",
    "/js/",
    "/js/player/",
    "/vendor/",
    "/viewstream/metadata/",
    "/viewstream/",
    "/api/videos/",
    "/upload/cam/",
    "/",
]


@pytest.fixture
async def with_stream(client: TestClient, media: MediaFactory) -> TestClient:
    await upload(client, "cam", media("ts", duration_s=1.0), number=0)
    await wait_for(client, "cam", published(1))
    return client


async def _raw_get(client: TestClient, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (a client library would normalise it)."""
    host, port = client.server.host, client.server.port
    assert host is not None
    assert port is not None
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_no_traversal_reaches_a_file(with_stream: TestClient, prefix: str) -> None:
    for traversal in TRAVERSALS:
        url = prefix + traversal
        status, body = await _raw_get(with_stream, url)
        assert status in (400, 401, 404, 405), (url, status)
        assert not any(secret in body for secret in SECRET_FILES), url


async def test_the_same_files_are_served_where_they_belong(with_stream: TestClient) -> None:
    client = with_stream
    for url in ["/hls/cam/ts/240p/index.m3u8", "/hls/cam/ts/240p/seg000000.ts", "/js/format.js"]:
        assert (await client.get(url)).status == 200, url


async def test_cors_never_pairs_any_origin_with_credentials(with_stream: TestClient) -> None:
    client = with_stream
    origin = {"Origin": "https://evil.example"}
    for method, url in [
        ("GET", "/hls/cam/ts/240p/index.m3u8"),
        ("GET", "/viewstream/metadata/cam"),
        ("GET", "/api/videos"),
        ("OPTIONS", "/hls/cam/ts/240p/index.m3u8"),
        ("GET", "/hls/nosuch/x.m3u8"),
    ]:
        resp = await client.request(method, url, headers=origin)
        assert resp.headers.get("Access-Control-Allow-Origin") == "*", url
        assert "Access-Control-Allow-Credentials" not in resp.headers, url
