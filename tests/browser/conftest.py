"""Launch the real app (``python app.py``) on a free port, and Chromium through Playwright.

Chromium comes from the system (Debian's ``chromium`` package, or ``SAM_CHROMIUM``); Playwright's
own browser downloads are never used. Without a Chromium the browser tests are skipped, unless
``REQUIRE_BROWSER=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningApp:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path) -> None:
        self.url = url
        self.proc = proc
        self.log = log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def launch_app(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[RunningApp]:
    """Start ``python app.py ARGS --port P`` and wait until it serves its page."""
    port = free_port()
    full_env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **(env or {}),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py", *args, "--port", str(port)],
            cwd=REPO,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    app = RunningApp(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}:\n{app.log_text()}")
            try:
                with urllib.request.urlopen(app.url + "/", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"app.py did not start in time:\n{app.log_text()}")
            time.sleep(0.3)
        yield app
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="session")
def app_server(
    tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    log = tmp_path_factory.mktemp("app") / "app.log"
    with launch_app(["--model", str(tiny_checkpoint), "--device", "cpu"], log) as app:
        yield app


@pytest.fixture(scope="session")
def app_launcher():
    """``launch_app`` itself, for tests that need an app started with other flags."""
    return launch_app


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("SAM_CHROMIUM") or "/usr/bin/chromium"
    if not Path(path).exists():
        reason = (
            f"Chromium not found at {path}: install it (apt-get install chromium) or set "
            "SAM_CHROMIUM=/path/to/chromium"
        )
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def browser(chromium_path: str):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("the playwright package is missing (pip install -r requirements-dev.txt)")
        pytest.skip("the playwright package is not installed")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tmp_path: Path):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where browser tests leave screenshots (``SAM_SCREENSHOTS``, default under /tmp)."""
    folder = Path(os.environ.get("SAM_SCREENSHOTS", "/tmp/sam-annotator-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
