"""Fixtures shared by the whole suite: random-weight checkpoints in real formats, real photos."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from checkpoints import TINY_DIMS, random_hf_sam, save_hf_checkpoint, save_meta_checkpoint
from PIL import Image
from project_app import NAMES
from sam2_checkpoints import TINY_SAM2_DIMS, random_hf_sam2, save_hf_sam2, save_meta_sam2

REPO = Path(__file__).resolve().parents[1]
# The photos ship with the app (static/examples/), so a bare clone runs the whole suite.
EXAMPLE_PHOTOS = REPO / "static" / "examples"
PHOTO_NAMES = ("dog.jpg", "dogs.jpg", "groceries.jpg", "truck.jpg")

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Parity with transformers is defined at fp32; precision=auto would pick bf16 on CPUs with
# native bf16. tests/sam/test_fast_path.py tests the fast paths explicitly.
os.environ.setdefault("SAM_PRECISION", "fp32")


@pytest.fixture(scope="session")
def example_photos() -> Path:
    """The real photos the app ships as examples (``static/examples``)."""
    missing = [n for n in PHOTO_NAMES if not (EXAMPLE_PHOTOS / n).is_file()]
    if missing:
        pytest.fail(f"example photos missing from {EXAMPLE_PHOTOS}: {missing}")
    return EXAMPLE_PHOTOS


@pytest.fixture(scope="session")
def photos(example_photos: Path) -> dict[str, np.ndarray]:
    """Each example photo as ``(H, W, 3) uint8`` RGB, decoded by Pillow directly."""
    return {n: np.asarray(Image.open(example_photos / n).convert("RGB")) for n in PHOTO_NAMES}


@pytest.fixture
def folder(tmp_path: Path, example_photos: Path) -> Path:
    """A folder of three example photos, to open as a project."""
    images = tmp_path / "images"
    images.mkdir()
    for name in NAMES:
        shutil.copy(example_photos / name, images / name)
    return images


@pytest.fixture(scope="session")
def tiny_hf_model():
    """A small random-weight ``transformers.SamModel`` (the parity oracle)."""
    return random_hf_sam(TINY_DIMS, seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_hf_model) -> Path:
    """HF-format folder (config.json + model.safetensors + preprocessor_config.json)."""
    return save_hf_checkpoint(tiny_hf_model, tmp_path_factory.mktemp("tiny-sam-hf"))


@pytest.fixture(scope="session")
def tiny_meta_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_hf_model) -> Path:
    """The same weights as ``tiny_checkpoint`` in Meta's ``.pth`` format."""
    return save_meta_checkpoint(tiny_hf_model, tmp_path_factory.mktemp("tiny-sam-meta") / "sam.pth")


@pytest.fixture(scope="session")
def tiny_hf_sam2():
    """A small random-weight ``transformers.Sam2Model`` with Hiera-Tiny's block layout."""
    return random_hf_sam2(TINY_SAM2_DIMS, seed=0)


@pytest.fixture(scope="session")
def tiny_sam2_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_hf_sam2) -> Path:
    """The SAM 2 model as an HF folder (config.json + model.safetensors + preprocessor)."""
    return save_hf_sam2(tiny_hf_sam2, tmp_path_factory.mktemp("tiny-sam2-hf"))


@pytest.fixture(scope="session")
def tiny_sam2_meta_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_hf_sam2) -> Path:
    """The same weights as Meta releases them (named as the 2.1 Tiny file is)."""
    folder = tmp_path_factory.mktemp("tiny-sam2-meta")
    return save_meta_sam2(tiny_hf_sam2, folder / "sam2.1_hiera_tiny.pt")
