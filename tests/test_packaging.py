"""``pip install .`` ships every package of the app, sub-packages included (an explicit
``packages`` list left out ``sam.dataset`` and ``sam.modeling``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from setuptools import find_packages

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_installed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = config["tool"]["setuptools"]["packages"]  # a list, or {"find": {...}}
    if isinstance(packages, list):
        installed = set(packages)
    else:
        installed = set(find_packages(str(REPO), **packages["find"]))
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("sam", "ui")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert "sam.dataset" in found
    assert found - installed == set()
