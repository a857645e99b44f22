"""Helpers for tests that open a folder as a project through the app's handlers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ui.handlers import Handlers
from ui.models import ModelManager
from ui.project import Project
from ui.state import Session

NAMES = ("dog.jpg", "dogs.jpg", "truck.jpg")  # path order = gallery order


def make_handlers(folder: Path, checkpoint: Path, tmp: Path, **kw: Any) -> Handlers:
    """A fresh app over ``folder``: its own store connection and its own loaded model, as after
    a restart (the model's memory cache starts empty)."""
    project = Project(folder, **kw)
    manager = ModelManager(str(checkpoint), device="cpu", embeddings_dir=project.embeddings_dir)
    assert manager.load().ok
    return Handlers(manager, tmp / "media", tmp / "export", [], project)


def start(h: Handlers) -> tuple[Session, list[dict[str, Any]]]:
    """A new tab: the page loads and resumes at the first image not done."""
    session = Session()
    updates = [h.on_load(session), *h.on_resume(session)]
    assert session.link is not None, session.message
    return session, updates


def add_object(h: Handlers, s: Session, x: int, y: int) -> np.ndarray:
    """Click at (x, y) and accept the best candidate; returns its mask."""
    h.prompt(s, {"kind": "point", "x": x, "y": y})
    mask = s.doc.candidates.mask.to_array()
    h.on_accept(s)
    return mask


class _JsEvent:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data


def js_event(data: dict[str, Any]) -> Any:
    """What Gradio hands a handler for a custom JS event (``trigger(name, data)`` in
    static/lists.js)."""
    return _JsEvent(data)
