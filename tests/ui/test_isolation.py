"""The app is served cross-origin isolated (ui/isolation.py): every response, the page, the
API, the served files and the queue's event stream, carries COOP/COEP, so the browser's click
decoder may use WebAssembly threads; the rest of the app keeps working behind it."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import app
from ui import browser_decode
from ui.isolation import CrossOriginIsolation
from ui.layout import build_demo
from ui.models import ModelManager
from ui.render.media import file_url

ISOLATED = {
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "credentialless",
}


def isolated(response: httpx.Response) -> bool:
    return all(response.headers.get(name) == value for name, value in ISOLATED.items())


def test_every_response_gets_the_headers_and_streams_pass_through():
    async def chunks():
        for part in (b"data: 1\n\n", b"data: 2\n\n"):
            yield part

    routes = [
        Route("/", lambda request: PlainTextResponse("page")),
        Route("/stream", lambda request: StreamingResponse(chunks(), media_type="text/plain")),
        Route(
            "/own",
            lambda request: PlainTextResponse(
                "x", headers={"Cross-Origin-Embedder-Policy": "require-corp"}
            ),
        ),
    ]
    client = TestClient(Starlette(routes=routes, middleware=[Middleware(CrossOriginIsolation)]))
    assert isolated(client.get("/"))
    assert isolated(client.get("/missing"))  # errors too
    stream = client.get("/stream")
    assert isolated(stream) and stream.text == "data: 1\n\ndata: 2\n\n"
    own = client.get("/own")  # a route's own policy is kept, not doubled
    assert own.headers.get_list("cross-origin-embedder-policy") == ["require-corp"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tiny_checkpoint: Path):
    manager = ModelManager(str(tiny_checkpoint), device="cpu")
    assert manager.load().ok
    demo = build_demo(manager)
    demo.queue(default_concurrency_limit=app.QUEUE_CONCURRENCY)
    options = app.server_options(app.parse_args(["--port", str(free_port())]))
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **options)
    yield url.rstrip("/")
    demo.close()


def test_the_app_as_launched_serves_page_api_and_decoder_files_isolated(served: str):
    page = httpx.get(served + "/")
    assert page.status_code == 200 and isolated(page)
    info = httpx.get(served + "/gradio_api/info")
    assert info.status_code == 200 and isolated(info)
    # The decoder worker and ONNX Runtime Web's WASM: the worker's own policy must match too.
    for path in (browser_decode.WORKER, browser_decode.VENDOR / "ort-wasm-simd-threaded.wasm"):
        served_file = httpx.get(served + file_url(path))
        assert served_file.status_code == 200 and isolated(served_file)
        assert served_file.content == path.read_bytes()
