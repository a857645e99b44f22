"""``python app.py`` stopped the way services are stopped (SIGTERM: docker stop, systemd,
kill) shuts down cleanly: exit status 0, and none of the files it wrote to the temp dir while
serving (API masks, Gradio's copies of uploads and results, the photos the page shows) stay
behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the app exited early:\n{log.read_text()}"
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the app did not start serving:\n{log.read_text()}")


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def test_sigterm_removes_the_apps_temp_files_and_exits_cleanly(tiny_checkpoint, tmp_path):
    from gradio_client import Client, handle_file

    temp = tmp_path / "temp"  # the app's temp dir (its own and Gradio's files)
    temp.mkdir()
    image = tmp_path / "small.png"
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(image)
    env = {
        **os.environ,
        "TMPDIR": str(temp),
        "GRADIO_TEMP_DIR": str(temp / "gradio"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    port = free_port()
    log = tmp_path / "app.log"
    with log.open("w") as out:
        app = subprocess.Popen(
            [sys.executable, "app.py", "--model", str(tiny_checkpoint), "--device", "cpu",
             "--port", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, app, log)
        client = Client(url, verbose=False)
        for x in (10, 30, 50):
            mask_file, info = client.predict(
                handle_file(str(image)), json.dumps([[x, 20, 1]]), "", False, api_name="/predict"
            )
            assert info["size"] == [40, 60] and Path(mask_file).is_file()
        written = files_under(temp)
        assert any(name.endswith("mask.png") for name in written), written
        assert any(name.endswith("small.png") for name in written), written  # Gradio's upload

        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=120) == 0, log.read_text()
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    # Gradio keeps its copies of the example photos on purpose (the same four paths each start).
    examples = {p.name for p in (REPO / "static" / "examples").iterdir()}
    assert [name for name in files_under(temp) if Path(name).name not in examples] == []
