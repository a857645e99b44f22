"""Fixtures for handler-level UI tests: a model manager on the tiny random SAM checkpoint (and
one on the SAM 2 checkpoint), the page's handlers on each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from project_app import make_handlers

from sam import SamPredictor
from sam.image_io import load_image
from ui.handlers import Handlers
from ui.models import ModelManager
from ui.state import Session


def loaded(checkpoint: Path) -> ModelManager:
    """A manager with ``checkpoint`` loaded on the CPU."""
    manager = ModelManager(str(checkpoint), device="cpu")
    status = manager.load()
    assert status.ok, status.message
    return manager


def handlers_on(manager: ModelManager, tmp_path: Path) -> Handlers:
    """The page's handlers on ``manager``, writing under ``tmp_path``, without examples."""
    return Handlers(manager, tmp_path / "media", tmp_path / "export", [])


@pytest.fixture(scope="session")
def manager(tiny_checkpoint: Path) -> ModelManager:
    return loaded(tiny_checkpoint)


@pytest.fixture
def handlers(manager: ModelManager, tmp_path: Path) -> Handlers:
    return handlers_on(manager, tmp_path)


@pytest.fixture(scope="session")
def truck_path(example_photos: Path) -> Path:
    return example_photos / "truck.jpg"


@pytest.fixture(scope="session")
def truck(truck_path: Path) -> np.ndarray:
    return load_image(str(truck_path))


@pytest.fixture
def engine(manager: ModelManager, truck: np.ndarray) -> SamPredictor:
    """The engine as a user of the Python API would call it, on the same model."""
    predictor = manager.predictor()
    predictor.set_image(truck)
    return predictor


@pytest.fixture
def opened(handlers: Handlers, truck_path: Path) -> Session:
    """A session with truck.jpg open and encoded, as after an upload in the browser."""
    session = Session()
    updates = list(handlers.on_upload(session, str(truck_path)))
    assert [("sam-busy" in u["stage"]) for u in updates] == [True, False]
    assert session.doc.image is not None, session.message
    assert not session.message_is_error, session.message
    return session


@pytest.fixture
def app(folder: Path, tiny_checkpoint: Path, tmp_path: Path):
    """The app over ``folder`` as a project."""
    h = make_handlers(folder, tiny_checkpoint, tmp_path)
    yield h
    h.project.close()


# The same page on a SAM 2 model (tests/ui/test_sam2_app.py).
@pytest.fixture(scope="module")
def sam2_manager(tiny_sam2_checkpoint: Path) -> ModelManager:
    return loaded(tiny_sam2_checkpoint)


@pytest.fixture
def sam2_page(sam2_manager: ModelManager, tmp_path: Path) -> Handlers:
    return handlers_on(sam2_manager, tmp_path)
