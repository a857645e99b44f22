"""A fake Hugging Face hub on 127.0.0.1 for tests, serving repos from local folders.

It speaks just enough of the hub's ``/resolve`` protocol for ``huggingface_hub.hf_hub_download``
(2.x) to download into a real cache, the way it does from huggingface.co:

* ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}`` answers a small (git) file with 200,
  ``ETag: "<git blob sha1>"``, ``Content-Length`` and ``X-Repo-Commit``;
* an LFS file (weights) with a 302 to a second server on another port (the "CDN", a different
  origin, so the client reads the metadata from the redirect itself): ``X-Linked-Etag:
  "<sha256>"``, ``X-Linked-Size`` and ``X-Repo-Commit``. No ``X-Xet-*`` header is ever sent,
  so downloads never go through Xet;
* failures carry the ``X-Error-Code`` header the client maps to its exceptions: 401
  ``RepoNotFound`` (unknown repo), 403 ``GatedRepo``, 404 ``RevisionNotFound`` and 404
  ``EntryNotFound`` (the latter with ``X-Repo-Commit``, which the client caches as ``.no_exist``).

Both servers bind 127.0.0.1 only, on free ports, in daemon threads; every connection carries one
request (HTTP/1.0) under a socket timeout, and both stop when the ``with`` block exits::

    with FakeHub({"someone/tiny-sam": {"main": folder, "v2": other_folder}}) as hub:
        use_hub(monkeypatch, endpoint=hub.endpoint, cache=tmp_path / "hub")
        hf_hub_download("someone/tiny-sam", "config.json")
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import socket
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".onnx", ".msgpack", ".h5")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")
_BLOB = re.compile(r"^/lfs/(?P<sha256>[0-9a-f]{64})$")


def _commit_of(repo_id: str, revision: str) -> str:
    return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # seconds a connection may stay silent; handling is bounded

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def log_message(self, format: str, *args) -> None:  # quiet; requests are recorded instead
        pass

    def _serve(self, body: bool) -> None:
        hub = self.server.hub
        path = urlsplit(self.path).path
        with hub._lock:
            hub.requests.append((self.server.role, self.command, path))
        if self.server.role == "cdn":
            match = _BLOB.match(path)
            blob = hub._blobs.get(match["sha256"]) if match else None
            if blob is None:
                return self._reply(404, body=body, error="Blob not found")
            return self._reply(200, blob.read_bytes(), body=body)
        match = _RESOLVE.match(path)
        if match is None:
            return self._reply(404, body=body, error="Not found")
        repo_id, revision = unquote(match["repo"]), unquote(match["revision"])
        filename = unquote(match["file"])
        revisions = hub.repos.get(repo_id)
        if revisions is None:
            return self._reply(401, body=body, code="RepoNotFound", error="Repository not found")
        if repo_id in hub.gated:
            return self._reply(
                403,
                body=body,
                code="GatedRepo",
                error=f"Access to model {repo_id} is restricted and you are not in the authorized "
                "list. Visit the repo page to ask for access.",
            )
        branch = next(
            (r for r in revisions if revision in (r, _commit_of(repo_id, r))),
            None,
        )
        if branch is None:
            return self._reply(
                404, body=body, code="RevisionNotFound", error=f"Invalid rev id: {revision}"
            )
        commit = _commit_of(repo_id, branch)
        folder = revisions[branch].resolve()
        file = (folder / filename).resolve()
        if not file.is_relative_to(folder) or not file.is_file():
            return self._reply(
                404,
                body=body,
                code="EntryNotFound",
                error="Entry not found",
                headers={"X-Repo-Commit": commit},
            )
        data = file.read_bytes()
        if file.suffix in LFS_SUFFIXES:
            sha256 = hashlib.sha256(data).hexdigest()
            with hub._lock:
                hub._blobs[sha256] = file
            headers = {
                "Location": f"{hub.cdn_endpoint}/lfs/{sha256}",
                "X-Repo-Commit": commit,
                "X-Linked-Etag": f'"{sha256}"',
                "X-Linked-Size": str(len(data)),
                "ETag": f'"{hashlib.sha1(data).hexdigest()}"',  # the pointer file's, not used
            }
            return self._reply(302, body=body, headers=headers)
        git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        headers = {"X-Repo-Commit": commit, "ETag": f'"{git_sha1}"'}
        return self._reply(200, data, body=body, headers=headers)

    def _reply(
        self,
        status: int,
        payload: bytes = b"",
        *,
        body: bool,
        code: str | None = None,
        error: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if error is not None:
            payload = json.dumps({"error": error}).encode()
        self.send_response(status)
        content_type = "application/json" if error is not None else "application/octet-stream"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if code is not None:
            self.send_header("X-Error-Code", code)
        if error is not None:
            self.send_header("X-Error-Message", error)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: FakeHub, role: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub = hub
        self.role = role

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class FakeHub:
    """A hub serving ``repos``: ``{repo_id: folder}`` (branch ``main``) or
    ``{repo_id: {revision: folder}}`` (branches/tags); repos in ``gated`` answer 403 GatedRepo."""

    def __init__(
        self,
        repos: Mapping[str, Path | Mapping[str, Path]],
        *,
        gated: Iterable[str] = (),
    ) -> None:
        self.repos: dict[str, dict[str, Path]] = {
            repo: {"main": Path(spec)} if isinstance(spec, (str, Path)) else dict(spec)
            for repo, spec in repos.items()
        }
        self.gated = frozenset(gated)
        self.requests: list[tuple[str, str, str]] = []  # (hub|cdn, method, path)
        self._blobs: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []

    def commit(self, repo_id: str, revision: str = "main") -> str:
        """The 40-hex commit hash ``revision`` of ``repo_id`` resolves to."""
        return _commit_of(repo_id, revision)

    def url(self, repo_id: str, filename: str, revision: str = "main") -> str:
        return f"{self.endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(filename)}"

    @property
    def endpoint(self) -> str:
        """``HF_ENDPOINT`` for this hub, e.g. ``http://127.0.0.1:40123``."""
        return self._servers[0].endpoint

    @property
    def cdn_endpoint(self) -> str:
        return self._servers[1].endpoint

    def __enter__(self) -> FakeHub:
        for role in ("hub", "cdn"):
            server = _Server(self, role)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"fake-hf-{role}",
                daemon=True,
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)


def unused_endpoint() -> str:
    """An ``http://127.0.0.1:PORT`` endpoint where nothing listens (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def use_hub(monkeypatch, *, endpoint: str, cache: Path, offline: bool = False) -> None:
    """Point ``huggingface_hub`` at ``endpoint`` and the cache folder ``cache`` for one test.

    Sets the environment (``HF_ENDPOINT``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``,
    ``HF_HUB_DISABLE_XET=1``, no token) and, because ``huggingface_hub.constants`` reads it at
    import time, the module attributes the download code reads at call time.
    """
    import huggingface_hub.constants as constants

    endpoint = endpoint.rstrip("/")
    token_path = cache.parent / f"{cache.name}-no-token" / "token"
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_TOKEN_PATH", str(token_path))
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_path))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(token_path.parent / "stored"))
