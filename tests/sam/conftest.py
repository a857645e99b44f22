"""SAM 2 fixtures for the engine's tests: one random-weight ``transformers.Sam2Model`` (the
parity oracle) and the same weights as a Hugging Face folder and as a Meta ``.pt``."""

from __future__ import annotations

from pathlib import Path

import pytest
from sam2_checkpoints import TINY_SAM2_DIMS, random_hf_sam2, save_hf_sam2, save_meta_sam2


@pytest.fixture(scope="session")
def tiny_hf_sam2():
    """A small random-weight ``transformers.Sam2Model`` with Hiera-Tiny's block layout."""
    return random_hf_sam2(TINY_SAM2_DIMS, seed=0)


@pytest.fixture(scope="session")
def tiny_sam2_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_hf_sam2) -> Path:
    """HF-format folder (config.json + model.safetensors + preprocessor_config.json)."""
    return save_hf_sam2(tiny_hf_sam2, tmp_path_factory.mktemp("tiny-sam2-hf"))


@pytest.fixture(scope="session")
def tiny_sam2_meta_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_hf_sam2) -> Path:
    """The same weights as Meta releases them (named as the 2.1 Tiny file is)."""
    folder = tmp_path_factory.mktemp("tiny-sam2-meta")
    return save_meta_sam2(tiny_hf_sam2, folder / "sam2.1_hiera_tiny.pt")
