"""Serves the app cross-origin isolated, so the page's click decoder can use threads.

ONNX Runtime Web runs multi-threaded WebAssembly only where ``SharedArrayBuffer`` exists, i.e.
in a page (and its workers) with ``crossOriginIsolated`` true: every response says
``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy``. The embedder
policy is ``credentialless`` rather than ``require-corp``: the page's own files are same-origin
either way, and a cross-origin font or image (a theme's web font) still loads, without cookies,
instead of being blocked. Browsers without ``credentialless`` (Safari) are simply not isolated:
the decoder then runs on one thread, as before.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The headers added to every HTTP response (names lower-case, as ASGI carries them).
ISOLATION_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"credentialless"),
)


class CrossOriginIsolation:
    """ASGI middleware adding :data:`ISOLATION_HEADERS` to every HTTP response.

    A plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``), so Gradio's streamed
    responses (the queue's server-sent events, file downloads) pass through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_isolated(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [header for header in ISOLATION_HEADERS if header[0] not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_isolated)
