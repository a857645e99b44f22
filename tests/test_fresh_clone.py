"""A bare clone runs its own tests: nothing the suite needs lies outside the repository.

The test photos once came from ``../shared/images`` beside the checkout, so a plain
``git clone`` failed 150 tests. This clones the committed tree into an empty folder (nothing
beside it) and runs the tests that read the photos there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_bare_clone_finds_its_test_photos(tmp_path: Path) -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "alone" / "repo"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    photo_tests = ["tests/sam/test_image_io.py", "-k", "photo_equals_pillows"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *photo_tests],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout
