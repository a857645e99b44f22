"""``python -m sam`` run as a user runs it, for the CLI tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m sam ARGS`` in a child process (``env``: its environment, default ours)."""
    return subprocess.run(
        [sys.executable, "-m", "sam", *args], capture_output=True, text=True, timeout=300, env=env
    )


def predict_args(model: Path | str, image: Path | str, out: Path, *flags: str) -> list[str]:
    """``predict --model MODEL --image IMAGE FLAGS --out OUT``."""
    return ["predict", "--model", str(model), "--image", str(image), *flags, "--out", str(out)]
